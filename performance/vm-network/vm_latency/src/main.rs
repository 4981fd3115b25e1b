//! `vm_latency`: where does a VM's packet spend time on the host between its
//! tap (vnetN) and the physical NIC? One direction per run: tx (the VM sends:
//! tap -> [OVS] -> NIC) or rx (the NIC receives for the VM: NIC -> [OVS] ->
//! tap -> the tap's reader, vhost-net or QEMU). Each packet is followed
//! through up to 8 stages by the shared stage tracker; stages this kernel has
//! no hook for (OVS without fentry/kprobe, tun_net_xmit on 6.18) are N/A.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, Object};
use serde_json::{json, Value};

use shared::bpf;
use shared::cli::{parse_ipv4, parse_port, usage_error, CommonArgs, Protocol};
use shared::events::Drain;
use shared::hooks::{Candidate, HookPoint, Kind, Need};
use shared::ksyms::Kallsyms;
use shared::output::Output;
use shared::reasons::DropReasons;
use shared::runner::Session;
use shared::stacks::read_stack;
use shared::stages::{
    self, segments, Counters, DeltaCheck, Latencies, Record, StageDef, StageDev, StageEvent,
    Stages, TrackerConfig, TOTAL,
};
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/vm_latency.skel.rs"));
}
use skel::VmLatencySkelBuilder;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Direction {
    /// the VM transmits: tap -> physical NIC
    Tx,
    /// the VM receives: physical NIC -> tap
    Rx,
}

fn parse_ms(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("must be a number of milliseconds >= 0".into()),
    }
}

fn parse_secs(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n as u64),
        _ => Err("must be a whole number of seconds >= 0".into()),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "vm_latency",
    about = "Per-stage latency of a VM's packets between its tap (vnet) and the physical NIC",
    after_help = "tx stages: VNET_RX (netif_receive_skb on the tap) -> OVS_FRAME_HOOK -> OVS_DP_PROCESS -> \
[OVS_UPCALL -> OVS_KEYEXT_USERSPACE] -> OVS_VPORT_SEND -> PHY_QUEUE (net_dev_queue on the NIC) -> PHY_XMIT \
(net_dev_start_xmit on the NIC). rx stages: PHY_RX (netif_receive_skb on the NIC) -> OVS ... -> VNET_XMIT \
(tun_net_xmit, or net_dev_start_xmit on the tap) -> VNET_CONSUMED (the tap's reader took the packet: consume_skb) or \
VNET_DROPPED (kfree_skb, e.g. FULL_RING). OVS stages need fentry/kprobe (or the openvswitch tracepoints); with a Linux \
bridge they are absent and the segment is [0->6]. Example: vm_latency --src-ip 192.168.1.10 --dst-ip 192.168.1.20 \
--vm-interface vnet0 --phy-interface eth0 --direction tx"
)]
struct Args {
    /// Source IP (for tx: the VM's address)
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    src_ip: Option<Ipv4Addr>,
    /// Destination IP
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    dst_ip: Option<Ipv4Addr>,
    /// The VM's host-side tap (vnetN)
    #[arg(long, value_name = "IF")]
    vm_interface: String,
    /// Physical NIC(s): IF or IF1,IF2 (bond members)
    #[arg(long, value_name = "IF[,IF]")]
    phy_interface: String,
    /// tx = the VM transmits (tap -> NIC); rx = the VM receives (NIC -> tap)
    #[arg(long, value_enum)]
    direction: Direction,
    /// Protocol
    #[arg(long, value_enum, default_value_t = Protocol::All)]
    protocol: Protocol,
    /// TCP/UDP source port
    #[arg(long, value_name = "N", value_parser = parse_port, allow_hyphen_values = true)]
    src_port: Option<u16>,
    /// TCP/UDP destination port
    #[arg(long, value_name = "N", value_parser = parse_port, allow_hyphen_values = true)]
    dst_port: Option<u16>,
    /// Report only packets whose first->last stage total is at least this (ms)
    #[arg(long, value_name = "MS", default_value = "0", value_parser = parse_ms, allow_hyphen_values = true)]
    latency_ms: f64,
    /// Print the kernel stack of every stage
    #[arg(long)]
    kernel_stacks: bool,
    /// Every SECS seconds print per-segment statistics (0 = off)
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_secs)]
    summary_interval: u64,
    #[command(flatten)]
    common: CommonArgs,
}

