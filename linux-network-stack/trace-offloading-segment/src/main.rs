//! `trace-offloading-segment`: Geneve/VXLAN-encapsulated skbs when tunnelled, software-segmented or freed.
//! A preset of the skb snapshot engine (shared::snaphooks, shared::skbsnap).

use shared::skbsnap::Match;
use shared::snaphooks::{self as sh, Layout, Preset};

mod skel {
    include!(concat!(
        env!("OUT_DIR"),
        "/trace_offloading_segment.skel.rs"
    ));
}

static PRESET: Preset = Preset {
    name: "trace-offloading-segment",
    about: "Show what tunnel-encapsulated skbs (outer UDP port --port, 6081 Geneve by default) look like when they are tunnelled, segmented in software or freed",
    kprobe_hooks: &[sh::K_IPTUNNEL_XMIT, sh::K_SKB_UDP_TUNNEL_SEGMENT, sh::K_KFREE_SKB],
    tp_hooks: &[sh::T_NET_DEV_START_XMIT, sh::T_NET_DEV_QUEUE, sh::T_KFREE_SKB, sh::T_CONSUME_SKB],
    tp_skipped: "skb_udp_tunnel_segment (segmentation: see validate-xmit-skb --compare)",
    default_match: Match::All,
    dev_required: false,
    layout: Layout::Full,
    tunnel_flags: true,
    port_filters_all: true,
    skip_icmp: false,
    summary: false,
    compare: false,
};

fn main() {
    sh::run(&PRESET, skel::TraceOffloadingSegmentSkelBuilder::default());
}
