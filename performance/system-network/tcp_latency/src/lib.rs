//! `tcp_latency`: which stage of the host stack / OVS does a given TCP segment
//! spend its time in? Segments are matched in BPF by (saddr, daddr, sport,
//! dport, seq, ack, payload length) from the first to the last stage of one
//! direction: outgoing (IP output -> OVS -> NIC queue) or incoming (NIC -> OVS
//! -> tcp_v4_rcv).

use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use clap::{Parser, ValueEnum};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::Object;
use serde_json::{json, Value};

use shared::bpf;
use shared::cli::{parse_ifname, parse_interval, parse_ipv4, usage_error, CommonArgs};
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::output::Output;
use shared::runner::Session;
use shared::stages::{
    self, dev_pair_bytes, mask, tcp_flags, Delta, DeltaCheck, Iface, Latencies, Record, StageDef,
    StageEvent, StageHitEvent, Stages, TrackerConfig, TOTAL,
};
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/tcp_latency.skel.rs"));
}
use skel::TcpLatencySkelBuilder;

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
const H_KEYEXT: HookPoint = hp(
    "ovs_flow_key_extract_userspace",
    false,
    &[
        c(
            Kind::Kprobe,
            "kprobe_ovs_flow_key_extract_userspace",
            "ovs_flow_key_extract_userspace",
        ),
        c(
            Kind::Fentry,
            "fentry_ovs_flow_key_extract_userspace",
            "ovs_flow_key_extract_userspace",
        ),
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

/// Outgoing: stage 0 ..= 6 in order.
pub static HOOKS_OUT: &[HookPoint] = &[
    // The original hooked __tcp_transmit_skb, whose headers are not built yet
    // at entry (all-zero keys). ip_output has the final IP and TCP headers
    // (ip_local_out's entry does not have tot_len yet).
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
                .loses("taken where the segment is queued on a device other than the physical NICs (OVS internal port or bridge)"),
        ],
    ),
    H_DP,
    H_UPCALL,
    H_KEYEXT,
    H_VPORT,
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

/// Incoming: stage 0 ..= 6 in order.
pub static HOOKS_IN: &[HookPoint] = &[
    hp(
        "__netif_receive_skb",
        true,
        &[
            c(Kind::TpBtf, "tp_netif_receive_skb", "netif_receive_skb"),
            c(Kind::Kprobe, "kprobe___netif_receive_skb", "__netif_receive_skb"),
            c(Kind::Fentry, "fentry___netif_receive_skb", "__netif_receive_skb"),
        ],
    ),
    hp(
        "netdev_frame_hook",
        false,
        &[
            c(Kind::Kprobe, "kprobe_netdev_frame_hook", "netdev_frame_hook"),
            c(Kind::Fentry, "fentry_netdev_frame_hook", "netdev_frame_hook"),
        ],
    ),
    H_DP,
    H_UPCALL,
    H_KEYEXT,
    H_VPORT,
    hp(
        "tcp_v4_rcv",
        true,
        &[
            c(Kind::Kprobe, "kprobe_tcp_v4_rcv", "tcp_v4_rcv"),
            c(Kind::Fentry, "fentry_tcp_v4_rcv", "tcp_v4_rcv"),
            c(Kind::TpBtf, "tp_app_read", "skb_copy_datagram_iovec")
                .loses("ends when the application reads the payload (TCP_RCV(app read)); segments without payload are not traced"),
        ],
    ),
];

const NAMES: [&str; 7] = [
    "IP_SEND/NETIF_RCV",
    "STACK_PROC",
    "OVS_DP_PROC",
    "OVS_UPCALL",
    "OVS_KEYEXT",
    "OVS_VPORT",
    "DEV_QUEUE/TCP_RCV",
];

pub fn stage_defs(dir: Direction) -> Vec<StageDef> {
    let hooks = match dir {
        Direction::Outgoing => HOOKS_OUT,
        Direction::Incoming => HOOKS_IN,
    };
    hooks
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let d = StageDef::new(i as u8, NAMES[i], h.name);
            match (dir, i) {
                (Direction::Outgoing, 1) => d.tp_label("net_dev_queue, internal port"),
                (_, 5) => d.tp_label("ovs_do_execute_action OUTPUT"),
                (Direction::Incoming, 6) => d.tp_label("app read"),
                _ => d,
            }
        })
        .collect()
}

