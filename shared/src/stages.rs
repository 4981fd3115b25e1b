//! The stage tracker's user-space side (BPF side: `shared/bpf/stages.h`): the
//! record mirrors, which stages the hook plan can provide on this kernel (and
//! why not), segment deltas between the stages a packet reached with their
//! validation (negative and absurd deltas are refused and counted, never shown),
//! per-segment statistics with log2 histograms, the tracker counters and the
//! sweep that ages out flows that never completed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use libbpf_rs::{MapCore, MapFlags, Object};
use serde_json::{json, Value};

use crate::cli::usage_error;
use crate::events::percpu_sum_u64;
use crate::events::Drain;
use crate::fmt::cstr;
use crate::hist::Log2Hist;
use crate::hooks::{Kind, Plan};
use crate::ksyms::Kallsyms;
use crate::output::Output;
use crate::runner::Session;
use crate::stacks::read_stack;
use crate::time::Clock;

pub const STAGE_MAX: usize = 16;
pub const EV_FLOW: u32 = 1;
pub const EV_HIT: u32 = 2;

/// Mirror of `struct stage_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StageKey {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub len: u16,
    pub ip_id: u16,
    pub proto: u8,
    pub kind: u8,
    pub pad: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<StageKey>() == 28);

impl StageKey {
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.saddr)
    }
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.daddr)
    }
}

/// Mirror of `struct stage_ctx`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StageCtx {
    pub pid: u32,
    pub ifindex: u32,
    pub comm: [u8; 16],
    pub ifname: [u8; 16],
    pub icmp_type: u8,
    pub tcp_flags: u8,
    pub set: u8,
    pub stage: u8,
    pub pad: [u8; 4],
}
const _: () = assert!(std::mem::size_of::<StageCtx>() == 48);

impl StageCtx {
    pub fn comm(&self) -> String {
        cstr(&self.comm)
    }
    pub fn ifname(&self) -> String {
        cstr(&self.ifname)
    }
    pub fn is_set(&self) -> bool {
        self.set != 0
    }
    pub fn to_json(&self) -> Value {
        if !self.is_set() {
            return Value::Null;
        }
        json!({"pid": self.pid, "comm": self.comm(), "ifname": self.ifname()})
    }
}

/// Mirror of `struct stage_flow`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StageFlow {
    pub ts: [u64; STAGE_MAX],
    pub skb: [u64; STAGE_MAX],
    pub kstack: [i32; STAGE_MAX],
    pub created_ns: u64,
    pub seen: u32,
    pub start_stage: u8,
    pub pad: [u8; 3],
    pub ctx: [StageCtx; 2],
}
const _: () = assert!(std::mem::size_of::<StageFlow>() == 432);
/// Offset of `created_ns` in the map value (for the sweep).
const CREATED_OFF: usize = 320;

impl Default for StageFlow {
    fn default() -> Self {
        StageFlow {
            ts: [0; STAGE_MAX],
            skb: [0; STAGE_MAX],
            kstack: [0; STAGE_MAX],
            created_ns: 0,
            seen: 0,
            start_stage: 0,
            pad: [0; 3],
            ctx: [StageCtx::default(); 2],
        }
    }
}

impl StageFlow {
    pub fn has(&self, stage: u8) -> bool {
        (stage as usize) < STAGE_MAX && self.seen & (1 << stage) != 0
    }
    pub fn ts(&self, stage: u8) -> Option<u64> {
        self.has(stage).then(|| self.ts[stage as usize])
    }
    /// Seen stages among `stages`, in that order.
    pub fn present(&self, stages: &[u8]) -> Vec<u8> {
        stages.iter().copied().filter(|&s| self.has(s)).collect()
    }
}

/// Mirror of `struct stage_event`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StageEvent {
    pub typ: u32,
    pub pad: u32,
    pub key: StageKey,
    pub pad2: u32,
    pub flow: StageFlow,
}
const _: () = assert!(std::mem::size_of::<StageEvent>() == 472);

/// Mirror of `struct stage_hit_event`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StageHitEvent {
    pub typ: u32,
    pub stage: u8,
    pub pad: [u8; 3],
    pub ts: u64,
    pub key: StageKey,
    pub pad2: u32,
    pub ctx: StageCtx,
}
const _: () = assert!(std::mem::size_of::<StageHitEvent>() == 96);

// SAFETY: plain old data, every bit pattern is valid.
unsafe impl plain::Plain for StageKey {}
unsafe impl plain::Plain for StageCtx {}
unsafe impl plain::Plain for StageFlow {}
unsafe impl plain::Plain for StageEvent {}
unsafe impl plain::Plain for StageHitEvent {}

pub enum Record {
    Flow(Box<StageEvent>),
    Hit(StageHitEvent),
}

/// Decode one event of the `events` channel.
pub fn decode(data: &[u8]) -> Option<Record> {
    let typ = u32::from_ne_bytes(data.get(..4)?.try_into().ok()?);
    match typ {
        EV_FLOW => {
            let mut e = Box::<StageEvent>::default();
            plain::copy_from_bytes(&mut *e, data).ok()?;
            Some(Record::Flow(e))
        }
        EV_HIT => {
            let mut e = StageHitEvent::default();
            plain::copy_from_bytes(&mut e, data).ok()?;
            Some(Record::Hit(e))
        }
        _ => None,
    }
}

