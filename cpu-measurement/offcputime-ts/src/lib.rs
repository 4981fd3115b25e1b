//! `offcputime-ts`: where (user + kernel stack) do threads spend time blocked
//! off-CPU, and how does it change interval by interval? BCC `offcputime`
//! plus a time-series mode (`-I`), on `sched_switch` (no kprobes).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use serde_json::json;

use shared::args::parse_pid_list;
use shared::bpf;
use shared::cli::{AttachMode, CommonArgs};
use shared::events::Drain;
use shared::folded;
use shared::hooks::HookPoint;
use shared::output::Output;
use shared::runner::Session;
use shared::sched::SCHED_SWITCH;
use shared::stacks::read_stack;
use shared::symbolize::{Frame, Symbolizer};
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/offcputime_ts.skel.rs"));
}
use skel::OffcputimeTsSkelBuilder;

pub static HOOKS: &[HookPoint] = &[SCHED_SWITCH];

const EFAULT: i32 = -14;
const ENOMEM: i32 = -12;

/// Mirror of `struct count_key` (src/bpf/offcputime_ts.bpf.c).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, Hash)]
pub struct CountKey {
    pub tid: u32,
    pub tgid: u32,
    pub ustack_id: i32,
    pub kstack_id: i32,
    pub comm: [u8; 16],
}
// SAFETY: plain old data.
unsafe impl plain::Plain for CountKey {}
const _: () = assert!(std::mem::size_of::<CountKey>() == 32);

/// Mirror of `struct start_val`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct StartVal {
    pub ts: u64,
    pub tgid: u32,
    pub ustack_id: i32,
    pub kstack_id: i32,
    pub pad: u32,
    pub comm: [u8; 16],
}
// SAFETY: plain old data.
unsafe impl plain::Plain for StartVal {}
const _: () = assert!(std::mem::size_of::<StartVal>() == 40);

/// Mirror of `struct warn_event`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct WarnEvent {
    pub pid: u32,
    pub tgid: u32,
    pub off_ts: u64,
    pub on_ts: u64,
}
// SAFETY: plain old data.
unsafe impl plain::Plain for WarnEvent {}

fn positive_us(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n > 0 && n <= u64::MAX as i128 => Ok(n as u64),
        Ok(_) => Err("must be a positive number of microseconds".into()),
        Err(_) => Err("not a whole number".into()),
    }
}

fn positive_int(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n as u64),
        Ok(_) => Err("must be a positive whole number".into()),
        Err(_) => Err("not a whole number".into()),
    }
}

fn state_mask(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n as u64),
        Ok(_) => Err("must be >= 0".into()),
        Err(_) => Err("not a whole number".into()),
    }
}

/// A comma list of ids (an alias, so clap takes it as one value).
pub type IdList = Vec<u32>;

#[derive(Parser, Debug)]
#[command(
    name = "offcputime-ts",
    about = "Summarize off-CPU time by stack trace, optionally interval by interval (-I)",
    after_help = "Stacks are unwound with frame pointers only (no DWARF), 127 frames; libraries built \
without frame pointers give 1-2 user frames. User stacks of kernel threads are empty (not an error). \
A block spanning intervals is counted wholly in the interval in which it ends. \
Hooks: sched_switch (tp_btf, raw_tp or tracepoint; see --explain); no kprobes."
)]
pub struct Args {
    /// Trace these processes (comma list of PIDs) only
    #[arg(short = 'p', long = "pid", value_name = "PIDS", value_parser = parse_pid_list, allow_hyphen_values = true)]
    pub pids: Option<IdList>,

    /// Trace these threads (comma list of TIDs) only
    #[arg(short = 't', long = "tid", value_name = "TIDS", value_parser = parse_pid_list, allow_hyphen_values = true)]
    pub tids: Option<IdList>,

    /// User threads only (no kernel threads)
    #[arg(short = 'u', long)]
    pub user_threads_only: bool,

    /// Kernel threads only (no user threads)
    #[arg(short = 'k', long)]
    pub kernel_threads_only: bool,

    /// Show stacks from user space only (no kernel space stacks)
    #[arg(short = 'U', long)]
    pub user_stacks_only: bool,

    /// Show stacks from kernel space only (no user space stacks)
    #[arg(short = 'K', long)]
    pub kernel_stacks_only: bool,

