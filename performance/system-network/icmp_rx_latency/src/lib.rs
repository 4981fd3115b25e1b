//! `icmp_rx_latency`: how long does an incoming ICMP echo request or reply
//! spend between the physical NIC and `icmp_rcv`, and in which stage (OVS
//! rx_handler, datapath, upcall, actions, output to the internal port)?

use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::Object;
use serde_json::{json, Value};

use shared::bpf;
use shared::cli::{parse_ifname, parse_interval, parse_ipv4, CommonArgs};
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::ksyms::Kallsyms;
use shared::output::Output;
use shared::runner::Session;
use shared::stages::{
    self, dev_pair_bytes, flow_stacks, mask, parse_latency, render_stacks, stacks_json, wall_ms,
    Delta, DeltaCheck, Iface, Latencies, Record, StageDef, StageEvent, Stages, TrackerConfig,
    TOTAL,
};
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/icmp_rx_latency.skel.rs"));
}
use skel::IcmpRxLatencySkelBuilder;

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

const H_NETIF: HookPoint = hp(
    "__netif_receive_skb",
    true,
    &[
        c(Kind::TpBtf, "tp_netif_receive_skb", "netif_receive_skb"),
        c(
            Kind::Kprobe,
            "kprobe___netif_receive_skb",
            "__netif_receive_skb",
        ),
        c(
            Kind::Fentry,
            "fentry___netif_receive_skb",
            "__netif_receive_skb",
        ),
    ],
);
const H_FRAME: HookPoint = hp(
    "netdev_frame_hook",
    false,
    &[
        c(
            Kind::Kprobe,
            "kprobe_netdev_frame_hook",
            "netdev_frame_hook",
        ),
        c(
            Kind::Fentry,
            "fentry_netdev_frame_hook",
            "netdev_frame_hook",
        ),
    ],
);
const H_DP: HookPoint = hp(
    "ovs_dp_process_packet",
    false,
    &[
        c(
            Kind::Kprobe,
            "kprobe_ovs_dp_process_packet",
            "ovs_dp_process_packet",
        ),
        c(
            Kind::Fentry,
            "fentry_ovs_dp_process_packet",
            "ovs_dp_process_packet",
        ),
    ],
);
const H_UPCALL: HookPoint = hp(
    "ovs_dp_upcall",
    false,
    &[
        c(Kind::TpBtf, "tp_ovs_dp_upcall", "ovs_dp_upcall"),
        c(Kind::Kprobe, "kprobe_ovs_dp_upcall", "ovs_dp_upcall"),
        c(Kind::Fentry, "fentry_ovs_dp_upcall", "ovs_dp_upcall"),
    ],
);
const H_EXEC: HookPoint = hp(
    "ovs_execute_actions",
    false,
    &[
        c(
            Kind::Kprobe,
            "kprobe_ovs_execute_actions",
            "ovs_execute_actions",
        ),
        c(
            Kind::Fentry,
            "fentry_ovs_execute_actions",
            "ovs_execute_actions",
        ),
        c(Kind::TpBtf, "tp_ovs_exec", "ovs_do_execute_action")
            .loses("the first executed action stands for ovs_execute_actions"),
    ],
);
const H_VPORT: HookPoint = hp(
    "ovs_vport_send",
    false,
    &[
        c(Kind::Kprobe, "kprobe_ovs_vport_send", "ovs_vport_send"),
        c(Kind::Fentry, "fentry_ovs_vport_send", "ovs_vport_send"),
        c(Kind::TpBtf, "tp_ovs_output", "ovs_do_execute_action")
            .loses("the datapath's OUTPUT action stands for ovs_vport_send"),
    ],
);
const H_ICMP: HookPoint = hp(
    "icmp_rcv",
    true,
    &[
        c(Kind::Kprobe, "kprobe_icmp_rcv", "icmp_rcv"),
        c(Kind::Fentry, "fentry_icmp_rcv", "icmp_rcv"),
        c(Kind::TpBtf, "tp_app_read", "skb_copy_datagram_iovec")
            .loses("echo replies end when the ping socket reads them (app read); echo requests have no end point unless --tracepoint-end-at-reply"),
    ],
);
/// --tracepoint-end-at-reply: the kernel's reply being queued ends a request
/// (only used when icmp_rcv itself has no hook).
const H_REPLY: HookPoint = hp(
    "reply_queued",
    false,
    &[c(Kind::TpBtf, "tp_reply_queued", "net_dev_queue")],
);

pub static HOOKS: &[HookPoint] = &[H_NETIF, H_FRAME, H_DP, H_UPCALL, H_EXEC, H_VPORT, H_ICMP];
pub static HOOKS_END_AT_REPLY: &[HookPoint] = &[
    H_NETIF, H_FRAME, H_DP, H_UPCALL, H_EXEC, H_VPORT, H_ICMP, H_REPLY,
];

