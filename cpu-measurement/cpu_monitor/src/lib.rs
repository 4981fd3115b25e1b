//! `cpu_monitor`: how busy were CPUs X (and their hyper-thread siblings) in
//! each interval, which threads used those CPUs, and — when a CPU was hotter
//! than a threshold — where did its time go (sampled stacks)?
//!
//! CPU usage from /proc/stat (what top/mpstat show); per-thread time per CPU
//! from BPF on sched_switch (migrations and short-lived threads are charged to
//! the CPU they ran on); profiles from a BPF program on a software cpu-clock
//! perf event per target CPU (no `perf` binary, works without a hardware PMU).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use serde_json::json;

use shared::args::{check_cpus, parse_cpu_list};
use shared::bpf;
use shared::cli::{AttachMode, CommonArgs};
use shared::folded;
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::perf::attach_cpu_clock;
use shared::runner::Session;
use shared::sched::SCHED_SWITCH;
use shared::stacks::read_stack;
use shared::symbolize::Symbolizer;
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/cpu_monitor.skel.rs"));
}
use skel::CpuMonitorSkelBuilder;

const SAMPLING: HookPoint = HookPoint {
    name: "cpu_sampling",
    required: true,
    candidates: &[Candidate::new(
        Kind::PerfEvent,
        "cpu_sample",
        "software cpu-clock",
    )],
};
pub static HOOKS: &[HookPoint] = &[SCHED_SWITCH];
pub static HOOKS_PROFILING: &[HookPoint] = &[SCHED_SWITCH, SAMPLING];

const MAX_CPUS: usize = 1024;
const SAMPLE_HZ: u64 = 1000;
const EFAULT: i32 = -14;

/// Mirror of `struct cur` (src/bpf/cpu_monitor.bpf.c).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Cur {
    pub tid: u32,
    pub tgid: u32,
    pub since: u64,
    pub comm: [u8; 16],
}
// SAFETY: plain old data.
unsafe impl plain::Plain for Cur {}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct AccKey {
    pub cpu: u32,
    pub tid: u32,
}
// SAFETY: plain old data.
unsafe impl plain::Plain for AccKey {}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct AccVal {
    pub ns: u64,
    pub tgid: u32,
    pub pad: u32,
    pub comm: [u8; 16],
}
// SAFETY: plain old data.
unsafe impl plain::Plain for AccVal {}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct SampleKey {
    pub cpu: u32,
    pub tgid: u32,
    pub tid: u32,
    pub kstack_id: i32,
    pub ustack_id: i32,
    pub pad: u32,
    pub comm: [u8; 16],
}
// SAFETY: plain old data.
unsafe impl plain::Plain for SampleKey {}
const _: () = assert!(std::mem::size_of::<Cur>() == 32);
const _: () = assert!(std::mem::size_of::<AccVal>() == 32);
const _: () = assert!(std::mem::size_of::<SampleKey>() == 40);

fn interval_arg(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n as u64),
        Ok(_) => Err("must be a whole number of seconds >= 1".into()),
        Err(_) => Err("not a whole number of seconds".into()),
    }
}

fn threshold_arg(s: &str) -> Result<u32, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if (0..=100).contains(&n) => Ok(n as u32),
        Ok(_) => Err("must be 0-100".into()),
        Err(_) => Err("not a whole percentage (0-100)".into()),
    }
}

fn top_arg(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n as usize),
        Ok(_) => Err("must be >= 1".into()),
        Err(_) => Err("not a number".into()),
    }
}

/// A CPU list (an alias, so clap takes it as one value).
pub type CpuList = Vec<u32>;

#[derive(Parser, Debug)]
#[command(
    name = "cpu_monitor",
    about = "Monitor CPU usage of target CPUs and their hyper-thread siblings, the threads using them, and profile hot CPUs",
    after_help = "CPU usage comes from /proc/stat (user+nice+system+irq+softirq vs idle+iowait; steal and guest \
ignored). Per-thread %CPU is the time each thread was current on that CPU in the interval (sched_switch), \
interrupt time included. Profiles: 1000 Hz software cpu-clock samples, frame-pointer stacks (no DWARF), \
written as DIR/perf_cpuN_TIMESTAMP.txt (top functions and stacks) and .folded (flame graphs)."
)]
pub struct Args {
    /// Target CPUs, e.g. 0,1,2 or 0-3,8-11
    #[arg(short = 'c', long = "cpus", value_name = "LIST", value_parser = parse_cpu_list, required = true)]
    pub cpus: CpuList,

