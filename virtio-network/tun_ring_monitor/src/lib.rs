//! `tun_ring_monitor`: is a VM's tap TX ring (host -> guest) full, and for
//! which packets? At every transmit to a tun/tap device the queue's ptr_ring
//! (`tun_struct.tfiles[skb->queue_mapping]->tx_ring`, read through CO-RE from
//! the running kernel's or the tun module's BTF) is read; a full ring
//! (`queue[producer] != NULL`) means the reader (vhost-net or QEMU) is not
//! draining it and this packet is about to be dropped. `kfree_skb` with reason
//! FULL_RING confirms the drops. The same BPF object serves `tun-vhost`
//! (port of tun-vhost.bt): per-skb ring lines, `--full-only`, per-queue
//! summaries every `--interval`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use serde_json::{json, Value};

use shared::bpf;
use shared::cli::{parse_ifname, parse_ipv4, parse_port, usage_error, CommonArgs};
use shared::events::Drain;
use shared::hooks::{Candidate, HookPoint, Kind, Need};
use shared::ksyms::Kallsyms;
use shared::output::Output;
use shared::reasons::DropReasons;
use shared::runner::Session;
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/tun_ring_monitor.skel.rs"));
}
use skel::TunRingMonitorSkelBuilder;

/// Mirror of `struct tun_ring` (tun.h).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct TunRing {
    pub tun: u64,
    pub tfile: u64,
    pub qptr: u64,
    pub size: i32,
    pub producer: i32,
    pub consumer_head: i32,
    pub consumer_tail: i32,
    pub numqueues: u32,
    pub queue: u16,
    pub queue_index: u16,
    pub ok: u8,
    pub full: u8,
    pub pad: [u8; 6],
}

/// Mirror of `struct tun_event`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TunEvent {
    ts_ns: u64,
    skb: u64,
    pid: u32,
    tid: u32,
    comm: [u8; 16],
    dev: [u8; 16],
    ifindex: u32,
    saddr: [u8; 4],
    daddr: [u8; 4],
    sport: u16,
    dport: u16,
    proto: u8,
    parsed: u8,
    pad: [u8; 2],
    kstack_id: i32,
    ring: TunRing,
}
const _: () = assert!(std::mem::size_of::<TunEvent>() == 136);
// SAFETY: plain old data.
unsafe impl plain::Plain for TunEvent {}

/// Mirror of `struct qstats`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct QStats {
    xmit: u64,
    full: u64,
    drops: u64,
    max_used_pct: u64,
    dev: [u8; 16],
}
// SAFETY: plain old data.
unsafe impl plain::Plain for QStats {}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Proto {
    Tcp,
    Udp,
}

#[derive(Parser, Debug)]
#[command(
    name = "tun_ring_monitor",
    about = "Report when a tun/tap device's TX ring (host -> guest ptr_ring) is full, with the packet's 5-tuple",
    after_help = "Filters: every given 5-tuple field must match (AND; the original passed a packet when any one \
field matched). With a 5-tuple filter, packets that are not IPv4 are skipped."
)]
struct Args {
    /// Only this tun/tap device (default: every tun/tap device)
    #[arg(long, short = 'd', value_name = "IF", value_parser = parse_ifname)]
    device: Option<String>,
    /// Source IPv4 address
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    src_ip: Option<Ipv4Addr>,
    /// Destination IPv4 address
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    dst_ip: Option<Ipv4Addr>,
    /// TCP/UDP source port
    #[arg(long, value_name = "N", value_parser = parse_port, allow_hyphen_values = true)]
    src_port: Option<u16>,
    /// TCP/UDP destination port
    #[arg(long, value_name = "N", value_parser = parse_port, allow_hyphen_values = true)]
    dst_port: Option<u16>,
    /// L4 protocol
    #[arg(long, value_enum)]
    protocol: Option<Proto>,
    /// Report every transmit (ring status), not only full rings
    #[arg(long)]
    all: bool,
    /// Print every ring-full block (default: at most one per device/queue per second)
    #[arg(long)]
    no_rate_limit: bool,
    #[command(flatten)]
    common: CommonArgs,
}

