//! `vm_pair_latency`, `multi_vm_pair_latency`, `multi_vm_pair_latency_pairid`:
//! how long the host takes to forward one UDP packet from a sending VM's tap
//! (`netif_receive_skb`, stage 0) to the receiving VM's tap
//! (`net_dev_start_xmit`, stage 1). Packets are matched one by one in BPF by
//! the shared stage tracker (key: addresses, ports, IPv4 id; plus MACs or the
//! pair id). One BPF object; the three tools keep the originals' flags.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use serde_json::json;

use shared::bpf;
use shared::cli::{parse_port, usage_error, CommonArgs};
use shared::events::Drain;
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::output::Output;
use shared::runner::Session;
use shared::stages::{self, Counters, Latencies, Record, StageEvent, TrackerConfig};
use shared::time::Clock;
use shared::vmhost::{ifindex_or_err, parse_iface_list, read_pairs, PairLine};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/vm_pair_latency.skel.rs"));
}
use skel::VmPairLatencySkelBuilder;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Variant {
    Single,
    Multi,
    PairId,
}

/// Mirror of `struct dev_info`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct DevInfo {
    pair_id: u32,
    name: [u8; 16],
}
// SAFETY: plain old data.
unsafe impl plain::Plain for DevInfo {}

fn parse_summary(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n as u64),
        _ => Err("must be a whole number >= 0".into()),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "vm_pair_latency",
    about = "Host forwarding latency of each UDP packet from one VM's tap to another's"
)]
struct SingleArgs {
    /// Tap of the VM that sends (netif_receive_skb)
    #[arg(long, value_name = "IF", default_value = "vnet103")]
    send_dev: String,
    /// Tap of the VM that receives (net_dev_start_xmit)
    #[arg(long, value_name = "IF", default_value = "vnet100")]
    recv_dev: String,
    /// UDP port, source or destination
    #[arg(long, value_name = "N", default_value = "62109", value_parser = parse_port, allow_hyphen_values = true)]
    port: u16,
    /// Every SECS seconds print the latency histogram of the interval (0 = off)
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_summary)]
    summary_interval: u64,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Parser, Debug)]
#[command(
    name = "multi_vm_pair_latency",
    about = "Host forwarding latency of UDP packets from any of several sending VMs' taps to any receiving VM's tap",
    after_help = "--send-dev: taps of the VMs that SEND (the host receives from them; netif_receive_skb). \
--recv-dev: taps of the VMs that RECEIVE (net_dev_start_xmit). Lists are comma or space separated. \
--pairs-file lines: `SENDER_TAP RECEIVER_TAP [label]`, or two libvirt UUIDs (taps from `virsh domiflist`)."
)]
struct MultiArgs {
    /// Taps of the sending VMs
    #[arg(long, value_name = "LIST")]
    send_dev: Vec<String>,
    /// Taps of the receiving VMs
    #[arg(long, value_name = "LIST")]
    recv_dev: Vec<String>,
    /// UDP ports, source or destination
    #[arg(long, value_name = "N", num_args = 1.., value_parser = parse_port)]
    ports: Vec<u16>,
    /// Pairs file instead of --send-dev/--recv-dev
    #[arg(long, value_name = "FILE")]
    pairs_file: Option<PathBuf>,
    /// Every SECS seconds print per-pair histograms of the interval (0 = off)
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_summary)]
    summary_interval: u64,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Parser, Debug)]
#[command(
    name = "multi_vm_pair_latency_pairid",
    about = "Per-pair host forwarding latency of UDP packets between VM taps, reported by pair id",
    after_help = "--pairs 'RECEIVER_TAP,SENDER_TAP=ID;...': the receiver comes FIRST (the original's order: its first \
device is hooked at transmit, the second at receive). A packet is matched only within its pair. --pairs-file is the \
unambiguous form: lines `SENDER_TAP RECEIVER_TAP [ID]` (ID defaults to the line number)."
)]
struct PairIdArgs {
    /// RECEIVER_TAP,SENDER_TAP=ID;... (receiver first, as the original)
    #[arg(long, value_name = "STR")]
    pairs: Option<String>,
    /// UDP ports, source or destination
    #[arg(long, value_name = "N", num_args = 1.., value_parser = parse_port)]
    ports: Vec<u16>,
    /// Pairs file: SENDER_TAP RECEIVER_TAP [ID] per line
    #[arg(long, value_name = "FILE")]
    pairs_file: Option<PathBuf>,
    /// Every SECS seconds print per-pair statistics of the interval (0 = off)
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_summary)]
    summary_interval: u64,
    #[command(flatten)]
    common: CommonArgs,
}

