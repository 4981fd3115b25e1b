//! `ovs-upcall-execute`: how long a packet that misses the OVS kernel flow
//! table waits until ovs-vswitchd sends it back for execution (upcall queue,
//! handler wake-up, OpenFlow translation, flow put, execute).
//!
//! Start: the `openvswitch:ovs_dp_upcall` tracepoint (MISS upcalls only; ACTION
//! upcalls never come back). End: `ovs_flow_key_extract_userspace`, which
//! `OVS_PACKET_CMD_EXECUTE` calls first (fentry, kprobe), or the first datapath
//! action of the returned packet (tracepoint). Packets are matched on a key
//! that includes the ICMP sequence / TCP sequence / IP id, so a packet is never
//! matched with another one of the same flow.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, Object};
use serde_json::json;

use shared::bpf;
use shared::cli::{parse_ipv4, CommonArgs, Protocol};
use shared::events::{percpu_sum_u64, Drain};
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::ksyms::Kallsyms;
use shared::output::Output;
use shared::runner::Session;
use shared::stacks::read_stack;
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/ovs_upcall_execute.skel.rs"));
}
use skel::OvsUpcallExecuteSkelBuilder;

const UPCALL: HookPoint = HookPoint {
    name: "upcall",
    required: true,
    candidates: &[
        Candidate::new(Kind::TpBtf, "tp_btf_ovs_dp_upcall", "ovs_dp_upcall"),
        Candidate::new(Kind::Fentry, "fentry_ovs_dp_upcall", "ovs_dp_upcall"),
        Candidate::new(Kind::Kprobe, "kprobe_ovs_dp_upcall", "ovs_dp_upcall"),
    ],
};

const EXECUTE: HookPoint = HookPoint {
    name: "execute",
    required: true,
    candidates: &[
        Candidate::new(
            Kind::Fentry,
            "fentry_key_extract_userspace",
            "ovs_flow_key_extract_userspace",
        ),
        Candidate::new(
            Kind::Kprobe,
            "kprobe_key_extract_userspace",
            "ovs_flow_key_extract_userspace",
        ),
        Candidate::new(
            Kind::TpBtf,
            "tp_btf_ovs_do_execute_action",
            "ovs_do_execute_action",
        )
        .loses("the end is the first datapath action of the returned packet (a few µs after the hand-back)"),
    ],
};

const RECV: HookPoint = HookPoint {
    name: "handler_recv",
    required: true,
    candidates: &[Candidate::new(
        Kind::Uprobe,
        "uprobe_recvmsg",
        "libc:recvmsg",
    )],
};

static HOOKS: &[HookPoint] = &[UPCALL, EXECUTE];
static HOOKS_SPLIT: &[HookPoint] = &[UPCALL, EXECUTE, RECV];

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct UpKey {
    saddr: [u8; 4],
    daddr: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    proto: u8,
    icmp_type: u8,
    icmp_code: u8,
    pad: u8,
}

/// Mirror of `struct up_event` (src/bpf/ovs_upcall_execute.bpf.c).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct UpEvent {
    ts_upcall: u64,
    ts_exec: u64,
    ts_recv: u64,
    up_stack: i32,
    exec_stack: i32,
    portid: u32,
    in_port: u32,
    up_tid: u32,
    exec_tid: u32,
    up_comm: [u8; 16],
    exec_comm: [u8; 16],
    dev: [u8; 16],
    key: UpKey,
    cmd: u8,
    has_cmd: u8,
    has_key: u8,
    end_hook: u8,
}
const _: () = assert!(std::mem::size_of::<UpEvent>() == 120);
// SAFETY: plain old data.
unsafe impl plain::Plain for UpEvent {}

