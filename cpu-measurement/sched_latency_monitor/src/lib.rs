//! `sched_latency_monitor`: for process NAME, in each measurement window, how
//! long did each of its threads wait runnable on a run queue (wake-up →
//! running), how much did they run, and how often? A continuous, windowed
//! `perf sched latency` built natively from sched_wakeup/sched_switch, logged
//! to a file for long unattended runs.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use serde_json::json;

use shared::args::parse_seconds_in;
use shared::bpf;
use shared::cli::{AttachMode, CommonArgs};
use shared::events::{lost_in_kernel, Drain};
use shared::hooks::HookPoint;
use shared::runner::Session;
use shared::sched::{SCHED_SWITCH, SCHED_WAKEUP, SCHED_WAKEUP_NEW};
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/sched_latency_monitor.skel.rs"));
}
use skel::SchedLatencyMonitorSkelBuilder;

pub static HOOKS: &[HookPoint] = &[SCHED_SWITCH, SCHED_WAKEUP, SCHED_WAKEUP_NEW];

const ST_RUNNING: u32 = 1;
const EV_RUN: u8 = 1;
const EV_DELAY: u8 = 2;
/// Ring-buffer drain margin before a window is closed.
const DRAIN_NS: u64 = 50_000_000;

/// Mirror of `struct sl_event` (src/bpf/sched_latency_monitor.bpf.c).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct SlEvent {
    pub kind: u8,
    pub pad: [u8; 3],
    pub tid: u32,
    pub tgid: u32,
    pub cpu: u32,
    pub start: u64,
    pub end: u64,
    pub comm: [u8; 16],
}
// SAFETY: plain old data.
unsafe impl plain::Plain for SlEvent {}
const _: () = assert!(std::mem::size_of::<SlEvent>() == 48);

/// Mirror of `struct tstate`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct ThreadState {
    pub ts: u64,
    pub state: u32,
    pub tgid: u32,
    pub comm: [u8; 16],
}
// SAFETY: plain old data.
unsafe impl plain::Plain for ThreadState {}
const _: () = assert!(std::mem::size_of::<ThreadState>() == 32);

fn period_arg(s: &str) -> Result<f64, String> {
    parse_seconds_in(s, 0.0, 3600.0)
}
fn interval_arg(s: &str) -> Result<f64, String> {
    parse_seconds_in(s, 0.05, 86400.0)
}
fn duration_arg(s: &str) -> Result<f64, String> {
    parse_seconds_in(s, 0.0, 365.0 * 86400.0)
}

#[derive(Parser, Debug)]
#[command(
    name = "sched_latency_monitor",
    about = "Continuous, windowed scheduling latency (perf sched latency) of one process, logged to a file",
    after_help = "Every window (a new one starts every INTERVAL s and lasts PERIOD s) gets a table per \
thread name: run time, number of switch-ins after a wait, average and maximum wait (wake-up or \
preemption until running again), with the CLOCK_MONOTONIC times of the longest wait. Threads with \
the same name are merged (name:(N)). Needs no perf, bc or sudo."
)]
pub struct Args {
    /// Target process name (pidof semantics: comm or argv[0] basename)
    #[arg(short = 'p', long, value_name = "NAME", default_value = "ovs-vswitchd")]
    pub process: String,

    /// Length of one measurement window, seconds (decimal, <= 3600)
    #[arg(short = 't', long, value_name = "SECONDS", default_value = "1", value_parser = period_arg, allow_hyphen_values = true)]
    pub period: f64,

    /// A new window starts every SECONDS (decimal, >= 0.05)
    #[arg(short = 'i', long, value_name = "SECONDS", default_value = "1", value_parser = interval_arg, allow_hyphen_values = true)]
    pub interval: f64,

    /// Report file (appended)
    #[arg(
        short = 'l',
        long,
        value_name = "FILE",
        default_value = "sched_latency.log"
    )]
    pub log: PathBuf,

    /// Progress lines on stdout (without it stdout stays silent)
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Stop after SECONDS (decimal)
    #[arg(long, value_name = "SECONDS", value_parser = duration_arg, allow_hyphen_values = true)]
    pub duration: Option<f64>,

    /// Also print one JSON object per window on stdout
    #[arg(long)]
    pub json: bool,

    /// Print the hook plan and exit without attaching
    #[arg(long)]
    pub explain: bool,

    /// Force one way of attaching the sched hooks (tp_btf, raw_tp, tracepoint)
    #[arg(long, value_enum, default_value_t = AttachMode::Auto, value_name = "MODE")]
    pub attach: AttachMode,
}

