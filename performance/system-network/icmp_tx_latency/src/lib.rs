//! `icmp_tx_latency`: how long does an outgoing ping request take from the IP
//! layer to the physical NIC, and in which stage (OVS internal port, datapath,
//! upcall, actions, output)? Requests are keyed by (src, dst, ICMP id, seq).

use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::Object;
use serde_json::{json, Value};

use shared::bpf;
use shared::cli::{parse_ifname, parse_interval, parse_ipv4, usage_error, CommonArgs};
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::ksyms::Kallsyms;
use shared::output::Output;
use shared::runner::Session;
use shared::stages::{
    self, dev_pair_bytes, flow_stacks, fmt_us, mask, parse_latency, render_stacks, stacks_json,
    wall_ms, Delta, DeltaCheck, Iface, Latencies, Record, StageDef, StageEvent, Stages,
    TrackerConfig, TOTAL,
};
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/icmp_tx_latency.skel.rs"));
}
use skel::IcmpTxLatencySkelBuilder;

const fn c(kind: Kind, prog: &'static str, target: &'static str) -> Candidate {
    Candidate::new(kind, prog, target)
}
const fn hp(name: &'static str, required: bool, c: &'static [Candidate]) -> HookPoint {
    HookPoint {
        name,
        required,
        candidates: c,
    }
}

/// One hook point per stage, in stage order.
pub static HOOKS: &[HookPoint] = &[
    // ip_send_skb is inlined into ip_push_pending_frames (ping's path) on 6.1
    // and 6.18; ip_output is the next function every local IPv4 packet passes.
    hp(
        "ip_output",
        false,
        &[
            c(Kind::Kprobe, "kprobe_ip_output", "ip_output"),
            c(Kind::Fentry, "fentry_ip_output", "ip_output"),
        ],
    ),
    hp(
        "internal_dev_xmit",
        false,
        &[
            c(Kind::Kprobe, "kprobe_internal_dev_xmit", "internal_dev_xmit"),
            c(Kind::Fentry, "fentry_internal_dev_xmit", "internal_dev_xmit"),
            c(Kind::TpBtf, "tp_dev_queue_internal", "net_dev_queue")
                .loses("taken where the request is queued on a device other than the physical NICs (OVS internal port or bridge), before internal_dev_xmit"),
        ],
    ),
    hp(
        "ovs_dp_process_packet",
        false,
        &[
            c(Kind::Kprobe, "kprobe_ovs_dp_process_packet", "ovs_dp_process_packet"),
            c(Kind::Fentry, "fentry_ovs_dp_process_packet", "ovs_dp_process_packet"),
        ],
    ),
    hp(
        "ovs_dp_upcall",
        false,
        &[
            c(Kind::TpBtf, "tp_ovs_dp_upcall", "ovs_dp_upcall"),
            c(Kind::Kprobe, "kprobe_ovs_dp_upcall", "ovs_dp_upcall"),
            c(Kind::Fentry, "fentry_ovs_dp_upcall", "ovs_dp_upcall"),
        ],
    ),
    hp(
        "ovs_execute_actions",
        false,
        &[
            c(Kind::Kprobe, "kprobe_ovs_execute_actions", "ovs_execute_actions"),
            c(Kind::Fentry, "fentry_ovs_execute_actions", "ovs_execute_actions"),
            c(Kind::TpBtf, "tp_ovs_exec", "ovs_do_execute_action")
                .loses("the first executed action stands for ovs_execute_actions"),
        ],
    ),
    hp(
        "ovs_vport_send",
        false,
        &[
            c(Kind::Kprobe, "kprobe_ovs_vport_send", "ovs_vport_send"),
            c(Kind::Fentry, "fentry_ovs_vport_send", "ovs_vport_send"),
            c(Kind::TpBtf, "tp_ovs_output", "ovs_do_execute_action")
                .loses("the datapath's OUTPUT action stands for ovs_vport_send"),
        ],
    ),
    hp(
        "dev_queue_xmit",
        true,
        &[
            c(Kind::TpBtf, "tp_dev_queue_phy", "net_dev_queue"),
            c(Kind::Kprobe, "kprobe___dev_queue_xmit", "__dev_queue_xmit"),
            c(Kind::Kprobe, "kprobe_dev_queue_xmit", "dev_queue_xmit"),
            c(Kind::Fentry, "fentry___dev_queue_xmit", "__dev_queue_xmit"),
            c(Kind::Fentry, "fentry_dev_queue_xmit", "dev_queue_xmit"),
        ],
    ),
];

pub static STAGES: [StageDef; 7] = [
    StageDef::new(0, "TX:IP_SEND_SKB", "ip_output"),
    StageDef::new(1, "TX:INTERNAL_XMIT", "internal_dev_xmit")
        .tp_label("net_dev_queue, internal port"),
    StageDef::new(2, "TX:DP_PROCESS", "ovs_dp_process_packet"),
    StageDef::new(3, "TX:DP_UPCALL", "ovs_dp_upcall"),
    StageDef::new(4, "TX:EXEC_ACTIONS", "ovs_execute_actions")
        .tp_label("ovs_do_execute_action, first"),
    StageDef::new(5, "TX:VPORT_SEND(->phy)", "ovs_vport_send")
        .tp_label("ovs_do_execute_action OUTPUT"),
    StageDef::new(6, "TX:DEV_XMIT", "dev_queue_xmit").tp_label("net_dev_queue"),
];