pub static STAGES: [StageDef; 7] = [
    StageDef::new(0, "NETIF_RECV", "__netif_receive_skb").tp_label("netif_receive_skb"),
    StageDef::new(1, "NETDEV_FRAME", "netdev_frame_hook"),
    StageDef::new(2, "DP_PROCESS", "ovs_dp_process_packet"),
    StageDef::new(3, "DP_UPCALL", "ovs_dp_upcall"),
    StageDef::new(4, "EXEC_ACTIONS", "ovs_execute_actions")
        .tp_label("ovs_do_execute_action, first"),
    StageDef::new(5, "VPORT_SEND", "ovs_vport_send").tp_label("ovs_do_execute_action OUTPUT"),
    StageDef::new(6, "ICMP_RCV", "icmp_rcv").tp_label("app read"),
];

const ALL: [u8; 7] = [0, 1, 2, 3, 4, 5, 6];
pub const MAX_AGE_NS: u64 = 5_000_000_000;

pub fn tracker_config(stages: &Stages, kernel_stacks: bool) -> TrackerConfig {
    TrackerConfig {
        // only packets that came in through the NIC (the original also
        // created entries in the OVS stages, e.g. for locally sent pings)
        create: mask(&[0]),
        final_: mask(&[6]),
        need: mask(&[0]),
        ctx2: mask(&[6]),
        stacks: if kernel_stacks {
            stages.available_mask()
        } else {
            0
        },
        max_age_ns: MAX_AGE_NS,
        emit_hits: false,
    }
}

/// An optional address filter: 0.0.0.0 means "any" (as in the original).
fn parse_ip_filter(s: &str) -> Result<Ipv4Addr, String> {
    parse_ipv4(s)
}

#[derive(Parser, Debug)]
#[command(
    name = "icmp_rx_latency",
    about = "Trace incoming ICMP echo requests/replies from the NIC through OVS to icmp_rcv, with per-stage latencies",
    after_help = "Tracepoint-only kernels (no fentry/kprobe) have no hook at icmp_rcv: echo replies then end \
when the ping socket reads them (app read), and echo requests, which the kernel answers inside \
icmp_rcv, are reported only with --tracepoint-end-at-reply (their end is the reply being queued \
on a device). Stages without a hook print N/A (see --explain)."
)]
pub struct Args {
    /// First physical NIC
    #[arg(long, value_name = "IF", value_parser = parse_ifname)]
    pub phy_iface1: String,
    /// Second physical NIC (default: --phy-iface1)
    #[arg(long, value_name = "IF", value_parser = parse_ifname)]
    pub phy_iface2: Option<String>,
    /// Match IP source (default: any; 0.0.0.0 = any)
    #[arg(long, value_name = "IP", value_parser = parse_ip_filter)]
    pub src_ip: Option<Ipv4Addr>,
    /// Match IP destination (default: any; 0.0.0.0 = any)
    #[arg(long, value_name = "IP", value_parser = parse_ip_filter)]
    pub dst_ip: Option<Ipv4Addr>,
    /// Report only packets whose total (first stage -> stage 6) is >= this many ms
    #[arg(long, value_name = "MS", default_value_t = 0.0, value_parser = parse_latency, allow_hyphen_values = true)]
    pub latency_ms: f64,
    /// Do not print the per-stage kernel stacks
    #[arg(long)]
    pub disable_kernel_stacks: bool,
    /// Without a hook at icmp_rcv: end echo requests when the kernel's reply is queued
    #[arg(long)]
    pub tracepoint_end_at_reply: bool,
    /// On exit, print count/min/avg/p50/p99/max and a log2 histogram per segment
    #[arg(long)]
    pub summary: bool,
    /// Every SECS seconds, print a log2 histogram (us) per segment of the packets since the last one
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
        let total = stages::delta(f, first, 6, MAX_AGE_NS);
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
        let ovs_seen = [2u8, 3, 4, 5].iter().any(|&s| f.has(s));
        let kstacks = if self.stacks {
            flow_stacks(obj, f, &ALL, &mut self.ksyms)
        } else {
            Vec::new()
        };
        let (src, dst) = (e.key.src(), e.key.dst());
        let (typ, id, seq) = (e.key.kind, e.key.sport, e.key.seq);
        let (c0, c6) = (&f.ctx[0], &f.ctx[1]);