/// Bit mask of a list of stages.
pub fn mask(stages: &[u8]) -> u32 {
    stages.iter().fold(0, |m, &s| m | (1u32 << s))
}

// ---- stages and the hook plan ----------------------------------------------

/// One stage of a tool: its name, the hook point (by name in the tool's
/// `HookPoint` table) that marks it, and how to label it when the plan fell
/// back to a tracepoint (default: the tracepoint's name).
#[derive(Clone, Copy, Debug)]
pub struct StageDef {
    pub id: u8,
    pub name: &'static str,
    pub hook: &'static str,
    pub tp_label: Option<&'static str>,
}

impl StageDef {
    pub const fn new(id: u8, name: &'static str, hook: &'static str) -> Self {
        StageDef {
            id,
            name,
            hook,
            tp_label: None,
        }
    }
    pub const fn tp_label(mut self, label: &'static str) -> Self {
        self.tp_label = Some(label);
        self
    }
}

/// A stage as this kernel provides it.
#[derive(Clone, Debug)]
pub struct Stage {
    pub id: u8,
    pub name: &'static str,
    /// What marks it here: the function, or the tracepoint label.
    pub hook: String,
    /// Why the stage is N/A on this kernel; None when it has a hook.
    pub na: Option<String>,
    pub kind: Option<Kind>,
}

impl Stage {
    pub fn available(&self) -> bool {
        self.na.is_none()
    }
    /// `NAME (hook)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.hook)
    }
}

/// The stages of a tool resolved against its hook plan.
#[derive(Clone, Debug)]
pub struct Stages {
    pub list: Vec<Stage>,
}

pub const NO_HOOK: &str = "no hook on this kernel";

impl Stages {
    pub fn resolve(plan: &Plan, defs: &[StageDef]) -> Self {
        let list = defs
            .iter()
            .map(|d| {
                let r = plan.hooks.iter().find(|r| r.hook.name == d.hook);
                match r.and_then(|r| r.chosen.as_ref()) {
                    Some((c, target)) => {
                        // The function actually hooked (e.g. __dev_queue_xmit
                        // where dev_queue_xmit is inline), or the tracepoint.
                        let hook = match c.kind {
                            Kind::Fentry | Kind::Kprobe => target.clone(),
                            _ => d.tp_label.map(str::to_string).unwrap_or(target.clone()),
                        };
                        Stage {
                            id: d.id,
                            name: d.name,
                            hook,
                            na: None,
                            kind: Some(c.kind),
                        }
                    }
                    None => {
                        let why = r
                            .map(|r| {
                                r.refused
                                    .iter()
                                    .map(|(c, e)| format!("{} {}: {e}", c.kind.name(), c.target))
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            })
                            .filter(|s| !s.is_empty());
                        Stage {
                            id: d.id,
                            name: d.name,
                            hook: d.hook.to_string(),
                            na: Some(match why {
                                Some(w) => format!("{NO_HOOK}: {w}"),
                                None => NO_HOOK.to_string(),
                            }),
                            kind: None,
                        }
                    }
                }
            })
            .collect();
        Stages { list }
    }

    pub fn get(&self, id: u8) -> Option<&Stage> {
        self.list.iter().find(|s| s.id == id)
    }

    pub fn available(&self, id: u8) -> bool {
        self.get(id).is_some_and(Stage::available)
    }

    /// Mask of the stages that have a hook.
    pub fn available_mask(&self) -> u32 {
        self.list
            .iter()
            .filter(|s| s.available())
            .fold(0, |m, s| m | (1 << s.id))
    }

    /// First stage of `order` that has a hook.
    pub fn first_available(&self, order: &[u8]) -> Option<u8> {
        order.iter().copied().find(|&s| self.available(s))
    }

    /// Mark a stage N/A for a reason of the tool (e.g. a direction in which the
    /// fallback tracepoint does not mean the same thing).
    pub fn set_na(&mut self, id: u8, why: impl Into<String>) {
        if let Some(s) = self.list.iter_mut().find(|s| s.id == id) {
            s.na = Some(why.into());
            s.kind = None;
        }
    }

    /// One line per N/A stage, printed once at start: `Stage 1 (NAME (hook)):
    /// N/A (no hook on this kernel)`; the refusals of each way to hook it are
    /// in `--explain` (and in the JSON start record).
    pub fn na_lines(&self) -> Vec<String> {
        self.list
            .iter()
            .filter_map(|s| {
                s.na.as_ref().map(|w| {
                    let short = w.split(": ").next().unwrap_or(w);
                    format!("Stage {} ({}): N/A ({short})", s.id, s.label())
                })
            })
            .collect()
    }

    /// For JSON: `{"1": "no hook on this kernel: ...", ...}`.
    pub fn na_json(&self) -> Value {
        let m: serde_json::Map<String, Value> = self
            .list
            .iter()
            .filter_map(|s| s.na.as_ref().map(|w| (s.id.to_string(), json!(w))))
            .collect();
        Value::Object(m)
    }

