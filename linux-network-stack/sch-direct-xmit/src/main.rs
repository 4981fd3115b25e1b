//! `sch-direct-xmit`: GSO anomaly along the qdisc / classifier path.
//! A preset of the skb snapshot engine (shared::snaphooks, shared::skbsnap).

use shared::skbsnap::Match;
use shared::snaphooks::{self as sh, Layout, Preset};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/sch_direct_xmit.skel.rs"));
}

static PRESET: Preset = Preset {
    name: "sch-direct-xmit",
    about: "Report skbs with a GSO anomaly along the qdisc / classifier path (sch_direct_xmit, htb/fq_codel enqueue, tc classifiers and actions)",
    kprobe_hooks: &[sh::K_SCH_DIRECT_XMIT, sh::K_HTB_ENQUEUE, sh::K_FQ_CODEL_ENQUEUE, sh::K_TCF_CLASSIFY, sh::K_TCF_ACTION_EXEC, sh::K_CLS_CGROUP_CLASSIFY],
    tp_hooks: &[sh::T_QDISC_ENQUEUE, sh::T_QDISC_DEQUEUE],
    tp_skipped: "tcf_classify, tcf_action_exec, cls_cgroup_classify",
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
    sh::run(&PRESET, skel::SchDirectXmitSkelBuilder::default());
}
