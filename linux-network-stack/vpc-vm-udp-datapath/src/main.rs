//! `vpc-vm-udp-datapath`: VPC VM UDP datapath: tunnel offloads, GSO segmentation and NIC xmit of the listed devices (no ICMP).
//! A preset of the skb snapshot engine (shared::snaphooks, shared::skbsnap).

use shared::skbsnap::Match;
use shared::snaphooks::{self as sh, Layout, Preset};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/vpc_vm_udp_datapath.skel.rs"));
}

static PRESET: Preset = Preset {
    name: "vpc-vm-udp-datapath",
    about: "Follow the UDP/TCP skbs (no ICMP) of the listed devices through tunnel offloads, GSO segmentation and the NIC transmit",
    kprobe_hooks: &[sh::K_IPTUNNEL_HANDLE_OFFLOADS, sh::K_UDP_TUNNEL_XMIT_SKB, sh::K_UDP_GSO_SEGMENT, sh::K_SKB_GSO_SEGMENT, sh::K_SKB_SEGMENT, sh::K_MLX5E_XMIT, sh::K_VALIDATE_XMIT_SKB, sh::K_NETIF_SKB_FEATURES],
    tp_hooks: &[sh::T_NET_DEV_QUEUE, sh::T_NET_DEV_START_XMIT, sh::T_KFREE_SKB, sh::T_ICMP_SEND],
    tp_skipped: "the segmentation functions, mlx5e_xmit, netif_skb_features",
    default_match: Match::All,
    dev_required: true,
    layout: Layout::Full,
    tunnel_flags: true,
    port_filters_all: false,
    skip_icmp: true,
    summary: true,
    compare: false,
};

fn main() {
    sh::run(&PRESET, skel::VpcVmUdpDatapathSkelBuilder::default());
}