    /// `fentry`, `kprobe`, `tracepoint`, or a mix like `fentry+tracepoint`:
    /// the kinds of the hooks that mark the stages.
    pub fn hook_mode(&self) -> String {
        let mut kinds: Vec<&str> = Vec::new();
        for s in &self.list {
            let k = match s.kind {
                Some(Kind::Fentry) => "fentry",
                Some(Kind::Kprobe) => "kprobe",
                Some(_) => "tracepoint",
                None => continue,
            };
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        kinds.sort_by_key(|k| match *k {
            "fentry" => 0,
            "kprobe" => 1,
            _ => 2,
        });
        if kinds.is_empty() {
            "none".into()
        } else {
            kinds.join("+")
        }
    }

    /// The start record of `--json`: hook mode and every stage's hook or N/A.
    pub fn start_json(&self, tool: &str) -> Value {
        let stages: Vec<Value> = self
            .list
            .iter()
            .map(|s| {
                json!({"id": s.id, "name": s.name, "hook": s.hook,
                       "available": s.available(), "na": s.na})
            })
            .collect();
        json!({"type": "start", "tool": tool, "hook_mode": self.hook_mode(), "stages": stages})
    }
}

// ---- deltas ------------------------------------------------------------------

/// The time between two stages, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delta {
    Ns(u64),
    /// The later stage has the earlier time (clocks of two CPUs disagree).
    Negative(u64),
    /// Longer than any flow may live: the timestamps cannot belong together.
    Absurd(u64),
}

impl Delta {
    pub fn between(from_ns: u64, to_ns: u64, limit_ns: u64) -> Delta {
        if to_ns < from_ns {
            Delta::Negative(from_ns - to_ns)
        } else if to_ns - from_ns > limit_ns {
            Delta::Absurd(to_ns - from_ns)
        } else {
            Delta::Ns(to_ns - from_ns)
        }
    }
    pub fn ns(self) -> Option<u64> {
        match self {
            Delta::Ns(n) => Some(n),
            _ => None,
        }
    }
    pub fn us(self) -> Option<f64> {
        self.ns().map(|n| n as f64 / 1000.0)
    }
    /// `%7.3f` microseconds, or ` N/A ` for a refused delta.
    pub fn fmt_us(self) -> String {
        fmt_us(self.us())
    }
    pub fn json_us(self) -> Value {
        self.us().map(|v| json!(round3(v))).unwrap_or(Value::Null)
    }
}

/// Microseconds `%7.3f`, or ` N/A ` (right-aligned in 7) when missing.
pub fn fmt_us(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{v:7.3}"),
        None => format!("{:>7}", "N/A "),
    }
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A segment between two consecutive seen stages.
#[derive(Clone, Debug)]
pub struct Segment {
    pub from: u8,
    pub to: u8,
    pub delta: Delta,
    /// Stages between `from` and `to` (in the order given) that were not seen.
    pub skipped: Vec<u8>,
}

impl Segment {
    /// `0->1`
    pub fn key(&self) -> String {
        format!("{}->{}", self.from, self.to)
    }
}

/// Segments between consecutive seen stages of `order`: their deltas add up
/// exactly to the time from the first to the last seen stage.
pub fn segments(flow: &StageFlow, order: &[u8], limit_ns: u64) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut prev: Option<u8> = None;
    let mut skipped = Vec::new();
    for &s in order {
        if !flow.has(s) {
            if prev.is_some() {
                skipped.push(s);
            }
            continue;
        }
        if let Some(p) = prev {
            out.push(Segment {
                from: p,
                to: s,
                delta: Delta::between(flow.ts[p as usize], flow.ts[s as usize], limit_ns),
                skipped: std::mem::take(&mut skipped),
            });
        }
        prev = Some(s);
    }
    out
}

/// Delta from stage `a` to stage `b`, None when either was not seen.
pub fn delta(flow: &StageFlow, a: u8, b: u8, limit_ns: u64) -> Option<Delta> {
    Some(Delta::between(flow.ts(a)?, flow.ts(b)?, limit_ns))
}

/// Counts of refused deltas.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeltaCheck {
    pub clock_skew: u64,
    pub absurd: u64,
}

impl DeltaCheck {
    pub fn count(&mut self, d: Delta) {
        match d {
            Delta::Negative(_) => self.clock_skew += 1,
            Delta::Absurd(_) => self.absurd += 1,
            Delta::Ns(_) => {}
        }
    }
}

// ---- statistics --------------------------------------------------------------

/// Latencies of one segment: count, min/avg/max, percentiles (from the kept
/// samples) and a log2 histogram in microseconds.
#[derive(Clone, Debug)]
pub struct SegStats {
    pub label: String,
    pub count: u64,
    pub sum_ns: u128,
    pub min_ns: u64,
    pub max_ns: u64,
    pub hist_us: Log2Hist,
    samples: Vec<u64>,
    rng: u64,
}

const MAX_SAMPLES: usize = 100_000;