static HOOKS: &[HookPoint] = &[
    HookPoint {
        name: "tun_net_xmit",
        required: true,
        candidates: &[
            Candidate::new(Kind::Fentry, "fentry_tun_net_xmit", "tun_net_xmit"),
            Candidate::new(Kind::Kprobe, "kprobe_tun_net_xmit", "tun_net_xmit"),
            Candidate::new(Kind::TpBtf, "tp_start_xmit", "net_dev_start_xmit")
                .loses("net_dev_start_xmit on tun devices (found in /sys/class/net/*/tun_flags every second)"),
        ],
    },
    HookPoint {
        name: "kfree_skb",
        required: false,
        candidates: &[
            Candidate::new(Kind::TpBtf, "tp_btf_kfree_skb_reason", "kfree_skb").need(Need::ArgsAtLeast(3)),
            Candidate::new(Kind::Tracepoint, "tp_kfree_skb", "skb/kfree_skb"),
            Candidate::new(Kind::Fentry, "fentry_sk_skb_reason_drop", "sk_skb_reason_drop"),
            Candidate::new(Kind::Fentry, "fentry_kfree_skb_reason", "kfree_skb_reason"),
            Candidate::new(Kind::Kprobe, "kprobe_sk_skb_reason_drop", "sk_skb_reason_drop"),
            Candidate::new(Kind::Kprobe, "kprobe_kfree_skb_reason", "kfree_skb_reason"),
        ],
    },
];

fn proto_name(p: u8) -> String {
    match p {
        6 => "TCP".into(),
        17 => "UDP".into(),
        1 => "ICMP".into(),
        n => format!("{n}"),
    }
}

/// used, util% (100 for a full ring: producer has caught up with consumer_tail).
fn util(r: &TunRing) -> (i32, u64) {
    if r.ok == 0 || r.size <= 0 {
        return (0, 0);
    }
    let used = if r.producer >= r.consumer_tail {
        r.producer - r.consumer_tail
    } else {
        r.size - r.consumer_tail + r.producer
    };
    let pct = if r.full != 0 {
        100
    } else {
        used as u64 * 100 / r.size as u64
    };
    (if r.full != 0 { r.size } else { used }, pct)
}

struct State {
    out: Output,
    clock: Clock,
    verbose: bool,
    rate_limit: bool,
    last_full: HashMap<(u32, u16), Instant>,
    suppressed: HashMap<(u32, u16), u64>,
    reported: u64,
}

impl State {
    fn on_event(&mut self, data: &[u8]) {
        let mut e = TunEvent::default();
        if plain::copy_from_bytes(&mut e, data).is_err() {
            return;
        }
        self.reported += 1;
        let r = e.ring;
        let (used, pct) = util(&r);
        let dev = shared::fmt::cstr(&e.dev);
        let comm = shared::fmt::cstr(&e.comm);
        let (src, dst) = (Ipv4Addr::from(e.saddr), Ipv4Addr::from(e.daddr));
        if self.out.json() {
            let ring = if r.ok != 0 {
                json!({"size": r.size, "producer": r.producer, "consumer_head": r.consumer_head,
                       "consumer_tail": r.consumer_tail, "used": used, "util_pct": pct, "full": r.full != 0,
                       "queue_ptr": format!("{:#x}", r.qptr)})
            } else {
                Value::Null
            };
            let mut v = json!({"type": "tun_xmit", "time": self.clock.datetime_ms(e.ts_ns), "ts_ns": e.ts_ns,
                "pid": e.pid, "tid": e.tid, "comm": comm, "dev": dev, "queue": r.queue, "ring": ring,
                "skb": format!("{:#x}", e.skb)});
            if e.parsed != 0 {
                v["src"] = json!(src.to_string());
                v["dst"] = json!(dst.to_string());
                v["proto"] = json!(proto_name(e.proto));
                if e.proto == 6 || e.proto == 17 {
                    v["sport"] = json!(e.sport);
                    v["dport"] = json!(e.dport);
                }
            }
            if self.verbose {
                v["tun"] = json!(format!("{:#x}", r.tun));
                v["tfile"] = json!(format!("{:#x}", r.tfile));
                v["numqueues"] = json!(r.numqueues);
                v["queue_index"] = json!(r.queue_index);
            }
            self.out.event(&v);
            return;
        }
        let key = (e.ifindex, r.queue);
        let mut note = String::new();
        if r.full != 0 && self.rate_limit {
            let now = Instant::now();
            if let Some(t) = self.last_full.get(&key) {
                if now.duration_since(*t) < Duration::from_secs(1) {
                    *self.suppressed.entry(key).or_default() += 1;
                    return;
                }
            }
            self.last_full.insert(key, now);
            if let Some(n) = self.suppressed.remove(&key) {
                note = format!("(+{n} more ring-full events suppressed)\n");
            }
        }
        let rule = "=".repeat(80);
        let mut s = format!("{rule}\n");
        s.push_str(&note);
        s.push_str(if r.full != 0 {
            "TUN RING FULL DETECTED!\n"
        } else {
            "TUN Ring Status\n"
        });
        s.push_str(&format!("Time: {}\n", self.clock.datetime_ms(e.ts_ns)));
        s.push_str(&format!("Process: {} (PID: {})\n", comm, e.pid));
        s.push_str(&format!(
            "Device: {dev}\nQueue: {}\nSKB Address: {:#x}\n",
            r.queue, e.skb
        ));
        if self.verbose {
            s.push_str(&format!(
                "Validation Info: tun={:#x} tfile={:#x} numqueues={} queue_index={} (layout from BTF)\n",
                r.tun, r.tfile, r.numqueues, r.queue_index
            ));
        }
        s.push_str("5-Tuple Info:\n");
        if e.parsed != 0 {
            let ports = e.proto == 6 || e.proto == 17;
            let ep = |a: Ipv4Addr, p: u16| {
                if ports {
                    format!("{a}:{p}")
                } else {
                    a.to_string()
                }
            };
            s.push_str(&format!(
                "  Source: {}\n  Destination: {}\n  Protocol: {}\n",
                ep(src, e.sport),
                ep(dst, e.dport),
                proto_name(e.proto)
            ));
        } else {
            s.push_str("  Source: N/A\n  Destination: N/A\n  Protocol: N/A\n");
        }
        s.push_str("PTR Ring Details:\n");
        if r.ok != 0 {
            s.push_str(&format!(
                "  Size: {}\n  Producer: {}\n  Consumer Head: {}\n  Consumer Tail: {}\n  Queue[Producer] Ptr: {:#x}\n",
                r.size, r.producer, r.consumer_head, r.consumer_tail, r.qptr
            ));
            if r.full != 0 {
                s.push_str("  Status: FULL (queue[producer] != NULL)\n");
            } else {
                s.push_str(&format!(
                    "  Status: Available (queue[producer] == NULL), {pct}% used\n"
                ));
            }
        } else {
            s.push_str("  Status: Not found\n");
        }
        s.push_str(&rule);
        self.out.line(&s);
    }
}