const ALL: [u8; 7] = [0, 1, 2, 3, 4, 5, 6];
pub const MAX_AGE_NS: u64 = 5_000_000_000;

/// Start at the first stage with a hook (the NIC too, where the earlier hooks
/// never see the packet: no OVS); end at the NIC; stage 0 must have been seen
/// where the kernel can hook it.
pub fn tracker_config(stages: &Stages, kernel_stacks: bool) -> TrackerConfig {
    let avail = stages.available_mask();
    let first = stages.first_available(&ALL).unwrap_or(6);
    TrackerConfig {
        create: mask(&[first, 6]),
        final_: mask(&[6]),
        need: mask(&[0, 6]) & avail,
        ctx2: 0,
        stacks: if kernel_stacks { avail } else { 0 },
        max_age_ns: MAX_AGE_NS,
        emit_hits: false,
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "icmp_tx_latency",
    about = "Trace outgoing ICMP echo requests from the IP layer through OVS to the NIC, with per-stage latencies",
    after_help = "Only echo requests (type 8) from --src-ip to --dst-ip are tracked, each by its ICMP id and \
sequence (concurrent pings are kept apart). Stages without a hook on the running kernel print N/A \
(see --explain); on tracepoint-only kernels there is no hook before the device queue, so the start \
is the internal port (or the NIC)."
)]
pub struct Args {
    /// ICMP request source (this host)
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub src_ip: Ipv4Addr,
    /// ICMP request destination
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub dst_ip: Ipv4Addr,
    /// First possible egress NIC
    #[arg(long, value_name = "IF", value_parser = parse_ifname)]
    pub phy_iface1: String,
    /// Second possible egress NIC (default: --phy-iface1)
    #[arg(long, value_name = "IF", value_parser = parse_ifname)]
    pub phy_iface2: Option<String>,
    /// Report only requests whose total (first stage -> stage 6) is >= this many ms
    #[arg(long, value_name = "MS", default_value_t = 0.0, value_parser = parse_latency, allow_hyphen_values = true)]
    pub latency_ms: f64,
    /// Do not print the per-stage kernel stacks
    #[arg(long)]
    pub disable_kernel_stacks: bool,
    /// On exit, print count/min/avg/p50/p99/max and a log2 histogram per segment
    #[arg(long)]
    pub summary: bool,
    /// Every SECS seconds, print a log2 histogram (us) per segment of the requests since the last one
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    pub interval: Option<u64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

struct State {
    out: Output,
    clock: Clock,
    ksyms: Kallsyms,
    stages: Stages,
    stacks: bool,
    threshold_ns: u64,
    lat: Latencies,
    check: DeltaCheck,
    reported: u64,
    below: u64,
}

shared::impl_latency_state!(State, below);

impl State {
    fn on_event(&mut self, obj: &Object, data: &[u8]) {
        if let Some(Record::Flow(e)) = stages::decode(data) {
            self.on_flow(obj, &e);
        }
    }