    /// Length of one measurement cycle, whole seconds >= 1
    #[arg(short = 'i', long, value_name = "N", default_value_t = 5, value_parser = interval_arg, allow_hyphen_values = true)]
    pub interval: u64,

    /// Log to cpu_monitor_YYYYmmdd_HHMMSS.log in the current directory instead of stdout
    #[arg(short = 'l', long)]
    pub log: bool,

    /// Log to FILE (appended; implies -l)
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Profile target CPUs and keep the profile when a CPU's usage is >= PCT (0 = off)
    #[arg(short = 't', long, value_name = "PCT", default_value_t = 0, value_parser = threshold_arg, allow_hyphen_values = true)]
    pub threshold: u32,

    /// Where kept profiles go (default /tmp/cpu_monitor_perf_YYYYmmdd_HHMMSS)
    #[arg(long, value_name = "DIR")]
    pub perf_output: Option<PathBuf>,

    /// Max threads listed per CPU
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = top_arg, allow_hyphen_values = true)]
    pub top: usize,

    /// One JSON object per cycle
    #[arg(long)]
    pub json: bool,

    /// Stop after SECS seconds (default: until Ctrl-C)
    #[arg(long, value_name = "SECS", value_parser = shared::cli::parse_duration, allow_hyphen_values = true)]
    pub duration: Option<Duration>,

    /// Print the hook plan and exit without attaching
    #[arg(long)]
    pub explain: bool,

    /// Force one way of attaching sched_switch (tp_btf, raw_tp, tracepoint)
    #[arg(long, value_enum, default_value_t = AttachMode::Auto, value_name = "MODE")]
    pub attach: AttachMode,

    /// Show libbpf messages, start-up time and memory
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// (busy, idle) jiffies of the `cpu` line (None) and each `cpuN` line.
pub fn parse_proc_stat(text: &str) -> HashMap<Option<u32>, (u64, u64)> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some(name) = it.next() else { continue };
        let Some(rest) = name.strip_prefix("cpu") else {
            continue;
        };
        let id = if rest.is_empty() {
            None
        } else if let Ok(n) = rest.parse::<u32>() {
            Some(n)
        } else {
            continue;
        };
        let v: Vec<u64> = it.take(7).filter_map(|x| x.parse().ok()).collect();
        if v.len() < 7 {
            continue;
        }
        let idle = v[3] + v[4];
        let busy = v[0] + v[1] + v[2] + v[5] + v[6];
        out.insert(id, (busy, idle));
    }
    out
}

/// `100 × Δbusy / (Δbusy + Δidle)`, 0 when nothing elapsed.
pub fn usage(a: (u64, u64), b: (u64, u64)) -> f64 {
    let db = b.0.saturating_sub(a.0) as f64;
    let di = b.1.saturating_sub(a.1) as f64;
    if db + di <= 0.0 {
        0.0
    } else {
        100.0 * db / (db + di)
    }
}

fn read_stat() -> HashMap<Option<u32>, (u64, u64)> {
    fs::read_to_string("/proc/stat")
        .map(|t| parse_proc_stat(&t))
        .unwrap_or_default()
}

fn list(v: &[u32], sep: &str) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(sep)
}

/// The logger of the original: `[YYYY-mm-dd HH:MM:SS] message` (only the
/// first line of a multi-line message carries the prefix), to stdout or the
/// log file; in JSON mode text goes to stderr.
struct Logger {
    sink: Box<dyn Write>,
    json: bool,
}

impl Logger {
    fn log(&mut self, msg: &str) {
        let line = format!(
            "[{}] {msg}",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
        );
        if self.json {
            eprintln!("{line}");
        } else {
            let _ = writeln!(self.sink, "{line}");
            let _ = self.sink.flush();
        }
    }
    fn json(&mut self, v: &serde_json::Value) {
        let _ = writeln!(self.sink, "{v}");
        let _ = self.sink.flush();
    }
}