/// Per-comm aggregate of one window.
#[derive(Default, Debug, Clone)]
pub struct TaskAgg {
    pub tids: BTreeSet<u32>,
    pub runtime_ns: u64,
    pub switches: u64,
    pub sum_delay_ns: u64,
    pub max_delay_ns: u64,
    pub max_start: u64,
    pub max_end: u64,
}

impl TaskAgg {
    pub fn avg_ns(&self) -> f64 {
        if self.switches == 0 {
            0.0
        } else {
            self.sum_delay_ns as f64 / self.switches as f64
        }
    }
}

#[derive(Debug)]
pub struct Window {
    pub n: u64,
    pub start: u64,
    pub end: u64,
    pub tasks: BTreeMap<String, TaskAgg>,
    pub lost_at_open: u64,
    pub pids: Vec<u32>,
}

impl Window {
    pub fn add_run(&mut self, comm: &str, tid: u32, start: u64, end: u64) {
        let s = start.max(self.start);
        let e = end.min(self.end);
        if e > s {
            let t = self.tasks.entry(comm.to_string()).or_default();
            t.tids.insert(tid);
            t.runtime_ns += e - s;
        }
    }

    pub fn add_delay(&mut self, comm: &str, tid: u32, start: u64, end: u64) {
        if end < self.start || end >= self.end {
            return;
        }
        let d = end.saturating_sub(start);
        let t = self.tasks.entry(comm.to_string()).or_default();
        t.tids.insert(tid);
        t.switches += 1;
        t.sum_delay_ns += d;
        if d >= t.max_delay_ns {
            t.max_delay_ns = d;
            t.max_start = start;
            t.max_end = end;
        }
    }

    /// Rows printed (switches or runtime), sorted avg, max, switches, runtime (all desc).
    pub fn rows(&self) -> Vec<(String, &TaskAgg)> {
        let mut v: Vec<(String, &TaskAgg)> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.switches > 0 || t.runtime_ns > 0)
            .map(|(c, t)| (c.clone(), t))
            .collect();
        v.sort_by(|a, b| {
            b.1.avg_ns()
                .partial_cmp(&a.1.avg_ns())
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.1.max_delay_ns.cmp(&a.1.max_delay_ns))
                .then(b.1.switches.cmp(&a.1.switches))
                .then(b.1.runtime_ns.cmp(&a.1.runtime_ns))
        });
        v
    }
}

