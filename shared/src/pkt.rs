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