struct Config {
    /// (name, ifindex, pair id)
    send: Vec<(String, u32, u32)>,
    recv: Vec<(String, u32, u32)>,
    ports: Vec<u16>,
    summary_interval: u64,
    common: CommonArgs,
}

fn dev(name: &str, pair: u32, hint: bool) -> (String, u32, u32) {
    match ifindex_or_err(name) {
        Ok(i) => (name.to_string(), i, pair),
        Err(e) if hint => usage_error(format!(
            "{e} (the default taps are the original's: pass --send-dev/--recv-dev)"
        )),
        Err(e) => usage_error(e),
    }
}

/// The tap of a libvirt domain: first interface of type bridge in `virsh domiflist`.
fn tap_of(uuid: &str) -> String {
    let out = std::process::Command::new("virsh")
        .args(["domiflist", uuid])
        .output()
        .unwrap_or_else(|e| {
            usage_error(format!("pairs file names VM {uuid}: cannot run virsh: {e}"))
        });
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() >= 2 && f[1] == "bridge")
        .map(|f| f[0].to_string())
        .unwrap_or_else(|| {
            usage_error(format!("VM {uuid}: no bridge interface in virsh domiflist"))
        })
}

/// Pairs file -> (sender, receiver, id) with taps resolved.
fn pairs_from_file(p: &std::path::Path) -> Vec<(String, String, u32)> {
    let lines = read_pairs(p, false).unwrap_or_else(|e| usage_error(e));
    if lines.is_empty() {
        usage_error(format!("{}: no pair in the file", p.display()));
    }
    lines
        .iter()
        .map(|l| match l {
            PairLine::Devs {
                line,
                send,
                recv,
                label,
            } => {
                let id = match label {
                    Some(s) => s.parse::<u32>().unwrap_or(*line as u32),
                    None => *line as u32,
                };
                (send.clone(), recv.clone(), id)
            }
            PairLine::Uuids { line, a, b } => (tap_of(a), tap_of(b), *line as u32),
        })
        .collect()
}

/// `RECV,SEND=ID;...` (receiver first).
pub fn parse_pairs_arg(s: &str) -> Result<Vec<(String, String, u32)>, String> {
    let mut out: Vec<(String, String, u32)> = Vec::new();
    for seg in s.split(';').map(str::trim).filter(|x| !x.is_empty()) {
        let (devs, id) = seg
            .split_once('=')
            .ok_or_else(|| format!("'{seg}': expected RECEIVER_TAP,SENDER_TAP=ID"))?;
        let id: u32 = id.trim().parse().map_err(|_| {
            format!(
                "'{seg}': pair id '{}' is not a number (0-4294967295)",
                id.trim()
            )
        })?;
        let d: Vec<&str> = devs.split(',').map(str::trim).collect();
        if d.len() != 2 || d.iter().any(|x| x.is_empty()) {
            return Err(format!(
                "'{seg}': exactly two taps per pair (RECEIVER_TAP,SENDER_TAP=ID)"
            ));
        }
        for x in &d {
            shared::cli::parse_ifname(x).map_err(|e| format!("'{x}': {e}"))?;
        }
        out.push((d[1].to_string(), d[0].to_string(), id));
    }
    if out.is_empty() {
        return Err("no pair given".into());
    }
    Ok(out)
}

fn check_unique(pairs: &[(String, String, u32)]) {
    let mut seen: Vec<&str> = Vec::new();
    for (s, r, _) in pairs {
        let mine: Vec<&str> = if s == r {
            vec![s.as_str()]
        } else {
            vec![s.as_str(), r.as_str()]
        };
        for d in mine {
            if seen.contains(&d) {
                usage_error(format!("tap '{d}' is in more than one pair"));
            }
            seen.push(d);
        }
    }
}