impl SegStats {
    fn new(label: &str) -> Self {
        SegStats {
            label: label.to_string(),
            count: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            hist_us: Log2Hist::new(32),
            samples: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn add(&mut self, ns: u64) {
        self.count += 1;
        self.sum_ns += ns as u128;
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        self.hist_us.add(ns / 1000);
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(ns);
        } else {
            // Reservoir sampling keeps a uniform sample of every value seen.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let i = (self.rng % self.count) as usize;
            if i < MAX_SAMPLES {
                self.samples[i] = ns;
            }
        }
    }

    pub fn avg_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64
        }
    }

    /// Percentile p (0-100) of the kept samples, nearest rank.
    pub fn percentile_ns(&self, p: f64) -> u64 {
        if self.samples.is_empty() {
            return 0;
        }
        let mut v = self.samples.clone();
        v.sort_unstable();
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    pub fn to_json(&self) -> Value {
        let us = |n: f64| round3(n / 1000.0);
        json!({
            "label": self.label,
            "count": self.count,
            "min_us": us(self.min_ns as f64),
            "avg_us": us(self.avg_ns()),
            "p50_us": us(self.percentile_ns(50.0) as f64),
            "p99_us": us(self.percentile_ns(99.0) as f64),
            "max_us": us(self.max_ns as f64),
            "hist_us": self.hist_us.to_json(),
        })
    }
}

/// Per-segment statistics, in the order segments were first seen (sorted by
/// their stage ids), for the whole run and for the current interval.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    total: BTreeMap<(u8, u8), SegStats>,
    interval: BTreeMap<(u8, u8), SegStats>,
    /// Records added since the start / since the last interval.
    pub records: u64,
    pub interval_records: u64,
}

impl Latencies {
    pub fn new() -> Self {
        Self::default()
    }

    /// Count one record (a completed packet / round trip).
    pub fn record(&mut self) {
        self.records += 1;
        self.interval_records += 1;
    }

    /// Add a valid delta of segment (from, to) labelled `label`. Use ids past
    /// the stage range for whole-path totals (e.g. (0, 255) "total").
    pub fn add(&mut self, from: u8, to: u8, label: &str, ns: u64) {
        for m in [&mut self.total, &mut self.interval] {
            m.entry((from, to))
                .or_insert_with(|| SegStats::new(label))
                .add(ns);
        }
    }

    pub fn segments(&self) -> impl Iterator<Item = (&(u8, u8), &SegStats)> {
        self.total.iter()
    }

    fn render(map: &BTreeMap<(u8, u8), SegStats>) -> String {
        let mut s = String::new();
        for st in map.values() {
            s.push_str(&format!("{} ({} samples)\n", st.label, st.count));
            s.push_str(&st.hist_us.render("usecs"));
        }
        s
    }

    fn json_of(map: &BTreeMap<(u8, u8), SegStats>) -> Value {
        let m: serde_json::Map<String, Value> = map
            .iter()
            .map(|((a, b), st)| (seg_id(*a, *b), st.to_json()))
            .collect();
        Value::Object(m)
    }

    /// The interval's histograms (text) and forget them; None when no record came.
    pub fn take_interval(&mut self) -> Option<(u64, String, Value)> {
        if self.interval_records == 0 {
            return None;
        }
        let text = Self::render(&self.interval);
        let js = Self::json_of(&self.interval);
        let n = self.interval_records;
        self.interval.clear();
        self.interval_records = 0;
        Some((n, text, js))
    }

    /// Histograms over the whole run.
    pub fn render_total(&self) -> String {
        Self::render(&self.total)
    }

    /// count/min/avg/p50/p99/max table over the whole run.
    pub fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .total
            .values()
            .map(|st| {
                let us = |n: f64| format!("{:.3}", n / 1000.0);
                vec![
                    st.label.clone(),
                    st.count.to_string(),
                    us(st.min_ns as f64),
                    us(st.avg_ns()),
                    us(st.percentile_ns(50.0) as f64),
                    us(st.percentile_ns(99.0) as f64),
                    us(st.max_ns as f64),
                ]
            })
            .collect();
        crate::fmt::table(
            &[
                "segment", "count", "min_us", "avg_us", "p50_us", "p99_us", "max_us",
            ],
            &rows,
        )
    }

    pub fn total_json(&self) -> Value {
        Self::json_of(&self.total)
    }
}

impl Latencies {
    /// The interval's histograms on `out` (text, or one `{"type":"hist"}`
    /// record), then forget them. `noun` names the records ("round trip(s)").
    pub fn emit_interval(&mut self, out: &mut Output, noun: &str) {
        if let Some((n, text, js)) = self.take_interval() {
            if out.json() {
                out.event(&json!({"type": "hist", "records": n, "segments": js}));
            } else {
                out.line(&format!(
                    "--- Latency histograms (us), {n} {noun} since the last ---\n{text}"
                ));
            }
        }
    }