    /// Insert delimiter between kernel/user stacks
    #[arg(short = 'd', long)]
    pub delimited: bool,

    /// Output folded format (flame graphs)
    #[arg(short = 'f', long)]
    pub folded: bool,

    /// Show address offsets
    #[arg(short = 's', long)]
    pub offset: bool,

    /// The number of unique stack traces that can be stored and displayed
    #[arg(long, value_name = "N", default_value_t = 16384, value_parser = positive_int, allow_hyphen_values = true)]
    pub stack_storage_size: u64,

    /// The amount of time in microseconds over which we store traces (default 1)
    #[arg(short = 'm', long, value_name = "US", default_value_t = 1, value_parser = positive_us, allow_hyphen_values = true)]
    pub min_block_time: u64,

    /// The amount of time in microseconds under which we store traces (default U64_MAX)
    #[arg(short = 'M', long, value_name = "US", default_value_t = u64::MAX, value_parser = positive_us, allow_hyphen_values = true)]
    pub max_block_time: u64,

    /// Filter on this task state bitmask at switch-out (0 = runnable, 1 = interruptible, 2 = uninterruptible)
    #[arg(long, value_name = "MASK", value_parser = state_mask, allow_hyphen_values = true)]
    pub state: Option<u64>,

    /// Print and clear the table every SECS seconds (time-series mode)
    #[arg(short = 'I', long, value_name = "SECS", value_parser = positive_int, allow_hyphen_values = true)]
    pub interval: Option<u64>,

    /// Duration of trace, in seconds
    #[arg(value_name = "duration", value_parser = positive_int, allow_hyphen_values = true)]
    pub duration_pos: Option<u64>,

    /// Stop after SECS seconds (same as the positional duration)
    #[arg(long = "duration", value_name = "SECS", value_parser = shared::cli::parse_duration, allow_hyphen_values = true)]
    pub duration_flag: Option<Duration>,

    /// JSON lines: one object per entry, one per interval end
    #[arg(long)]
    pub json: bool,

    /// Print the hook plan and exit without attaching
    #[arg(long)]
    pub explain: bool,

    /// Force one way of attaching sched_switch (tp_btf, raw_tp, tracepoint)
    #[arg(long, value_enum, default_value_t = AttachMode::Auto, value_name = "MODE")]
    pub attach: AttachMode,

    /// Show libbpf messages, the hook used, start-up time and memory
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

impl Args {
    /// Mutual exclusions of the original, as usage errors.
    pub fn check(&self) -> Result<(), String> {
        let ctx = [
            (self.pids.is_some(), "-p"),
            (self.tids.is_some(), "-t"),
            (self.user_threads_only, "-u"),
            (self.kernel_threads_only, "-k"),
        ];
        let set: Vec<&str> = ctx.iter().filter(|c| c.0).map(|c| c.1).collect();
        if set.len() > 1 {
            return Err(format!(
                "{} cannot be used together (choose one of -p, -t, -u, -k)",
                set.join(" and ")
            ));
        }
        if self.user_stacks_only && self.kernel_stacks_only {
            return Err("-U and -K cannot be used together (use neither for both stacks)".into());
        }
        if self.folded && self.offset {
            return Err("can only use -f or -s, not both".into());
        }
        if self.kernel_threads_only && self.user_stacks_only {
            return Err(
                "-k and -U cannot be used together (kernel threads have no user stacks)".into(),
            );
        }
        if self.min_block_time > self.max_block_time {
            return Err(format!(
                "--min-block-time {} is larger than --max-block-time {}",
                self.min_block_time, self.max_block_time
            ));
        }
        if self.duration_pos.is_some() && self.duration_flag.is_some() {
            return Err("give the duration either as a number or with --duration, not both".into());
        }
        Ok(())
    }

    pub fn duration(&self) -> Option<Duration> {
        self.duration_flag
            .or(self.duration_pos.map(Duration::from_secs))
    }

