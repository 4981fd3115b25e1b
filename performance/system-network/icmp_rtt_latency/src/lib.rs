//! `icmp_rtt_latency`: where the time of one ping round trip goes on this host.
//! Each echo request (path 1) and its reply (path 2) are matched in BPF by
//! (--src-ip, --dst-ip, ICMP id, seq) and timed at up to 7 stages per path:
//! local IP stack, OVS internal port, OVS datapath (fast path or upcall),
//! physical NIC. Stages the running kernel has no hook for are N/A.

use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use clap::{Parser, ValueEnum};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::Object;
use serde_json::{json, Value};

use shared::bpf;
use shared::cli::{parse_ifname, parse_interval, parse_ipv4, usage_error, CommonArgs};
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::ksyms::Kallsyms;
use shared::output::Output;
use shared::runner::Session;
use shared::stacks::stack_error;
use shared::stages::{
    self, dev_pair_bytes, flow_stacks, fmt_us, mask, parse_latency, stacks_json, wall_ms, Delta,
    DeltaCheck, Iface, Latencies, Record, Segment, StageDef, StageEvent, Stages, TrackerConfig,
    INTER, PATH1, PATH2, TOTAL,
};
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/icmp_rtt_latency.skel.rs"));
}
use skel::IcmpRttLatencySkelBuilder;

// ---- hooks -------------------------------------------------------------------

/// Hook ids of the BPF side (enum in icmp_rtt_latency.bpf.c).
#[derive(Clone, Copy)]
#[repr(usize)]
enum H {
    IpSend,
    Internal,
    DpProcess,
    Upcall,
    KeyExt,
    VportSend,
    DevQueue,
    NetifRcv,
    FrameHook,
    IcmpRcv,
}
const H_MAX: usize = 10;

/// A function hook: kprobe, else fentry. (fentry first would be the natural
/// order, but detaching a fentry program waits for an RCU-tasks grace period,
/// one per hook: with 10 hooks the tool took 1.4-1.8 s to exit on Ctrl-C in
/// the 6.1 test VM, kprobes about 0.5 s; the data read is the same.)
const fn fk(prog_f: &'static str, prog_k: &'static str, func: &'static str) -> [Candidate; 2] {
    [
        Candidate::new(Kind::Kprobe, prog_k, func),
        Candidate::new(Kind::Fentry, prog_f, func),
    ]
}

