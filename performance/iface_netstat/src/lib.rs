//! `iface_netstat` (netqtop-style): how are the packets of one interface spread
//! over its TX/RX queues, how big are they, and what is each queue's BPS/PPS?
//!
//! The BPF side counts bytes, packets and size buckets per queue in per-CPU
//! arrays at net:net_dev_start_xmit (TX) and net:netif_receive_skb (RX); every
//! interval this side reads what was counted since the previous report and
//! prints one table per direction (or one JSON object).

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, Object};
use serde_json::{json, Value};

use shared::bpf;
use shared::cli::{parse_duration, parse_ifname, usage_error, CommonArgs};
use shared::fmt::{netqtop_float, netqtop_int};
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::output::Output;
use shared::percpu::{self, PerCpuCounters};
use shared::runner::Session;
use shared::sizehist::{SizeHist, LABELS};
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/iface_netstat.skel.rs"));
}
use skel::IfaceNetstatSkelBuilder;

/// Most queues per direction (as the original).
pub const MAX_QUEUES: usize = 1024;

/// TX and RX, each through tp_btf or the classic tracepoint.
pub static HOOKS: &[HookPoint] = &[
    HookPoint {
        name: "tx",
        required: true,
        candidates: &[
            Candidate::new(Kind::TpBtf, "tp_btf_start_xmit", "net_dev_start_xmit"),
            Candidate::new(Kind::Tracepoint, "tp_start_xmit", "net/net_dev_start_xmit"),
        ],
    },
    HookPoint {
        name: "rx",
        required: true,
        candidates: &[
            Candidate::new(Kind::TpBtf, "tp_btf_receive_skb", "netif_receive_skb"),
            Candidate::new(Kind::Tracepoint, "tp_receive_skb", "net/netif_receive_skb"),
        ],
    },
];

#[derive(Parser, Debug)]
#[command(
    name = "iface_netstat",
    about = "Per-queue TX/RX packet-size histogram and throughput (BPS/PPS) of one interface",
    after_help = "Sizes are skb->len: TX frames include the Ethernet header, RX packets do not \
                  (it is already pulled at netif_receive_skb). BPS is bytes per second."
)]
pub struct Args {
    /// Interface to watch (required; 1-15 bytes, must exist in this network namespace)
    #[arg(short = 'n', long, value_name = "IFNAME", value_parser = parse_ifname)]
    pub name: Option<String>,

    /// Print period in seconds (a number > 0, e.g. 0.5)
    #[arg(short = 'i', long, value_name = "SECS", default_value = "1",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub interval: Duration,

    /// Add BPS (bytes per second) and PPS (packets per second) columns
    #[arg(short = 't', long)]
    pub throughput: bool,

    /// (original: print the BPF source; accepted and ignored, exits 0)
    #[arg(long, hide = true)]
    pub ebpf: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Queue counts of an interface from `/sys/class/net/<if>/queues` (`rx-*`, `tx-*`).
pub fn queue_counts(name: &str) -> Result<(usize, usize), String> {
    let dir = format!("/sys/class/net/{name}/queues");
    let rd = std::fs::read_dir(&dir).map_err(|_| {
        let hint = match shared::netdev::find(name) {
            Some(shared::netdev::Found::InNetns(ns, _)) => {
                format!(" (it is in netns {ns}: run the tool with `ip netns exec {ns}`)")
            }
            _ => String::new(),
        };
        format!("invalid value '{name}' for '--name': no interface {name} in this network namespace{hint}")
    })?;
    let (mut tx, mut rx) = (0, 0);
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("tx-") {
            tx += 1;
        } else if n.starts_with("rx-") {
            rx += 1;
        }
    }
    if tx > MAX_QUEUES || rx > MAX_QUEUES {
        return Err(format!(
            "invalid value '{name}' for '--name': {tx} TX / {rx} RX queues, at most {MAX_QUEUES} are supported"
        ));
    }
    Ok((tx, rx))
}

/// One direction's counts of an interval: `queues[q]` for the sysfs queues,
/// plus `other` for queue ids the kernel reported at or above that count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Direction {
    pub queues: Vec<SizeHist>,
    pub other: SizeHist,
}