fn config(v: Variant) -> Config {
    match v {
        Variant::Single => {
            let a: SingleArgs = shared::cli::parse();
            let hint = a.send_dev == "vnet103" || a.recv_dev == "vnet100";
            for d in [&a.send_dev, &a.recv_dev] {
                shared::cli::parse_ifname(d).unwrap_or_else(|e| usage_error(format!("'{d}': {e}")));
            }
            Config {
                send: vec![dev(&a.send_dev, 0, hint)],
                recv: vec![dev(&a.recv_dev, 0, hint)],
                ports: vec![a.port],
                summary_interval: a.summary_interval,
                common: a.common,
            }
        }
        Variant::Multi => {
            let a: MultiArgs = shared::cli::parse();
            let (s, r) = match &a.pairs_file {
                Some(p) => {
                    if !a.send_dev.is_empty() || !a.recv_dev.is_empty() {
                        usage_error("--pairs-file replaces --send-dev/--recv-dev");
                    }
                    let pairs = pairs_from_file(p);
                    let mut s: Vec<String> = Vec::new();
                    let mut r: Vec<String> = Vec::new();
                    for (a, b, _) in pairs {
                        if !s.contains(&a) {
                            s.push(a);
                        }
                        if !r.contains(&b) {
                            r.push(b);
                        }
                    }
                    (s, r)
                }
                None => (
                    parse_iface_list(&a.send_dev)
                        .unwrap_or_else(|e| usage_error(format!("--send-dev: {e}"))),
                    parse_iface_list(&a.recv_dev)
                        .unwrap_or_else(|e| usage_error(format!("--recv-dev: {e}"))),
                ),
            };
            if s.is_empty() || r.is_empty() {
                usage_error("give the sending taps (--send-dev) and the receiving taps (--recv-dev), or --pairs-file");
            }
            Config {
                send: s.iter().map(|n| dev(n, 0, false)).collect(),
                recv: r.iter().map(|n| dev(n, 0, false)).collect(),
                ports: if a.ports.is_empty() {
                    vec![62109]
                } else {
                    a.ports
                },
                summary_interval: a.summary_interval,
                common: a.common,
            }
        }
        Variant::PairId => {
            let a: PairIdArgs = shared::cli::parse();
            let pairs = match (&a.pairs, &a.pairs_file) {
                (Some(_), Some(_)) => usage_error("give --pairs or --pairs-file, not both"),
                (None, None) => {
                    usage_error("give --pairs 'RECEIVER_TAP,SENDER_TAP=ID;...' or --pairs-file")
                }
                (Some(p), None) => parse_pairs_arg(p)
                    .unwrap_or_else(|e| usage_error(format!("invalid value for '--pairs': {e}"))),
                (None, Some(f)) => pairs_from_file(f),
            };
            check_unique(&pairs);
            Config {
                send: pairs.iter().map(|(s, _, id)| dev(s, *id, false)).collect(),
                recv: pairs.iter().map(|(_, r, id)| dev(r, *id, false)).collect(),
                ports: if a.ports.is_empty() {
                    vec![62109]
                } else {
                    a.ports
                },
                summary_interval: a.summary_interval,
                common: a.common,
            }
        }
    }
}

static HOOKS: &[HookPoint] = &[
    HookPoint {
        name: "netif_receive_skb",
        required: true,
        candidates: &[Candidate::new(
            Kind::TpBtf,
            "pair_ingress",
            "netif_receive_skb",
        )],
    },
    HookPoint {
        name: "net_dev_start_xmit",
        required: true,
        candidates: &[Candidate::new(
            Kind::TpBtf,
            "pair_egress",
            "net_dev_start_xmit",
        )],
    },
];

/// Older than this, an unmatched entry is given up (a packet never forwarded).
const MAX_AGE_NS: u64 = 2_000_000_000;

struct State {
    out: Output,
    clock: Clock,
    variant: Variant,
    /// per group (pair label) statistics
    stats: BTreeMap<String, Latencies>,
    matched: u64,
}