/// The request (outgoing) or reply (incoming) leaving the IP layer. The
/// original hooked ip_send_skb, which ip_push_pending_frames (ping's and the
/// kernel's echo reply path) inlines on 6.1 and 6.18: its out-of-line copy never
/// sees these packets. ip_output is the next function every locally generated
/// IPv4 packet passes (dst_output), and it is never inlined.
const C_IP_SEND: [Candidate; 2] = fk("fentry_ip_output", "kprobe_ip_output", "ip_output");
const C_INTERNAL: &[Candidate] = &[
    Candidate::new(Kind::Kprobe, "kprobe_internal_dev_xmit", "internal_dev_xmit"),
    Candidate::new(Kind::Fentry, "fentry_internal_dev_xmit", "internal_dev_xmit"),
    Candidate::new(Kind::TpBtf, "tp_dev_queue_internal", "net_dev_queue")
        .loses("taken where the packet is queued on a device other than the physical NICs (an OVS internal port or bridge)"),
];
const C_DP_PROCESS: [Candidate; 2] = fk(
    "fentry_ovs_dp_process_packet",
    "kprobe_ovs_dp_process_packet",
    "ovs_dp_process_packet",
);
const C_UPCALL: &[Candidate] = &[
    Candidate::new(Kind::TpBtf, "tp_ovs_dp_upcall", "ovs_dp_upcall"),
    Candidate::new(Kind::Kprobe, "kprobe_ovs_dp_upcall", "ovs_dp_upcall"),
    Candidate::new(Kind::Fentry, "fentry_ovs_dp_upcall", "ovs_dp_upcall"),
];
const C_KEYEXT: [Candidate; 2] = fk(
    "fentry_ovs_flow_key_extract_userspace",
    "kprobe_ovs_flow_key_extract_userspace",
    "ovs_flow_key_extract_userspace",
);
const C_VPORT: &[Candidate] = &[
    Candidate::new(Kind::Kprobe, "kprobe_ovs_vport_send", "ovs_vport_send"),
    Candidate::new(Kind::Fentry, "fentry_ovs_vport_send", "ovs_vport_send"),
    Candidate::new(Kind::TpBtf, "tp_ovs_output", "ovs_do_execute_action")
        .loses("the datapath's OUTPUT action stands for ovs_vport_send"),
];
const C_DEV_QUEUE: &[Candidate] = &[
    Candidate::new(Kind::TpBtf, "tp_dev_queue_phy", "net_dev_queue"),
    Candidate::new(Kind::Kprobe, "kprobe___dev_queue_xmit", "__dev_queue_xmit"),
    Candidate::new(Kind::Kprobe, "kprobe_dev_queue_xmit", "dev_queue_xmit"),
    Candidate::new(Kind::Fentry, "fentry___dev_queue_xmit", "__dev_queue_xmit"),
    Candidate::new(Kind::Fentry, "fentry_dev_queue_xmit", "dev_queue_xmit"),
];
const C_NETIF_RCV: &[Candidate] = &[
    Candidate::new(Kind::TpBtf, "tp_netif_receive_skb", "netif_receive_skb"),
    Candidate::new(
        Kind::Kprobe,
        "kprobe___netif_receive_skb",
        "__netif_receive_skb",
    ),
    Candidate::new(
        Kind::Fentry,
        "fentry___netif_receive_skb",
        "__netif_receive_skb",
    ),
];
const C_FRAME_HOOK: [Candidate; 2] = fk(
    "fentry_netdev_frame_hook",
    "kprobe_netdev_frame_hook",
    "netdev_frame_hook",
);
const C_ICMP_RCV_OUT: &[Candidate] = &[
    Candidate::new(Kind::Kprobe, "kprobe_icmp_rcv", "icmp_rcv"),
    Candidate::new(Kind::Fentry, "fentry_icmp_rcv", "icmp_rcv"),
    Candidate::new(Kind::TpBtf, "tp_app_read", "skb_copy_datagram_iovec")
        .loses("the reply's end point is the ping socket's read (app read), after icmp_rcv"),
];
const C_ICMP_RCV_IN: [Candidate; 2] = fk("fentry_icmp_rcv", "kprobe_icmp_rcv", "icmp_rcv");

const fn hp(name: &'static str, required: bool, c: &'static [Candidate]) -> HookPoint {
    HookPoint {
        name,
        required,
        candidates: c,
    }
}

/// Outgoing: this host pings the remote.
pub static HOOKS_OUT: &[HookPoint] = &[
    hp("ip_output", false, &C_IP_SEND),
    hp("internal_dev_xmit", false, C_INTERNAL),
    hp("ovs_dp_process_packet", false, &C_DP_PROCESS),
    hp("ovs_dp_upcall", false, C_UPCALL),
    hp("ovs_flow_key_extract_userspace", false, &C_KEYEXT),
    hp("ovs_vport_send", false, C_VPORT),
    hp("dev_queue_xmit", true, C_DEV_QUEUE),
    hp("__netif_receive_skb", true, C_NETIF_RCV),
    hp("netdev_frame_hook", false, &C_FRAME_HOOK),
    hp("icmp_rcv", false, C_ICMP_RCV_OUT),
];

/// Incoming: the remote pings this host (the kernel answers in icmp_rcv, so
/// there is no socket read to stand in for it).
pub static HOOKS_IN: &[HookPoint] = &[
    hp("ip_output", false, &C_IP_SEND),
    hp("internal_dev_xmit", false, C_INTERNAL),
    hp("ovs_dp_process_packet", false, &C_DP_PROCESS),
    hp("ovs_dp_upcall", false, C_UPCALL),
    hp("ovs_flow_key_extract_userspace", false, &C_KEYEXT),
    hp("ovs_vport_send", false, C_VPORT),
    hp("dev_queue_xmit", true, C_DEV_QUEUE),
    hp("__netif_receive_skb", true, C_NETIF_RCV),
    hp("netdev_frame_hook", false, &C_FRAME_HOOK),
    hp("icmp_rcv", false, &C_ICMP_RCV_IN),
];