/// One thread row of a CPU.
#[derive(Clone, Debug)]
pub struct Row {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub pct: f64,
}

pub fn cpu_header(
    cpu: u32,
    pct: Option<f64>,
    perf: Option<bool>,
    target: bool,
    interval: u64,
) -> String {
    let mut s = match pct {
        Some(p) => format!("  CPU {cpu:2}: {p:6.1}%"),
        None => format!("  CPU {cpu:2}: offline"),
    };
    match perf {
        Some(true) => s.push_str(" [PERF kept]"),
        Some(false) => s.push_str(" [PERF discarded]"),
        None => {}
    }
    if target {
        s.push_str(" [target]");
    }
    s.push_str(&format!(
        " - processes/threads ({interval}s average CPU usage):"
    ));
    s
}

pub fn table(cpu: u32, rows: &[Row]) -> String {
    let mut s = format!(
        "    {:>6} {:>6} {:>3} {:>5} {:<20}\n",
        "PID", "TID", "CPU", "%CPU", "COMMAND"
    );
    s.push_str("    ------ ------ --- ----- --------------------\n");
    if rows.is_empty() {
        s.push_str("    no active processes\n");
    }
    for r in rows {
        s.push_str(&format!(
            "    {:6} {:6} {:3} {:5.1}% {:<20}\n",
            r.pid, r.tid, cpu, r.pct, r.comm
        ));
    }
    s
}

/// Aggregated samples of one CPU: stack (folded frames, root first) -> count.
#[derive(Default)]
struct Profile {
    stacks: BTreeMap<Vec<String>, u64>,
    total: u64,
}

impl Profile {
    fn text(&self, cpu: u32, usage: f64, threshold: u32, interval: u64, start: &str) -> String {
        let mut s = String::new();
        s.push_str("CPU monitor profile (software cpu-clock, 1000 Hz, frame-pointer stacks)\n");
        s.push_str(&format!("CPU: {cpu}\n"));
        s.push_str(&format!("Usage: {usage:.2}%\n"));
        s.push_str(&format!("Threshold: {threshold}%\n"));
        s.push_str(&format!("Interval: {interval} s\n"));
        s.push_str(&format!("Cycle start: {start}\n"));
        s.push_str(&format!("Samples: {}\n\n", self.total));
        let mut leaf: HashMap<&str, u64> = HashMap::new();
        for (st, c) in &self.stacks {
            let l = st.last().map(String::as_str).unwrap_or("[unknown]");
            *leaf.entry(l).or_default() += c;
        }
        let mut lv: Vec<(&str, u64)> = leaf.into_iter().collect();
        lv.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let pct = |c: u64| {
            if self.total == 0 {
                0.0
            } else {
                100.0 * c as f64 / self.total as f64
            }
        };
        s.push_str("Top Functions:\n");
        s.push_str(&format!(
            "  {:<60} {:>8} {:>7}\n",
            "FUNCTION", "SAMPLES", "%"
        ));
        for (f, c) in lv.iter().take(30) {
            s.push_str(&format!("  {:<60} {:>8} {:>6.2}%\n", f, c, pct(*c)));
        }
        let mut sv: Vec<(&Vec<String>, &u64)> = self.stacks.iter().collect();
        sv.sort_by(|a, b| b.1.cmp(a.1));
        s.push_str("\nTop Stacks (caller first):\n");
        for (i, (st, c)) in sv.iter().take(10).enumerate() {
            s.push_str(&format!(
                "\n  #{} {} samples ({:.2}%)\n",
                i + 1,
                c,
                pct(**c)
            ));
            for f in st.iter() {
                s.push_str(&format!("      {f}\n"));
            }
        }
        s
    }

    fn folded(&self) -> String {
        let mut s = String::new();
        for (st, c) in &self.stacks {
            s.push_str(&folded::line(st, *c));
            s.push('\n');
        }
        s
    }
}

pub struct CpuInfo {
    pub cpu: u32,
    pub target: bool,
    pub group: Vec<u32>,
    pub online: bool,
}