    /// `--summary` at exit: per-segment table and histograms (text), or one
    /// `{"type":"summary"}` record with the counters.
    pub fn emit_summary(&self, out: &mut Output, noun: &str, end: &EndCounts) {
        if out.json() {
            out.event(&json!({
                "type": "summary", "records": self.records,
                "segments": self.total_json(), "counters": end.counters.to_json(),
                "clock_skew": end.check.clock_skew, "absurd": end.check.absurd,
                "lost_events": end.lost,
            }));
        } else {
            out.line(&format!(
                "=== Summary: {} {noun} ===\n{}\n\nLatency histograms (us):\n{}",
                self.records,
                self.table(),
                self.render_total()
            ));
        }
    }
}

/// What a latency tool counts besides its records, for the final summary.
pub struct EndCounts {
    pub counters: Counters,
    pub check: DeltaCheck,
    pub lost: u64,
}

impl EndCounts {
    /// The stderr summary line: `Summary: 5 round trips reported, ...`.
    pub fn line(&self, what: &str, reported: u64, below_threshold: Option<u64>) -> String {
        let c = &self.counters;
        let below = below_threshold
            .map(|b| format!(" {b} below threshold,"))
            .unwrap_or_default();
        format!(
            "Summary: {reported} {what},{below} {} incomplete (aged out), {} replaced, {} out of order, {} ended incomplete, refused deltas: {} clock skew, {} absurd; {} events lost",
            c.aged_out(),
            c.get("replaced"),
            c.get("out_of_order"),
            c.get("incomplete_at_end"),
            self.check.clock_skew,
            self.check.absurd,
            self.lost
        )
    }
}

/// The main loop of a latency tool: poll events until Ctrl-C / --duration,
/// sweep flows older than `max_age_ns` every second (counted), and call
/// `on_interval` every `interval`. Returns the number of flows swept.
pub fn run_loop(
    session: &Session,
    drain: &Drain,
    obj: &Object,
    max_age_ns: u64,
    interval: Option<std::time::Duration>,
    mut on_interval: impl FnMut(),
) -> u64 {
    use std::time::{Duration, Instant};
    let mut expired = 0u64;
    let mut last_sweep = Instant::now();
    let mut last_hist = Instant::now();
    let res = session.run(
        |t| drain.poll(t),
        || {
            if last_sweep.elapsed() >= Duration::from_secs(1) {
                expired += sweep(obj, max_age_ns);
                last_sweep = Instant::now();
            }
            if interval.is_some_and(|iv| last_hist.elapsed() >= iv) {
                on_interval();
                last_hist = Instant::now();
            }
        },
    );
    if let Err(e) = res {
        crate::die(crate::EXIT_RUNTIME, e);
    }
    expired
}

/// A latency tool's event state, as the shared run (`trace`) needs it.
pub trait LatencyState {
    fn on_event(&mut self, obj: &Object, data: &[u8]);
    /// Where interval and summary histograms go.
    fn output_and_latencies(&mut self) -> (&mut Output, &mut Latencies);
    fn check(&self) -> DeltaCheck;
    /// Records reported, and those under the threshold where the tool has one.
    fn reported(&self) -> (u64, Option<u64>);
}

/// [`LatencyState`] for a tool's state struct with the fields `out: Output`,
/// `lat: Latencies`, `check: DeltaCheck`, `reported: u64` (and `below: u64`
/// where the tool has a threshold: `impl_latency_state!(State, below)`) and a
/// method `on_event(&mut self, &Object, &[u8])`.
#[macro_export]
macro_rules! impl_latency_state {
    ($ty:ty) => {
        $crate::impl_latency_state!(@impl $ty, |_: &$ty| None);
    };
    ($ty:ty, below) => {
        $crate::impl_latency_state!(@impl $ty, |s: &$ty| Some(s.below));
    };
    (@impl $ty:ty, $below:expr) => {
        impl $crate::stages::LatencyState for $ty {
            fn on_event(&mut self, obj: &::libbpf_rs::Object, data: &[u8]) {
                <$ty>::on_event(self, obj, data)
            }
            fn output_and_latencies(
                &mut self,
            ) -> (&mut $crate::output::Output, &mut $crate::stages::Latencies) {
                (&mut self.out, &mut self.lat)
            }
            fn check(&self) -> $crate::stages::DeltaCheck {
                self.check
            }
            fn reported(&self) -> (u64, Option<u64>) {
                (self.reported, ($below)(self))
            }
        }
    };
}

/// The words and switches of one latency tool's run.
pub struct TraceRun {
    /// Histogram noun: "packet(s)".
    pub noun: &'static str,
    /// End-of-run count label: "packets reported".
    pub reported: &'static str,
    /// --interval, seconds.
    pub interval: Option<u64>,
    /// --summary.
    pub summary: bool,
    /// A flow not completed after this long is swept and counted as expired.
    pub max_age_ns: u64,
    /// "Detaching..." and "Exiting." around the summary, as icmp_rtt_latency's
    /// original printed them.
    pub farewell: bool,
}