macro_rules! st {
    ($id:expr, $name:expr, $hook:expr) => {
        StageDef::new($id, $name, $hook)
    };
    ($id:expr, $name:expr, $hook:expr, $tp:expr) => {
        StageDef::new($id, $name, $hook).tp_label($tp)
    };
}

const INTERNAL_TP: &str = "net_dev_queue, internal port";

pub static STAGES_OUT: [StageDef; 14] = [
    st!(0, "P1:S0_INIT", "ip_output"),
    st!(1, "P1:S1_STACK_PROC", "internal_dev_xmit", INTERNAL_TP),
    st!(2, "P1:S2_OVS_DP_PROC", "ovs_dp_process_packet"),
    st!(3, "P1:S3_OVS_UPCALL", "ovs_dp_upcall"),
    st!(4, "P1:S4_OVS_KEYEXT", "ovs_flow_key_extract_userspace"),
    st!(
        5,
        "P1:S5_OVS_VPORT_SND",
        "ovs_vport_send",
        "ovs_do_execute_action OUTPUT"
    ),
    st!(6, "P1:S6_FINAL", "dev_queue_xmit", "net_dev_queue"),
    st!(7, "P2:S0_INIT", "__netif_receive_skb", "netif_receive_skb"),
    st!(8, "P2:S1_STACK_PROC", "netdev_frame_hook"),
    st!(9, "P2:S2_OVS_DP_PROC", "ovs_dp_process_packet"),
    st!(10, "P2:S3_OVS_UPCALL", "ovs_dp_upcall"),
    st!(11, "P2:S4_OVS_KEYEXT", "ovs_flow_key_extract_userspace"),
    st!(
        12,
        "P2:S5_OVS_VPORT_SND",
        "ovs_vport_send",
        "ovs_do_execute_action OUTPUT"
    ),
    st!(13, "P2:S6_FINAL", "icmp_rcv", "app read"),
];

pub static STAGES_IN: [StageDef; 14] = [
    st!(0, "P1:S0_INIT", "__netif_receive_skb", "netif_receive_skb"),
    st!(1, "P1:S1_STACK_PROC", "netdev_frame_hook"),
    st!(2, "P1:S2_OVS_DP_PROC", "ovs_dp_process_packet"),
    st!(3, "P1:S3_OVS_UPCALL", "ovs_dp_upcall"),
    st!(4, "P1:S4_OVS_KEYEXT", "ovs_flow_key_extract_userspace"),
    st!(
        5,
        "P1:S5_OVS_VPORT_SND",
        "ovs_vport_send",
        "ovs_do_execute_action OUTPUT"
    ),
    st!(6, "P1:S6_FINAL", "icmp_rcv"),
    st!(7, "P2:S0_INIT", "ip_output"),
    st!(8, "P2:S1_STACK_PROC", "internal_dev_xmit", INTERNAL_TP),
    st!(9, "P2:S2_OVS_DP_PROC", "ovs_dp_process_packet"),
    st!(10, "P2:S3_OVS_UPCALL", "ovs_dp_upcall"),
    st!(11, "P2:S4_OVS_KEYEXT", "ovs_flow_key_extract_userspace"),
    st!(
        12,
        "P2:S5_OVS_VPORT_SND",
        "ovs_vport_send",
        "ovs_do_execute_action OUTPUT"
    ),
    st!(13, "P2:S6_FINAL", "dev_queue_xmit", "net_dev_queue"),
];

const NONE: u8 = 0xff;

