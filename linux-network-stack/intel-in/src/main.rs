//! `intel-in`: Received skbs (NIC driver / GRO) with gso_size set and gso_type 0.
//! A preset of the skb snapshot engine (shared::snaphooks, shared::skbsnap).

use shared::skbsnap::Match;
use shared::snaphooks::{self as sh, Layout, Preset};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/intel_in.skel.rs"));
}

static PRESET: Preset = Preset {
    name: "intel-in",
    about: "Report received skbs (from a NIC driver or GRO) with a GSO anomaly (gso_size set, gso_type 0)",
    kprobe_hooks: &[sh::K_NETIF_RECEIVE_SKB_CORE],
    tp_hooks: &[sh::T_NETIF_RECEIVE_SKB, sh::T_NAPI_GRO_RECEIVE_ENTRY],
    tp_skipped: "",
    default_match: Match::GsoAnomaly,
    dev_required: false,
    layout: Layout::Full,
    tunnel_flags: false,
    port_filters_all: false,
    skip_icmp: false,
    summary: false,
    compare: false,
};

fn main() {
    sh::run(&PRESET, skel::IntelInSkelBuilder::default());
}