impl Direction {
    pub fn from_slots(slots: Vec<SizeHist>, nq: usize) -> Self {
        let mut d = Direction {
            queues: vec![SizeHist::default(); nq],
            other: SizeHist::default(),
        };
        for (i, h) in slots.into_iter().enumerate() {
            if i < nq {
                d.queues[i] = h;
            } else {
                d.other.merge(&h);
            }
        }
        d
    }

    pub fn total(&self) -> SizeHist {
        let mut t = self.other;
        self.queues.iter().for_each(|q| t.merge(q));
        t
    }

    pub fn has_big(&self) -> bool {
        self.total().buckets[5] > 0
    }
}

/// Text columns: always the five buckets of the original, the `[64K, inf)`
/// bucket once such a packet was seen, BPS/PPS with `-t`.
#[derive(Clone, Copy, Debug)]
pub struct Columns {
    pub throughput: bool,
    pub big: bool,
}

impl Columns {
    fn header(&self) -> String {
        let mut h = vec!["QueueID", "avg_size"];
        h.extend_from_slice(&LABELS[..if self.big { 6 } else { 5 }]);
        if self.throughput {
            h.extend_from_slice(&["BPS", "PPS"]);
        }
        let mut s = String::from(" ");
        h.iter().for_each(|c| s.push_str(&format!("{c:<11}")));
        s
    }

    fn row(&self, id: &str, h: &SizeHist, secs: f64) -> String {
        let mut s = format!(" {id:<11}");
        // The original's average is the int 0 without packets, a float otherwise.
        let avg = if h.pkts == 0 {
            "0".to_string()
        } else {
            netqtop_float(h.avg())
        };
        s.push_str(&format!("{avg:<11}"));
        let n = if self.big { 6 } else { 5 };
        for b in &h.buckets[..n] {
            s.push_str(&format!("{:<11}", netqtop_int(*b)));
        }
        if self.throughput {
            let per = |v: u64| netqtop_float(if secs > 0.0 { v as f64 / secs } else { 0.0 });
            s.push_str(&format!("{:<11}{:<11}", per(h.bytes), per(h.pkts)));
        }
        s
    }

    /// One direction's table: header, one row per queue, Total.
    pub fn table(&self, d: &Direction, secs: f64) -> String {
        let mut out = self.header();
        for (q, h) in d.queues.iter().enumerate() {
            out.push('\n');
            out.push_str(&self.row(&q.to_string(), h, secs));
        }
        out.push('\n');
        out.push_str(&self.row("Total", &d.total(), secs));
        out
    }

    /// The separator after each report (77 / 95 dashes as the original).
    pub fn dashes(&self) -> String {
        let n = if self.throughput { 95 } else { 77 } + if self.big { 11 } else { 0 };
        "-".repeat(n)
    }
}

/// The whole text report of one interval.
pub fn render_text(when: &str, tx: &Direction, rx: &Direction, cols: Columns, secs: f64) -> String {
    format!(
        "{when}\nTX\n{}\n\nRX\n{}\n{}",
        cols.table(tx, secs),
        cols.table(rx, secs),
        cols.dashes()
    )
}

fn dir_json(d: &Direction, secs: f64) -> (Value, Value) {
    let rows: Vec<Value> = d
        .queues
        .iter()
        .enumerate()
        .map(|(q, h)| {
            let mut v = h.to_json(secs);
            v["queue"] = json!(q);
            v
        })
        .collect();
    let mut total = d.total().to_json(secs);
    total["other_queue_pkts"] = json!(d.other.pkts);
    (Value::Array(rows), total)
}

struct State {
    out: Output,
    clock: Clock,
    iface: String,
    tx_n: usize,
    rx_n: usize,
    tx_c: PerCpuCounters,
    rx_c: PerCpuCounters,
    cols: Columns,
    last: Instant,
    next: Instant,
    interval: Duration,
    reports: u64,
    /// The interface no longer exists: stop with an error.
    gone: bool,
    run_tx: SizeHist,
    run_rx: SizeHist,
}

fn map<'a>(obj: &'a Object, name: &str) -> libbpf_rs::Map<'a> {
    obj.maps()
        .find(|m| m.name().to_string_lossy() == name)
        .unwrap_or_else(|| shared::die(shared::EXIT_RUNTIME, format!("no map {name}")))
}