fn refresh_tun_devs(map: &dyn MapCore) {
    let want: Vec<u32> = shared::vmhost::tun_devices()
        .iter()
        .filter_map(|n| shared::netdev::ifindex(n))
        .collect();
    let have: Vec<Vec<u8>> = map.keys().collect();
    for k in &have {
        let i = u32::from_ne_bytes(k[..4].try_into().unwrap());
        if !want.contains(&i) {
            let _ = map.delete(k);
        }
    }
    for i in want {
        let _ = map.update(&i.to_ne_bytes(), &[1], MapFlags::ANY);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Variant {
    /// tun_ring_monitor
    Monitor,
    /// tun-vhost (port of tun-vhost.bt)
    TunVhost,
}

pub fn run(v: Variant) {
    match v {
        Variant::Monitor => run_monitor(),
        Variant::TunVhost => run_tun_vhost(),
    }
}

fn run_monitor() {
    let a: Args = shared::cli::parse();
    let dev = a.device.as_ref().map(|d| {
        let idx = shared::vmhost::ifindex_or_err(d).unwrap_or_else(|e| usage_error(e));
        if !shared::vmhost::is_tun(d) {
            usage_error(format!(
                "interface '{d}' is not a tun/tap device (no /sys/class/net/{d}/tun_flags)"
            ));
        }
        idx
    });
    let mut out = Output::new(a.common.json, None);
    let mut session = Session::start(a.common.duration, a.common.verbose);
    let (kernel, plan) = bpf::plan(&a.common, HOOKS);
    let full_ring = DropReasons::load(&kernel.btf)
        .code("FULL_RING")
        .unwrap_or(0);
    let has_tun_btf = kernel.btf.has_struct("tun_struct");
    drop(kernel);
    let tp_mode = plan
        .chosen("tun_net_xmit")
        .is_some_and(|c| c.kind == Kind::TpBtf);

    let mut open_object = MaybeUninit::uninit();
    let mut open = TunRingMonitorSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    {
        let o = open.open_object_mut();
        let set = |o: &mut libbpf_rs::OpenObject, n: &str, b: &[u8]| {
            bpf::set_rodata(o, n, b).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e))
        };
        set(o, "DEV_IFINDEX", &dev.unwrap_or(0).to_ne_bytes());
        set(o, "TUN_SET", &[u8::from(tp_mode)]);
        set(o, "ALL_EVENTS", &[u8::from(a.all)]);
        let filter = a.src_ip.is_some()
            || a.dst_ip.is_some()
            || a.src_port.is_some()
            || a.dst_port.is_some()
            || a.protocol.is_some();
        set(o, "HAS_FILTER", &[u8::from(filter)]);
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
        set(
            o,
            "F_PROTO",
            &[match a.protocol {
                Some(Proto::Tcp) => 6,
                Some(Proto::Udp) => 17,
                None => 0,
            }],
        );
        set(o, "FULL_RING_REASON", &full_ring.to_ne_bytes());
    }
    let mut skel = bpf::load(open);
    refresh_tun_devs(&skel.maps.tun_devs);
    let _links = bpf::attach(&plan, &mut skel);

    out.banner(&match &a.device {
        Some(d) => format!("Device filter: {d}"),
        None => "Device filter: All TUN devices".into(),
    });
    out.banner(if a.all {
        "Mode: Monitoring ALL TUN transmit events"
    } else {
        "Mode: Monitoring ptr_ring FULL conditions only"
    });
    let mut f = Vec::new();
    if let Some(i) = a.src_ip {
        f.push(format!("src-ip={i}"));
    }
    if let Some(i) = a.dst_ip {
        f.push(format!("dst-ip={i}"));
    }
    if let Some(p) = a.src_port {
        f.push(format!("src-port={p}"));
    }
    if let Some(p) = a.dst_port {
        f.push(format!("dst-port={p}"));
    }
    if let Some(p) = a.protocol {
        f.push(format!(
            "protocol={}",
            if p == Proto::Tcp { "TCP" } else { "UDP" }
        ));
    }
    if !f.is_empty() {
        out.banner(&format!(
            "5-tuple filters (all must match): {}",
            f.join(", ")
        ));
    }
    if !has_tun_btf {
        out.banner("Note: no BTF for tun_struct here (tun module without BTF): ring state N/A");
    }
    if full_ring == 0 || plan.chosen("kfree_skb").is_none() {
        out.banner("Note: this kernel reports no FULL_RING drop reason: dropped count N/A");
    }
    out.banner("Waiting for TUN device events... Press Ctrl+C to stop");

    let state = RefCell::new(State {
        out,
        clock: session.clock,
        verbose: a.common.verbose,
        rate_limit: !a.no_rate_limit,
        last_full: HashMap::new(),
        suppressed: HashMap::new(),
        reported: 0,
    });
    let obj = skel.object();
    let drain = Drain::open(obj, channel, |d| state.borrow_mut().on_event(d))
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    session.attached(&plan.summary());
    let mut last = Instant::now();
    let res = session.run(
        |t| drain.poll(t),
        || {
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                refresh_tun_devs(&skel.maps.tun_devs);
            }
        },
    );
    if let Err(e) = res {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    drain.flush();
    let lost = drain.lost(obj);
    let mut st = state.borrow_mut();
    let drops_known = full_ring != 0 && plan.chosen("kfree_skb").is_some();
    let mut rows: BTreeMap<(String, u32), QStats> = BTreeMap::new();
    let m = &skel.maps.qstats;
    for k in m.keys() {
        if let Ok(Some(v)) = m.lookup(&k, MapFlags::ANY) {
            let mut q = QStats::default();
            if plain::copy_from_bytes(&mut q, &v).is_ok() {
                let queue = u32::from_ne_bytes(k[4..8].try_into().unwrap());
                rows.insert((shared::fmt::cstr(&q.dev), queue), q);
            }
        }
    }
    for ((dev, queue), q) in &rows {
        if st.out.json() {
            st.out.event(&json!({"type": "summary", "dev": dev, "queue": queue, "xmit": q.xmit,
                "ring_full": q.full, "full_ring_drops": if drops_known { json!(q.drops) } else { Value::Null },
                "max_util_pct": q.max_used_pct}));
        } else {
            let drops = if drops_known {
                q.drops.to_string()
            } else {
                "N/A".into()
            };
            st.out.line(&format!(
                "Summary {dev} queue {queue}: xmit events {}, ring full seen at xmit {}, dropped FULL_RING {drops}, max utilization {}%",
                q.xmit, q.full, q.max_used_pct
            ));
        }
    }
    eprintln!(
        "Summary: {} events reported, {} events lost",
        st.reported, lost
    );
    session.verbose_footer();
}