pub fn label(comm: &str, t: &TaskAgg) -> String {
    if t.tids.len() > 1 {
        format!("{comm}:({})", t.tids.len())
    } else {
        format!("{comm}:{}", t.tids.iter().next().copied().unwrap_or(0))
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}
fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The log-file block of one window (perf >= 5.10 `perf sched latency` table).
pub fn render(
    w: &Window,
    process: &str,
    period: f64,
    ts: &str,
    partial: bool,
    lost: u64,
) -> String {
    let mut s = String::new();
    s.push('\n');
    s.push_str(&format!(
        "==================== Scheduling latency window #{}{} ====================\n",
        w.n,
        if partial { " (partial)" } else { "" }
    ));
    s.push_str(&format!("Timestamp: {ts}\n"));
    s.push_str(&format!("Process: {process}\n"));
    s.push_str(&format!(
        "PID: {}\n",
        w.pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    ));
    s.push_str(&format!("Period: {period}s\n"));
    s.push_str(&format!("Sample: {}\n", w.n));
    s.push_str("==============================================================\n");
    let rows = w.rows();
    if !rows.is_empty() {
        s.push('\n');
        s.push_str(&format!(" {}\n", "-".repeat(139)));
        s.push_str("  Task                  |   Runtime ms  | Switches | Avg delay ms    | Max delay ms    | Max delay start           | Max delay end          |\n");
        s.push_str(&format!(" {}\n", "-".repeat(139)));
        let (mut total_rt, mut total_sw) = (0u64, 0u64);
        for (comm, t) in &rows {
            total_rt += t.runtime_ns;
            total_sw += t.switches;
            let name = format!("  {} ", label(comm, t));
            s.push_str(&format!(
                "{:<24}|{:11.3} ms |{:9} | avg:{:8.3} ms | max:{:8.3} ms | max start: {:12.6} s | max end: {:12.6} s\n",
                name,
                ms(t.runtime_ns),
                t.switches,
                t.avg_ns() / 1e6,
                ms(t.max_delay_ns),
                secs(t.max_start),
                secs(t.max_end)
            ));
        }
        s.push_str(&format!(" {}\n", "-".repeat(113)));
        s.push_str(&format!(
            "{:<24}|{:11.3} ms |{:9} |\n",
            "  TOTAL:",
            ms(total_rt),
            total_sw
        ));
        s.push_str(&format!(" {}\n", "-".repeat(51)));
        if lost > 0 {
            s.push_str(&format!("INFO: {lost} scheduler events lost\n"));
        }
    }
    s.push('\n');
    s.push_str(&format!(
        "==================== Window #{} end ==========================\n",
        w.n
    ));
    s
}

pub fn to_json(
    w: &Window,
    process: &str,
    period: f64,
    start: &str,
    partial: bool,
    lost: u64,
) -> serde_json::Value {
    let rows = w.rows();
    let tasks: Vec<serde_json::Value> = rows
        .iter()
        .map(|(comm, t)| {
            json!({
                "task": comm,
                "threads": t.tids.len(),
                "tid": if t.tids.len() == 1 { json!(t.tids.iter().next()) } else { serde_json::Value::Null },
                "runtime_ms": ms(t.runtime_ns),
                "switches": t.switches,
                "avg_delay_ms": t.avg_ns() / 1e6,
                "max_delay_ms": ms(t.max_delay_ns),
                "max_start_s": secs(t.max_start),
                "max_end_s": secs(t.max_end),
            })
        })
        .collect();
    json!({
        "window": w.n,
        "start": start,
        "start_mono_ns": w.start,
        "period_s": period,
        "partial": partial,
        "process": process,
        "pids": w.pids,
        "lost": lost,
        "tasks": tasks,
        "total_runtime_ms": ms(rows.iter().map(|r| r.1.runtime_ns).sum()),
        "total_switches": rows.iter().map(|r| r.1.switches).sum::<u64>(),
    })
}

struct Monitor {
    log: File,
    verbose: bool,
    json: bool,
    process: String,
    period: f64,
    clock: Clock,
    open: Vec<Window>,
}

impl Monitor {
    fn progress(&self, msg: &str) {
        if !self.verbose {
            return;
        }
        let line = format!(
            "[{}] {msg}",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f")
        );
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    fn on_event(&mut self, data: &[u8]) {
        let mut e = SlEvent::default();
        if plain::copy_from_bytes(&mut e, data).is_err() {
            return;
        }
        let comm = shared::fmt::cstr(&e.comm);
        for w in &mut self.open {
            match e.kind {
                EV_RUN => w.add_run(&comm, e.tid, e.start, e.end),
                EV_DELAY => w.add_delay(&comm, e.tid, e.start, e.end),
                _ => {}
            }
        }
    }

    /// Close window `idx`: credit threads still on CPU, write it out.
    fn close(&mut self, idx: usize, st: &dyn MapCore, lost_now: u64, partial_end: Option<u64>) {
        let mut w = self.open.remove(idx);
        let partial = partial_end.is_some();
        if let Some(end) = partial_end {
            w.end = end.min(w.end);
        }
        // Threads still running at the end have no RUN event yet.
        for k in st.keys() {
            let Ok(Some(v)) = st.lookup(&k, MapFlags::ANY) else {
                continue;
            };
            let mut t = ThreadState::default();
            if plain::copy_from_bytes(&mut t, &v).is_err() || t.state != ST_RUNNING || k.len() < 4 {
                continue;
            }
            if !w.pids.contains(&t.tgid) {
                continue;
            }
            let tid = u32::from_ne_bytes(k[..4].try_into().unwrap());
            let comm = shared::fmt::cstr(&t.comm);
            w.add_run(&comm, tid, t.ts, w.end);
        }
        let lost = lost_now.saturating_sub(w.lost_at_open);
        let ts = self
            .clock
            .wall(w.start)
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string();
        let text = render(&w, &self.process, self.period, &ts, partial, lost);
        let _ = self.log.write_all(text.as_bytes());
        let _ = self.log.flush();
        if self.json {
            let v = to_json(
                &w,
                &self.process,
                self.period,
                &self.clock.rfc3339(w.start),
                partial,
                lost,
            );
            println!("{v}");
        }
        self.progress(&format!(
            "window {} written{}",
            w.n,
            if partial { " (partial)" } else { "" }
        ));
    }
}

fn set_targets(map: &dyn MapCore, old: &HashSet<u32>, new: &HashSet<u32>) {
    for p in old.difference(new) {
        let _ = map.delete(&p.to_ne_bytes());
    }
    for p in new.difference(old) {
        let _ = map.update(&p.to_ne_bytes(), &[1], MapFlags::ANY);
    }
}

pub fn run() {
    let args: Args = shared::cli::parse();
    let pids = shared::proc::pidof(&args.process);
    if pids.is_empty() && !args.explain {
        shared::cli::usage_error(format!(
            "invalid value '{}' for '--process': no such process",
            args.process
        ));
    }
    let log = if args.explain {
        None
    } else {
        match OpenOptions::new().create(true).append(true).open(&args.log) {
            Ok(f) => Some(f),
            Err(e) => shared::cli::usage_error(format!(
                "invalid value '{}' for '--log': {e}",
                args.log.display()
            )),
        }
    };
    let common = CommonArgs {
        duration: args.duration.map(Duration::from_secs_f64),
        json: args.json,
        explain: args.explain,
        attach: args.attach,
        verbose: false,
    };
    let mut session = Session::start(common.duration, false);
    let (_kernel, plan) = bpf::plan(&common, HOOKS);
    let mut log = log.expect("log file");

    let mut open_object = MaybeUninit::uninit();
    let mut open = SchedLatencyMonitorSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    // Drained every 20 ms by the loop below: no wake-up per event (it would
    // preempt the traced threads and feed back into what is measured).
    bpf::set_rodata(open.open_object_mut(), "events_no_wakeup", &[1])
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    let mut skel = bpf::load(open);
    let mut targets: HashSet<u32> = pids.iter().copied().collect();
    set_targets(&skel.maps.targets, &HashSet::new(), &targets);
    let _links = bpf::attach(&plan, &mut skel);

    let _ = write!(
        log,
        "# Scheduling latency monitor log V2 (continuous sampling)\n# Start time: {}\n# Sampling mode: continuous\n#\n",
        shared::time::now_datetime()
    );
    let _ = log.flush();
    let mon = RefCell::new(Monitor {
        log,
        verbose: args.verbose,
        json: args.json,
        process: args.process.clone(),
        period: args.period,
        clock: session.clock,
        open: Vec::new(),
    });
    {
        let m = mon.borrow();
        m.progress(&format!(
            "monitoring {} (PID {}), interval {} s, period {} s, log {}",
            args.process,
            pids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            args.interval,
            args.period,
            args.log.display()
        ));
        m.progress(&format!("hooks: {}", plan.summary()));
    }
    let obj = skel.object();
    let drain = Drain::open(obj, channel, |d| mon.borrow_mut().on_event(d))
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    // Windows count from here; --duration (from the attached line) ends at or
    // after the last window end, so a window that fits is complete.
    let t0 = Clock::mono_now_ns();
    session.attached(&plan.summary());

    let interval_ns = (args.interval * 1e9) as u64;
    let period_ns = (args.period * 1e9) as u64;
    let deadline = args.duration.map(|d| t0 + (d * 1e9) as u64);
    let mut next_n: u64 = 1;
    let mut starting = true; // still opening new windows
    let lost_now = || lost_in_kernel(obj);
    let maps = &skel.maps;

    let r = session.run(
        |t| drain.poll(t.min(Duration::from_millis(20))),
        || {
            drain.flush();
            let now = Clock::mono_now_ns();
            // Open the windows whose start has come.
            while starting {
                let start = t0 + (next_n - 1) * interval_ns;
                if start > now || deadline.is_some_and(|d| start >= d) {
                    break;
                }
                let cur: HashSet<u32> = shared::proc::pidof(&args.process).into_iter().collect();
                if cur.is_empty() {
                    mon.borrow().progress("target process disappeared");
                    starting = false;
                    break;
                }
                if cur != targets {
                    set_targets(&maps.targets, &targets, &cur);
                    targets = cur;
                }
                let mut pids: Vec<u32> = targets.iter().copied().collect();
                pids.sort_unstable();
                let mut m = mon.borrow_mut();
                m.open.push(Window {
                    n: next_n,
                    start,
                    end: start + period_ns,
                    tasks: BTreeMap::new(),
                    lost_at_open: lost_now(),
                    pids,
                });
                m.progress(&format!("window {next_n} started"));
                next_n += 1;
            }
            // Close the windows whose end (plus the drain margin) has passed.
            loop {
                let idx = {
                    let m = mon.borrow();
                    m.open.iter().position(|w| w.end + DRAIN_NS <= now)
                };
                let Some(i) = idx else { break };
                drain.flush();
                mon.borrow_mut().close(i, &maps.st, lost_now(), None);
            }
            if !starting && mon.borrow().open.is_empty() {
                session.request_stop();
            }
        },
    );
    if let Err(e) = r {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    drain.flush();
    // Ctrl-C / --duration: complete windows normally, open ones as partial.
    let now = Clock::mono_now_ns();
    let mut m = mon.borrow_mut();
    while !m.open.is_empty() {
        let partial = if m.open[0].end <= now {
            None
        } else {
            Some(now)
        };
        m.close(0, &maps.st, lost_now(), partial);
    }
    m.progress("monitor stopped");
    let lost = drain.lost(obj);
    if lost > 0 {
        eprintln!("Summary: {lost} scheduler events lost");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win() -> Window {
        Window {
            n: 3,
            start: 1_000_000_000,
            end: 2_000_000_000,
            tasks: BTreeMap::new(),
            lost_at_open: 0,
            pids: vec![1234],
        }
    }

    #[test]
    fn aggregates_and_layout() {
        let mut w = win();
        w.add_run("handler", 10, 500_000_000, 1_100_000_000); // 100 ms inside
        w.add_run("handler", 11, 1_900_000_000, 2_500_000_000); // 100 ms inside
        w.add_delay("handler", 10, 1_200_000_000, 1_203_000_000); // 3 ms
        w.add_delay("handler", 11, 1_300_000_000, 1_301_000_000); // 1 ms
        w.add_delay("handler", 11, 2_300_000_000, 2_301_000_000); // outside
        w.add_delay("rev", 12, 1_500_000_000, 1_500_010_000); // 10 us
        let t = &w.tasks["handler"];
        assert_eq!(t.runtime_ns, 200_000_000);
        assert_eq!(t.switches, 2);
        assert_eq!(t.max_delay_ns, 3_000_000);
        assert_eq!(label("handler", t), "handler:(2)");
        assert_eq!(label("rev", &w.tasks["rev"]), "rev:12");
        let text = render(&w, "ovs-vswitchd", 1.0, "2026-11-27 10:00:02.000", false, 0);
        assert!(text
            .contains("==================== Scheduling latency window #3 ====================\n"));
        assert!(text.contains("Period: 1s\nSample: 3\n"));
        assert!(text.contains(
            "  handler:(2)           |    200.000 ms |        2 | avg:   2.000 ms | max:   3.000 ms | max start:     1.200000 s | max end:     1.203000 s\n"
        ), "{text}");
        assert!(text.contains("  TOTAL:                |    200.000 ms |        3 |\n"));
        // handler (avg 2 ms) sorts before rev (avg 0.01 ms).
        assert!(text.find("handler:(2)").unwrap() < text.find("rev:12").unwrap());
        assert!(text.ends_with("==================== Window #3 end ==========================\n"));
        let j = to_json(&w, "p", 0.5, "t", true, 2);
        assert_eq!(j["tasks"][0]["threads"], 2);
        assert_eq!(j["tasks"][1]["tid"], 12);
        assert_eq!(j["total_switches"], 3);
        assert_eq!(j["period_s"], 0.5);
    }

    #[test]
    fn empty_window_has_no_table() {
        let text = render(&win(), "x", 0.5, "t", true, 0);
        assert!(text.contains("window #3 (partial)"));
        assert!(text.contains("Period: 0.5s"));
        assert!(!text.contains("TOTAL"));
    }

    #[test]
    fn bad_values() {
        for bad in ["0", "-1", "abc", "1e3", "0.0"] {
            assert!(period_arg(bad).is_err(), "{bad}");
        }
        assert!(interval_arg("0.01").is_err());
        assert!(interval_arg("0.05").is_ok());
        assert!(period_arg("4000").is_err());
    }
}
