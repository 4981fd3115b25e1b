//! `vm_pair_gap`, `multi_port_gap`, `multi_vm_pair_multi_port_gap`: stalls in
//! VM-to-VM UDP streams, seen as gaps between consecutive packets of one flow
//! at the VMs' host-side taps. A gap at the ingress tap (the sending VM's tap,
//! `netif_receive_skb`) means the sending VM or its vhost stalled; a gap that
//! appears only at the egress tap (`net_dev_start_xmit` towards the receiving
//! VM) was added by the host. One BPF object; the three tools differ in their
//! flags (kept from the originals) and line format.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use serde_json::json;

use shared::bpf;
use shared::cli::{parse_port, usage_error, CommonArgs};
use shared::events::Drain;
use shared::hist::Log2Hist;
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::output::Output;
use shared::runner::Session;
use shared::time::Clock;
use shared::vmhost::{ifindex_or_err, parse_iface_list};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/vm_pair_gap.skel.rs"));
}
use skel::VmPairGapSkelBuilder;

pub const SIDE_RCV: u8 = 0;
pub const SIDE_SND: u8 = 1;

/// Mirror of `struct gap_event`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct GapEvent {
    ts_ns: u64,
    gap_ns: u64,
    saddr: [u8; 4],
    daddr: [u8; 4],
    sport: u16,
    dport: u16,
    ifindex: u32,
    side: u8,
    pad: [u8; 3],
    ifname: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<GapEvent>() == 56);
// SAFETY: plain old data.
unsafe impl plain::Plain for GapEvent {}

/// Mirror of `struct dev_info`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct DevInfo {
    sides: u8,
    pad: [u8; 3],
    name: [u8; 16],
}
// SAFETY: plain old data.
unsafe impl plain::Plain for DevInfo {}

const GAP_HIST: usize = 32;
/// Mirror of `struct gap_stats`.
#[repr(C)]
#[derive(Clone, Copy)]
struct GapStats {
    packets: u64,
    gaps: u64,
    over: u64,
    max_ns: u64,
    hist_us: [u64; GAP_HIST],
}
impl Default for GapStats {
    fn default() -> Self {
        GapStats {
            packets: 0,
            gaps: 0,
            over: 0,
            max_ns: 0,
            hist_us: [0; GAP_HIST],
        }
    }
}
// SAFETY: plain old data.
unsafe impl plain::Plain for GapStats {}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Variant {
    VmPairGap,
    MultiPortGap,
    MultiVmPairMultiPortGap,
}

fn parse_nonneg(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n as u64),
        Ok(_) => Err("must be >= 0".into()),
        Err(_) => Err("not a whole number".into()),
    }
}

fn parse_summary(s: &str) -> Result<u64, String> {
    parse_nonneg(s)
}

const DEFAULT_PORTS: &[u16] = &[62108, 61969, 61967, 62109, 61970, 61968];

#[derive(Parser, Debug)]
#[command(
    name = "vm_pair_gap",
    about = "Gaps between consecutive UDP packets of a VM-to-VM flow at the sender's and the receiver's tap",
    after_help = "RCV GAP lines: the sending VM's tap (host receives, netif_receive_skb) — a gap here is a stall of the \
sending VM or its vhost. SND GAP lines: the receiving VM's tap (host transmits, net_dev_start_xmit) — a gap only here \
was added by the host."
)]
struct VmPairGapArgs {
    /// Tap of the VM that sends (hooked at netif_receive_skb; RCV GAP lines)
    #[arg(long, value_name = "IF", default_value = "vnet48")]
    send_dev: String,
    /// Tap of the VM that receives (hooked at net_dev_start_xmit; SND GAP lines)
    #[arg(long, value_name = "IF", default_value = "vnet45")]
    recv_dev: String,
    /// UDP port, source or destination
    #[arg(long, value_name = "N", default_value = "62109", value_parser = parse_port)]
    port: u16,
    /// Print only gaps longer than N microseconds (0 = every gap, as the original)
    #[arg(long, value_name = "N", default_value = "0", value_parser = parse_nonneg, allow_hyphen_values = true)]
    threshold_us: u64,
    /// Every SECS seconds print a gap histogram per tap and side (0 = off)
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_summary, allow_hyphen_values = true)]
    summary_interval: u64,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Parser, Debug)]