const fn fk(f: &'static str, k: &'static str, func: &'static str) -> [Candidate; 2] {
    [
        Candidate::new(Kind::Fentry, f, func),
        Candidate::new(Kind::Kprobe, k, func),
    ]
}
const fn hp(name: &'static str, required: bool, c: &'static [Candidate]) -> HookPoint {
    HookPoint {
        name,
        required,
        candidates: c,
    }
}

const C_NETIF: &[Candidate] = &[Candidate::new(
    Kind::TpBtf,
    "tp_netif_rcv",
    "netif_receive_skb",
)];
const C_FRAME: [Candidate; 2] = fk(
    "fentry_netdev_frame_hook",
    "kprobe_netdev_frame_hook",
    "netdev_frame_hook",
);
const C_DP: [Candidate; 2] = fk(
    "fentry_ovs_dp_process_packet",
    "kprobe_ovs_dp_process_packet",
    "ovs_dp_process_packet",
);
const C_UPCALL: &[Candidate] = &[
    Candidate::new(Kind::Fentry, "fentry_ovs_dp_upcall", "ovs_dp_upcall"),
    Candidate::new(Kind::Kprobe, "kprobe_ovs_dp_upcall", "ovs_dp_upcall"),
    Candidate::new(Kind::TpBtf, "tp_ovs_dp_upcall", "ovs_dp_upcall"),
];
const C_KEYEXT: [Candidate; 2] = fk(
    "fentry_ovs_flow_key_extract_userspace",
    "kprobe_ovs_flow_key_extract_userspace",
    "ovs_flow_key_extract_userspace",
);
const C_VPORT: &[Candidate] = &[
    Candidate::new(Kind::Fentry, "fentry_ovs_vport_send", "ovs_vport_send"),
    Candidate::new(Kind::Kprobe, "kprobe_ovs_vport_send", "ovs_vport_send"),
    Candidate::new(Kind::TpBtf, "tp_ovs_output", "ovs_do_execute_action")
        .loses("the datapath's OUTPUT action stands for ovs_vport_send"),
];
const C_QUEUE: &[Candidate] = &[Candidate::new(Kind::TpBtf, "tp_dev_queue", "net_dev_queue")];
const C_XMIT_PHY: &[Candidate] = &[Candidate::new(
    Kind::TpBtf,
    "tp_start_xmit_phy",
    "net_dev_start_xmit",
)];
const C_TUN: &[Candidate] = &[
    Candidate::new(Kind::Fentry, "fentry_tun_net_xmit", "tun_net_xmit"),
    Candidate::new(Kind::Kprobe, "kprobe_tun_net_xmit", "tun_net_xmit"),
    Candidate::new(Kind::TpBtf, "tp_start_xmit_vm", "net_dev_start_xmit")
        .loses("net_dev_start_xmit on the tap, just before tun_net_xmit"),
];
const C_CONSUME: &[Candidate] = &[Candidate::new(Kind::TpBtf, "tp_consume_skb", "consume_skb")];
const C_KFREE: &[Candidate] = &[
    Candidate::new(Kind::TpBtf, "tp_btf_kfree_skb_reason", "kfree_skb").need(Need::ArgsAtLeast(3)),
    Candidate::new(Kind::TpBtf, "tp_btf_kfree_skb", "kfree_skb")
        .need(Need::ArgsBelow(3))
        .loses("no drop reason"),
];

static HOOKS_TX: &[HookPoint] = &[
    hp("netif_receive_skb", true, C_NETIF),
    hp("netdev_frame_hook", false, &C_FRAME),
    hp("ovs_dp_process_packet", false, &C_DP),
    hp("ovs_dp_upcall", false, C_UPCALL),
    hp("ovs_flow_key_extract_userspace", false, &C_KEYEXT),
    hp("ovs_vport_send", false, C_VPORT),
    hp("net_dev_queue", true, C_QUEUE),
    hp("net_dev_start_xmit", true, C_XMIT_PHY),
];