impl State {
    fn read(&mut self, obj: &Object) -> (Direction, Direction) {
        let get = |c: &mut PerCpuCounters, name: &str, nq: usize| {
            let m = map(obj, name);
            let rows = c
                .take(&m as &dyn MapCore)
                .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
            let mut slots = vec![SizeHist::default(); nq + 1];
            for e in rows {
                let i = e.index() as usize;
                if i < slots.len() {
                    slots[i] = SizeHist::from_words(&e.words);
                }
            }
            Direction::from_slots(slots, nq)
        };
        let tx = get(&mut self.tx_c, "tx_q", self.tx_n);
        let rx = get(&mut self.rx_c, "rx_q", self.rx_n);
        (tx, rx)
    }

    /// Read and print one report covering the time since the previous one.
    /// `final_` (at exit): skip a near-empty tail with no packets.
    fn report(&mut self, obj: &Object, final_: bool) {
        let now = Instant::now();
        let secs = now.duration_since(self.last).as_secs_f64();
        let (tx, rx) = self.read(obj);
        self.last = now;
        let (ttx, trx) = (tx.total(), rx.total());
        self.run_tx.merge(&ttx);
        self.run_rx.merge(&trx);
        if final_ && ttx.pkts + trx.pkts == 0 && secs < self.interval.as_secs_f64() / 10.0 {
            return;
        }
        self.reports += 1;
        self.cols.big |= tx.has_big() || rx.has_big();
        let ts = Clock::mono_now_ns();
        if self.out.json() {
            let (txq, txt) = dir_json(&tx, secs);
            let (rxq, rxt) = dir_json(&rx, secs);
            let t = self.clock.rfc3339(ts);
            self.out.event(&json!({
                "ts": t,
                "time": t,
                "ts_ns": ts,
                "iface": self.iface,
                "interval_s": (secs * 1e6).round() / 1e6,
                "tx": txq,
                "rx": rxq,
                "tx_total": txt,
                "rx_total": rxt,
            }));
        } else {
            let s = render_text(&self.clock.asctime(ts), &tx, &rx, self.cols, secs);
            self.out.line(&s);
        }
    }

    fn tick(&mut self, obj: &Object) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.report(obj, false);
        if shared::netdev::ifindex(&self.iface).is_none() {
            self.gone = true;
        }
        // Keep the schedule; after a stall, restart it from now.
        self.next += self.interval;
        if self.next <= now {
            self.next = now + self.interval;
        }
    }
}

