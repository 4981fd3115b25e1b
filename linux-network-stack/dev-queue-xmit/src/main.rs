//! `dev-queue-xmit`: GSO anomaly (gso_size set, gso_type 0) of skbs entering the qdisc/transmit path.
//! A preset of the skb snapshot engine (shared::snaphooks, shared::skbsnap).

use shared::skbsnap::Match;
use shared::snaphooks::{self as sh, Layout, Preset};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/dev_queue_xmit.skel.rs"));
}

static PRESET: Preset = Preset {
    name: "dev-queue-xmit",
    about: "Report skbs entering the qdisc / transmit path (__dev_queue_xmit, sch_direct_xmit) with a GSO anomaly (gso_size set, gso_type 0), with their GSO/feature state and kernel stack",
    kprobe_hooks: &[sh::K_SCH_DIRECT_XMIT, sh::K_DEV_QUEUE_XMIT],
    tp_hooks: &[sh::T_NET_DEV_QUEUE, sh::T_QDISC_DEQUEUE],
    tp_skipped: "",
    default_match: Match::GsoAnomaly,
    dev_required: false,
    layout: Layout::DumpTcpUdp,
    tunnel_flags: false,
    port_filters_all: false,
    skip_icmp: false,
    summary: false,
    compare: false,
};

fn main() {
    sh::run(&PRESET, skel::DevQueueXmitSkelBuilder::default());
}