static HOOKS_RX: &[HookPoint] = &[
    hp("netif_receive_skb", true, C_NETIF),
    hp("netdev_frame_hook", false, &C_FRAME),
    hp("ovs_dp_process_packet", false, &C_DP),
    hp("ovs_dp_upcall", false, C_UPCALL),
    hp("ovs_flow_key_extract_userspace", false, &C_KEYEXT),
    hp("ovs_vport_send", false, C_VPORT),
    hp("tun_net_xmit", true, C_TUN),
    hp("consume_skb", true, C_CONSUME),
    hp("kfree_skb", false, C_KFREE),
];

static STAGES_TX: [StageDef; 8] = [
    StageDef::new(0, "VNET_RX", "netif_receive_skb"),
    StageDef::new(1, "OVS_FRAME_HOOK", "netdev_frame_hook"),
    StageDef::new(2, "OVS_DP_PROCESS", "ovs_dp_process_packet"),
    StageDef::new(3, "OVS_UPCALL", "ovs_dp_upcall"),
    StageDef::new(4, "OVS_KEYEXT_USERSPACE", "ovs_flow_key_extract_userspace"),
    StageDef::new(5, "OVS_VPORT_SEND", "ovs_vport_send").tp_label("ovs_do_execute_action OUTPUT"),
    StageDef::new(6, "PHY_QUEUE", "net_dev_queue"),
    StageDef::new(7, "PHY_XMIT", "net_dev_start_xmit"),
];

static STAGES_RX: [StageDef; 9] = [
    StageDef::new(0, "PHY_RX", "netif_receive_skb"),
    StageDef::new(1, "OVS_FRAME_HOOK", "netdev_frame_hook"),
    StageDef::new(2, "OVS_DP_PROCESS", "ovs_dp_process_packet"),
    StageDef::new(3, "OVS_UPCALL", "ovs_dp_upcall"),
    StageDef::new(4, "OVS_KEYEXT_USERSPACE", "ovs_flow_key_extract_userspace"),
    StageDef::new(5, "OVS_VPORT_SEND", "ovs_vport_send").tp_label("ovs_do_execute_action OUTPUT"),
    StageDef::new(6, "VNET_XMIT", "tun_net_xmit").tp_label("net_dev_start_xmit on the tap"),
    StageDef::new(7, "VNET_CONSUMED", "consume_skb"),
    StageDef::new(8, "VNET_DROPPED", "kfree_skb"),
];

const MAX_AGE_NS: u64 = 5_000_000_000;

struct State {
    out: Output,
    clock: Clock,
    dir: Direction,
    stages: Stages,
    vm_if: String,
    phy_if: String,
    threshold_ns: u64,
    stacks: bool,
    ksyms: Kallsyms,
    reasons: DropReasons,
    lat: Latencies,
    check: DeltaCheck,
    printed: u64,
    completed: u64,
    dropped: u64,
}

fn proto_name(p: u8) -> &'static str {
    match p {
        1 => "ICMP",
        6 => "TCP",
        17 => "UDP",
        _ => "?",
    }
}