        if self.out.json() {
            let stages_ns: serde_json::Map<String, Value> = seen
                .iter()
                .map(|s| (s.to_string(), json!(f.ts[*s as usize])))
                .collect();
            let segs_j: serde_json::Map<String, Value> =
                segs.iter().map(|s| (s.key(), s.delta.json_us())).collect();
            let mut v = json!({
                "type": "rx",
                "time": self.clock.rfc3339(f.ts[first as usize]),
                "ts_ns": f.ts[first as usize],
                "src": src.to_string(), "dst": dst.to_string(),
                "icmp_type": typ, "id": id, "seq": seq,
                "first": c0.to_json(), "final": c6.to_json(),
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
        s.push_str(&format!(
            "PKT: {src} -> {dst} Proto=ICMP ICMP Type={typ} ID={id} Seq={seq}\n"
        ));
        s.push_str(&format!(
            "  Initial Context: PID={:<6} COMM={:<12} IF={}\n",
            c0.pid,
            c0.comm(),
            c0.ifname()
        ));
        let mut line = String::from("  Latencies (us):");
        for seg in &segs {
            line.push_str(&format!(
                " [{}->{}]: {}",
                seg.from,
                seg.to,
                seg.delta.fmt_us()
            ));
        }
        if let Some(d) = total {
            line.push_str(&format!(" | Total[{first}->6]: {}", d.fmt_us()));
        }
        s.push_str(&line);
        s.push('\n');
        if upcall {
            s.push_str("  (Path: Flow Miss / Upcall)\n");
        } else if ovs_seen {
            s.push_str("  (Path: Flow Hit)\n");
        }
        if self.stacks {
            s.push_str(&render_stacks(&self.stages, f, &ALL, &kstacks, |st| {
                if st == 3 && ovs_seen {
                    "<Skipped - Flow Hit>"
                } else {
                    "<Skipped>"
                }
            }));
        }
        self.out.line(&s);
    }
}

pub fn run() {
    let args: Args = shared::cli::parse();
    let if1 = Iface::lookup(&args.phy_iface1);
    let if2 = args.phy_iface2.as_deref().map(Iface::lookup);
    let mut out = Output::stdout(args.common.json);
    let mut session = Session::start(args.common.duration, args.common.verbose);
    let hooks = if args.tracepoint_end_at_reply {
        HOOKS_END_AT_REPLY
    } else {
        HOOKS
    };
    let (_kernel, plan) = bpf::plan(&args.common, hooks);
    let mut stg = Stages::resolve(&plan, &STAGES);
    let icmp_rcv_hooked = matches!(
        plan.chosen("icmp_rcv").map(|c| c.kind),
        Some(Kind::Fentry | Kind::Kprobe)
    );
    let end_at_reply = !icmp_rcv_hooked && args.tracepoint_end_at_reply;
    if end_at_reply {
        if let Some(s) = stg.list.iter_mut().find(|s| s.id == 6) {
            s.hook = "app read; requests: reply queued".into();
        }
    }
    let track_requests = icmp_rcv_hooked || end_at_reply;
    let kstacks = !args.disable_kernel_stacks;
    let cfg = tracker_config(&stg, kstacks);
    let ip = |a: Option<Ipv4Addr>| a.map(|x| x.octets()).unwrap_or([0; 4]);

    let mut open_object = MaybeUninit::uninit();
    let mut open = IcmpRxLatencySkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    let setup = |o: &mut libbpf_rs::OpenObject| -> Result<(), String> {
        cfg.apply(o)?;
        bpf::set_rodata(o, "SRC_IP", &ip(args.src_ip))?;
        bpf::set_rodata(o, "DST_IP", &ip(args.dst_ip))?;
        bpf::set_rodata(o, "PHY", &dev_pair_bytes(&if1, if2.as_ref()))?;
        bpf::set_rodata(o, "TRACK_REQUESTS", &[u8::from(track_requests)])?;
        bpf::set_rodata(o, "END_AT_REPLY", &[u8::from(end_at_reply)])
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
    let any = |a: Option<Ipv4Addr>| {
        a.filter(|x| !x.is_unspecified())
            .map(|x| x.to_string())
            .unwrap_or_else(|| "any".into())
    };
    out.banner(&format!("Source IP filter: {}", any(args.src_ip)));
    out.banner(&format!("Destination IP filter: {}", any(args.dst_ip)));
    if args.latency_ms > 0.0 {
        out.banner(&format!(
            "Reporting only packets with total >= {:.3} ms",
            args.latency_ms
        ));
    }
    eprintln!("hook mode: {}", stg.hook_mode());
    for l in stg.na_lines() {
        out.banner(&l);
    }
    if !track_requests {
        out.banner("Note: no hook at icmp_rcv on this kernel: echo replies end when read by the ping socket; echo requests are not reported (see --tracepoint-end-at-reply)");
    }
    out.event(&stg.start_json("icmp_rx_latency"));
    out.banner("Tracing packet latencies... Hit Ctrl-C to end.");

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
            noun: "packet(s)",
            reported: "packets reported",
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
        for (h, s) in HOOKS.iter().zip(STAGES.iter()) {
            assert_eq!(h.name, s.hook);
        }
        assert_eq!(HOOKS_END_AT_REPLY.len(), HOOKS.len() + 1);
    }

    #[test]
    fn any_address() {
        assert_eq!(parse_ip_filter("0.0.0.0"), Ok(Ipv4Addr::UNSPECIFIED));
        assert!(parse_ip_filter("1.2.3").is_err());
    }
}