#[derive(Parser, Debug)]
#[command(
    about = "Upcall round-trip time through ovs-vswitchd: from a datapath miss to the packet's execution"
)]
pub struct Args {
    /// Source IPv4 address of the packet (default: any)
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub src_ip: Option<Ipv4Addr>,
    /// Destination IPv4 address of the packet (default: any)
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub dst_ip: Option<Ipv4Addr>,
    /// Packets to time: ICMP keyed by (src, dst, type, id, seq), TCP by 5-tuple and sequence, UDP by 5-tuple and IP id
    #[arg(long, value_enum, default_value_t = Protocol::Icmp)]
    pub protocol: Protocol,
    /// Print the kernel stacks of both ends
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub stack: bool,
    /// Split the time at the moment a vswitchd handler thread reads the upcall (uprobe on libc recvmsg of ovs-vswitchd)
    #[arg(long)]
    pub split: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Latency summary: the later `ovs_upcall_latency_summary` buckets (log2 of µs).
struct Stats {
    lat_ns: Vec<u64>,
    hist: Vec<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            lat_ns: Vec::new(),
            hist: vec![0; 64],
        }
    }
}

impl Stats {
    fn add(&mut self, ns: u64) {
        self.lat_ns.push(ns);
        let us = ns / 1000;
        let b = (64 - us.leading_zeros()) as usize;
        self.hist[b.min(63)] += 1;
    }

    /// (lo, hi) in µs of bucket b: 0 -> 0..1, b -> 2^(b-1)..2^b-1.
    fn range(b: usize) -> (u64, u64) {
        if b == 0 {
            (0, 1)
        } else {
            (1u64 << (b - 1), (1u64 << b) - 1)
        }
    }

    fn label(b: usize) -> String {
        let (lo, hi) = Self::range(b);
        if hi < 1000 {
            format!("{lo}-{hi}us")
        } else if hi < 1_000_000 {
            format!("{:.1}-{:.1}ms", lo as f64 / 1e3, hi as f64 / 1e3)
        } else {
            format!("{:.1}-{:.1}s", lo as f64 / 1e6, hi as f64 / 1e6)
        }
    }

    fn pct(sorted: &[u64], p: f64) -> u64 {
        if sorted.is_empty() {
            return 0;
        }
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    /// (count, min, avg, p50, p99, max) in ns.
    fn numbers(&self) -> (usize, u64, u64, u64, u64, u64) {
        let mut s = self.lat_ns.clone();
        s.sort_unstable();
        let n = s.len();
        if n == 0 {
            return (0, 0, 0, 0, 0, 0);
        }
        let avg = (s.iter().map(|&x| x as u128).sum::<u128>() / n as u128) as u64;
        (
            n,
            s[0],
            avg,
            Self::pct(&s, 0.50),
            Self::pct(&s, 0.99),
            s[n - 1],
        )
    }

    fn render(&self) -> String {
        let (n, min, avg, p50, p99, max) = self.numbers();
        let ms = |ns: u64| format!("{:.3}", ns as f64 / 1e6);
        let mut s = String::from("=== Upcall -> execute latency summary ===\n");
        s.push_str(&format!("Count: {n}\n"));
        if n == 0 {
            return s;
        }
        s.push_str(&format!(
            "Latency (ms): min={} avg={} p50={} p99={} max={}\n",
            ms(min),
            ms(avg),
            ms(p50),
            ms(p99),
            ms(max)
        ));
        let first = self.hist.iter().position(|&c| c > 0).unwrap_or(0);
        let last = self.hist.iter().rposition(|&c| c > 0).unwrap_or(0);
        let top = *self.hist.iter().max().unwrap_or(&1);
        s.push_str("Latency histogram:\n");
        for b in first..=last {
            let c = self.hist[b];
            let stars = (c * 40).div_ceil(top.max(1)) as usize;
            s.push_str(&format!(
                "    {:<15}: {:>6} |{:<40}|\n",
                Self::label(b),
                c,
                "*".repeat(stars.min(40))
            ));
        }
        s
    }

    fn json(&self) -> serde_json::Value {
        let (n, min, avg, p50, p99, max) = self.numbers();
        let rows: Vec<serde_json::Value> = self
            .hist
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(b, &c)| {
                let (lo, hi) = Self::range(b);
                json!({"lo": lo, "hi": hi, "count": c})
            })
            .collect();
        json!({"type": "summary", "count": n, "min_ns": min, "avg_ns": avg, "p50_ns": p50,
               "p99_ns": p99, "max_ns": max, "hist_us": rows})
    }
}