// ---- tun-vhost ----------------------------------------------------------------

fn parse_interval(s: &str) -> Result<u64, String> {
    shared::cli::parse_interval(s)
}

#[derive(Parser, Debug)]
#[command(
    name = "tun-vhost",
    about = "Is the tun ptr_ring towards vhost full when the host transmits to the VM? One line per skb on a tap",
    after_help = "Per skb: queue (skb->queue_mapping), ring size, producer, consumer head/tail, used = (producer - \
consumer_tail) mod size, full = queue[producer] != NULL (the ptr_ring full test; the original computed it but left it \
commented out). The ring is read through BTF (tun module or vmlinux), never a copied tun_struct."
)]
struct TunVhostArgs {
    /// The tun/tap device
    #[arg(long, value_name = "NAME", value_parser = parse_ifname)]
    dev: String,
    /// Print only skbs that find the ring full
    #[arg(long)]
    full_only: bool,
    /// Instead of per-skb lines, a per-queue summary every S seconds
    #[arg(long, value_name = "S", value_parser = parse_interval, allow_hyphen_values = true)]
    interval: Option<u64>,
    /// Kernel stack of each skb
    #[arg(long)]
    stack: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn read_qstats(m: &dyn MapCore) -> BTreeMap<(String, u32), QStats> {
    let mut rows = BTreeMap::new();
    for k in m.keys() {
        if let Ok(Some(v)) = m.lookup(&k, MapFlags::ANY) {
            let mut q = QStats::default();
            if plain::copy_from_bytes(&mut q, &v).is_ok() {
                let queue = u32::from_ne_bytes(k[4..8].try_into().unwrap());
                rows.insert((shared::fmt::cstr(&q.dev), queue), q);
            }
        }
    }
    rows
}

fn run_tun_vhost() {
    let a: TunVhostArgs = shared::cli::parse();
    // A device of another network namespace is matched by name (B.0 rule).
    let idx = shared::netdev::ifindex(&a.dev).unwrap_or(0);
    if idx != 0 && !shared::vmhost::is_tun(&a.dev) {
        usage_error(format!("interface '{}' is not a tun/tap device", a.dev));
    }
    if idx == 0 {
        eprintln!(
            "warning: device {} is not in this network namespace; matching it by name",
            a.dev
        );
    }
    let mut out = Output::new(a.common.json, None);
    let mut session = Session::start(a.common.duration, a.common.verbose);
    let (kernel, plan) = bpf::plan(&a.common, HOOKS);
    let full_ring = DropReasons::load(&kernel.btf)
        .code("FULL_RING")
        .unwrap_or(0);
    drop(kernel);
    let tp_mode = plan
        .chosen("tun_net_xmit")
        .is_some_and(|c| c.kind == Kind::TpBtf);
    let mut open_object = MaybeUninit::uninit();
    let mut open = TunRingMonitorSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    {
        let o = open.open_object_mut();
        let set = |o: &mut libbpf_rs::OpenObject, n: &str, b: &[u8]| {
            bpf::set_rodata(o, n, b).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e))
        };
        set(o, "DEV_IFINDEX", &idx.to_ne_bytes());
        let mut name = [0u8; 16];
        if idx == 0 {
            name[..a.dev.len().min(15)].copy_from_slice(&a.dev.as_bytes()[..a.dev.len().min(15)]);
        }
        set(o, "DEV_NAME", &name);
        // In tracepoint mode by name the tun set of this netns does not apply.
        set(o, "TUN_SET", &[u8::from(tp_mode && idx != 0)]);
        set(
            o,
            "ALL_EVENTS",
            &[u8::from(!a.full_only && a.interval.is_none())],
        );
        set(o, "FULL_RING_REASON", &full_ring.to_ne_bytes());
        set(o, "WANT_STACK", &[u8::from(a.stack)]);
    }
    let mut skel = bpf::load(open);
    refresh_tun_devs(&skel.maps.tun_devs);
    let _links = bpf::attach(&plan, &mut skel);
    out.banner(&format!(
        "Tracing tun_net_xmit on {} (ifindex {idx}). Hit Ctrl-C to end.",
        a.dev
    ));
    if tp_mode && idx == 0 {
        out.banner(
            "Note: tracepoint mode by name: net_dev_start_xmit of any device with this name",
        );
    }
    let interval = a.interval;
    let clock = session.clock;
    let ksyms = RefCell::new(Kallsyms::new());
    let out = RefCell::new(out);
    let obj = skel.object();
    let stacks = obj.maps().find(|m| m.name().to_string_lossy() == "stacks");
    let drain = Drain::open(obj, channel, |d| {
        if interval.is_some() {
            return;
        }
        let mut e = TunEvent::default();
        if plain::copy_from_bytes(&mut e, d).is_err() {
            return;
        }
        let r = e.ring;
        let (used, _) = util(&r);
        let dev = shared::fmt::cstr(&e.dev);
        let kstack: Vec<String> = match &stacks {
            Some(m) if e.kstack_id >= 0 => shared::stacks::read_stack(m as &dyn MapCore, e.kstack_id)
                .map(|x| ksyms.borrow_mut().format_stack(&x))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut o = out.borrow_mut();
        if o.json() {
            let mut v = json!({"type": "tun_xmit", "time": clock.datetime_ms(e.ts_ns), "ts_ns": e.ts_ns,
                "dev": dev, "queue": r.queue, "comm": shared::fmt::cstr(&e.comm), "pid": e.pid});
            if r.ok != 0 {
                v["ring_size"] = json!(r.size);
                v["producer"] = json!(r.producer);
                v["consumer_head"] = json!(r.consumer_head);
                v["consumer_tail"] = json!(r.consumer_tail);
                v["used"] = json!(used);
                v["full"] = json!(r.full != 0);
            }
            if !kstack.is_empty() {
                v["kstack"] = json!(kstack);
            }
            o.event(&v);
        } else {
            let mut s = if r.ok != 0 {
                format!(
                    "{} dev={dev} queue={} ring_size={} producer={} consumer_head={} consumer_tail={} used={used} full={}",
                    clock.hms(e.ts_ns), r.queue, r.size, r.producer, r.consumer_head, r.consumer_tail,
                    if r.full != 0 { "yes" } else { "no" }
                )
            } else {
                format!("{} dev={dev} queue={} ring=N/A (no tun BTF)", clock.hms(e.ts_ns), r.queue)
            };
            for f in &kstack {
                s.push_str(&format!("\n    {f}"));
            }
            o.line(&s);
        }
    })
    .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    session.attached(&plan.summary());
    let mut last = Instant::now();
    let mut last_iv = Instant::now();
    let mut prev: BTreeMap<(String, u32), QStats> = BTreeMap::new();
    let drops_known = full_ring != 0 && plan.chosen("kfree_skb").is_some();
    let summary_lines = |rows: &BTreeMap<(String, u32), QStats>,
                         prev: &BTreeMap<(String, u32), QStats>,
                         o: &mut Output,
                         kind: &str| {
        for ((dev, q), s) in rows {
            let p = prev.get(&(dev.clone(), *q)).copied().unwrap_or_default();
            let (ev, full, drops) = (s.xmit - p.xmit, s.full - p.full, s.drops - p.drops);
            if o.json() {
                o.event(&json!({"type": kind, "dev": dev, "queue": q, "events": ev, "full_hits": full,
                    "max_used_pct": s.max_used_pct, "full_ring_drops": if drops_known { json!(drops) } else { Value::Null }}));
            } else {
                let d = if drops_known {
                    drops.to_string()
                } else {
                    "N/A".into()
                };
                o.line(&format!(
                    "{} {dev} queue={q}: events={ev} full_hits={full} max_used={}% dropped_full_ring={d}",
                    if kind == "summary" { "Summary" } else { "Interval" },
                    s.max_used_pct
                ));
            }
        }
    };
    let res = session.run(
        |t| drain.poll(t),
        || {
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                refresh_tun_devs(&skel.maps.tun_devs);
            }
            if let Some(iv) = interval {
                if last_iv.elapsed() >= Duration::from_secs(iv) {
                    last_iv = Instant::now();
                    let now = read_qstats(&skel.maps.qstats);
                    summary_lines(&now, &prev, &mut out.borrow_mut(), "interval");
                    prev = now;
                }
            }
        },
    );
    if let Err(e) = res {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    drain.flush();
    let lost = drain.lost(obj);
    let rows = read_qstats(&skel.maps.qstats);
    summary_lines(&rows, &BTreeMap::new(), &mut out.borrow_mut(), "summary");
    eprintln!("Summary: {} events lost", lost);
    session.verbose_footer();
}