/// Which stage each hook marks for a request (path 1) and a reply (path 2).
pub fn stage_of(dir: Direction) -> [[u8; 2]; H_MAX] {
    let mut t = [[NONE; 2]; H_MAX];
    let ovs = [H::DpProcess, H::Upcall, H::KeyExt, H::VportSend];
    for (i, h) in ovs.iter().enumerate() {
        t[*h as usize] = [2 + i as u8, 9 + i as u8];
    }
    match dir {
        Direction::Outgoing => {
            t[H::IpSend as usize][0] = 0;
            t[H::Internal as usize][0] = 1;
            t[H::DevQueue as usize][0] = 6;
            t[H::NetifRcv as usize][1] = 7;
            t[H::FrameHook as usize][1] = 8;
            t[H::IcmpRcv as usize][1] = 13;
        }
        Direction::Incoming => {
            t[H::NetifRcv as usize][0] = 0;
            t[H::FrameHook as usize][0] = 1;
            t[H::IcmpRcv as usize][0] = 6;
            t[H::IpSend as usize][1] = 7;
            t[H::Internal as usize][1] = 8;
            t[H::DevQueue as usize][1] = 13;
        }
    }
    t
}

/// Whole-path rows of the statistics sort after the segments.
const TOTALS_ROW: u8 = 200;
const PATH1_STAGES: [u8; 7] = [0, 1, 2, 3, 4, 5, 6];
const PATH2_STAGES: [u8; 7] = [7, 8, 9, 10, 11, 12, 13];
const ALL_STAGES: [u8; 14] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
/// Flows that have not finished after this long are given up (and counted);
/// longer deltas are refused as absurd.
pub const MAX_AGE_NS: u64 = 5_000_000_000;

/// The tracker rules for a direction, given which stages have a hook.
pub fn tracker_config(dir: Direction, stages: &Stages, kernel_stacks: bool) -> TrackerConfig {
    let avail = stages.available_mask();
    let create = match dir {
        // From the first stage with a hook; stage 6 (the NIC) as well, for
        // hosts where the earlier hooks never see the packet (no OVS).
        Direction::Outgoing => {
            let first = stages.first_available(&PATH1_STAGES).unwrap_or(6);
            mask(&[first, 6])
        }
        Direction::Incoming => mask(&[0]),
    };
    TrackerConfig {
        create,
        final_: mask(&[13]),
        // the four "seen" points: path 1 start (the entry exists) and end,
        // path 2 start and end, where this kernel has them
        need: mask(&[0, 6, 7, 13]) & avail,
        ctx2: mask(&PATH2_STAGES),
        stacks: if kernel_stacks { avail } else { 0 },
        max_age_ns: MAX_AGE_NS,
        emit_hits: false,
    }
}

// ---- command line ------------------------------------------------------------

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    /// This host pings the remote (--src-ip = this host)
    Outgoing,
    /// The remote pings this host (--src-ip = the remote pinger)
    Incoming,
}