    /// The one-line header of the original.
    pub fn header(&self) -> String {
        let thread = if let Some(p) = &self.pids {
            format!("PIDs {}", join(p))
        } else if let Some(t) = &self.tids {
            format!("TIDs {}", join(t))
        } else if self.user_threads_only {
            "user threads".into()
        } else if self.kernel_threads_only {
            "kernel threads".into()
        } else {
            "all threads".into()
        };
        let stack = if self.user_stacks_only {
            "user"
        } else if self.kernel_stacks_only {
            "kernel"
        } else {
            "user + kernel"
        };
        let secs = self.duration().map(|d| {
            let s = d.as_secs_f64();
            if s.fract() == 0.0 {
                format!("{}", s as u64)
            } else {
                format!("{s}")
            }
        });
        let tail = match (self.interval, secs) {
            (None, Some(d)) => format!(" for {d} secs."),
            (None, None) => "... Hit Ctrl-C to end.".into(),
            (Some(i), Some(d)) => format!(", output every {i} secs for {d} secs total."),
            (Some(i), None) => format!(", output every {i} secs... Hit Ctrl-C to end."),
        };
        format!("Tracing off-CPU time (us) of {thread} by {stack} stack{tail}")
    }
}

fn join(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// A stack id that is an error worth reporting (-EFAULT only means "no user stack").
fn stack_id_err(id: i32) -> bool {
    id < 0 && id != EFAULT
}

/// One table entry, stacks resolved.
pub struct Entry {
    pub key: CountKey,
    pub total_us: u64,
    /// None: not collected (-U/-K) or lost; Some(empty) for -EFAULT.
    pub kstack: Option<Vec<Frame>>,
    pub ustack: Option<Vec<Frame>>,
}

pub struct Fmt {
    pub user_only: bool,
    pub kernel_only: bool,
    pub delimited: bool,
    pub offset: bool,
}

impl Fmt {
    fn need_delim(&self) -> bool {
        self.delimited && !(self.user_only || self.kernel_only)
    }

    /// BCC's multi-line entry.
    pub fn multiline(&self, e: &Entry) -> String {
        let mut s = String::new();
        if !self.user_only {
            if stack_id_err(e.key.kstack_id) || (e.key.kstack_id >= 0 && e.kstack.is_none()) {
                s.push_str("    [Missed Kernel Stack]\n");
            } else if let Some(k) = &e.kstack {
                for f in k {
                    s.push_str(&format!("    {}\n", f.bcc(self.offset)));
                }
            }
        }
        if !self.kernel_only {
            if self.need_delim() && e.key.ustack_id >= 0 && e.key.kstack_id >= 0 {
                s.push_str("    --\n");
            }
            if stack_id_err(e.key.ustack_id) || (e.key.ustack_id >= 0 && e.ustack.is_none()) {
                s.push_str("    [Missed User Stack]\n");
            } else if let Some(u) = &e.ustack {
                for f in u {
                    s.push_str(&format!("    {}\n", f.bcc(self.offset)));
                }
            }
        }
        s.push_str(&format!(
            "    {:<16} {} ({})\n",
            "-",
            shared::fmt::cstr(&e.key.comm),
            e.key.tid
        ));
        s.push_str(&format!("        {}\n", e.total_us));
        s
    }

    /// BCC's folded line: comm;user root..leaf[;-];kernel entry..leaf TOTAL.
    pub fn folded(&self, e: &Entry) -> String {
        let mut parts = vec![shared::fmt::cstr(&e.key.comm)];
        if !self.kernel_only {
            if stack_id_err(e.key.ustack_id) || (e.key.ustack_id >= 0 && e.ustack.is_none()) {
                parts.push("[Missed User Stack]".into());
            } else if let Some(u) = &e.ustack {
                parts.extend(u.iter().rev().map(|f| f.bcc(false)));
            }
        }
        if !self.user_only {
            if self.need_delim() && e.key.kstack_id >= 0 && e.key.ustack_id >= 0 {
                parts.push("-".into());
            }
            if stack_id_err(e.key.kstack_id) || (e.key.kstack_id >= 0 && e.kstack.is_none()) {
                parts.push("[Missed Kernel Stack]".into());
            } else if let Some(k) = &e.kstack {
                parts.extend(k.iter().rev().map(|f| f.bcc(false)));
            }
        }
        folded::line(&parts, e.total_us)
    }

    pub fn json(&self, e: &Entry, start: &str, end: &str) -> serde_json::Value {
        let frames = |f: &Option<Vec<Frame>>| match f {
            Some(v) => json!(v.iter().map(Frame::to_json).collect::<Vec<_>>()),
            None => serde_json::Value::Null,
        };
        json!({
            "interval_start": start,
            "interval_end": end,
            "tid": e.key.tid,
            "tgid": e.key.tgid,
            "comm": shared::fmt::cstr(&e.key.comm),
            "total_us": e.total_us,
            "kernel_stack": if self.user_only { serde_json::Value::Null } else { frames(&e.kstack) },
            "user_stack": if self.kernel_only { serde_json::Value::Null } else { frames(&e.ustack) },
            "kernel_stack_lost": !self.user_only && (stack_id_err(e.key.kstack_id) || (e.key.kstack_id >= 0 && e.kstack.is_none())),
            "user_stack_lost": !self.kernel_only && (stack_id_err(e.key.ustack_id) || (e.key.ustack_id >= 0 && e.ustack.is_none())),
        })
    }
}

struct State {
    out: Output,
    fmt: Fmt,
    folded: bool,
    json: bool,
    interval_mode: bool,
    clock: Clock,
    syms: Symbolizer,
    seen_tgids: HashSet<u32>,
}

fn read_counts(map: &dyn MapCore) -> Vec<(Vec<u8>, CountKey, u64)> {
    let mut out = Vec::new();
    for k in map.keys() {
        let mut key = CountKey::default();
        if plain::copy_from_bytes(&mut key, &k).is_err() {
            continue;
        }
        if let Ok(Some(v)) = map.lookup(&k, MapFlags::ANY) {
            if v.len() >= 8 {
                out.push((k, key, u64::from_ne_bytes(v[..8].try_into().unwrap())));
            }
        }
    }
    out
}

impl State {
    /// Snapshot the maps of processes seen in `counts` (before they exit) and
    /// resolve their user stacks now, so the report at Ctrl-C is quick.
    fn remember_new(&mut self, counts: &dyn MapCore, stacks: &dyn MapCore) {
        for k in counts.keys() {
            let mut key = CountKey::default();
            if plain::copy_from_bytes(&mut key, &k).is_err() {
                continue;
            }
            if self.seen_tgids.insert(key.tgid) {
                self.syms.remember(key.tgid);
            }
            if key.ustack_id >= 0 && !self.fmt.kernel_only {
                if let Ok(a) = read_stack(stacks, key.ustack_id) {
                    let _ = self.syms.user(key.tgid, &a);
                }
            }
        }
    }

    /// Read, print and delete the table; returns (entries, lost stacks).
    fn report(
        &mut self,
        counts: &dyn MapCore,
        stacks: &dyn MapCore,
        start_map: &dyn MapCore,
        start_ns: u64,
        end_ns: u64,
        gc: bool,
    ) {
        let rows = read_counts(counts);
        let mut lost = 0u64;
        let mut enomem = false;
        let mut entries: Vec<Entry> = Vec::with_capacity(rows.len());
        // Merge keys that differ only by raw stack ids resolving the same way? No:
        // like BCC, one entry per key.
        let mut by_key: BTreeMap<(u64, u32, i32, i32), usize> = BTreeMap::new();
        // Read every stack once, resolve all kernel addresses in one pass.
        let mut raw: HashMap<i32, Option<Vec<u64>>> = HashMap::new();
        for (_, key, _) in &rows {
            for (id, wanted) in [
                (key.kstack_id, !self.fmt.user_only),
                (key.ustack_id, !self.fmt.kernel_only),
            ] {
                if wanted && id >= 0 && !raw.contains_key(&id) {
                    raw.insert(id, read_stack(stacks, id).ok());
                }
            }
        }
        let kaddrs: Vec<u64> = rows
            .iter()
            .filter_map(|(_, k, _)| raw.get(&k.kstack_id).cloned().flatten())
            .flatten()
            .collect();
        self.syms.prefetch_kernel(&kaddrs);
        for (_, key, total) in &rows {
            let kstack = if key.kstack_id >= 0 && !self.fmt.user_only {
                raw.get(&key.kstack_id)
                    .cloned()
                    .flatten()
                    .map(|a| self.syms.kernel(&a))
            } else if key.kstack_id == EFAULT {
                Some(Vec::new())
            } else {
                None
            };
            let ustack = if key.ustack_id >= 0 && !self.fmt.kernel_only {
                raw.get(&key.ustack_id)
                    .cloned()
                    .flatten()
                    .map(|a| self.syms.user(key.tgid, &a))
            } else if key.ustack_id == EFAULT {
                Some(Vec::new())
            } else {
                None
            };
            for (id, resolved, wanted) in [
                (key.kstack_id, kstack.is_some(), !self.fmt.user_only),
                (key.ustack_id, ustack.is_some(), !self.fmt.kernel_only),
            ] {
                if wanted && (stack_id_err(id) || (id >= 0 && !resolved)) {
                    lost += 1;
                    enomem |= id == ENOMEM;
                }
            }
            by_key.insert(
                (*total, key.tid, key.kstack_id, key.ustack_id),
                entries.len(),
            );
            entries.push(Entry {
                key: *key,
                total_us: *total,
                kstack,
                ustack,
            });
        }
        let start_s = self.clock.datetime(start_ns);
        let end_s = self.clock.datetime(end_ns);
        if self.interval_mode && !self.json {
            let bar = "=".repeat(80);
            self.out.raw("");
            self.out.raw(&bar);
            self.out.raw(&format!(
                "=== Off-CPU Analysis Report - Start Time: {start_s} ==="
            ));
            self.out.raw(&bar);
        } else if !self.json && !self.folded {
            self.out.raw("");
        }
        let start_r = self.clock.rfc3339(start_ns);
        let end_r = self.clock.rfc3339(end_ns);
        for (_, idx) in by_key {
            let e = &entries[idx];
            if self.json {
                let v = self.fmt.json(e, &start_r, &end_r);
                self.out.event(&v);
            } else if self.folded {
                let l = self.fmt.folded(e);
                self.out.raw(&l);
            } else {
                let t = self.fmt.multiline(e);
                self.out.raw(t.trim_end_matches('\n'));
                self.out.raw("");
            }
        }
        if self.json {
            self.out.event(&json!({
                "type": "interval_end",
                "interval_start": start_r,
                "interval_end": end_r,
                "entries": entries.len(),
                "lost_stacks": lost,
            }));
        }
        if self.interval_mode && !self.json {
            let bar = "=".repeat(80);
            self.out.raw(&bar);
            self.out.raw(&format!(
                "=== Off-CPU Analysis Report - End Time: {end_s} ==="
            ));
            self.out.raw(&bar);
            self.out.raw("");
        }
        if lost > 0 {
            eprintln!(
                "WARNING: {lost} stack traces lost and could not be displayed.{}",
                if enomem {
                    " Consider increasing --stack-storage-size."
                } else {
                    ""
                }
            );
        }
        // Delete exactly the keys read (keys added meanwhile survive).
        for (raw, _, _) in &rows {
            let _ = counts.delete(raw);
        }
        if gc {
            collect_stacks(counts, stacks, start_map);
        }
    }
}

/// Delete stack ids referenced neither by a remaining `counts` key nor by a
/// `start` entry (the original never cleared the map and filled it up).
fn collect_stacks(counts: &dyn MapCore, stacks: &dyn MapCore, start_map: &dyn MapCore) {
    let mut keep: HashSet<i32> = HashSet::new();
    for (_, key, _) in read_counts(counts) {
        keep.insert(key.kstack_id);
        keep.insert(key.ustack_id);
    }
    for k in start_map.keys() {
        if let Ok(Some(v)) = start_map.lookup(&k, MapFlags::ANY) {
            let mut sv = StartVal::default();
            if plain::copy_from_bytes(&mut sv, &v).is_ok() {
                keep.insert(sv.kstack_id);
                keep.insert(sv.ustack_id);
            }
        }
    }
    let ids: Vec<Vec<u8>> = stacks.keys().collect();
    for raw in ids {
        if raw.len() == 4 {
            let id = u32::from_ne_bytes(raw[..4].try_into().unwrap()) as i32;
            if !keep.contains(&id) {
                let _ = stacks.delete(&raw);
            }
        }
    }
}

pub fn run() {
    let args: Args = shared::cli::parse();
    if let Err(e) = args.check() {
        shared::cli::usage_error(e);
    }
    let common = CommonArgs {
        duration: args.duration(),
        json: args.json,
        explain: args.explain,
        attach: args.attach,
        verbose: args.verbose,
    };
    let mut out = Output::stdout(args.json);
    let mut session = Session::start(common.duration, common.verbose);
    let (_kernel, plan) = bpf::plan(&common, HOOKS);
    if args.verbose {
        eprintln!("verbose: sched_switch hook: {}", plan.summary());
    }

    let mut open_object = MaybeUninit::uninit();
    let mut open = OffcputimeTsSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    if let Err(e) = open
        .maps
        .stacks
        .set_max_entries(args.stack_storage_size.min(u32::MAX as u64) as u32)
    {
        shared::die(shared::EXIT_RUNTIME, format!("--stack-storage-size: {e}"));
    }
    let o = open.open_object_mut();
    let cfg = |o: &mut libbpf_rs::OpenObject, name: &str, b: &[u8]| {
        bpf::set_rodata(o, name, b).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e))
    };
    cfg(o, "filter_tgid", &[u8::from(args.pids.is_some())]);
    cfg(o, "filter_tid", &[u8::from(args.tids.is_some())]);
    cfg(o, "user_threads_only", &[u8::from(args.user_threads_only)]);
    cfg(
        o,
        "kernel_threads_only",
        &[u8::from(args.kernel_threads_only)],
    );
    cfg(o, "user_stacks_only", &[u8::from(args.user_stacks_only)]);
    cfg(
        o,
        "kernel_stacks_only",
        &[u8::from(args.kernel_stacks_only)],
    );
    cfg(o, "filter_state", &[u8::from(args.state.is_some())]);
    cfg(o, "state_mask", &args.state.unwrap_or(0).to_ne_bytes());
    cfg(o, "min_us", &args.min_block_time.to_ne_bytes());
    cfg(o, "max_us", &args.max_block_time.to_ne_bytes());
    let mut skel = bpf::load(open);
    for id in args.pids.iter().chain(args.tids.iter()).flatten() {
        if let Err(e) = skel
            .maps
            .allowed
            .update(&id.to_ne_bytes(), &[1], MapFlags::ANY)
        {
            shared::die(shared::EXIT_RUNTIME, format!("filling the id filter: {e}"));
        }
    }
    let _links = bpf::attach(&plan, &mut skel);