/// Target CPUs and their sibling groups, each group once, in the order of
/// its lowest target.
pub fn groups(targets: &[u32], siblings: impl Fn(u32) -> Vec<u32>) -> Vec<(u32, Vec<u32>)> {
    let mut out: Vec<(u32, Vec<u32>)> = Vec::new();
    for &t in targets {
        let mut g = siblings(t);
        if !g.contains(&t) {
            g.push(t);
        }
        g.sort_unstable();
        g.dedup();
        if out.iter().any(|(_, og)| og.contains(&t)) {
            continue;
        }
        out.push((t, g));
    }
    out
}

pub fn run() {
    let args: Args = shared::cli::parse();
    check_cpus("--cpus", &args.cpus);
    let started_wall = chrono::Local::now();
    let stamp = started_wall.format("%Y%m%d_%H%M%S").to_string();
    let online = shared::proc::cpus_online();
    let targets = args.cpus.clone();
    let grps = groups(&targets, shared::proc::thread_siblings);
    let mut monitored: Vec<u32> = grps.iter().flat_map(|g| g.1.iter().copied()).collect();
    monitored.sort_unstable();
    monitored.dedup();
    if let Some(&m) = monitored.iter().find(|&&c| c as usize >= MAX_CPUS) {
        shared::cli::usage_error(format!(
            "invalid value for '--cpus': CPU {m} above the supported {MAX_CPUS}"
        ));
    }
    let profiling = args.threshold > 0;
    let perf_dir = args
        .perf_output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/cpu_monitor_perf_{stamp}")));
    let log_path = match (&args.log_file, args.log) {
        (Some(f), _) => Some(f.clone()),
        (None, true) => Some(PathBuf::from(format!("cpu_monitor_{stamp}.log"))),
        (None, false) => None,
    };
    let common = CommonArgs {
        duration: args.duration,
        json: args.json,
        explain: args.explain,
        attach: args.attach,
        verbose: args.verbose,
    };
    if !args.explain && profiling {
        if let Err(e) = fs::create_dir_all(&perf_dir) {
            shared::cli::usage_error(format!(
                "invalid value '{}' for '--perf-output': {e}",
                perf_dir.display()
            ));
        }
    }
    let sink: Box<dyn Write> = match (&log_path, args.explain) {
        (Some(p), false) => match OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Box::new(f),
            Err(e) => shared::cli::usage_error(format!(
                "invalid value '{}' for '--log-file': {e}",
                p.display()
            )),
        },
        _ => Box::new(std::io::stdout()),
    };
    let mut out = Logger {
        sink,
        json: args.json,
    };
    for c in &targets {
        if !online.contains(c) {
            eprintln!("warning: CPU {c} is offline; it is reported as offline");
        }
    }

    let mut session = Session::start(common.duration, common.verbose);
    let hooks = if profiling { HOOKS_PROFILING } else { HOOKS };
    let (_kernel, plan) = bpf::plan(&common, hooks);

    let mut open_object = MaybeUninit::uninit();
    let mut open = CpuMonitorSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    bpf::prepare(open.open_object_mut(), &plan);
    let mut mon = vec![0u8; MAX_CPUS];
    for &c in &monitored {
        mon[c as usize] = 1;
    }
    bpf::set_rodata(open.open_object_mut(), "monitored", &mon)
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    let mut skel = bpf::load(open);
    let _links = bpf::attach(&plan, &mut skel);
    let online_targets: Vec<u32> = targets
        .iter()
        .copied()
        .filter(|c| online.contains(c))
        .collect();
    let _clocks = if profiling {
        attach_cpu_clock(&skel.progs.cpu_sample, &online_targets, SAMPLE_HZ)
            .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e))
    } else {
        Vec::new()
    };

    // Banner.
    let bar = "=".repeat(80);
    out.log(&bar);
    out.log("CPU monitor started");
    out.log(&format!("Target CPUs: [{}]", list(&targets, ",")));
    out.log(&format!("Monitored CPUs: [{}]", list(&monitored, ",")));
    out.log(&format!("Interval: {} s", args.interval));
    out.log(&format!("CPU usage averaging window: {} s", args.interval));
    out.log(&format!("Max processes per CPU: {}", args.top));
    if let Some(p) = &log_path {
        out.log(&format!("Log file: {}", p.display()));
    }
    if profiling {
        out.log(&format!("Perf threshold: {}%", args.threshold));
        out.log(&format!("Perf output dir: {}", perf_dir.display()));
        out.log("Profiling strategy: sample every target CPU each cycle (1000 Hz software clock), keep the profile only if the CPU's usage reaches the threshold");
    } else {
        out.log("Perf sampling: disabled");
    }
    out.log(&bar);

    let clock = session.clock;
    let mut st = CycleState {
        stat: read_stat(),
        acc: HashMap::new(),
        partial: HashMap::new(),
        t_ns: Clock::mono_now_ns(),
        start_wall: chrono::Local::now(),
    };
    let (acc, partial, _) = snapshot(&skel.maps.acc, &skel.maps.current_task, &monitored);
    st.acc = acc;
    st.partial = partial;
    session.attached(&plan.summary());
    let t0 = Instant::now();
    let every = Duration::from_secs(args.interval);
    let k = std::cell::Cell::new(1u32);
    let mut syms = Symbolizer::new();
    if profiling {
        syms.preload_kernel();
    }
    if profiling {
        out.log(&format!(
            "Parallel profiling of target CPUs started ({}s)",
            args.interval
        ));
    }
    let cfg = CycleCfg {
        interval: args.interval,
        threshold: args.threshold,
        top: args.top,
        profiling,
        perf_dir: perf_dir.clone(),
        targets: targets.clone(),
        groups: grps.clone(),
        monitored: monitored.clone(),
        online: online.clone(),
        json: args.json,
    };
    let maps = &skel.maps;
    let r = session.run(
        |t| {
            let next = t0 + every * k.get();
            std::thread::sleep(t.min(next.saturating_duration_since(Instant::now())));
            Ok(())
        },
        || {
            if Instant::now() >= t0 + every * k.get() {
                cycle(&cfg, &mut st, &mut out, &mut syms, maps, &clock);
                k.set(k.get() + 1);
                if profiling {
                    out.log(&format!(
                        "Parallel profiling of target CPUs started ({}s)",
                        args.interval
                    ));
                }
            }
        },
    );
    if let Err(e) = r {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    let by_duration = args
        .duration
        .is_some_and(|d| t0.elapsed() + Duration::from_millis(50) >= d);
    // A cycle that ended while the previous one was still being written (slow
    // symbolization) is reported before stopping at the end of --duration.
    if by_duration && Instant::now() >= t0 + every * k.get() {
        cycle(&cfg, &mut st, &mut out, &mut syms, maps, &clock);
    }
    if !by_duration {
        out.log("Received interrupt, stopping monitor...");
    }
    out.log("CPU monitor stopped");
    session.verbose_footer();
}