impl State {
    fn name(&self, id: u8) -> &'static str {
        self.stages.get(id).map(|s| s.name).unwrap_or("?")
    }

    fn on_event(&mut self, obj: &Object, data: &[u8]) {
        let Some(Record::Flow(e)) = stages::decode(data) else {
            return;
        };
        let e: &StageEvent = &e;
        let f = &e.flow;
        let k = &e.key;
        self.completed += 1;
        let order: Vec<u8> = (0..=8).collect();
        let last = if f.has(8) { 8 } else { 7 };
        let path: Vec<u8> = order
            .iter()
            .copied()
            .filter(|&s| s != 8 || last == 8)
            .filter(|&s| s != 7 || last == 7)
            .collect();
        let segs = segments(f, &path, MAX_AGE_NS);
        let first = f.present(&path).first().copied().unwrap_or(0);
        let Some(total) = stages::delta(f, first, last, MAX_AGE_NS) else {
            return;
        };
        for s in &segs {
            self.check.count(s.delta);
        }
        self.check.count(total);
        let dropped = if f.has(8) {
            self.dropped += 1;
            let code = obj
                .maps()
                .find(|m| m.name().to_string_lossy() == "drop_reason")
                .and_then(|m| {
                    // SAFETY: POD key bytes.
                    let kb = unsafe { plain::as_bytes(k) };
                    let v = m.lookup(kb, MapFlags::ANY).ok().flatten();
                    let _ = m.delete(kb);
                    v
                })
                .map(|v| u32::from_ne_bytes(v[..4].try_into().unwrap()));
            Some(match code {
                Some(0xffff_ffff) | None => "DROPPED".to_string(),
                Some(c) => self.reasons.name(c),
            })
        } else {
            None
        };
        if let Some(ns) = total.ns() {
            if ns < self.threshold_ns {
                return;
            }
            self.lat.record();
            for s in &segs {
                if let Some(d) = s.delta.ns() {
                    self.lat.add(
                        s.from,
                        s.to,
                        &format!(
                            "[{}->{}] {} -> {}",
                            s.from,
                            s.to,
                            self.name(s.from),
                            self.name(s.to)
                        ),
                        d,
                    );
                }
            }
            self.lat.add(first, TOTAL, "total", ns);
        } else if self.threshold_ns > 0 {
            return;
        }
        self.printed += 1;
        let upcall = f.has(3);
        let dir = if self.dir == Direction::Tx {
            "tx"
        } else {
            "rx"
        };
        let t = f.ts[last as usize];
        let (src, dst) = (k.src(), k.dst());
        let c0 = &f.ctx[0];
        let kstacks: Vec<(u8, Vec<String>)> = if self.stacks {
            let m = obj
                .maps()
                .find(|m| m.name().to_string_lossy() == "stage_stacks");
            path.iter()
                .filter(|&&s| f.has(s))
                .map(|&s| {
                    let frames = m
                        .as_ref()
                        .and_then(|m| read_stack(m as &dyn MapCore, f.kstack[s as usize]).ok())
                        .map(|a| self.ksyms.format_stack(&a))
                        .unwrap_or_default();
                    (s, frames)
                })
                .collect()
        } else {
            Vec::new()
        };
        if self.out.json() {
            let mut st = serde_json::Map::new();
            for &s in &path {
                if let Some(ts) = f.ts(s) {
                    st.insert(self.name(s).to_string(), json!(ts));
                }
            }
            let mut segm = serde_json::Map::new();
            for s in &segs {
                segm.insert(s.key(), s.delta.json_us());
            }
            let mut v = json!({"type": "vm_latency", "time": self.clock.datetime_ms(t), "ts_ns": t,
                "direction": dir, "proto": proto_name(k.proto), "src": src.to_string(), "dst": dst.to_string(),
                "vm_if": self.vm_if, "phy_if": self.phy_if, "stages": st, "segments_us": segm,
                "total_us": total.json_us(), "upcall": upcall, "dropped": dropped,
                "first": {"pid": c0.pid, "comm": c0.comm(), "ifname": c0.ifname()},
                "last": f.ctx[1].to_json()});
            match k.proto {
                1 => {
                    v["icmp_id"] = json!(k.sport);
                    v["icmp_seq"] = json!(k.seq);
                    v["icmp_type"] = json!(k.kind);
                }
                6 => {
                    v["sport"] = json!(k.sport);
                    v["dport"] = json!(k.dport);
                    v["tcp_seq"] = json!(k.seq);
                    v["len"] = json!(k.len);
                }
                _ => {
                    v["sport"] = json!(k.sport);
                    v["dport"] = json!(k.dport);
                    v["ip_id"] = json!(k.ip_id);
                }
            }
            if self.stacks {
                let m: serde_json::Map<String, Value> = kstacks
                    .iter()
                    .map(|(s, fr)| (s.to_string(), json!(fr)))
                    .collect();
                v["stacks"] = Value::Object(m);
            }
            self.out.event(&v);
            return;
        }
        let head = if self.dir == Direction::Tx {
            "TX: VM -> wire"
        } else {
            "RX: wire -> VM"
        };
        let mut s = format!(
            "=== VM Network Latency Trace: {} ({head}) ===\n",
            self.clock.datetime_ms(t)
        );
        s.push_str(&format!("Flow: {src} -> {dst} ({})\n", proto_name(k.proto)));
        match k.proto {
            1 => s.push_str(&format!(
                "ICMP: {src} -> {dst} (type={}, id={}, seq={})\n",
                k.kind, k.sport, k.seq
            )),
            6 => s.push_str(&format!(
                "TCP: {src}:{} -> {dst}:{} (seq={}, len={})\n",
                k.sport, k.dport, k.seq, k.len
            )),
            _ => s.push_str(&format!(
                "UDP: {src}:{} -> {dst}:{} (ip_id={})\n",
                k.sport, k.dport, k.ip_id
            )),
        }
        if self.dir == Direction::Tx {
            s.push_str(&format!(
                "VM Interface: {} -> Physical Interface: {}\n",
                self.vm_if,
                f.ctx[1].ifname()
            ));
        } else {
            s.push_str(&format!(
                "Physical Interface: {} -> VM Interface: {}\n",
                c0.ifname(),
                self.vm_if
            ));
        }
        s.push_str(&format!(
            "First stage context: PID={} COMM={}\n",
            c0.pid,
            c0.comm()
        ));
        if self.dir == Direction::Rx && f.ctx[1].is_set() {
            s.push_str(&format!(
                "Taken from the tap by: PID={} COMM={}\n",
                f.ctx[1].pid,
                f.ctx[1].comm()
            ));
        }
        if upcall {
            s.push_str("(Path: Flow Miss / Upcall)\n");
        }
        s.push_str("Latencies (us):\n");
        for seg in &segs {
            let mut label = format!(
                "[{}->{}] {} -> {}",
                seg.from,
                seg.to,
                self.name(seg.from),
                self.name(seg.to)
            );
            if seg.from == 2 && seg.to == 5 {
                label.push_str(" (OVS No Upcall)");
            }
            s.push_str(&format!("  {label:<52}: {} us\n", seg.delta.fmt_us()));
        }
        let word = if self.dir == Direction::Tx {
            "TX"
        } else {
            "RX"
        };
        s.push_str(&format!("  Total {word} Latency: {} us\n", total.fmt_us()));
        if let Some(d) = &dropped {
            s.push_str(&format!("  Dropped at the tap: {d}\n"));
        }
        if self.stacks {
            s.push_str("Kernel Stack Traces:\n");
            for (st, fr) in &kstacks {
                s.push_str(&format!("  Stage {st} ({}):\n", self.name(*st)));
                for x in fr {
                    s.push_str(&format!("    {x}\n"));
                }
            }
        }
        s.push_str(&"=".repeat(80));
        self.out.line(&s);
    }

    fn interval(&mut self) {
        let Some((n, text, js)) = self.lat.take_interval() else {
            return;
        };
        if self.out.json() {
            self.out
                .event(&json!({"type": "interval", "records": n, "segments": js}));
        } else {
            let mut rows = Vec::new();
            if let Some(m) = js.as_object() {
                for (k, v) in m {
                    rows.push(format!(
                        "  {k:<8} count {:>6} avg {:>10} p50 {:>10} p99 {:>10} max {:>10}",
                        v["count"], v["avg_us"], v["p50_us"], v["p99_us"], v["max_us"]
                    ));
                }
            }
            let total_hist = text
                .split("total (")
                .nth(1)
                .map(|t| format!("total ({t}"))
                .unwrap_or_default();
            self.out.line(&format!(
                "--- {} interval: {n} packets (us) ---\n{}\n{}",
                shared::time::now_datetime(),
                rows.join("\n"),
                total_hist.trim_end()
            ));
        }
    }
}