    fn on_flow(&mut self, obj: &Object, e: &StageEvent) {
        let f = &e.flow;
        let seen = f.present(&ALL);
        let Some(&first) = seen.first() else { return };
        let segs = stages::segments(f, &ALL, MAX_AGE_NS);
        let total = (seen.len() > 1)
            .then(|| stages::delta(f, first, 6, MAX_AGE_NS))
            .flatten();
        if self.threshold_ns > 0
            && total
                .and_then(Delta::ns)
                .is_none_or(|n| n < self.threshold_ns)
        {
            self.below += 1;
            return;
        }
        self.reported += 1;
        self.lat.record();
        for s in &segs {
            self.check.count(s.delta);
            if let Some(ns) = s.delta.ns() {
                self.lat
                    .add(s.from, s.to, &format!("[{}->{}]", s.from, s.to), ns);
            }
        }
        if let Some(d) = total {
            self.check.count(d);
            if let Some(ns) = d.ns() {
                self.lat.add(200, TOTAL, &format!("Total[{first}->6]"), ns);
            }
        }
        let upcall = f.has(3);
        let kstacks = if self.stacks {
            flow_stacks(obj, f, &ALL, &mut self.ksyms)
        } else {
            Vec::new()
        };
        let (id, seq) = (e.key.sport, e.key.seq);
        let (src, dst) = (e.key.src(), e.key.dst());
        let c0 = &f.ctx[0];

        if self.out.json() {
            let stages_ns: serde_json::Map<String, Value> = seen
                .iter()
                .map(|s| (s.to_string(), json!(f.ts[*s as usize])))
                .collect();
            let segs_j: serde_json::Map<String, Value> =
                segs.iter().map(|s| (s.key(), s.delta.json_us())).collect();
            let mut v = json!({
                "type": "tx",
                "time": self.clock.rfc3339(f.ts[first as usize]),
                "ts_ns": f.ts[first as usize],
                "src": src.to_string(), "dst": dst.to_string(),
                "id": id, "seq": seq,
                "start": {"pid": c0.pid, "comm": c0.comm(), "ifname": c0.ifname(), "stage": c0.stage},
                "stages_ns": stages_ns,
                "segments_us": segs_j,
                "total_us": total.map(Delta::json_us).unwrap_or(Value::Null),
                "total_from_stage": first,
                "upcall": upcall,
                "na_stages": self.stages.na_json(),
            });
            if self.stacks {
                v["stacks"] = stacks_json(&kstacks);
            }
            self.out.event(&v);
            return;
        }

        let mut s = format!("--- {} ---\n", wall_ms(&self.clock, f.ts[first as usize]));
        s.push_str(&format!("SESSION: {src} -> {dst} Seq={seq}\n"));
        s.push_str(&format!("  Request: {src} -> {dst} (ID: {id}, Type: 8)\n"));
        s.push_str(&format!(
            "  TX Start Context: PID={:<6} COMM={:<12} IF={}\n",
            c0.pid,
            c0.comm(),
            c0.ifname()
        ));
        let mut line = String::from("  Latencies TX (us):");
        for seg in &segs {
            // The original's [2->3] slot: Skip on a flow hit.
            if seg.from == 2 && seg.skipped.contains(&3) && self.stages.available(3) {
                line.push_str(" [2->3]:   Skip ");
            }
            line.push_str(&format!(
                " [{}->{}]: {}",
                seg.from,
                seg.to,
                seg.delta.fmt_us()
            ));
        }
        match total {
            Some(d) => line.push_str(&format!(" | Total[{first}->6]: {}", d.fmt_us())),
            None => line.push_str(&format!(
                " | Total: {} (only stage {first} seen)",
                fmt_us(None)
            )),
        }
        s.push_str(&line);
        s.push('\n');
        if upcall {
            s.push_str("  (TX Path: Flow Miss)\n");
        }
        if self.stacks {
            s.push_str(&render_stacks(&self.stages, f, &ALL, &kstacks, |st| {
                if st == 3 {
                    "<Skipped - TX Flow Hit>"
                } else {
                    "<Missed>"
                }
            }));
        }
        self.out.line(&s);
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
    let (_kernel, plan) = bpf::plan(&args.common, HOOKS);
    let stg = Stages::resolve(&plan, &STAGES);
    let kstacks = !args.disable_kernel_stacks;
    let cfg = tracker_config(&stg, kstacks);

    let mut open_object = MaybeUninit::uninit();
    let mut open = IcmpTxLatencySkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    let setup = |o: &mut libbpf_rs::OpenObject| -> Result<(), String> {
        cfg.apply(o)?;
        bpf::set_rodata(o, "SRC_IP", &args.src_ip.octets())?;
        bpf::set_rodata(o, "DST_IP", &args.dst_ip.octets())?;
        bpf::set_rodata(o, "PHY", &dev_pair_bytes(&if1, if2.as_ref()))
    };
    setup(open.open_object_mut()).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    let mut skel = bpf::load(open);
    let links = bpf::attach(&plan, &mut skel);

    out.banner(&format!("Target physical interface 1: {}", if1.describe()));
    match &if2 {
        Some(i2) => {
            out.banner(&format!("Target physical interface 2: {}", i2.describe()));
            if i2.ifindex == if1.ifindex && i2.netns == if1.netns {
                out.banner("Warning: The two specified interfaces have the same index");
            }
        }
        None => out.banner(&format!(
            "Target physical interface 2: {} (same as 1)",
            if1.describe()
        )),
    }
    out.banner(&format!("Source IP: {}", args.src_ip));
    out.banner(&format!("Destination IP: {}", args.dst_ip));
    if args.latency_ms > 0.0 {
        out.banner(&format!(
            "Reporting only requests with total >= {:.3} ms",
            args.latency_ms
        ));
    }
    eprintln!("hook mode: {}", stg.hook_mode());
    for l in stg.na_lines() {
        out.banner(&l);
    }
    out.event(&stg.start_json("icmp_tx_latency"));
    out.banner("Tracing ICMP TX latencies... Hit Ctrl-C to end.");

    let state = State {
        out,
        clock: session.clock,
        ksyms: Kallsyms::new(),
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
            noun: "request(s)",
            reported: "requests reported",
            interval: args.interval,
            summary: args.summary,
            max_age_ns: MAX_AGE_NS,
            farewell: false,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hook_per_stage_in_order() {
        assert_eq!(HOOKS.len(), STAGES.len());
        for (h, s) in HOOKS.iter().zip(STAGES.iter()) {
            assert_eq!(h.name, s.hook);
        }
        assert!(HOOKS[6].required);
    }
}