#[derive(Parser, Debug)]
#[command(
    name = "icmp_rtt_latency",
    about = "Trace ICMP echo round trips through the host stack, OVS and the NIC, with per-stage latencies",
    after_help = "--src-ip is the host that sends the echo request and --dst-ip the one that answers: \
for outgoing (this host pings) --src-ip is a local IP; for incoming (the remote pings this host) \
--src-ip is the remote pinger. Stages without a hook on the running kernel print N/A (see --explain); \
on tracepoint-only kernels the reply's end (outgoing) is the ping socket reading it (app read)."
)]
pub struct Args {
    /// IP that sends the echo request (outgoing: this host; incoming: the remote pinger)
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub src_ip: Ipv4Addr,
    /// IP that receives the request and replies (outgoing: the remote; incoming: this host)
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub dst_ip: Ipv4Addr,
    /// Physical NIC (or first bond member) where packets leave / enter
    #[arg(long, value_name = "IF", value_parser = parse_ifname)]
    pub phy_iface1: String,
    /// Second physical NIC (second bond member); default: --phy-iface1
    #[arg(long, value_name = "IF", value_parser = parse_ifname)]
    pub phy_iface2: Option<String>,
    /// Report only round trips whose total (first to last stage) is >= this many ms
    #[arg(long, value_name = "MS", default_value_t = 0.0, value_parser = parse_latency, allow_hyphen_values = true)]
    pub latency_ms: f64,
    /// outgoing: this host pings the remote; incoming: the remote pings this host
    #[arg(long, value_enum, default_value_t = Direction::Outgoing)]
    pub direction: Direction,
    /// Do not print the per-stage kernel stacks
    #[arg(long)]
    pub disable_kernel_stacks: bool,
    /// On exit, print count/min/avg/p50/p99/max and a log2 histogram per segment
    #[arg(long)]
    pub summary: bool,
    /// Every SECS seconds, print a log2 histogram (us) per segment of the round trips since the last one
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    pub interval: Option<u64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

// ---- output ------------------------------------------------------------------

struct State {
    out: Output,
    clock: Clock,
    ksyms: Kallsyms,
    dir: Direction,
    stages: Stages,
    stacks: bool,
    threshold_ns: u64,
    lat: Latencies,
    check: DeltaCheck,
    reported: u64,
    below: u64,
}

/// Label of a segment's skipped stages: the OVS fast path, or which were N/A.
fn skip_suffix(seg: &Segment, stages: &Stages) -> String {
    if seg.skipped.is_empty() {
        return String::new();
    }
    let upcall = [3u8, 10];
    let ovs_hit = seg.skipped.len() == 2
        && upcall.contains(&seg.skipped[0])
        && seg.skipped[1] == seg.skipped[0] + 1
        && stages.available(seg.skipped[0]);
    if ovs_hit {
        return " (OVS No Upcall)".into();
    }
    let names: Vec<String> = seg.skipped.iter().map(|s| format!("S{}", s % 7)).collect();
    format!(" ({} N/A)", names.join(","))
}

shared::impl_latency_state!(State, below);

impl State {
    fn seg_desc(&self, seg: &Segment) -> String {
        let l = |id: u8| self.stages.get(id).map(|s| s.label()).unwrap_or_default();
        format!("{} -> {}", l(seg.from), l(seg.to))
    }

    fn on_event(&mut self, obj: &Object, data: &[u8]) {
        match stages::decode(data) {
            Some(Record::Flow(e)) => self.on_flow(obj, &e),
            // --verbose: every accepted stage hit, for checking the hooks.
            Some(Record::Hit(h)) => eprintln!(
                "verbose: stage {:>2} id={} seq={} ts={} pid={} comm={} if={}",
                h.stage,
                h.key.sport,
                h.key.seq,
                h.ts,
                h.ctx.pid,
                h.ctx.comm(),
                h.ctx.ifname()
            ),
            None => {}
        }
    }