struct CycleCfg {
    interval: u64,
    threshold: u32,
    top: usize,
    profiling: bool,
    perf_dir: PathBuf,
    targets: Vec<u32>,
    groups: Vec<(u32, Vec<u32>)>,
    monitored: Vec<u32>,
    online: Vec<u32>,
    json: bool,
}

type AccSnap = HashMap<(u32, u32), AccVal>;
type PartialSnap = HashMap<(u32, u32), (u64, Cur)>;

struct CycleState {
    stat: HashMap<Option<u32>, (u64, u64)>,
    acc: AccSnap,
    partial: PartialSnap,
    t_ns: u64,
    start_wall: chrono::DateTime<chrono::Local>,
}

/// Cumulative per-(cpu, tid) time, and the still-running slice of each
/// monitored CPU's current thread, at one instant.
fn snapshot(
    acc: &dyn MapCore,
    cur: &dyn MapCore,
    monitored: &[u32],
) -> (AccSnap, PartialSnap, u64) {
    let mut a = HashMap::new();
    for k in acc.keys() {
        let mut key = AccKey::default();
        if plain::copy_from_bytes(&mut key, &k).is_err() {
            continue;
        }
        if let Ok(Some(v)) = acc.lookup(&k, MapFlags::ANY) {
            let mut val = AccVal::default();
            if plain::copy_from_bytes(&mut val, &v).is_ok() {
                a.insert((key.cpu, key.tid), val);
            }
        }
    }
    let now = Clock::mono_now_ns();
    let mut p = HashMap::new();
    if let Ok(Some(per_cpu)) = cur.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY) {
        let possible = shared::proc::cpus_possible();
        for (i, raw) in per_cpu.iter().enumerate() {
            let cpu = possible.get(i).copied().unwrap_or(i as u32);
            if !monitored.contains(&cpu) {
                continue;
            }
            let mut c = Cur::default();
            if plain::copy_from_bytes(&mut c, raw).is_ok()
                && c.tid != 0
                && c.since != 0
                && now > c.since
            {
                p.insert((cpu, c.tid), (now - c.since, c));
            }
        }
    }
    (a, p, now)
}