pub fn run() {
    let args: Args = shared::cli::parse();
    if args.ebpf {
        // The original printed its BPF C source; there is none to print here.
        std::process::exit(0);
    }
    let Some(name) = args.name.clone() else {
        usage_error("missing --name: the interface to watch (-n IFNAME)");
    };
    let (tx_n, rx_n) = queue_counts(&name).unwrap_or_else(|e| usage_error(e));
    let mut session = Session::start(args.common.duration, args.common.verbose);
    let (_kernel, plan) = bpf::plan(&args.common, HOOKS);

    let mut open_object = MaybeUninit::uninit();
    let mut open = IfaceNetstatSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let _channel = bpf::prepare(open.open_object_mut(), &plan);
    let o = open.open_object_mut();
    let fail = |e: String| -> ! { shared::die(shared::EXIT_RUNTIME, e) };
    let mut ifname = [0u8; 16];
    ifname[..name.len()].copy_from_slice(name.as_bytes());
    let netns = std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino() as u32)
        .unwrap_or(0);
    bpf::set_rodata(o, "IFNAME", &ifname).unwrap_or_else(|e| fail(e));
    bpf::set_rodata(o, "NETNS_INO", &netns.to_ne_bytes()).unwrap_or_else(|e| fail(e));
    bpf::set_rodata(o, "TX_QUEUES", &(tx_n as u32).to_ne_bytes()).unwrap_or_else(|e| fail(e));
    bpf::set_rodata(o, "RX_QUEUES", &(rx_n as u32).to_ne_bytes()).unwrap_or_else(|e| fail(e));
    percpu::set_max_entries(o, "tx_q", tx_n as u32 + 1).unwrap_or_else(|e| fail(e));
    percpu::set_max_entries(o, "rx_q", rx_n as u32 + 1).unwrap_or_else(|e| fail(e));
    let mut skel = bpf::load(open);
    let _links = bpf::attach(&plan, &mut skel);

    let out = Output::stdout(args.common.json);
    let now = Instant::now();
    let state = RefCell::new(State {
        out,
        clock: session.clock,
        iface: name.clone(),
        tx_n,
        rx_n,
        tx_c: PerCpuCounters::new(),
        rx_c: PerCpuCounters::new(),
        cols: Columns {
            throughput: args.throughput,
            big: false,
        },
        last: now,
        next: now + args.interval,
        interval: args.interval,
        reports: 0,
        gone: false,
        run_tx: SizeHist::default(),
        run_rx: SizeHist::default(),
    });
    let obj = libbpf_rs::skel::Skel::object(&skel);
    eprintln!(
        "Tracing {tx_n} TX and {rx_n} RX queues of {name} every {}s... Hit Ctrl-C to end.",
        args.interval.as_secs_f64()
    );
    session.attached(&plan.summary());
    {
        let mut st = state.borrow_mut();
        let now = Instant::now();
        st.last = now;
        st.next = now + args.interval;
    }
    let sleep = |t: Duration| {
        std::thread::sleep(t);
        Ok(())
    };
    let tick = || {
        let mut st = state.borrow_mut();
        st.tick(obj);
        if st.gone {
            session.request_stop();
        }
    };
    if let Err(e) = session.run(sleep, tick) {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    let mut st = state.borrow_mut();
    if !st.gone {
        st.report(obj, true);
    }
    eprintln!(
        "Summary: {} reports; TX {} packets {} bytes, RX {} packets {} bytes",
        st.reports, st.run_tx.pkts, st.run_tx.bytes, st.run_rx.pkts, st.run_rx.bytes
    );
    session.verbose_footer();
    if st.gone {
        shared::die(
            shared::EXIT_RUNTIME,
            format!("interface {name} disappeared while it was traced"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(sizes: &[u64]) -> SizeHist {
        let mut h = SizeHist::default();
        sizes.iter().for_each(|&s| h.add(s));
        h
    }

    #[test]
    fn text_layout_matches_the_original() {
        let tx = Direction::from_slots(
            vec![hist(&[1042; 100]), SizeHist::default(), hist(&[42])],
            2,
        );
        let cols = Columns {
            throughput: true,
            big: false,
        };
        let t = cols.table(&tx, 1.0);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            " QueueID    avg_size   [0, 64)    [64, 512)  [512, 2K)  [2K, 16K)  [16K, 64K) BPS        PPS        "
        );
        assert_eq!(
            lines[1],
            " 0          1.02K      0          0          100        0          0          101.76K    100.0      "
        );
        assert_eq!(
            lines[2],
            " 1          0          0          0          0          0          0          0.0        0.0        "
        );
        // Queue ids past the sysfs count only show in the total.
        assert_eq!(lines.len(), 4);
        assert!(lines[3].starts_with(" Total      1.01K      1          0          100  "));
        assert_eq!(cols.dashes().len(), 95);
        let plain = Columns {
            throughput: false,
            big: false,
        };
        assert_eq!(plain.dashes().len(), 77);
        assert!(!plain.table(&tx, 1.0).contains("BPS"));
    }

    #[test]
    fn big_column_only_when_seen() {
        let d = Direction::from_slots(vec![hist(&[70000, 100])], 1);
        assert!(d.has_big());
        let cols = Columns {
            throughput: false,
            big: true,
        };
        let t = cols.table(&d, 1.0);
        assert!(t.lines().next().unwrap().contains("[64K, inf)"));
        assert!(t.lines().nth(1).unwrap().starts_with(
            " 0          34.23K     0          1          0          0          0          1  "
        ));
        assert_eq!(cols.dashes().len(), 88);
    }

    #[test]
    fn report_shape() {
        let d = Direction::from_slots(vec![hist(&[98, 98])], 1);
        let s = render_text(
            "Fri Jan  2 03:04:05 2026",
            &d,
            &d,
            Columns {
                throughput: false,
                big: false,
            },
            1.0,
        );
        let l: Vec<&str> = s.lines().collect();
        assert_eq!(l[0], "Fri Jan  2 03:04:05 2026");
        assert_eq!(l[1], "TX");
        assert_eq!(l[5], "");
        assert_eq!(l[6], "RX");
        assert_eq!(l.len(), 11);
        let (rows, total) = dir_json(&d, 2.0);
        assert_eq!(rows[0]["queue"], 0);
        assert_eq!(rows[0]["b64_512"], 2);
        assert_eq!(total["pps"], 1.0);
        assert_eq!(total["avg"], 98.0);
    }
}
