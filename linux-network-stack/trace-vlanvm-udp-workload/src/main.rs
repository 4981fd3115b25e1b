//! `trace-vlanvm-udp-workload`: Along VM -> OVS -> Geneve -> NIC: where a UDP/TCP skb is segmented, fragmented or answered with ICMP.
//! A preset of the skb snapshot engine (shared::snaphooks, shared::skbsnap).

use shared::skbsnap::Match;
use shared::snaphooks::{self as sh, Layout, Preset};

mod skel {
    include!(concat!(
        env!("OUT_DIR"),
        "/trace_vlanvm_udp_workload.skel.rs"
    ));
}

static PRESET: Preset = Preset {
    name: "trace-vlanvm-udp-workload",
    about: "Follow the skbs of the listed devices along the VM -> OVS -> tunnel -> NIC path: where are they segmented, fragmented or answered with ICMP frag-needed, with which GSO/feature state",
    kprobe_hooks: &[sh::K_IPTUNNEL_HANDLE_OFFLOADS, sh::K_IPTUNNEL_XMIT, sh::K_UDP_TUNNEL_XMIT_SKB, sh::K_SKB_MAC_GSO_SEGMENT, sh::K_TCP_GSO_SEGMENT, sh::K_SKB_GSO_SEGMENT, sh::K_UDP_GSO_SEGMENT, sh::K_SKB_SEGMENT_LIST, sh::K_SKB_SEGMENT, sh::K_IP_FINISH_OUTPUT, sh::K_IP_FINISH_OUTPUT_GSO, sh::K_ICMP_SEND, sh::K_IP_FRAGMENT, sh::K_MLX5E_XMIT, sh::K_INTERNAL_DEV_XMIT, sh::K_VALIDATE_XMIT_SKB, sh::K_NETIF_SKB_FEATURES],
    tp_hooks: &[sh::T_NET_DEV_QUEUE, sh::T_NET_DEV_START_XMIT, sh::T_KFREE_SKB, sh::T_ICMP_SEND],
    tp_skipped: "the segmentation and fragmentation functions, mlx5e_xmit, internal_dev_xmit, netif_skb_features",
    default_match: Match::All,
    dev_required: true,
    layout: Layout::Full,
    tunnel_flags: true,
    port_filters_all: false,
    skip_icmp: false,
    summary: true,
    compare: false,
};

fn main() {
    sh::run(&PRESET, skel::TraceVlanvmUdpWorkloadSkelBuilder::default());
}