fn cycle(
    cfg: &CycleCfg,
    st: &mut CycleState,
    out: &mut Logger,
    syms: &mut Symbolizer,
    maps: &skel::CpuMonitorMaps<'_>,
    clock: &Clock,
) {
    let stat = read_stat();
    let (acc, partial, now) = snapshot(&maps.acc, &maps.current_task, &cfg.monitored);
    let elapsed = now.saturating_sub(st.t_ns).max(1);
    let end_wall = chrono::Local::now();
    let _ = clock;

    // Per (cpu, tid) time in this cycle.
    let mut per_cpu: HashMap<u32, Vec<Row>> = HashMap::new();
    let mut keys: HashSet<(u32, u32)> = acc.keys().copied().collect();
    keys.extend(partial.keys().copied());
    keys.extend(st.partial.keys().copied());
    for key in keys {
        let now_acc = acc.get(&key).map(|v| v.ns).unwrap_or(0);
        let prev_acc = st.acc.get(&key).map(|v| v.ns).unwrap_or(0);
        let now_part = partial.get(&key).map(|p| p.0).unwrap_or(0);
        let prev_part = st.partial.get(&key).map(|p| p.0).unwrap_or(0);
        let d = (now_acc.saturating_sub(prev_acc) + now_part).saturating_sub(prev_part);
        if d == 0 {
            continue;
        }
        let pct = 100.0 * d as f64 / elapsed as f64;
        if pct <= 0.1 {
            continue;
        }
        let (tgid, comm) = match (acc.get(&key), partial.get(&key)) {
            (_, Some((_, c))) => (c.tgid, shared::fmt::cstr(&c.comm)),
            (Some(v), None) => (v.tgid, shared::fmt::cstr(&v.comm)),
            _ => continue,
        };
        per_cpu.entry(key.0).or_default().push(Row {
            pid: tgid,
            tid: key.1,
            comm,
            pct,
        });
    }
    for rows in per_cpu.values_mut() {
        rows.sort_by(|a, b| {
            b.pct
                .partial_cmp(&a.pct)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.tid.cmp(&b.tid))
        });
        rows.truncate(cfg.top);
    }
    let usage_of = |c: Option<u32>| -> Option<f64> {
        match (st.stat.get(&c), stat.get(&c)) {
            (Some(a), Some(b)) => Some(usage(*a, *b)),
            _ => None,
        }
    };
    let total = usage_of(None).unwrap_or(0.0);

    // Profiles of target CPUs.
    let mut perf_state: HashMap<u32, (bool, Option<PathBuf>)> = HashMap::new();
    if cfg.profiling {
        let profiles = collect_profiles(maps, syms);
        let ts = st.start_wall.format("%Y%m%d_%H%M%S").to_string();
        for &c in &cfg.targets {
            let u = usage_of(Some(c)).unwrap_or(0.0);
            if u >= cfg.threshold as f64 && cfg.online.contains(&c) {
                let empty = Profile::default();
                let p = profiles.get(&c).unwrap_or(&empty);
                let txt = cfg.perf_dir.join(format!("perf_cpu{c}_{ts}.txt"));
                let fold = cfg.perf_dir.join(format!("perf_cpu{c}_{ts}.folded"));
                let start_s = st.start_wall.format("%Y-%m-%d %H:%M:%S").to_string();
                let w1 = fs::write(&txt, p.text(c, u, cfg.threshold, cfg.interval, &start_s));
                let w2 = fs::write(&fold, p.folded());
                match (w1, w2) {
                    (Ok(()), Ok(())) => {
                        out.log(&format!(
                            "CPU {c} usage {u:.2}% >= threshold, profile saved: {}",
                            txt.display()
                        ));
                        perf_state.insert(c, (true, Some(txt)));
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        out.log(&format!(
                            "CPU {c} usage {u:.2}%: writing the profile failed: {e}"
                        ));
                        perf_state.insert(c, (false, None));
                    }
                }
            } else {
                out.log(&format!(
                    "CPU {c} usage {u:.2}% below threshold {}%, profile discarded",
                    cfg.threshold
                ));
                perf_state.insert(c, (false, None));
            }
        }
    }

    let empty: Vec<Row> = Vec::new();
    if cfg.json {
        let mut cpus = Vec::new();
        for (_, g) in &cfg.groups {
            for &c in g {
                let rows = per_cpu.get(&c).unwrap_or(&empty);
                let ps = perf_state.get(&c);
                cpus.push(json!({
                    "cpu": c,
                    "target": cfg.targets.contains(&c),
                    "group": g,
                    "usage_pct": round2(usage_of(Some(c)).unwrap_or(0.0)),
                    "online": cfg.online.contains(&c),
                    "perf": ps.map(|p| if p.0 { "kept" } else { "discarded" }),
                    "profile_txt": ps.and_then(|p| p.1.as_ref()).map(|p| p.display().to_string()),
                    "threads": rows.iter().map(|r| json!({
                        "pid": r.pid,
                        "tid": r.tid,
                        "comm": r.comm,
                        "process_comm": shared::proc::comm(r.pid).unwrap_or_else(|| r.comm.clone()),
                        "cpu_pct": round2(r.pct),
                    })).collect::<Vec<_>>(),
                }));
            }
        }
        out.json(&json!({
            "ts": end_wall.to_rfc3339(),
            "interval_s": cfg.interval,
            "elapsed_s": elapsed as f64 / 1e9,
            "total_usage_pct": round2(total),
            "cpus": cpus,
        }));
    } else {
        let mut s = format!(
            "======== CPU Monitor - {} ========\n",
            end_wall.format("%H:%M:%S")
        );
        s.push_str(&format!("Total CPU usage: {total:.1}%\n"));
        for (t, g) in &cfg.groups {
            s.push_str(&format!(
                "\nTarget CPU {t} and its hyper-thread group [{}]:\n",
                list(g, " ")
            ));
            for &c in g {
                let target = cfg.targets.contains(&c);
                let perf = if cfg.profiling && target {
                    perf_state.get(&c).map(|p| p.0)
                } else {
                    None
                };
                let pct = if cfg.online.contains(&c) {
                    Some(usage_of(Some(c)).unwrap_or(0.0))
                } else {
                    None
                };
                s.push_str(&cpu_header(c, pct, perf, target, cfg.interval));
                s.push('\n');
                s.push_str(&table(c, per_cpu.get(&c).unwrap_or(&empty)));
                s.push('\n');
            }
        }
        out.log(s.trim_end_matches('\n'));
    }

    st.stat = stat;
    st.acc = acc;
    st.partial = partial;
    st.t_ns = now;
    st.start_wall = end_wall;
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Read and clear the samples, clear the stack map; per CPU, folded stacks.
fn collect_profiles(
    maps: &skel::CpuMonitorMaps<'_>,
    syms: &mut Symbolizer,
) -> HashMap<u32, Profile> {
    let mut rows: Vec<(Vec<u8>, SampleKey, u64)> = Vec::new();
    for k in maps.samples.keys() {
        let mut key = SampleKey::default();
        if plain::copy_from_bytes(&mut key, &k).is_err() {
            continue;
        }
        if let Ok(Some(v)) = maps.samples.lookup(&k, MapFlags::ANY) {
            if v.len() >= 8 {
                rows.push((k, key, u64::from_ne_bytes(v[..8].try_into().unwrap())));
            }
        }
    }
    for (k, _, _) in &rows {
        let _ = maps.samples.delete(k);
    }
    let mut raw: HashMap<i32, Option<Vec<u64>>> = HashMap::new();
    for (_, k, _) in &rows {
        for id in [k.kstack_id, k.ustack_id] {
            if id >= 0 && !raw.contains_key(&id) {
                raw.insert(id, read_stack(&maps.stacks, id).ok());
            }
        }
    }
    let ids: Vec<Vec<u8>> = maps.stacks.keys().collect();
    for id in ids {
        let _ = maps.stacks.delete(&id);
    }
    let kaddrs: Vec<u64> = rows
        .iter()
        .filter_map(|(_, k, _)| raw.get(&k.kstack_id).cloned().flatten())
        .flatten()
        .collect();
    syms.prefetch_kernel(&kaddrs);
    let mut seen: BTreeSet<u32> = BTreeSet::new();
    let mut out: HashMap<u32, Profile> = HashMap::new();
    for (_, k, n) in rows {
        if k.tgid != 0 && seen.insert(k.tgid) {
            syms.remember(k.tgid);
        }
        let mut frames = vec![shared::fmt::cstr(&k.comm)];
        match raw.get(&k.ustack_id) {
            Some(Some(a)) => frames.extend(syms.user(k.tgid, a).iter().rev().map(|f| f.bcc(false))),
            _ if k.ustack_id == EFAULT || k.tid == 0 => {}
            _ => frames.push("[Missed User Stack]".into()),
        }
        match raw.get(&k.kstack_id) {
            Some(Some(a)) => frames.extend(syms.kernel(a).iter().rev().map(|f| f.bcc(false))),
            _ if k.kstack_id == EFAULT => {}
            _ => frames.push("[Missed Kernel Stack]".into()),
        }
        let p = out.entry(k.cpu).or_default();
        *p.stacks.entry(frames).or_default() += n;
        p.total += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat() {
        let a =
            parse_proc_stat("cpu  100 0 100 800 0 0 0 5 0 0\ncpu0 50 0 50 400 0 0 0\nintr 1 2\n");
        let b = parse_proc_stat("cpu  200 0 200 1400 200 0 0 9 0 0\ncpu0 150 0 50 400 0 0 0\n");
        assert!((usage(a[&None], b[&None]) - 20.0).abs() < 1e-9);
        assert!((usage(a[&Some(0)], b[&Some(0)]) - 100.0).abs() < 1e-9);
        assert_eq!(usage((1, 1), (1, 1)), 0.0);
    }

    #[test]
    fn layout() {
        assert_eq!(
            cpu_header(2, Some(93.44), Some(true), true, 5),
            "  CPU  2:   93.4% [PERF kept] [target] - processes/threads (5s average CPU usage):"
        );
        assert_eq!(
            cpu_header(10, Some(3.0), None, false, 5),
            "  CPU 10:    3.0% - processes/threads (5s average CPU usage):"
        );
        let t = table(
            2,
            &[Row {
                pid: 1234,
                tid: 1240,
                comm: "CPU 0/KVM".into(),
                pct: 88.04,
            }],
        );
        assert_eq!(
            t,
            "       PID    TID CPU  %CPU COMMAND             \n    ------ ------ --- ----- --------------------\n      1234   1240   2  88.0% CPU 0/KVM           \n"
        );
        assert!(table(3, &[]).ends_with("    no active processes\n"));
    }

    #[test]
    fn sibling_groups_once() {
        let sib = |c: u32| {
            if c == 2 || c == 10 {
                vec![2, 10]
            } else {
                vec![c]
            }
        };
        assert_eq!(
            groups(&[2, 10, 3], sib),
            vec![(2, vec![2, 10]), (3, vec![3])]
        );
    }

    #[test]
    fn profile_text() {
        let mut p = Profile::default();
        p.stacks
            .insert(vec!["spin".into(), "main".into(), "spin_here".into()], 90);
        p.stacks.insert(vec!["spin".into(), "main".into()], 10);
        p.total = 100;
        let t = p.text(1, 99.0, 50, 2, "x");
        let after = t.split("Top Functions:\n").nth(1).unwrap();
        assert!(after
            .lines()
            .nth(1)
            .unwrap()
            .trim_start()
            .starts_with("spin_here"));
        assert!(p.folded().lines().all(folded::is_valid_line));
    }
}