/// Everything after attach for the stage-latency tools: drain events until
/// Ctrl-C / --duration (sweeping stale flows, printing interval histograms),
/// detach in the background, then the last histograms, the summary and the
/// end-of-run counts line.
pub fn trace<S: LatencyState>(
    session: &mut Session,
    obj: &Object,
    channel: crate::bpf::Channel,
    attached: &str,
    links: Vec<libbpf_rs::Link>,
    state: S,
    run: TraceRun,
) {
    let state = std::cell::RefCell::new(state);
    let drain = Drain::open(obj, channel, |d| state.borrow_mut().on_event(obj, d))
        .unwrap_or_else(|e| crate::die(crate::EXIT_RUNTIME, e));
    session.attached(attached);
    let interval = run.interval.map(std::time::Duration::from_secs);
    let expired = run_loop(session, &drain, obj, run.max_age_ns, interval, || {
        let mut st = state.borrow_mut();
        let (out, lat) = st.output_and_latencies();
        lat.emit_interval(out, run.noun);
    });
    let detached = detach_in_background(links);
    drain.flush();
    let end = EndCounts {
        counters: Counters::read(obj, expired),
        check: state.borrow().check(),
        lost: drain.lost(obj),
    };
    let mut st = state.borrow_mut();
    let (reported, below) = st.reported();
    let (out, lat) = st.output_and_latencies();
    if interval.is_some() {
        lat.emit_interval(out, run.noun);
    }
    if run.farewell {
        out.banner("Detaching...");
    }
    if run.summary {
        lat.emit_summary(out, run.noun, &end);
    }
    eprintln!("{}", end.line(run.reported, reported, below));
    if run.farewell {
        out.banner("Exiting.");
    }
    session.verbose_footer();
    let _ = detached.join();
}

/// Detach `links` on another thread while the caller prints its summary
/// (each fentry/kprobe detach patches kernel text; under emulation that takes
/// a tenth of a second per link). Join the handle before exiting.
pub fn detach_in_background(links: Vec<libbpf_rs::Link>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || drop(links))
}

/// JSON key of a segment: `0->1`, or `total` style names for ids >= 200.
pub fn seg_id(a: u8, b: u8) -> String {
    match (a, b) {
        (_, TOTAL) => "total".into(),
        (_, PATH1) => "path1".into(),
        (_, PATH2) => "path2".into(),
        (_, INTER) => "inter_path".into(),
        _ => format!("{a}->{b}"),
    }
}

/// Pseudo stage ids for whole-path statistics in `Latencies`.
pub const TOTAL: u8 = 255;
pub const PATH1: u8 = 253;
pub const PATH2: u8 = 254;
pub const INTER: u8 = 252;

// ---- counters and the sweep ----------------------------------------------------

/// Index names of the BPF `stage_stats` counters (enum in stages.h).
pub const COUNTER_NAMES: [&str; 8] = [
    "created",
    "completed",
    "replaced",
    "stale",
    "out_of_order",
    "no_entry",
    "incomplete_at_end",
    "map_full",
];

#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub bpf: [u64; 8],
    /// Entries user space aged out (never reached the final stage).
    pub expired: u64,
}

impl Counters {
    pub fn read(obj: &Object, expired: u64) -> Self {
        let mut c = Counters {
            expired,
            ..Default::default()
        };
        if let Some(m) = obj
            .maps()
            .find(|m| m.name().to_string_lossy() == "stage_stats")
        {
            for (i, v) in c.bpf.iter_mut().enumerate() {
                *v = percpu_sum_u64(&m, i as u32);
            }
        }
        c
    }

    pub fn get(&self, name: &str) -> u64 {
        COUNTER_NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| self.bpf[i])
            .unwrap_or(0)
    }

    /// Flows that started and were given up: aged out (BPF or sweep), or
    /// replaced by a new packet with the same key before they finished.
    pub fn aged_out(&self) -> u64 {
        self.expired + self.get("stale")
    }

    pub fn to_json(&self) -> Value {
        let mut m: serde_json::Map<String, Value> = COUNTER_NAMES
            .iter()
            .zip(self.bpf.iter())
            .map(|(n, v)| (n.to_string(), json!(v)))
            .collect();
        m.insert("expired".into(), json!(self.expired));
        Value::Object(m)
    }
}

/// Delete entries of `stage_flows` older than `max_age_ns`; returns how many.
pub fn sweep(obj: &Object, max_age_ns: u64) -> u64 {
    let Some(map) = obj
        .maps()
        .find(|m| m.name().to_string_lossy() == "stage_flows")
    else {
        return 0;
    };
    let now = Clock::mono_now_ns();
    let mut old = Vec::new();
    for key in map.keys() {
        if let Ok(Some(v)) = map.lookup(&key, MapFlags::ANY) {
            if v.len() >= CREATED_OFF + 8 {
                let created =
                    u64::from_ne_bytes(v[CREATED_OFF..CREATED_OFF + 8].try_into().unwrap());
                if now.saturating_sub(created) > max_age_ns {
                    old.push(key);
                }
            }
        }
    }
    old.iter().filter(|k| map.delete(k).is_ok()).count() as u64
}

/// The .rodata configuration of the tracker, written before load.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrackerConfig {
    pub create: u32,
    pub final_: u32,
    pub need: u32,
    pub ctx2: u32,
    pub stacks: u32,
    pub max_age_ns: u64,
    pub emit_hits: bool,
}