#[command(
    name = "multi_port_gap",
    about = "Stall detector: UDP gaps longer than a threshold on a set of ports at a sender's and a receiver's tap",
    after_help = "RECV lines: --send-dev, the sending VM's tap (netif_receive_skb). SEND lines: --recv-dev, the \
receiving VM's tap (net_dev_start_xmit). Gaps strictly longer than --threshold are printed."
)]
struct MultiPortGapArgs {
    /// Tap of the VM that sends (netif_receive_skb; RECV lines)
    #[arg(long, value_name = "IF", default_value = "vnet48")]
    send_dev: String,
    /// Tap of the VM that receives (net_dev_start_xmit; SEND lines)
    #[arg(long, value_name = "IF", default_value = "vnet45")]
    recv_dev: String,
    /// UDP ports, source or destination
    #[arg(long, value_name = "N", num_args = 1.., value_parser = parse_port)]
    ports: Vec<u16>,
    /// Report gaps strictly longer than MS milliseconds
    #[arg(long, value_name = "MS", default_value = "100", value_parser = parse_nonneg, allow_hyphen_values = true)]
    threshold: u64,
    /// Every SECS seconds print a gap histogram per tap and side (0 = off)
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_summary, allow_hyphen_values = true)]
    summary_interval: u64,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Parser, Debug)]
#[command(
    name = "multi_vm_pair_multi_port_gap",
    about = "Stall detector over many VM taps and UDP ports: gaps longer than a threshold",
    after_help = "Names are the host's view (as in the original): --send-dev = taps the host SENDS to (the receiving \
VMs; net_dev_start_xmit; SEND lines); --recv-dev = taps the host RECEIVES from (the sending VMs; netif_receive_skb; \
RECV lines). This is the opposite of multi_vm_pair_latency's --send-dev."
)]
struct MultiVmArgs {
    /// Taps the host transmits to (receiving VMs), comma/space separated; SEND lines
    #[arg(long, value_name = "LIST", default_value = "")]
    send_dev: Vec<String>,
    /// Taps the host receives from (sending VMs), comma/space separated; RECV lines
    #[arg(long, value_name = "LIST", default_value = "")]
    recv_dev: Vec<String>,
    /// UDP ports, source or destination
    #[arg(long, value_name = "N", num_args = 1.., value_parser = parse_port)]
    ports: Vec<u16>,
    /// Report gaps strictly longer than MS milliseconds
    #[arg(long, value_name = "MS", default_value = "100", value_parser = parse_nonneg, allow_hyphen_values = true)]
    threshold: u64,
    /// Every SECS seconds print a gap histogram per tap and side (0 = off)
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_summary, allow_hyphen_values = true)]
    summary_interval: u64,
    #[command(flatten)]
    common: CommonArgs,
}

struct Config {
    rcv: Vec<(String, u32)>,
    snd: Vec<(String, u32)>,
    ports: Vec<u16>,
    threshold_ns: u64,
    /// The threshold as the user gave it (us for vm_pair_gap, ms otherwise).
    threshold_ms: u64,
    summary_interval: u64,
    common: CommonArgs,
}

fn resolve(names: &[String], defaults_hint: bool) -> Vec<(String, u32)> {
    names
        .iter()
        .map(|n| match ifindex_or_err(n) {
            Ok(i) => (n.clone(), i),
            Err(e) if defaults_hint => usage_error(format!(
                "{e} (the default tap names are the original's: pass --send-dev/--recv-dev)"
            )),
            Err(e) => usage_error(e),
        })
        .collect()
}

