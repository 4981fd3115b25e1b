//! `validate-xmit-skb`: GSO state right before the stack decides to segment/checksum in software (validate_xmit_skb), with --compare.
//! A preset of the skb snapshot engine (shared::snaphooks, shared::skbsnap).

use shared::skbsnap::Match;
use shared::snaphooks::{self as sh, Layout, Preset};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/validate_xmit_skb.skel.rs"));
}

static PRESET: Preset = Preset {
    name: "validate-xmit-skb",
    about: "Report skbs with a GSO anomaly at validate_xmit_skb (right before software segmentation / checksumming); --compare pairs the skb before and after and reports GSO changes and software segmentation",
    kprobe_hooks: &[sh::K_VALIDATE_XMIT_SKB],
    tp_hooks: &[sh::T_QDISC_DEQUEUE, sh::T_NET_DEV_START_XMIT],
    tp_skipped: "",
    default_match: Match::GsoAnomaly,
    dev_required: false,
    layout: Layout::Full,
    tunnel_flags: false,
    port_filters_all: false,
    skip_icmp: false,
    summary: false,
    compare: true,
};

fn main() {
    sh::run(&PRESET, skel::ValidateXmitSkbSkelBuilder::default());
}