impl TrackerConfig {
    /// Write into the open object (`STAGE_*` globals of stages.h).
    pub fn apply(&self, obj: &mut libbpf_rs::OpenObject) -> Result<(), String> {
        use crate::bpf::set_rodata;
        set_rodata(obj, "STAGE_CREATE", &self.create.to_ne_bytes())?;
        set_rodata(obj, "STAGE_FINAL", &self.final_.to_ne_bytes())?;
        set_rodata(obj, "STAGE_NEED", &self.need.to_ne_bytes())?;
        set_rodata(obj, "STAGE_CTX2", &self.ctx2.to_ne_bytes())?;
        set_rodata(obj, "STAGE_STACKS", &self.stacks.to_ne_bytes())?;
        set_rodata(obj, "STAGE_MAX_AGE_NS", &self.max_age_ns.to_ne_bytes())?;
        set_rodata(obj, "STAGE_EMIT_HITS", &[u8::from(self.emit_hits)])?;
        Ok(())
    }
}

/// Mirror of `struct stage_dev`: a device by ifindex and name.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageDev {
    pub ifindex: u32,
    pub name: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<StageDev>() == 20);
// SAFETY: plain old data.
unsafe impl plain::Plain for StageDev {}

impl StageDev {
    pub fn new(ifindex: u32, name: &str) -> Self {
        let mut d = StageDev {
            ifindex,
            ..Default::default()
        };
        let n = name.len().min(15);
        d.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        d
    }
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C) POD.
        unsafe { plain::as_bytes(self) }
    }
}

// ---- command line and output helpers of the latency tools ---------------------

/// A latency threshold (ms or us): a finite number >= 0.
pub fn parse_latency(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err("must be a finite number >= 0".into()),
        Err(_) => Err("not a number".into()),
    }
}

/// An interface named on the command line, found in this netns or in a named
/// one (`ip netns`); unknown -> `error: interface 'X' not found`, exit 2.
#[derive(Clone, Debug)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    pub netns: Option<String>,
}

impl Iface {
    pub fn lookup(name: &str) -> Iface {
        use crate::netdev::{find, Found};
        let (ifindex, netns) = match find(name) {
            Some(Found::Here(i)) => (i, None),
            Some(Found::InNetns(ns, i)) => (i, Some(ns)),
            None => usage_error(format!("interface '{name}' not found")),
        };
        Iface {
            name: name.into(),
            ifindex,
            netns,
        }
    }

    /// `eth0 (ifindex: 2)`, or `... (ifindex: 2, netns NAME)`.
    pub fn describe(&self) -> String {
        match &self.netns {
            Some(ns) => format!("{} (ifindex: {}, netns {ns})", self.name, self.ifindex),
            None => format!("{} (ifindex: {})", self.name, self.ifindex),
        }
    }

    pub fn dev(&self) -> StageDev {
        StageDev::new(self.ifindex, &self.name)
    }
}

/// The `.rodata` bytes of a `struct stage_dev[2]` for one or two interfaces.
pub fn dev_pair_bytes(a: &Iface, b: Option<&Iface>) -> Vec<u8> {
    let mut v = a.dev().as_bytes().to_vec();
    v.extend_from_slice(b.unwrap_or(a).dev().as_bytes());
    v
}

