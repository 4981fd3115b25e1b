//! What the BPF parser (`parse_skb` in shared/bpf/skb.h) reports about one packet,
//! and how it is printed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::fmt::{cstr, mac};

/// Mirror of `struct pkt_meta` (shared/bpf/skb.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PktMeta {
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
    pub eth_type: u16,
    pub l3_proto: u16,
    pub vlan_id: u16,
    pub vlan_prio: u8,
    pub has_vlan: u8,
    pub has_mac: u8,
    pub family: u8,
    pub l4proto: u8,
    pub ttl: u8,
    pub tos: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub tcp_flags: u8,
    pub ip_id: u16,
    pub ip_len: u16,
    pub frag_off: u16,
    pub sport: u16,
    pub dport: u16,
    pub icmp_id: u16,
    pub icmp_seq: u16,
    pub mac_off: u16,
    pub net_off: u16,
    pub trans_off: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub ifindex: u32,
    pub len: u32,
    pub data_len: u32,
    pub ifname: [u8; 16],
    pub l2_payload: [u8; 32],
}

const _: () = assert!(std::mem::size_of::<PktMeta>() == 140);

// SAFETY: plain old data.
unsafe impl plain::Plain for PktMeta {}

impl PktMeta {
    pub fn src_ip(&self) -> Option<IpAddr> {
        ip_of(self.family, &self.saddr)
    }
    pub fn dst_ip(&self) -> Option<IpAddr> {
        ip_of(self.family, &self.daddr)
    }
    pub fn ifname(&self) -> String {
        cstr(&self.ifname)
    }
    pub fn src_mac(&self) -> String {
        mac(&self.eth_src)
    }
    pub fn dst_mac(&self) -> String {
        mac(&self.eth_dst)
    }
    pub fn has_ports(&self) -> bool {
        self.l4proto == 6 || self.l4proto == 17
    }
    pub fn is_icmp(&self) -> bool {
        self.l4proto == 1 || self.l4proto == 58
    }
    /// `ICMP`, `TCP`, `UDP`, `ICMPv6`, or the protocol number.
    pub fn proto_name(&self) -> String {
        proto_name(self.l4proto)
    }
}

/// An ARP/RARP header for Ethernet/IPv4 (RFC 826 layout), read from the bytes
/// after the L2 header (`l2_payload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub hrd: u16,
    pub pro: u16,
    pub hln: u8,
    pub pln: u8,
    pub op: u16,
    pub sha: [u8; 6],
    pub sip: Ipv4Addr,
    pub tha: [u8; 6],
    pub tip: Ipv4Addr,
}

impl Arp {
    /// `Request`/`Reply` (ARP 1/2, RARP 3/4), else `Unknown(n)`.
    pub fn op_name(&self, rarp: bool) -> String {
        match (rarp, self.op) {
            (false, 1) | (true, 3) => "Request".into(),
            (false, 2) | (true, 4) => "Reply".into(),
            (_, n) => format!("Unknown({n})"),
        }
    }
}

impl PktMeta {
    /// The ARP/RARP header of an ARP (0x0806) or RARP (0x8035) frame, if it was read.
    pub fn arp(&self) -> Option<Arp> {
        if self.l3_proto != 0x0806 && self.l3_proto != 0x8035 {
            return None;
        }
        let b = &self.l2_payload;
        let be = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let a = Arp {
            hrd: be(0),
            pro: be(2),
            hln: b[4],
            pln: b[5],
            op: be(6),
            sha: b[8..14].try_into().unwrap(),
            sip: Ipv4Addr::new(b[14], b[15], b[16], b[17]),
            tha: b[18..24].try_into().unwrap(),
            tip: Ipv4Addr::new(b[24], b[25], b[26], b[27]),
        };
        // All zero: the header was not readable.
        (a.hrd != 0 || a.pro != 0 || a.op != 0).then_some(a)
    }
}

pub fn ip_of(family: u8, b: &[u8; 16]) -> Option<IpAddr> {
    match family {
        4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(*b))),
        _ => None,
    }
}

pub fn proto_name(p: u8) -> String {
    match p {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_request_is_decoded() {
        let mut m = PktMeta {
            l3_proto: 0x0806,
            ..Default::default()
        };
        let hdr: [u8; 28] = [
            0, 1, 8, 0, 6, 4, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 10, 99, 0, 1, 0, 0, 0, 0,
            0, 0, 10, 99, 0, 2,
        ];
        m.l2_payload[..28].copy_from_slice(&hdr);
        let a = m.arp().unwrap();
        assert_eq!((a.hrd, a.pro, a.hln, a.pln, a.op), (1, 0x0800, 6, 4, 1));
        assert_eq!(a.sha, [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        assert_eq!(a.sip, Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(a.tip, Ipv4Addr::new(10, 99, 0, 2));
        assert_eq!(a.op_name(false), "Request");
        assert_eq!(a.op_name(true), "Unknown(1)");
        m.l3_proto = 0x0800;
        assert!(m.arp().is_none());
        m.l3_proto = 0x8035;
        m.l2_payload = [0; 32];
        assert!(m.arp().is_none());
    }
}