const ALL: [u8; 7] = [0, 1, 2, 3, 4, 5, 6];
pub const MAX_AGE_NS: u64 = 5_000_000_000;

pub fn tracker_config(dir: Direction, stages: &Stages, quiet: bool) -> TrackerConfig {
    let avail = stages.available_mask();
    let create = match dir {
        // the NIC too, where nothing before it sees the segment (no OVS)
        Direction::Outgoing => mask(&[stages.first_available(&ALL).unwrap_or(6), 6]),
        Direction::Incoming => mask(&[0]),
    };
    TrackerConfig {
        create,
        final_: mask(&[6]),
        need: mask(&[0, 6]) & avail,
        ctx2: 0,
        stacks: 0,
        max_age_ns: MAX_AGE_NS,
        emit_hits: !quiet,
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    /// Segments local -> remote
    Outgoing,
    /// Segments remote -> local
    Incoming,
}

fn parse_port_any(s: &str) -> Result<u16, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if (0..=65535).contains(&n) => Ok(n as u16),
        Ok(_) => Err("port must be 0-65535 (0 = any)".into()),
        Err(_) => Err("not a port number".into()),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "tcp_latency",
    about = "Trace TCP segments through the host stack, OVS and the NIC, with per-stage latencies",
    after_help = "Port filters match either TCP port of a segment. Outgoing segments start at ip_output \
and end when queued on the NIC; incoming ones start at the NIC and end in tcp_v4_rcv (on \
tracepoint-only kernels: when the application reads the payload, so segments without payload \
are not traced). Stages without a hook print N/A (see --explain)."
)]
pub struct Args {
    /// Local IP
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub src_ip: Ipv4Addr,
    /// Remote IP
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub dst_ip: Ipv4Addr,
    /// Port that must be one of the segment's two ports (0 = any)
    #[arg(long, value_name = "PORT", default_value_t = 0, value_parser = parse_port_any, allow_hyphen_values = true)]
    pub src_port: u16,
    /// Port that must be one of the segment's two ports (0 = any)
    #[arg(long, value_name = "PORT", default_value_t = 0, value_parser = parse_port_any, allow_hyphen_values = true)]
    pub dst_port: u16,
    /// Physical NIC
    #[arg(long, value_name = "IF", value_parser = parse_ifname)]
    pub phy_iface1: String,
    /// Second physical NIC (default: --phy-iface1)
    #[arg(long, value_name = "IF", value_parser = parse_ifname)]
    pub phy_iface2: Option<String>,
    /// outgoing: segments local -> remote; incoming: remote -> local
    #[arg(long, value_enum, default_value_t = Direction::Outgoing)]
    pub direction: Direction,
    /// Print only completed segments, not every stage event
    #[arg(long)]
    pub quiet_stages: bool,
    /// On exit, print count/min/avg/p50/p99/max and a log2 histogram per stage segment
    #[arg(long)]
    pub summary: bool,
    /// Every SECS seconds, print a log2 histogram (us) per stage segment since the last one
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    pub interval: Option<u64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

struct State {
    out: Output,
    clock: Clock,
    quiet: bool,
    stages: Stages,
    lat: Latencies,
    check: DeltaCheck,
    reported: u64,
}

fn endpoint(addr: Ipv4Addr, port: u16) -> String {
    format!("{addr}:{port}")
}

shared::impl_latency_state!(State);

impl State {
    fn on_event(&mut self, _obj: &Object, data: &[u8]) {
        match stages::decode(data) {
            Some(Record::Hit(h)) => self.on_hit(&h),
            Some(Record::Flow(e)) => self.on_flow(&e),
            None => {}
        }
    }

    fn stage_name(&self, s: u8) -> &'static str {
        NAMES.get(s as usize).copied().unwrap_or("?")
    }