fn main() {
    let a: Args = shared::cli::parse();
    // ---- validation (exit 2) ----
    let vm_idx = shared::vmhost::ifindex_or_err(&a.vm_interface)
        .unwrap_or_else(|e| usage_error(format!("--vm-interface: {e}")));
    let is_tun = shared::vmhost::is_tun(&a.vm_interface);
    if !is_tun && a.direction == Direction::Rx {
        usage_error(format!(
            "--vm-interface {} is not a tun/tap device: rx stages VNET_XMIT/VNET_CONSUMED need one",
            a.vm_interface
        ));
    }
    let phys: Vec<String> = a
        .phy_interface
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    if phys.is_empty() || phys.len() > 2 || phys.iter().any(|p| p.is_empty()) {
        usage_error("--phy-interface: one interface or two (bond members) separated by a comma");
    }
    let phy_devs: Vec<StageDev> = phys
        .iter()
        .map(|p| {
            let i = shared::vmhost::ifindex_or_err(p)
                .unwrap_or_else(|e| usage_error(format!("--phy-interface: {e}")));
            StageDev::new(i, p)
        })
        .collect();
    if matches!(a.protocol, Protocol::Icmp) && (a.src_port.is_some() || a.dst_port.is_some()) {
        usage_error("--src-port/--dst-port need --protocol tcp, udp or all");
    }

    let mut out = Output::new(a.common.json, None);
    let mut session = Session::start(a.common.duration, a.common.verbose);
    let hooks = if a.direction == Direction::Tx {
        HOOKS_TX
    } else {
        HOOKS_RX
    };
    let (kernel, plan) = bpf::plan(&a.common, hooks);
    let reasons = DropReasons::load(&kernel.btf);
    drop(kernel);
    let defs: &[StageDef] = if a.direction == Direction::Tx {
        &STAGES_TX
    } else {
        &STAGES_RX
    };
    let stages_r = Stages::resolve(&plan, defs);

    let mut open_object = MaybeUninit::uninit();
    let mut open = VmLatencySkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    let all_bits: u32 = if a.direction == Direction::Tx {
        0xff
    } else {
        0x1ff
    };
    let tracker = if a.direction == Direction::Tx {
        TrackerConfig {
            create: 1,
            final_: 1 << 7,
            need: 1 | (1 << 7),
            ctx2: 1 << 7,
            stacks: 0,
            max_age_ns: MAX_AGE_NS,
            emit_hits: false,
        }
    } else {
        TrackerConfig {
            create: 1,
            final_: (1 << 7) | (1 << 8),
            need: 1,
            ctx2: (1 << 7) | (1 << 8),
            stacks: 0,
            max_age_ns: MAX_AGE_NS,
            emit_hits: false,
        }
    };
    let tracker = TrackerConfig {
        stacks: if a.kernel_stacks { all_bits } else { 0 },
        ..tracker
    };
    {
        let o = open.open_object_mut();
        let die = |e: String| -> ! { shared::die(shared::EXIT_RUNTIME, e) };
        tracker.apply(o).unwrap_or_else(|e| die(e));
        if !a.kernel_stacks {
            shared::percpu::set_max_entries(o, "stage_stacks", 1).unwrap_or_else(|e| die(e));
        }
        let set = |o: &mut libbpf_rs::OpenObject, n: &str, b: &[u8]| {
            bpf::set_rodata(o, n, b).unwrap_or_else(|e| die(e))
        };
        set(o, "DIR", &[u8::from(a.direction == Direction::Rx)]);
        set(
            o,
            "VM_DEV",
            StageDev::new(vm_idx, &a.vm_interface).as_bytes(),
        );
        let mut phy2 = Vec::new();
        for i in 0..2 {
            phy2.extend_from_slice(phy_devs.get(i).copied().unwrap_or_default().as_bytes());
        }
        set(o, "PHY", &phy2);
        set(
            o,
            "F_SADDR",
            &a.src_ip.map(|i| i.octets()).unwrap_or([0; 4]),
        );
        set(
            o,
            "F_DADDR",
            &a.dst_ip.map(|i| i.octets()).unwrap_or([0; 4]),
        );
        set(o, "F_SPORT", &a.src_port.unwrap_or(0).to_ne_bytes());
        set(o, "F_DPORT", &a.dst_port.unwrap_or(0).to_ne_bytes());
        set(o, "F_PROTO", &[a.protocol.number()]);
    }
    let mut skel = bpf::load(open);
    // Optional hooks that are missing are shown as N/A stages below.
    let _links = match plan.attach_detailed(skel.object_mut()) {
        Ok((l, _missed)) => l,
        Err(e) => shared::die(shared::EXIT_RUNTIME, e),
    };

    // ---- banner ----
    out.banner("=== VM Network Latency Tracer ===");
    out.banner(&format!(
        "Protocol: {}  Direction: {}",
        a.protocol.name().to_uppercase(),
        if a.direction == Direction::Tx {
            "TX (VM -> wire)"
        } else {
            "RX (wire -> VM)"
        }
    ));
    let any = |x: Option<Ipv4Addr>| x.map(|i| i.to_string()).unwrap_or_else(|| "any".into());
    let anyp = |x: Option<u16>| x.map(|i| i.to_string()).unwrap_or_else(|| "any".into());
    out.banner(&format!(
        "Filters: src {} dst {} sport {} dport {}",
        any(a.src_ip),
        any(a.dst_ip),
        anyp(a.src_port),
        anyp(a.dst_port)
    ));
    out.banner(&format!(
        "VM interface: {} (ifindex {vm_idx})",
        a.vm_interface
    ));
    out.banner(&format!(
        "Physical interfaces: {}",
        phy_devs
            .iter()
            .zip(&phys)
            .map(|(d, n)| format!("{n} (ifindex {})", d.ifindex))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if !is_tun {
        out.banner(&format!(
            "Warning: {} is not a tun/tap device",
            a.vm_interface
        ));
    }
    if a.latency_ms > 0.0 {
        out.banner(&format!("Latency threshold: {} ms", a.latency_ms));
    }
    out.banner(&format!("hook mode: {}", stages_r.hook_mode()));
    for l in stages_r.na_lines() {
        out.banner(&l);
    }
    if out.json() {
        let mut sj = stages_r.start_json("vm_latency");
        sj["direction"] = json!(if a.direction == Direction::Tx {
            "tx"
        } else {
            "rx"
        });
        out.event(&sj);
    }
    out.banner("Tracing VM network latency... Hit Ctrl-C to end.");

    let state = RefCell::new(State {
        out,
        clock: session.clock,
        dir: a.direction,
        stages: stages_r,
        vm_if: a.vm_interface.clone(),
        phy_if: phys.join(","),
        threshold_ns: (a.latency_ms * 1e6) as u64,
        stacks: a.kernel_stacks,
        ksyms: Kallsyms::new(),
        reasons,
        lat: Latencies::new(),
        check: DeltaCheck::default(),
        printed: 0,
        completed: 0,
        dropped: 0,
    });
    let obj = skel.object();
    let drain = Drain::open(obj, channel, |d| state.borrow_mut().on_event(obj, d))
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    session.attached(&plan.summary());
    let mut expired = 0;
    let mut last_sweep = Instant::now();
    let mut last_iv = Instant::now();
    let iv = a.summary_interval;
    let res = session.run(
        |t| drain.poll(t),
        || {
            if last_sweep.elapsed() >= Duration::from_secs(1) {
                last_sweep = Instant::now();
                expired += stages::sweep(obj, MAX_AGE_NS);
            }
            if iv > 0 && last_iv.elapsed() >= Duration::from_secs(iv) {
                last_iv = Instant::now();
                state.borrow_mut().interval();
            }
        },
    );
    if let Err(e) = res {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    drain.flush();
    let lost = drain.lost(obj);
    let c = Counters::read(obj, expired);
    let mut st = state.borrow_mut();
    let started = c.get("created");
    let incomplete = c.aged_out() + c.get("incomplete_at_end") + c.get("replaced");
    if st.out.json() {
        let (p, comp, dr, sk) = (st.printed, st.completed, st.dropped, st.check.clock_skew);
        let segs = st.lat.total_json();
        st.out.event(&json!({"type": "summary", "started": started, "completed": comp, "reported": p,
            "incomplete": incomplete, "full_ring_drops": dr, "clock_skew": sk, "counters": c.to_json(),
            "segments": segs, "lost_events": lost}));
    } else {
        if st.lat.records > 0 {
            let t = st.lat.table();
            st.out.line(&format!(
                "Per-segment latency over the run (us):\n{}",
                t.trim_end()
            ));
        }
        let (p, comp, dr, sk) = (st.printed, st.completed, st.dropped, st.check.clock_skew);
        st.out.line(&format!(
            "Summary: packets started {started}, completed {comp}, reported {p}, incomplete {incomplete}, dropped at the tap {dr}, clock skew {sk}"
        ));
    }
    eprintln!("Detaching... {} events lost", lost);
    session.verbose_footer();
}