    fn on_flow(&mut self, obj: &Object, e: &StageEvent) {
        let f = &e.flow;
        let p1 = f.present(&PATH1_STAGES);
        let p2 = f.present(&PATH2_STAGES);
        let (Some(&first), Some(&last)) = (p1.first().or(p2.first()), p2.last().or(p1.last()))
        else {
            return;
        };
        let lim = MAX_AGE_NS;
        let rtt = stages::delta(f, first, last, lim);
        let segs1 = stages::segments(f, &PATH1_STAGES, lim);
        let segs2 = stages::segments(f, &PATH2_STAGES, lim);
        let tot1 = (p1.len() > 1)
            .then(|| stages::delta(f, p1[0], *p1.last().unwrap(), lim))
            .flatten();
        let tot2 = (p2.len() > 1)
            .then(|| stages::delta(f, p2[0], *p2.last().unwrap(), lim))
            .flatten();
        let inter = match (p1.last(), p2.first()) {
            (Some(&a), Some(&b)) => stages::delta(f, a, b, lim),
            _ => None,
        };
        // Threshold on the total round trip.
        if self.threshold_ns > 0
            && rtt
                .and_then(Delta::ns)
                .is_none_or(|n| n < self.threshold_ns)
        {
            self.below += 1;
            return;
        }
        self.reported += 1;
        for s in segs1.iter().chain(segs2.iter()) {
            self.check.count(s.delta);
        }
        for d in [rtt, inter].into_iter().flatten() {
            self.check.count(d);
        }
        self.lat.record();
        for s in segs1.iter().chain(segs2.iter()) {
            if let Some(ns) = s.delta.ns() {
                self.lat.add(
                    s.from,
                    s.to,
                    &format!("[{}->{}] {}", s.from, s.to, self.seg_desc(s)),
                    ns,
                );
            }
        }
        for (d, id, label) in [
            (tot1, PATH1, "Total Path 1"),
            (tot2, PATH2, "Total Path 2"),
            (inter, INTER, "Inter-Path Latency (P1 end -> P2 start)"),
            (rtt, TOTAL, "Total RTT (Path1 Start to Path2 End)"),
        ] {
            if let Some(ns) = d.and_then(Delta::ns) {
                self.lat.add(TOTALS_ROW, id, label, ns);
            }
        }

        let kstacks = if self.stacks {
            flow_stacks(obj, f, &ALL_STAGES, &mut self.ksyms)
        } else {
            Vec::new()
        };

        let id = e.key.sport;
        let seq = e.key.seq;
        let (src, dst) = (e.key.src(), e.key.dst());
        let upcall1 = f.has(3);
        let upcall2 = f.has(10);
        if self.out.json() {
            let stages_v: Vec<Value> = ALL_STAGES
                .iter()
                .map(|&s| {
                    let st = self.stages.get(s).unwrap();
                    match f.ts(s) {
                        Some(ts) => json!({"id": s, "name": st.name, "hook": st.hook, "ts_ns": ts,
                                            "skb": format!("0x{:x}", f.skb[s as usize])}),
                        None => Value::Null,
                    }
                })
                .collect();
            let segs: serde_json::Map<String, Value> = segs1
                .iter()
                .chain(segs2.iter())
                .map(|s| (s.key(), s.delta.json_us()))
                .collect();
            let dj = |d: Option<Delta>| d.map(Delta::json_us).unwrap_or(Value::Null);
            let ctx_j = |i: usize| {
                let c = &f.ctx[i];
                if c.is_set() {
                    json!({"pid": c.pid, "comm": c.comm(), "ifname": c.ifname(), "icmp_type": c.icmp_type})
                } else {
                    Value::Null
                }
            };
            let mut v = json!({
                "type": "rtt",
                "time": self.clock.rfc3339(f.ts[first as usize]),
                "ts_ns": f.ts[first as usize],
                "direction": dir_name(self.dir),
                "src": src.to_string(), "dst": dst.to_string(),
                "id": id, "seq": seq,
                "path1": ctx_j(0), "path2": ctx_j(1),
                "stages": stages_v,
                "segments_us": segs,
                "path1_total_us": dj(tot1), "path2_total_us": dj(tot2),
                "rtt_us": dj(rtt), "inter_path_us": dj(inter),
                "upcall_p1": upcall1, "upcall_p2": upcall2,
                "na_stages": self.stages.na_json(),
            });
            if self.stacks {
                v["stacks"] = stacks_json(&kstacks);
            }
            self.out.event(&v);
            return;
        }

        let mut s = String::new();
        let (title, req, rep) = match self.dir {
            Direction::Outgoing => (
                "Outgoing (Local -> Remote)",
                format!("Path 1 (Request: TX to {dst})"),
                format!("Path 2 (Reply:   RX from {dst})"),
            ),
            Direction::Incoming => (
                "Incoming (Remote -> Local)",
                format!("Path 1 (Request: RX from {src})"),
                format!("Path 2 (Reply:   TX to {src})"),
            ),
        };
        s.push_str(&format!(
            "=== ICMP RTT Trace: {} ({title}) ===\n",
            wall_ms(&self.clock, f.ts[first as usize])
        ));
        s.push_str(&format!(
            "Session: {src} ({src}) -> {dst} ({dst}) (ID: {id}, Seq: {seq})\n"
        ));
        for (label, c) in [(req, &f.ctx[0]), (rep, &f.ctx[1])] {
            if c.is_set() {
                s.push_str(&format!(
                    "{label:<45}: PID={:<6} COMM={:<12} IF={:<10} ICMP_Type={}\n",
                    c.pid,
                    c.comm(),
                    c.ifname(),
                    c.icmp_type
                ));
            } else {
                s.push_str(&format!("{label:<45}: N/A (no stage of this path seen)\n"));
            }
        }
        s.push_str("\nSKB Pointers (Path1: 0-6, Path2: 7-13):\n");
        for st in f.present(&ALL_STAGES) {
            s.push_str(&format!(
                "  Stage {:>2} ({:<45}): 0x{:x}\n",
                st,
                self.stages.get(st).unwrap().label(),
                f.skb[st as usize]
            ));
        }
        for (n, segs, tot, ps) in [(1, &segs1, tot1, &p1), (2, &segs2, tot2, &p2)] {
            s.push_str(&format!("Path {n} Latencies (us):\n"));
            for seg in segs.iter() {
                s.push_str(&format!(
                    "  [{:>2}->{:<2}] {:<105}: {} us{}\n",
                    seg.from,
                    seg.to,
                    self.seg_desc(seg),
                    seg.delta.fmt_us(),
                    skip_suffix(seg, &self.stages)
                ));
            }
            match tot {
                Some(d) => s.push_str(&format!("  Total Path {n}: {} us\n", d.fmt_us())),
                None => s.push_str(&format!(
                    "  Total Path {n}: {} ({} stage(s) of this path seen)\n",
                    fmt_us(None),
                    ps.len()
                )),
            }
        }
        let opt = |d: Option<Delta>| d.map(Delta::fmt_us).unwrap_or_else(|| fmt_us(None));
        s.push_str(&format!(
            "Total RTT (Path1 Start to Path2 End): {} us\n",
            opt(rtt)
        ));
        s.push_str(&format!(
            "Inter-Path Latency (P1 end -> P2 start): {} us\n",
            opt(inter)
        ));
        if self.stacks {
            s.push_str("Kernel Stack Traces (Path1: 0-6, Path2: 7-13):\n");
            for (st, r) in &kstacks {
                s.push_str(&format!(
                    "  Stage {st} ({}):\n",
                    self.stages.get(*st).unwrap().label()
                ));
                match r {
                    Ok(frames) if frames.is_empty() => s.push_str("    <no frames>\n"),
                    Ok(frames) => frames
                        .iter()
                        .for_each(|fr| s.push_str(&format!("    {fr}\n"))),
                    Err(_) => s.push_str(&format!(
                        "    <Stack Capture Failed Error: {}>\n",
                        stack_error(f.kstack[*st as usize])
                    )),
                }
            }
        }
        s.push_str("==================================================\n");
        self.out.line(&s);
    }
}

fn dir_name(d: Direction) -> &'static str {
    match d {
        Direction::Outgoing => "outgoing",
        Direction::Incoming => "incoming",
    }
}