    fn on_hit(&mut self, h: &StageHitEvent) {
        let k = &h.key;
        let c = &h.ctx;
        if self.out.json() {
            self.out.event(&json!({
                "type": "stage",
                "time": self.clock.rfc3339(h.ts), "ts_ns": h.ts,
                "stage": h.stage, "stage_name": self.stage_name(h.stage),
                "hook": self.stages.get(h.stage).map(|s| s.hook.clone()),
                "src": k.src().to_string(), "sport": k.sport,
                "dst": k.dst().to_string(), "dport": k.dport,
                "seq": k.seq, "ack": k.ack, "flags": tcp_flags(c.tcp_flags), "len": k.len,
                "pid": c.pid, "comm": c.comm(), "ifname": c.ifname(),
            }));
            return;
        }
        let ms = self.clock.wall(h.ts).format("%H:%M:%S%.3f");
        self.out.line(&format!(
            "[{ms}] Stage {} ({}): {} -> {} (SEQ:{} ACK:{} FLAGS:{}) PID:{} COMM:{} IF:{}",
            h.stage,
            self.stage_name(h.stage),
            endpoint(k.src(), k.sport),
            endpoint(k.dst(), k.dport),
            k.seq,
            k.ack,
            tcp_flags(c.tcp_flags),
            c.pid,
            c.comm(),
            c.ifname()
        ));
    }