fn icmp_type_name(t: u8) -> String {
    match t {
        8 => "Echo Request".into(),
        0 => "Echo Reply".into(),
        n => n.to_string(),
    }
}

struct State {
    out: Output,
    clock: Clock,
    ksyms: Kallsyms,
    stats: Stats,
    end_name: &'static str,
}

impl State {
    fn stack(&mut self, obj: &Object, id: i32) -> Result<Vec<String>, String> {
        let map = obj
            .maps()
            .find(|m| m.name().to_string_lossy() == "stacks")
            .ok_or("no stack map")?;
        read_stack(&map as &dyn MapCore, id).map(|a| self.ksyms.format_stack(&a))
    }

    fn on_event(&mut self, obj: &Object, data: &[u8], want_stack: bool) {
        let mut e = UpEvent::default();
        if plain::copy_from_bytes(&mut e, data).is_err() {
            return;
        }
        let lat = e.ts_exec.saturating_sub(e.ts_upcall);
        self.stats.add(lat);
        let k = e.key;
        let saddr = Ipv4Addr::from(k.saddr);
        let daddr = Ipv4Addr::from(k.daddr);
        let (ustack, xstack) = if want_stack {
            (
                Some(self.stack(obj, e.up_stack)),
                Some(self.stack(obj, e.exec_stack)),
            )
        } else {
            (None, None)
        };
        let split = (e.ts_recv != 0).then(|| {
            (
                e.ts_recv.saturating_sub(e.ts_upcall),
                e.ts_exec.saturating_sub(e.ts_recv),
            )
        });
        if self.out.json() {
            let mut v = json!({
                "ts_ns": e.ts_exec,
                "time": self.clock.rfc3339(e.ts_exec),
                "saddr": saddr.to_string(),
                "daddr": daddr.to_string(),
                "proto": k.proto,
                "dev": shared::fmt::cstr(&e.dev),
                "in_port": if e.has_key != 0 { json!(e.in_port) } else { json!(null) },
                "upcall_portid": if e.has_cmd != 0 { json!(e.portid) } else { json!(null) },
                "upcall_comm": shared::fmt::cstr(&e.up_comm),
                "execute_comm": shared::fmt::cstr(&e.exec_comm),
                "execute_tid": e.exec_tid,
                "ts_upcall_ns": e.ts_upcall,
                "ts_execute_ns": e.ts_exec,
                "latency_ns": lat,
                "end_hook": self.end_name,
                "split": match split {
                    Some((q, h)) => json!({"queue_ns": q, "handler_ns": h}),
                    None => json!(null),
                },
            });
            match k.proto {
                1 => {
                    v["icmp_type"] = json!(k.icmp_type);
                    v["icmp_code"] = json!(k.icmp_code);
                    v["icmp_id"] = json!(k.sport);
                    v["icmp_seq"] = json!(k.seq);
                }
                6 => {
                    v["sport"] = json!(k.sport);
                    v["dport"] = json!(k.dport);
                    v["tcp_seq"] = json!(k.seq);
                }
                _ => {
                    v["sport"] = json!(k.sport);
                    v["dport"] = json!(k.dport);
                    v["ip_id"] = json!(k.seq);
                }
            }
            if let Some(s) = &ustack {
                v["upcall_stack"] = json!(s.clone().unwrap_or_default());
            }
            if let Some(s) = &xstack {
                v["execute_stack"] = json!(s.clone().unwrap_or_default());
            }
            self.out.event(&v);
            return;
        }
        let mut s = format!("Time: {}\n", self.clock.hms(e.ts_exec));
        s.push_str(&format!("  Src IP: {saddr}, Dst IP: {daddr}\n"));
        match k.proto {
            1 => {
                s.push_str(&format!(
                    "  IP Proto: 1, ICMP Type: {}\n",
                    icmp_type_name(k.icmp_type)
                ));
                s.push_str(&format!("  ICMP ID: {}, ICMP Seq: {}\n", k.sport, k.seq));
            }
            6 => {
                s.push_str("  IP Proto: 6\n");
                s.push_str(&format!(
                    "  Ports: {} -> {}, SEQ: {}\n",
                    k.sport, k.dport, k.seq
                ));
            }
            p => {
                s.push_str(&format!("  IP Proto: {p}\n"));
                s.push_str(&format!(
                    "  Ports: {} -> {}, IP ID: {}\n",
                    k.sport, k.dport, k.seq
                ));
            }
        }
        let port = if e.has_key != 0 {
            e.in_port.to_string()
        } else {
            "N/A".into()
        };
        let pid = if e.has_cmd != 0 {
            e.portid.to_string()
        } else {
            "N/A".into()
        };
        s.push_str(&format!(
            "  Input: {} (datapath port {}), upcall netlink portid {}, executed by {} ({})\n",
            shared::fmt::cstr(&e.dev),
            port,
            pid,
            shared::fmt::cstr(&e.exec_comm),
            e.exec_tid
        ));
        let end_label = if e.end_hook == 1 {
            "key_extract"
        } else {
            "execute"
        };
        match split {
            Some(_) => s.push_str(&format!(
                "  Timestamps (ns): upcall={}, handler_recv={}, {}={}\n",
                e.ts_upcall, e.ts_recv, end_label, e.ts_exec
            )),
            None => s.push_str(&format!(
                "  Timestamps (ns): upcall={}, {}={}\n",
                e.ts_upcall, end_label, e.ts_exec
            )),
        }
        s.push_str(&format!(
            "  OVS Upcall Processing Time: {:.3} ms\n",
            lat as f64 / 1e6
        ));
        if let Some((q, h)) = split {
            s.push_str(&format!(
                "    queue (upcall -> handler recvmsg): {:.3} ms, handler (recvmsg -> execute): {:.3} ms\n",
                q as f64 / 1e6,
                h as f64 / 1e6
            ));
        }
        let mut put_stack = |title: &str, st: &Option<Result<Vec<String>, String>>, id: i32| {
            let Some(st) = st else { return };
            s.push_str(&format!("\n  {title} kernel stack:\n"));
            match st {
                Ok(frames) => frames
                    .iter()
                    .for_each(|f| s.push_str(&format!("    {f}\n"))),
                Err(_) if id < 0 => s.push_str(&format!("    <Failed to capture: error {id}>\n")),
                Err(_) => s.push_str(&format!("    <Stack ID {id} not found in table>\n")),
            }
        };
        put_stack("ovs_dp_upcall", &ustack, e.up_stack);
        put_stack(self.end_name, &xstack, e.exec_stack);
        self.out.line(&s);
    }
}