/// `YYYY-MM-DD HH:MM:SS.mmm` of a BPF timestamp.
pub fn wall_ms(clock: &Clock, ktime_ns: u64) -> String {
    clock
        .wall(ktime_ns)
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

/// Kernel stacks of the seen `stages` of a flow (from `stage_stacks`).
pub fn flow_stacks(
    obj: &Object,
    flow: &StageFlow,
    stages: &[u8],
    ksyms: &mut Kallsyms,
) -> Vec<(u8, Result<Vec<String>, String>)> {
    let map = obj
        .maps()
        .find(|m| m.name().to_string_lossy() == "stage_stacks");
    flow.present(stages)
        .into_iter()
        .map(|s| {
            let r = match &map {
                Some(m) => read_stack(m as &dyn MapCore, flow.kstack[s as usize])
                    .map(|a| ksyms.format_stack(&a)),
                None => Err("no stack map".into()),
            };
            (s, r)
        })
        .collect()
}

/// The one-way tools' `Kernel Stack Traces:` block: per stage with a hook,
/// `Stage N (NAME): Stack ID id` and the frames, `<Stack Capture Failed Error:
/// ..>`, or `missing(stage)` for a stage the packet did not reach.
pub fn render_stacks(
    stages: &Stages,
    flow: &StageFlow,
    order: &[u8],
    stacks: &[(u8, Result<Vec<String>, String>)],
    missing: impl Fn(u8) -> &'static str,
) -> String {
    let mut s = String::from("  Kernel Stack Traces:\n");
    for &st in order {
        let Some(stage) = stages.get(st).filter(|x| x.available()) else {
            continue;
        };
        let label = stage.name;
        let id = flow.kstack[st as usize];
        match stacks.iter().find(|(k, _)| *k == st) {
            None => s.push_str(&format!("    Stage {st} ({label}): {}\n", missing(st))),
            Some((_, Ok(frames))) => {
                s.push_str(&format!("    Stage {st} ({label}): Stack ID {id}\n"));
                for fr in frames {
                    s.push_str(&format!("      {fr}\n"));
                }
            }
            Some((_, Err(_))) => s.push_str(&format!(
                "    Stage {st} ({label}): <Stack Capture Failed Error: {}>\n",
                crate::stacks::stack_error(id)
            )),
        }
    }
    s
}

/// JSON `{"<stage>": [frames] | "error: ..."}` of `flow_stacks`.
pub fn stacks_json(stacks: &[(u8, Result<Vec<String>, String>)]) -> Value {
    let m: serde_json::Map<String, Value> = stacks
        .iter()
        .map(|(s, r)| {
            let v = match r {
                Ok(fr) => json!(fr),
                Err(e) => json!(format!("error: {e}")),
            };
            (s.to_string(), v)
        })
        .collect();
    Value::Object(m)
}

/// TCP flag letters in the order F S R P A U, `.` when none.
pub fn tcp_flags(f: u8) -> String {
    let s: String = [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, 'A'),
        (0x20, 'U'),
    ]
    .iter()
    .filter(|(b, _)| f & b != 0)
    .map(|(_, c)| *c)
    .collect();
    if s.is_empty() {
        ".".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(stages: &[(u8, u64)]) -> StageFlow {
        let mut f = StageFlow::default();
        for &(s, t) in stages {
            f.ts[s as usize] = t;
            f.seen |= 1 << s;
        }
        f
    }

    #[test]
    fn segments_skip_missing_and_sum_to_total() {
        let f = flow(&[(0, 1000), (2, 4000), (5, 4500), (6, 9000)]);
        let segs = segments(&f, &[0, 1, 2, 3, 4, 5, 6], u64::MAX);
        let keys: Vec<String> = segs.iter().map(Segment::key).collect();
        assert_eq!(keys, ["0->2", "2->5", "5->6"]);
        assert_eq!(segs[0].skipped, vec![1]);
        assert_eq!(segs[1].skipped, vec![3, 4]);
        let sum: u64 = segs.iter().map(|s| s.delta.ns().unwrap()).sum();
        assert_eq!(sum, 8000);
    }

    #[test]
    fn deltas_are_validated() {
        assert_eq!(Delta::between(10, 5, 100), Delta::Negative(5));
        assert_eq!(Delta::between(10, 500, 100), Delta::Absurd(490));
        assert_eq!(Delta::between(10, 50, 100), Delta::Ns(40));
        let mut c = DeltaCheck::default();
        c.count(Delta::Negative(1));
        c.count(Delta::Absurd(1));
        c.count(Delta::Ns(1));
        assert_eq!((c.clock_skew, c.absurd), (1, 1));
        assert_eq!(Delta::Negative(3).fmt_us(), "   N/A ");
        assert_eq!(Delta::Ns(3120).fmt_us(), "  3.120");
    }

    #[test]
    fn stats_and_percentiles() {
        let mut l = Latencies::new();
        for i in 1..=100u64 {
            l.record();
            l.add(0, 1, "[0->1]", i * 1000);
        }
        let (_, st) = l.segments().next().unwrap();
        assert_eq!(st.count, 100);
        assert_eq!(st.percentile_ns(50.0), 50_000);
        assert_eq!(st.percentile_ns(99.0), 99_000);
        assert_eq!(st.min_ns, 1000);
        assert_eq!(st.hist_us.total(), 100);
        let (n, text, js) = l.take_interval().unwrap();
        assert_eq!(n, 100);
        assert!(text.contains("[0->1] (100 samples)"));
        assert_eq!(js["0->1"]["count"], 100);
        assert!(l.take_interval().is_none());
        assert!(l.table().contains("[0->1]"));
    }

    #[test]
    fn latency_values() {
        assert_eq!(parse_latency("0"), Ok(0.0));
        assert_eq!(parse_latency("1.5"), Ok(1.5));
        assert!(parse_latency("-1").is_err());
        assert!(parse_latency("inf").is_err());
        assert!(parse_latency("NaN").is_err());
        assert!(parse_latency("x").is_err());
    }

    #[test]
    fn masks_and_flags() {
        assert_eq!(mask(&[0, 6, 13]), 1 | 64 | 8192);
        assert_eq!(tcp_flags(0x18), "PA");
        assert_eq!(tcp_flags(0x02), "S");
        assert_eq!(tcp_flags(0), ".");
        assert_eq!(seg_id(0, TOTAL), "total");
        assert_eq!(seg_id(2, 5), "2->5");
    }

    #[test]
    fn decode_checks_type_and_size() {
        let mut e = StageEvent {
            typ: EV_FLOW,
            ..Default::default()
        };
        e.flow.seen = 3;
        // SAFETY: POD to bytes for the test.
        let b = unsafe { plain::as_bytes(&e) };
        match decode(b) {
            Some(Record::Flow(f)) => assert_eq!(f.flow.seen, 3),
            _ => panic!("not decoded"),
        }
        assert!(decode(&b[..100]).is_none());
        assert!(decode(&[9, 0, 0, 0]).is_none());
    }
}