fn mac_of(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl State {
    fn on_event(&mut self, data: &[u8]) {
        let Some(Record::Flow(e)) = stages::decode(data) else {
            return;
        };
        let e: &StageEvent = &e;
        let f = &e.flow;
        let (Some(t0), Some(t1)) = (f.ts(0), f.ts(1)) else {
            return;
        };
        if t1 < t0 {
            return;
        }
        let ns = t1 - t0;
        self.matched += 1;
        let k = &e.key;
        let (src, dst) = (k.src(), k.dst());
        let send = f.ctx[0].ifname();
        let recv = f.ctx[1].ifname();
        let group = match self.variant {
            Variant::PairId => format!("pair={}", k.seq),
            _ => format!("{send} -> {recv}"),
        };
        let lat = self.stats.entry(group).or_default();
        lat.record();
        lat.add(0, 1, "latency", ns);
        let (smac, dmac) = {
            let mut s = Vec::from(k.seq.to_ne_bytes());
            s.extend_from_slice(&k.len.to_ne_bytes());
            let mut d = Vec::from(k.ack.to_ne_bytes());
            d.extend_from_slice(&k.pad);
            (mac_of(&s), mac_of(&d))
        };
        if self.out.json() {
            let mut v = json!({"type": "latency", "time": self.clock.datetime_ms(t1), "ts_ns": t1,
                "src": src.to_string(), "sport": k.sport, "dst": dst.to_string(), "dport": k.dport,
                "ip_id": k.ip_id, "latency_ns": ns, "latency_us": ns as f64 / 1000.0,
                "send_dev": send, "recv_dev": recv});
            match self.variant {
                Variant::Multi => {
                    v["smac"] = json!(smac);
                    v["dmac"] = json!(dmac);
                }
                Variant::PairId => v["pair_id"] = json!(k.seq),
                Variant::Single => {}
            }
            self.out.event(&v);
            return;
        }
        let t = self.clock.hms_ms(t1);
        let line = match self.variant {
            Variant::Single => format!(
                "{t} {src}:{} -> {dst}:{}  id={}  latency={} us",
                k.sport,
                k.dport,
                k.ip_id,
                ns / 1000
            ),
            Variant::Multi => format!(
                "{t}  {send} -> {recv} {smac} -> {dmac}  {src}:{} -> {dst}:{}  latency={} us",
                k.sport,
                k.dport,
                ns / 1000
            ),
            Variant::PairId => format!(
                "{t}  pair={}  {send} -> {recv} {src}:{} -> {dst}:{}  lat={} us",
                k.seq,
                k.sport,
                k.dport,
                ns / 1000
            ),
        };
        self.out.line(&line);
    }

    fn summary(&mut self, interval: bool) {
        let groups: Vec<String> = self.stats.keys().cloned().collect();
        for g in groups {
            let variant = self.variant;
            let json_mode = self.out.json();
            let l = self.stats.get_mut(&g).unwrap();
            let (n, text, js) = if interval {
                match l.take_interval() {
                    Some(x) => x,
                    None => continue,
                }
            } else {
                (l.records, l.render_total(), l.total_json())
            };
            let seg = &js["0->1"];
            let ty = match (variant, interval) {
                (Variant::PairId, _) => "pair_summary",
                (_, true) => "interval",
                _ => "pair_summary",
            };
            if json_mode {
                let mut v = json!({"type": ty, "group": g, "interval": interval, "count": n,
                    "min_us": seg["min_us"], "avg_us": seg["avg_us"], "p50_us": seg["p50_us"],
                    "p99_us": seg["p99_us"], "max_us": seg["max_us"], "hist_us": seg["hist_us"]});
                if variant == Variant::PairId {
                    v["pair_id"] = json!(g.trim_start_matches("pair=").parse::<u32>().unwrap_or(0));
                }
                self.out.event(&v);
            } else {
                let s =
                    format!(
                    "{} {g}: count {n}, min {} us, avg {} us, p50 {} us, p99 {} us, max {} us\n{}",
                    if interval { "Interval" } else { "Summary" },
                    seg["min_us"], seg["avg_us"], seg["p50_us"], seg["p99_us"], seg["max_us"],
                    text.lines().skip(1).collect::<Vec<_>>().join("\n")
                );
                self.out.line(s.trim_end());
            }
        }
    }
}

pub fn run(variant: Variant) {
    let cfg = config(variant);
    let mut out = Output::new(cfg.common.json, None);
    let mut session = Session::start(cfg.common.duration, cfg.common.verbose);
    let (kernel, plan) = bpf::plan(&cfg.common, HOOKS);
    drop(kernel);

    let mut open_object = MaybeUninit::uninit();
    let mut open = VmPairLatencySkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    let tracker = TrackerConfig {
        create: 1,
        final_: 2,
        need: 3,
        ctx2: 2,
        stacks: 0,
        max_age_ns: MAX_AGE_NS,
        emit_hits: false,
    };
    let mode: u8 = match variant {
        Variant::Single => 0,
        Variant::Multi => 1,
        Variant::PairId => 2,
    };
    tracker
        .apply(open.open_object_mut())
        .and_then(|_| bpf::set_rodata(open.open_object_mut(), "MODE", &[mode]))
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    let mut skel = bpf::load(open);
    {
        let maps = &skel.maps;
        let fill = |m: &libbpf_rs::MapMut, list: &[(String, u32, u32)]| {
            for (name, idx, pair) in list {
                let mut d = DevInfo {
                    pair_id: *pair,
                    ..Default::default()
                };
                let n = name.len().min(15);
                d.name[..n].copy_from_slice(&name.as_bytes()[..n]);
                // SAFETY: POD.
                let v = unsafe { plain::as_bytes(&d) };
                m.update(&idx.to_ne_bytes(), v, MapFlags::ANY)
                    .unwrap_or_else(|e| {
                        shared::die(shared::EXIT_RUNTIME, format!("filling devices: {e}"))
                    });
            }
        };
        fill(&maps.send_devs, &cfg.send);
        fill(&maps.recv_devs, &cfg.recv);
        for p in &cfg.ports {
            maps.ports
                .update(&p.to_ne_bytes(), &[1], MapFlags::ANY)
                .unwrap_or_else(|e| {
                    shared::die(shared::EXIT_RUNTIME, format!("filling ports: {e}"))
                });
        }
    }
    let _links = bpf::attach(&plan, &mut skel);

    for (n, i, p) in &cfg.send {
        out.banner(&match variant {
            Variant::PairId => format!("Pair {p}: sender tap {n} (ifindex {i}, netif_receive_skb)"),
            _ => format!("Sending VM tap: {n} (ifindex {i}, netif_receive_skb)"),
        });
    }
    for (n, i, p) in &cfg.recv {
        out.banner(&match variant {
            Variant::PairId => {
                format!("Pair {p}: receiver tap {n} (ifindex {i}, net_dev_start_xmit)")
            }
            _ => format!("Receiving VM tap: {n} (ifindex {i}, net_dev_start_xmit)"),
        });
    }
    out.banner(&format!("UDP ports: {:?}", cfg.ports));
    out.banner("Tracing VM pair latency... Hit Ctrl-C to end.");

    let state = RefCell::new(State {
        out,
        clock: session.clock,
        variant,
        stats: BTreeMap::new(),
        matched: 0,
    });
    let obj = skel.object();
    let drain = Drain::open(obj, channel, |d| state.borrow_mut().on_event(d))
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    session.attached(&plan.summary());
    let mut last = Instant::now();
    let mut last_sweep = Instant::now();
    let mut expired = 0u64;
    let iv = cfg.summary_interval;
    let res = session.run(
        |t| drain.poll(t),
        || {
            if last_sweep.elapsed() >= Duration::from_secs(1) {
                last_sweep = Instant::now();
                expired += stages::sweep(obj, MAX_AGE_NS);
            }
            if iv > 0 && last.elapsed() >= Duration::from_secs(iv) {
                last = Instant::now();
                state.borrow_mut().summary(true);
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
    let created = c.get("created");
    let unmatched = created.saturating_sub(st.matched);
    let no_entry = c.get("no_entry");
    st.summary(false);
    if st.out.json() {
        let hist = st
            .stats
            .values()
            .next()
            .map(|l| l.total_json()["0->1"]["hist_us"].clone())
            .unwrap_or(json!([]));
        let matched = st.matched;
        st.out.event(
            &json!({"type": "summary", "matched": matched, "unmatched": unmatched,
            "unmatched_egress": no_entry, "counters": c.to_json(), "hist_us": hist}),
        );
    } else {
        let matched = st.matched;
        st.out.line(&format!(
            "packets matched: {matched} unmatched (ingress only): {unmatched} unmatched egress (no ingress seen): {no_entry}"
        ));
    }
    eprintln!(
        "Summary: {} packets matched, {} events lost",
        st.matched, lost
    );
    session.verbose_footer();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_arg() {
        let p = parse_pairs_arg("vnet48,vnet45=100;vnet42,vnet36=101").unwrap();
        assert_eq!(p[0], ("vnet45".to_string(), "vnet48".to_string(), 100));
        assert_eq!(p[1].2, 101);
        assert!(parse_pairs_arg("vnet48=100").is_err());
        assert!(parse_pairs_arg("a,b=x").is_err());
        assert!(parse_pairs_arg("a,b").is_err());
        assert!(parse_pairs_arg("a,b,c=1").is_err());
        assert!(parse_pairs_arg("").is_err());
    }
}
