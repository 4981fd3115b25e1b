//! `tracepoint-qdisc-dequeue`: At which point between socket and driver does a GSO anomaly first appear.
//! A preset of the skb snapshot engine (shared::snaphooks, shared::skbsnap).

use shared::skbsnap::Match;
use shared::snaphooks::{self as sh, Layout, Preset};

mod skel {
    include!(concat!(
        env!("OUT_DIR"),
        "/tracepoint_qdisc_dequeue.skel.rs"
    ));
}

static PRESET: Preset = Preset {
    name: "tracepoint-qdisc-dequeue",
    about: "Find where between socket and driver a GSO anomaly first appears: qdisc_dequeue and net_dev_queue tracepoints plus the socket/qdisc/tun functions",
    kprobe_hooks: &[sh::T_QDISC_DEQUEUE, sh::T_NET_DEV_QUEUE, sh::K_SCH_DIRECT_XMIT, sh::K_TUN_NET_XMIT, sh::K_IP_QUEUE_XMIT, sh::K_TCP_TRANSMIT_SKB, sh::K_TCP_ADD_BACKLOG, sh::K_TCP_V4_DO_RCV],
    tp_hooks: &[sh::T_QDISC_DEQUEUE, sh::T_NET_DEV_QUEUE, sh::T_TUN_START_XMIT],
    tp_skipped: "sch_direct_xmit, __ip_queue_xmit, __tcp_transmit_skb, tcp_add_backlog, tcp_v4_do_rcv",
    default_match: Match::GsoAnomaly,
    dev_required: false,
    layout: Layout::ShortTracepoints,
    tunnel_flags: false,
    port_filters_all: false,
    skip_icmp: false,
    summary: false,
    compare: false,
};

fn main() {
    sh::run(&PRESET, skel::TracepointQdiscDequeueSkelBuilder::default());
}