pub fn run() {
    let args: Args = shared::cli::parse();
    if args.src_ip == args.dst_ip {
        usage_error("source and destination must differ (--src-ip == --dst-ip)");
    }
    let if1 = Iface::lookup(&args.phy_iface1);
    let if2 = args.phy_iface2.as_deref().map(Iface::lookup);
    let mut out = Output::stdout(args.common.json);
    let mut session = Session::start(args.common.duration, args.common.verbose);
    let hooks = match args.direction {
        Direction::Outgoing => HOOKS_OUT,
        Direction::Incoming => HOOKS_IN,
    };
    let (_kernel, plan) = bpf::plan(&args.common, hooks);
    let defs: &[StageDef] = match args.direction {
        Direction::Outgoing => &STAGES_OUT,
        Direction::Incoming => &STAGES_IN,
    };
    let stg = Stages::resolve(&plan, defs);
    let kstacks = !args.disable_kernel_stacks;
    let mut cfg = tracker_config(args.direction, &stg, kstacks);
    cfg.emit_hits = args.common.verbose;

    let mut open_object = MaybeUninit::uninit();
    let mut open = IcmpRttLatencySkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    let table = stage_of(args.direction);
    let flat: Vec<u8> = table.iter().flatten().copied().collect();
    let setup = |o: &mut libbpf_rs::OpenObject| -> Result<(), String> {
        cfg.apply(o)?;
        bpf::set_rodata(o, "STAGE_OF", &flat)?;
        bpf::set_rodata(o, "SRC_IP", &args.src_ip.octets())?;
        bpf::set_rodata(o, "DST_IP", &args.dst_ip.octets())?;
        bpf::set_rodata(o, "PHY", &dev_pair_bytes(&if1, if2.as_ref()))
    };
    setup(open.open_object_mut()).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    let mut skel = bpf::load(open);
    let links = bpf::attach(&plan, &mut skel);

    let hex = |ip: Ipv4Addr| format!("0x{:08x}", u32::from_ne_bytes(ip.octets()));
    out.banner("=== ICMP Round-Trip Latency Tracer ===");
    out.banner(&format!(
        "Trace Direction: {}",
        dir_name(args.direction).to_uppercase()
    ));
    out.banner(&format!(
        "SRC_IP_FILTER: {} ({})",
        args.src_ip,
        hex(args.src_ip)
    ));
    out.banner(&format!(
        "DST_IP_FILTER: {} ({})",
        args.dst_ip,
        hex(args.dst_ip)
    ));
    let mut ifs = vec![if1.describe()];
    if let Some(i) = &if2 {
        ifs.push(i.describe());
    }
    out.banner(&format!(
        "Monitoring physical interfaces: {}",
        ifs.join(", ")
    ));
    if args.latency_ms > 0.0 {
        out.banner(&format!(
            "Reporting only round trips with RTT >= {:.3} ms",
            args.latency_ms
        ));
    }
    eprintln!("hook mode: {}", stg.hook_mode());
    for l in stg.na_lines() {
        out.banner(&l);
    }
    out.event(&{
        let mut v = stg.start_json("icmp_rtt_latency");
        v["direction"] = json!(dir_name(args.direction));
        v
    });
    out.banner(&format!(
        "Tracing ICMP RTT for src_ip={}, dst_ip={}, direction={} ... Hit Ctrl-C to end.",
        args.src_ip,
        args.dst_ip,
        dir_name(args.direction)
    ));

    let state = State {
        out,
        clock: session.clock,
        ksyms: Kallsyms::new(),
        dir: args.direction,
        stages: stg,
        stacks: kstacks,
        threshold_ns: (args.latency_ms * 1e6) as u64,
        lat: Latencies::new(),
        check: DeltaCheck::default(),
        reported: 0,
        below: 0,
    };
    stages::trace(
        &mut session,
        skel.object(),
        channel,
        &plan.summary(),
        links,
        state,
        stages::TraceRun {
            noun: "round trip(s)",
            reported: "round trips reported",
            interval: args.interval,
            summary: args.summary,
            max_age_ns: MAX_AGE_NS,
            farewell: true,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_table_outgoing() {
        let t = stage_of(Direction::Outgoing);
        assert_eq!(t[H::IpSend as usize], [0, NONE]);
        assert_eq!(t[H::DpProcess as usize], [2, 9]);
        assert_eq!(t[H::VportSend as usize], [5, 12]);
        assert_eq!(t[H::NetifRcv as usize], [NONE, 7]);
        assert_eq!(t[H::IcmpRcv as usize], [NONE, 13]);
    }

    #[test]
    fn stage_table_incoming() {
        let t = stage_of(Direction::Incoming);
        assert_eq!(t[H::NetifRcv as usize], [0, NONE]);
        assert_eq!(t[H::IcmpRcv as usize], [6, NONE]);
        assert_eq!(t[H::IpSend as usize], [NONE, 7]);
        assert_eq!(t[H::DevQueue as usize], [NONE, 13]);
    }

    #[test]
    fn stage_names_follow_the_original() {
        assert_eq!(STAGES_OUT[0].name, "P1:S0_INIT");
        assert_eq!(STAGES_OUT[13].hook, "icmp_rcv");
        assert_eq!(STAGES_IN[13].hook, "dev_queue_xmit");
        assert_eq!(STAGES_IN[0].hook, "__netif_receive_skb");
    }
}
