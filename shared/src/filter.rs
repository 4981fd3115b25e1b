//! The packet filter as the BPF side reads it from `.rodata` (`struct pkt_filter`
//! in `shared/bpf/skb.h`): set once before load, so packets that do not match cost
//! a few instructions in the kernel and never reach user space.

use std::net::IpAddr;

use crate::cli::{EtherTypeFilter, PacketFilterArgs};

/// Mirror of `struct pkt_filter` (shared/bpf/skb.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawPktFilter {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub family: u8,
    pub l4proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub ethertype: u16,
    pub vlan: u16,
    pub has_saddr: u8,
    pub has_daddr: u8,
    pub ports_need_l4: u8,
    pub ethertype_other: u8,
    pub ipv4_only: u8,
    pub pad: [u8; 1],
    pub ifindex: u32,
    pub ifname: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<RawPktFilter>() == 68);

// SAFETY: plain old data, every bit pattern is valid.
unsafe impl plain::Plain for RawPktFilter {}

fn addr_bytes(a: IpAddr) -> ([u8; 16], u8) {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v4) => {
            b[..4].copy_from_slice(&v4.octets());
            (b, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 6),
    }
}

impl RawPktFilter {
    /// The filter of `--src --dst --protocol --src-port --dst-port`. A port filter
    /// with `--protocol all` matches TCP and UDP only (the originals let ICMP through).
    pub fn from_args(a: &PacketFilterArgs) -> Self {
        let mut f = RawPktFilter::default();
        if let Some(s) = a.src {
            let (b, fam) = addr_bytes(s);
            f.saddr = b;
            f.family = fam;
            f.has_saddr = 1;
        }
        if let Some(d) = a.dst {
            let (b, fam) = addr_bytes(d);
            f.daddr = b;
            f.family = fam;
            f.has_daddr = 1;
        }
        f.l4proto = a.protocol.number();
        f.sport = a.src_port.unwrap_or(0);
        f.dport = a.dst_port.unwrap_or(0);
        f.ports_need_l4 = u8::from(f.sport != 0 || f.dport != 0);
        f
    }

    /// `--type`: match one inner (post-VLAN) EtherType, or only the "other" ones.
    pub fn set_ethertype(&mut self, t: EtherTypeFilter) {
        self.ethertype = 0;
        self.ethertype_other = 0;
        match t {
            EtherTypeFilter::All => {}
            EtherTypeFilter::Other => self.ethertype_other = 1,
            EtherTypeFilter::Is(v) => self.ethertype = v,
        }
    }

    pub fn set_ifname(&mut self, name: &str) {
        self.ifname = [0; 16];
        let n = name.len().min(15);
        self.ifname[..n].copy_from_slice(&name.as_bytes()[..n]);
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C) POD without padding holes that matter to the kernel.
        unsafe { plain::as_bytes(self) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Protocol;

    #[test]
    fn from_args_sets_network_order_and_ports() {
        let a = PacketFilterArgs {
            src: Some("10.99.0.1".parse().unwrap()),
            dst: None,
            protocol: Protocol::Udp,
            src_port: None,
            dst_port: Some(9999),
        };
        let f = RawPktFilter::from_args(&a);
        assert_eq!(&f.saddr[..4], &[10, 99, 0, 1]);
        assert_eq!(f.family, 4);
        assert_eq!(f.has_saddr, 1);
        assert_eq!(f.has_daddr, 0);
        assert_eq!(f.l4proto, 17);
        assert_eq!(f.dport, 9999);
        assert_eq!(f.ports_need_l4, 1);
    }

    #[test]
    fn empty_filter_matches_all() {
        let f = RawPktFilter::from_args(&PacketFilterArgs::default());
        assert_eq!(f, RawPktFilter::default());
    }

    #[test]
    fn ethertype_filter() {
        let mut f = RawPktFilter::default();
        f.set_ethertype(EtherTypeFilter::Is(0x0806));
        assert_eq!((f.ethertype, f.ethertype_other), (0x0806, 0));
        f.set_ethertype(EtherTypeFilter::Other);
        assert_eq!((f.ethertype, f.ethertype_other), (0, 1));
        f.set_ethertype(EtherTypeFilter::All);
        assert_eq!((f.ethertype, f.ethertype_other), (0, 0));
    }

    #[test]
    fn ifname_is_truncated_and_terminated() {
        let mut f = RawPktFilter::default();
        f.set_ifname("veth-long-name-xyz");
        assert_eq!(f.ifname[15], 0);
        assert_eq!(&f.ifname[..4], b"veth");
    }
}