    if !args.folded {
        out.banner(&args.header());
    }
    let state = RefCell::new(State {
        out,
        fmt: Fmt {
            user_only: args.user_stacks_only,
            kernel_only: args.kernel_stacks_only,
            delimited: args.delimited,
            offset: args.offset,
        },
        folded: args.folded,
        json: args.json,
        interval_mode: args.interval.is_some(),
        clock: session.clock,
        syms: Symbolizer::new(),
        seen_tgids: HashSet::new(),
    });
    {
        // Snapshot the mappings of the processes asked for now, while they
        // live, and index the kernel symbols (no kallsyms pass at Ctrl-C).
        let mut st = state.borrow_mut();
        if !args.user_stacks_only {
            st.syms.preload_kernel();
        }
        for p in args.pids.iter().flatten() {
            st.seen_tgids.insert(*p);
            st.syms.remember(*p);
        }
        for t in args.tids.iter().flatten() {
            if let Some(tg) = shared::proc::tgid_of(*t) {
                st.seen_tgids.insert(tg);
                st.syms.remember(tg);
            }
        }
    }
    let maps = &skel.maps;
    let warn = |d: &[u8]| {
        let mut w = WarnEvent::default();
        if plain::copy_from_bytes(&mut w, d).is_ok() {
            eprintln!(
                "WARN: Skipped an event with negative duration: pid:{}, tgid:{}, off-cpu:{}, on-cpu:{}",
                w.pid, w.tgid, w.off_ts, w.on_ts
            );
        }
    };
    let drain = Drain::open(skel.object(), channel, warn)
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    // Interval ends count from before the --duration deadline is set, so that
    // with `-I 1 3` the last full interval ends before the deadline and is
    // reported with its nominal end, not as a partial block a few µs short
    // (whose End time could then print the same second as the previous one).
    let t0 = Clock::mono_now_ns();
    let interval = args.interval.map(Duration::from_secs);
    let started = Instant::now();
    session.attached(&plan.summary());
    let k = std::cell::Cell::new(1u32);
    let mut last_end = t0;
    let mut last_remember = Instant::now();
    let r = session.run(
        |t| {
            // Wake up for the next interval end, not later.
            let t = match interval {
                Some(i) => t.min((started + i * k.get()).saturating_duration_since(Instant::now())),
                None => t,
            };
            drain.poll(t)
        },
        || {
            let mut st = state.borrow_mut();
            if last_remember.elapsed() >= Duration::from_secs(1) {
                st.remember_new(&maps.counts, &maps.stacks);
                last_remember = Instant::now();
            }
            if let Some(i) = interval {
                if Instant::now() >= started + i * k.get() {
                    let end = t0 + (i * k.get()).as_nanos() as u64;
                    st.remember_new(&maps.counts, &maps.stacks);
                    st.report(&maps.counts, &maps.stacks, &maps.start, last_end, end, true);
                    last_end = end;
                    k.set(k.get() + 1);
                }
            }
        },
    );
    if let Err(e) = r {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    drain.flush();
    let end = Clock::mono_now_ns();
    let mut st = state.borrow_mut();
    st.remember_new(&maps.counts, &maps.stacks);
    // The last (partial) interval, or the one table without -I. A tail of a
    // few ms after the last full interval (stop right after an interval end)
    // is not worth a block of its own.
    if interval.is_none() || end > last_end + 20_000_000 {
        st.report(
            &maps.counts,
            &maps.stacks,
            &maps.start,
            last_end,
            end,
            false,
        );
    }
    let lost = drain.lost(skel.object());
    if lost > 0 {
        eprintln!("WARNING: {lost} warning events lost");
    }
    session.verbose_footer();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, String> {
        let a = Args::try_parse_from(std::iter::once("offcputime-ts").chain(v.iter().copied()))
            .map_err(|e| e.to_string())?;
        a.check()?;
        Ok(a)
    }

    #[test]
    fn exclusions() {
        for bad in [
            &["-p", "1", "-t", "2"][..],
            &["-u", "-k"],
            &["-U", "-K"],
            &["-f", "-s"],
            &["-k", "-U"],
            &["-m", "10", "-M", "5"],
            &["-p", "0"],
            &["-p", "a"],
            &["-p", "1,,2"],
            &["-p", "-5"],
            &["-m", "0"],
            &["-M", "0"],
            &["--stack-storage-size", "0"],
            &["-I", "0"],
            &["--state", "-1"],
            &["0"],
            &["abc"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
        assert!(args(&["-p", "1,2", "-f", "3"]).is_ok());
    }

    #[test]
    fn headers() {
        assert_eq!(
            args(&[]).unwrap().header(),
            "Tracing off-CPU time (us) of all threads by user + kernel stack... Hit Ctrl-C to end."
        );
        assert_eq!(
            args(&["-p", "1,2", "-U", "5"]).unwrap().header(),
            "Tracing off-CPU time (us) of PIDs 1,2 by user stack for 5 secs."
        );
        assert_eq!(
            args(&["-I", "1", "5", "-K", "-k"]).unwrap().header(),
            "Tracing off-CPU time (us) of kernel threads by kernel stack, output every 1 secs for 5 secs total."
        );
    }

    fn fr(n: &str) -> Frame {
        Frame {
            addr: 1,
            func: Some(n.into()),
            offset: 0x1a,
            module: None,
        }
    }

    #[test]
    fn layouts() {
        let mut comm = [0u8; 16];
        comm[..7].copy_from_slice(b"sleeper");
        let e = Entry {
            key: CountKey {
                tid: 42,
                tgid: 42,
                ustack_id: 1,
                kstack_id: 2,
                comm,
            },
            total_us: 1000,
            kstack: Some(vec![fr("schedule"), fr("do_nanosleep")]),
            ustack: Some(vec![fr("clock_nanosleep"), fr("nap_here"), fr("main")]),
        };
        let f = Fmt {
            user_only: false,
            kernel_only: false,
            delimited: true,
            offset: false,
        };
        assert_eq!(
            f.folded(&e),
            "sleeper;main;nap_here;clock_nanosleep;-;do_nanosleep;schedule 1000"
        );
        assert_eq!(
            f.multiline(&e),
            "    schedule\n    do_nanosleep\n    --\n    clock_nanosleep\n    nap_here\n    main\n    -                sleeper (42)\n        1000\n"
        );
        let lost = Entry {
            key: CountKey {
                ustack_id: -12,
                ..e.key
            },
            ustack: None,
            ..e
        };
        assert!(f.multiline(&lost).contains("    [Missed User Stack]\n"));
        assert!(f.folded(&lost).starts_with("sleeper;[Missed User Stack];"));
        let j = f.json(&lost, "a", "b");
        assert_eq!(j["user_stack_lost"], true);
        assert_eq!(j["kernel_stack_lost"], false);
    }
}