    fn on_flow(&mut self, e: &StageEvent) {
        let f = &e.flow;
        let k = &e.key;
        let seen = f.present(&ALL);
        let Some(&first) = seen.first() else { return };
        let segs = stages::segments(f, &ALL, MAX_AGE_NS);
        let total = (seen.len() > 1)
            .then(|| stages::delta(f, first, 6, MAX_AGE_NS))
            .flatten();
        self.reported += 1;
        self.lat.record();
        for s in &segs {
            self.check.count(s.delta);
            if let Some(ns) = s.delta.ns() {
                self.lat.add(
                    s.from,
                    s.to,
                    &format!(
                        "Stage {}->{} ({} -> {})",
                        s.from, s.to, NAMES[s.from as usize], NAMES[s.to as usize]
                    ),
                    ns,
                );
            }
        }
        if let Some(d) = total {
            self.check.count(d);
            if let Some(ns) = d.ns() {
                self.lat.add(200, TOTAL, "Total", ns);
            }
        }
        let flags = tcp_flags(f.ctx[0].tcp_flags);
        if self.out.json() {
            let stages_ns: serde_json::Map<String, Value> = seen
                .iter()
                .map(|s| (s.to_string(), json!(f.ts[*s as usize])))
                .collect();
            let segs_j: serde_json::Map<String, Value> =
                segs.iter().map(|s| (s.key(), s.delta.json_us())).collect();
            self.out.event(&json!({
                "type": "segment",
                "time": self.clock.rfc3339(f.ts[first as usize]), "ts_ns": f.ts[first as usize],
                "src": k.src().to_string(), "sport": k.sport,
                "dst": k.dst().to_string(), "dport": k.dport,
                "seq": k.seq, "ack": k.ack, "flags": flags, "len": k.len,
                "pid": f.ctx[0].pid, "comm": f.ctx[0].comm(),
                "stages_ns": stages_ns,
                "total_us": total.map(Delta::json_us).unwrap_or(Value::Null),
                "segments_us": segs_j,
                "na_stages": self.stages.na_json(),
            }));
            return;
        }
        let mut s = String::new();
        if self.quiet {
            // without the stage lines, say which segment this is
            s.push_str(&format!(
                "[{}] Segment: {} -> {} (SEQ:{} ACK:{} LEN:{} FLAGS:{flags})\n",
                self.clock.wall(f.ts[first as usize]).format("%H:%M:%S%.3f"),
                endpoint(k.src(), k.sport),
                endpoint(k.dst(), k.dport),
                k.seq,
                k.ack,
                k.len
            ));
        }
        match total {
            Some(d) => {
                s.push_str(&format!(
                    "  ==> COMPLETE FLOW LATENCY: {} us",
                    d.fmt_us().trim()
                ));
                for seg in &segs {
                    s.push_str(&format!(
                        "\n      Stage {}->{}: {} us",
                        seg.from,
                        seg.to,
                        seg.delta.fmt_us().trim()
                    ));
                }
            }
            None => s.push_str(&format!(
                "  ==> COMPLETE FLOW LATENCY: N/A (only stage {first} seen)"
            )),
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
    let hooks = match args.direction {
        Direction::Outgoing => HOOKS_OUT,
        Direction::Incoming => HOOKS_IN,
    };
    let (_kernel, plan) = bpf::plan(&args.common, hooks);
    let defs = stage_defs(args.direction);
    let stg = Stages::resolve(&plan, &defs);
    let cfg = tracker_config(args.direction, &stg, args.quiet_stages);
    let app_read_end = args.direction == Direction::Incoming
        && !matches!(
            plan.chosen("tcp_v4_rcv").map(|c| c.kind),
            Some(Kind::Fentry | Kind::Kprobe)
        );
    let (psrc, pdst) = match args.direction {
        Direction::Outgoing => (args.src_ip, args.dst_ip),
        Direction::Incoming => (args.dst_ip, args.src_ip),
    };

    let mut open_object = MaybeUninit::uninit();
    let mut open = TcpLatencySkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    let setup = |o: &mut libbpf_rs::OpenObject| -> Result<(), String> {
        cfg.apply(o)?;
        bpf::set_rodata(o, "PKT_SADDR", &psrc.octets())?;
        bpf::set_rodata(o, "PKT_DADDR", &pdst.octets())?;
        bpf::set_rodata(o, "PORT_A", &args.src_port.to_ne_bytes())?;
        bpf::set_rodata(o, "PORT_B", &args.dst_port.to_ne_bytes())?;
        bpf::set_rodata(o, "PHY", &dev_pair_bytes(&if1, if2.as_ref()))?;
        bpf::set_rodata(o, "NEED_PAYLOAD", &[u8::from(app_read_end)])
    };
    setup(open.open_object_mut()).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    let mut skel = bpf::load(open);
    let links = bpf::attach(&plan, &mut skel);

    let hex = |ip: Ipv4Addr| format!("0x{:08x}", u32::from_ne_bytes(ip.octets()));
    out.banner("=== TCP Latency Tracer ===");
    out.banner(&format!(
        "Source IP: {} ({})",
        args.src_ip,
        hex(args.src_ip)
    ));
    out.banner(&format!(
        "Destination IP: {} ({})",
        args.dst_ip,
        hex(args.dst_ip)
    ));
    let port = |p: u16| {
        if p == 0 {
            "any".to_string()
        } else {
            p.to_string()
        }
    };
    out.banner(&format!(
        "Ports (either side): {} / {}",
        port(args.src_port),
        port(args.dst_port)
    ));
    out.banner(&format!(
        "Direction: {}",
        match args.direction {
            Direction::Outgoing => "outgoing (local -> remote)",
            Direction::Incoming => "incoming (remote -> local)",
        }
    ));
    let mut ifs = vec![if1.describe()];
    if let Some(i) = &if2 {
        ifs.push(i.describe());
    }
    out.banner(&format!("Interface: {}", ifs.join(", ")));
    eprintln!("hook mode: {}", stg.hook_mode());
    for l in stg.na_lines() {
        out.banner(&l);
    }
    out.event(&stg.start_json("tcp_latency"));
    out.banner("Tracing TCP segments... Hit Ctrl-C to end.");

    let state = State {
        out,
        clock: session.clock,
        quiet: args.quiet_stages,
        stages: stg,
        lat: Latencies::new(),
        check: DeltaCheck::default(),
        reported: 0,
    };
    stages::trace(
        &mut session,
        skel.object(),
        channel,
        &plan.summary(),
        links,
        state,
        stages::TraceRun {
            noun: "segment(s)",
            reported: "segments completed",
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
    fn ports() {
        assert_eq!(parse_port_any("0"), Ok(0));
        assert_eq!(parse_port_any("5201"), Ok(5201));
        assert!(parse_port_any("70000").is_err());
        assert!(parse_port_any("-1").is_err());
    }

    #[test]
    fn stages_follow_hooks() {
        let out = stage_defs(Direction::Outgoing);
        assert_eq!(out[0].hook, "ip_output");
        assert_eq!(out[6].hook, "dev_queue_xmit");
        let inc = stage_defs(Direction::Incoming);
        assert_eq!(inc[0].hook, "__netif_receive_skb");
        assert_eq!(inc[6].hook, "tcp_v4_rcv");
        assert_eq!(inc[6].tp_label, Some("app read"));
    }
}