pub fn run() {
    let args: Args = shared::cli::parse();
    let mut out = Output::stdout(args.common.json);
    let mut session = Session::start(args.common.duration, args.common.verbose);
    if !args.common.explain {
        shared::ovs::require_datapath();
    }
    let hooks = if args.split { HOOKS_SPLIT } else { HOOKS };
    let (_kernel, mut plan) = bpf::plan(&args.common, hooks);

    // --split: the handler threads' recvmsg in ovs-vswitchd (libc; no vswitchd symbols needed).
    let mut split_target = None;
    let mut packet_family = 0u16;
    if args.split {
        let pid = shared::ovs::vswitchd_pid().unwrap_or_else(|| {
            shared::die(shared::EXIT_RUNTIME, "--split: ovs-vswitchd is not running")
        });
        let t = shared::uprobe::resolve(None, Some(pid), "recvmsg", &[])
            .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, format!("--split: {e}")));
        packet_family = shared::ovs::genl_family_id("ovs_packet")
            .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, format!("--split: {e}")));
        plan.set_target("handler_recv", format!("{} (pid {pid})", t.describe()));
        split_target = Some((pid, t));
    }

    let mut open_object = MaybeUninit::uninit();
    let mut open = OvsUpcallExecuteSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    if args.split {
        // The return half of the recvmsg probe loads with the entry half.
        for mut p in open.open_object_mut().progs_mut() {
            if p.name().to_string_lossy() == "uretprobe_recvmsg" {
                p.set_autoload(true);
            }
        }
    }
    let cfg = |o: &mut libbpf_rs::OpenObject, name: &str, b: &[u8]| {
        bpf::set_rodata(o, name, b).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e))
    };
    let addr = |a: Option<Ipv4Addr>| a.map(|a| a.octets()).unwrap_or([0; 4]);
    cfg(open.open_object_mut(), "F_SADDR", &addr(args.src_ip));
    cfg(open.open_object_mut(), "F_DADDR", &addr(args.dst_ip));
    cfg(open.open_object_mut(), "F_PROTO", &[args.protocol.number()]);
    cfg(
        open.open_object_mut(),
        "want_stack",
        &[u8::from(args.stack)],
    );
    if let Some((pid, _)) = &split_target {
        cfg(open.open_object_mut(), "vswitchd_tgid", &pid.to_ne_bytes());
        cfg(
            open.open_object_mut(),
            "packet_family",
            &packet_family.to_ne_bytes(),
        );
    }
    let mut skel = bpf::load(open);
    let mut links = bpf::attach(&plan, &mut skel);
    if let Some((pid, t)) = &split_target {
        for (name, ret) in [("uprobe_recvmsg", false), ("uretprobe_recvmsg", true)] {
            let prog = shared::uprobe::prog_mut(skel.object_mut(), name)
                .unwrap_or_else(|| shared::die(shared::EXIT_RUNTIME, format!("no program {name}")));
            links.push(
                shared::uprobe::attach(&prog, ret, Some(*pid), t)
                    .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e)),
            );
        }
    }
    let end_name = match plan.chosen("execute").map(|c| c.kind) {
        Some(Kind::TpBtf) => "ovs_do_execute_action",
        _ => "ovs_flow_key_extract_userspace",
    };

    let none = |a: Option<Ipv4Addr>| a.map(|x| x.to_string()).unwrap_or_else(|| "None".into());
    out.banner("Tracing OVS upcall processing... Hit Ctrl-C to end.");
    out.banner(&format!(
        "Filters: SRC_IP={}, DST_IP={}, PROTOCOL={}",
        none(args.src_ip),
        none(args.dst_ip),
        args.protocol.name()
    ));
    if !shared::ovs::module_btf() {
        out.banner("Note: no BTF for the openvswitch module on this kernel: upcall type, input port and netlink portid are N/A, every upcall is timed.");
    }

    let state = RefCell::new(State {
        out,
        clock: session.clock,
        ksyms: Kallsyms::new(),
        stats: Stats::default(),
        end_name,
    });
    let want_stack = args.stack;
    let obj = skel.object();
    let drain = Drain::open(obj, channel, |d| {
        state.borrow_mut().on_event(obj, d, want_stack)
    })
    .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    session.attached(&plan.summary());
    if let Err(e) = session.run(|t| drain.poll(t), || {}) {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    drain.flush();
    let lost = drain.lost(obj);
    let counter = |i: u32| -> u64 {
        obj.maps()
            .find(|m| m.name().to_string_lossy() == "counters")
            .map(|m| percpu_sum_u64(&m, i))
            .unwrap_or(0)
    };
    let (matched, skipped, done, recv) = (counter(0), counter(1), counter(2), counter(3));
    let mut st = state.borrow_mut();
    if st.out.json() {
        let mut v = st.stats.json();
        v["upcalls"] = json!(matched);
        v["action_upcalls_skipped"] = json!(skipped);
        v["never_executed"] = json!(matched.saturating_sub(done));
        v["lost_events"] = json!(lost);
        if args.split {
            v["handler_reads"] = json!(recv);
        }
        st.out.event(&v);
    } else {
        let mut s = st.stats.render();
        s.push_str(&format!(
            "Upcalls matched: {matched}, executed: {done}, not (yet) executed: {}, ACTION upcalls skipped: {skipped}\n",
            matched.saturating_sub(done)
        ));
        if args.split {
            s.push_str(&format!("Upcalls read by handler threads: {recv}\n"));
        }
        st.out.line(&s);
    }
    eprintln!(
        "Summary: {} upcalls timed, {lost} events lost",
        st.stats.lat_ns.len()
    );
    session.verbose_footer();
}