fn config(variant: Variant) -> Config {
    match variant {
        Variant::VmPairGap => {
            let a: VmPairGapArgs = shared::cli::parse();
            let hint = a.send_dev == "vnet48" || a.recv_dev == "vnet45";
            let one =
                |s: &str| parse_iface_list(&[s.to_string()]).unwrap_or_else(|e| usage_error(e));
            Config {
                rcv: resolve(&one(&a.send_dev), hint),
                snd: resolve(&one(&a.recv_dev), hint),
                ports: vec![a.port],
                threshold_ns: a.threshold_us.saturating_mul(1000),
                threshold_ms: a.threshold_us,
                summary_interval: a.summary_interval,
                common: a.common,
            }
        }
        Variant::MultiPortGap => {
            let a: MultiPortGapArgs = shared::cli::parse();
            let hint = a.send_dev == "vnet48" || a.recv_dev == "vnet45";
            let one =
                |s: &str| parse_iface_list(&[s.to_string()]).unwrap_or_else(|e| usage_error(e));
            Config {
                rcv: resolve(&one(&a.send_dev), hint),
                snd: resolve(&one(&a.recv_dev), hint),
                ports: if a.ports.is_empty() {
                    DEFAULT_PORTS.to_vec()
                } else {
                    a.ports
                },
                threshold_ns: a.threshold.saturating_mul(1_000_000),
                threshold_ms: a.threshold,
                summary_interval: a.summary_interval,
                common: a.common,
            }
        }
        Variant::MultiVmPairMultiPortGap => {
            let a: MultiVmArgs = shared::cli::parse();
            let snd = parse_iface_list(&a.send_dev)
                .unwrap_or_else(|e| usage_error(format!("--send-dev: {e}")));
            let rcv = parse_iface_list(&a.recv_dev)
                .unwrap_or_else(|e| usage_error(format!("--recv-dev: {e}")));
            if snd.is_empty() && rcv.is_empty() {
                usage_error("give at least one tap with --send-dev or --recv-dev");
            }
            Config {
                rcv: resolve(&rcv, false),
                snd: resolve(&snd, false),
                ports: if a.ports.is_empty() {
                    DEFAULT_PORTS.to_vec()
                } else {
                    a.ports
                },
                threshold_ns: a.threshold.saturating_mul(1_000_000),
                threshold_ms: a.threshold,
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
        candidates: &[Candidate::new(Kind::TpBtf, "gap_rcv", "netif_receive_skb")],
    },
    HookPoint {
        name: "net_dev_start_xmit",
        required: true,
        candidates: &[Candidate::new(Kind::TpBtf, "gap_snd", "net_dev_start_xmit")],
    },
];

struct State {
    out: Output,
    clock: Clock,
    cfg_variant: Variant,
    threshold_ms: u64,
    printed: u64,
}

impl State {
    fn side_label(&self, side: u8) -> String {
        match (self.cfg_variant, side) {
            (Variant::VmPairGap, SIDE_RCV) => "RCV GAP".into(),
            (Variant::VmPairGap, _) => "SND GAP".into(),
            (_, SIDE_RCV) => format!("RECV gap>{}ms", self.threshold_ms),
            (_, _) => format!("SEND gap>{}ms", self.threshold_ms),
        }
    }

    fn on_event(&mut self, data: &[u8]) {
        let mut e = GapEvent::default();
        if plain::copy_from_bytes(&mut e, data).is_err() {
            return;
        }
        self.printed += 1;
        let (src, dst) = (Ipv4Addr::from(e.saddr), Ipv4Addr::from(e.daddr));
        let dev = shared::fmt::cstr(&e.ifname);
        let us = e.gap_ns / 1000;
        if self.out.json() {
            let mut v = json!({
                "type": "gap", "time": self.clock.datetime_ms(e.ts_ns), "ts_ns": e.ts_ns,
                "side": if e.side == SIDE_RCV { "rcv" } else { "snd" },
                "dev": dev, "src": src.to_string(), "sport": e.sport, "dst": dst.to_string(),
                "dport": e.dport, "gap_ns": e.gap_ns, "gap_us": us,
            });
            if self.cfg_variant != Variant::VmPairGap {
                v["threshold_ms"] = json!(self.threshold_ms);
            }
            self.out.event(&v);
            return;
        }
        let tuple = format!("{src}:{} -> {dst}:{}", e.sport, e.dport);
        let line = match self.cfg_variant {
            Variant::VmPairGap => format!(
                "{}  {}  {}  {}  gap={} us",
                self.clock.hms_ms(e.ts_ns),
                self.side_label(e.side),
                dev,
                tuple,
                us
            ),
            Variant::MultiPortGap => format!(
                "{}  {}  {}  port={} {}  gap={} us",
                self.clock.hms_ms(e.ts_ns),
                self.side_label(e.side),
                dev,
                e.dport,
                tuple,
                us
            ),
            Variant::MultiVmPairMultiPortGap => format!(
                "{}  {}  {}  port={}  {}  gap={} us",
                self.clock.hms_ms(e.ts_ns),
                self.side_label(e.side),
                dev,
                e.dport,
                tuple,
                us
            ),
        };
        self.out.line(&line);
    }
}

/// (ifindex, side) -> stats, read from the BPF map.
fn read_stats(map: &dyn MapCore) -> BTreeMap<(u32, u32), GapStats> {
    let mut out = BTreeMap::new();
    for k in map.keys() {
        if k.len() != 8 {
            continue;
        }
        let ifindex = u32::from_ne_bytes(k[0..4].try_into().unwrap());
        let side = u32::from_ne_bytes(k[4..8].try_into().unwrap());
        if let Ok(Some(v)) = map.lookup(&k, MapFlags::ANY) {
            let mut s = GapStats::default();
            if plain::copy_from_bytes(&mut s, &v).is_ok() {
                out.insert((ifindex, side), s);
            }
        }
    }
    out
}

pub fn run(variant: Variant) {
    let cfg = config(variant);
    let mut out = Output::new(cfg.common.json, None);
    let mut session = Session::start(cfg.common.duration, cfg.common.verbose);
    let (kernel, plan) = bpf::plan(&cfg.common, HOOKS);
    drop(kernel);

    let mut open_object = MaybeUninit::uninit();
    let mut open = VmPairGapSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    bpf::set_rodata(
        open.open_object_mut(),
        "THRESHOLD_NS",
        &cfg.threshold_ns.to_ne_bytes(),
    )
    .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    let mut skel = bpf::load(open);

    // Devices and ports, by ifindex + name.
    let mut devs: BTreeMap<u32, DevInfo> = BTreeMap::new();
    for (list, side) in [(&cfg.rcv, SIDE_RCV), (&cfg.snd, SIDE_SND)] {
        for (name, idx) in list {
            let d = devs.entry(*idx).or_default();
            d.sides |= 1 << side;
            let n = name.len().min(15);
            d.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        }
    }
    {
        let maps = &skel.maps;
        for (idx, d) in &devs {
            // SAFETY: POD.
            let v = unsafe { plain::as_bytes(d) };
            maps.devs
                .update(&idx.to_ne_bytes(), v, MapFlags::ANY)
                .unwrap_or_else(|e| {
                    shared::die(shared::EXIT_RUNTIME, format!("filling devs: {e}"))
                });
        }
        for p in &cfg.ports {
            maps.ports
                .update(&p.to_ne_bytes(), &[1], MapFlags::ANY)
                .unwrap_or_else(|e| {
                    shared::die(shared::EXIT_RUNTIME, format!("filling ports: {e}"))
                });
        }
    }
    let _links = bpf::attach(&plan, &mut skel);

    let names: BTreeMap<u32, String> = cfg
        .rcv
        .iter()
        .chain(cfg.snd.iter())
        .map(|(n, i)| (*i, n.clone()))
        .collect();
    let side_word = |s: u32| if s == SIDE_RCV as u32 { "rcv" } else { "snd" };
    // Banner.
    for (n, i) in &cfg.rcv {
        out.banner(&format!(
            "Ingress tap (sending VM, netif_receive_skb): {n} (ifindex {i})"
        ));
    }
    for (n, i) in &cfg.snd {
        out.banner(&format!(
            "Egress tap (receiving VM, net_dev_start_xmit): {n} (ifindex {i})"
        ));
    }
    out.banner(&format!("Tracking UDP ports: {:?}", cfg.ports));
    match variant {
        Variant::VmPairGap if cfg.threshold_ns == 0 => {
            out.banner("Gap threshold: none (every gap)")
        }
        Variant::VmPairGap => out.banner(&format!("Gap threshold: > {} us", cfg.threshold_ms)),
        _ => out.banner(&format!("Gap threshold = {} ms", cfg.threshold_ms)),
    }
    out.banner("Tracing UDP gaps... Hit Ctrl-C to end.");

    let state = RefCell::new(State {
        out,
        clock: session.clock,
        cfg_variant: variant,
        threshold_ms: cfg.threshold_ms,
        printed: 0,
    });
    let obj = skel.object();
    let stats_map = obj.maps().find(|m| m.name().to_string_lossy() == "stats");
    let drain = Drain::open(obj, channel, |d| state.borrow_mut().on_event(d))
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    session.attached(&plan.summary());
    let mut last_tick = Instant::now();
    let mut prev: BTreeMap<(u32, u32), GapStats> = BTreeMap::new();
    let interval = cfg.summary_interval;
    let res = session.run(
        |t| drain.poll(t),
        || {
            if interval == 0 || last_tick.elapsed() < Duration::from_secs(interval) {
                return;
            }
            last_tick = Instant::now();
            let Some(m) = &stats_map else { return };
            let now = read_stats(m);
            let mut st = state.borrow_mut();
            for (k, s) in &now {
                let p = prev.get(k).copied().unwrap_or_default();
                let mut h = Log2Hist::new(GAP_HIST);
                let d: Vec<u64> = s.hist_us.iter().zip(p.hist_us.iter()).map(|(a, b)| a - b).collect();
                h.merge(&d);
                let dev = names.get(&k.0).cloned().unwrap_or_default();
                if st.out.json() {
                    st.out.event(&json!({"type": "interval", "dev": dev, "side": side_word(k.1),
                        "packets": s.packets - p.packets, "gaps": s.gaps - p.gaps, "hist_us": h.to_json()}));
                } else if h.total() > 0 {
                    let text = format!(
                        "--- {} {} {}: {} packets, gap histogram (us) ---\n{}",
                        shared::time::now_datetime(),
                        dev,
                        side_word(k.1).to_uppercase(),
                        s.packets - p.packets,
                        h.render("usecs")
                    );
                    st.out.line(text.trim_end());
                }
            }
            prev = now;
        },
    );
    if let Err(e) = res {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    drain.flush();
    let lost = drain.lost(obj);
    let mut st = state.borrow_mut();
    let stats = stats_map
        .as_ref()
        .map(|m| read_stats(m))
        .unwrap_or_default();
    for ((idx, side), s) in &stats {
        let dev = names.get(idx).cloned().unwrap_or_default();
        let mut h = Log2Hist::new(GAP_HIST);
        h.merge(&s.hist_us);
        if st.out.json() {
            st.out.event(
                &json!({"type": "summary", "dev": dev, "side": side_word(*side),
                "packets": s.packets, "gaps": s.gaps, "max_gap_us": s.max_ns / 1000,
                "over_threshold": s.over, "hist_us": h.to_json()}),
            );
        } else {
            let text = format!(
                "Summary {} {}: packets {}, gaps {}, max gap {} us, gaps over threshold {}\n{}",
                dev,
                side_word(*side).to_uppercase(),
                s.packets,
                s.gaps,
                s.max_ns / 1000,
                s.over,
                h.render("usecs")
            );
            st.out.line(text.trim_end());
        }
    }
    eprintln!(
        "Summary: {} gaps reported, {} events lost",
        st.printed, lost
    );
    session.verbose_footer();
}
