//! `pthread_rwlock_wrlock-stack`: in process PID, which call paths take
//! pthread rwlock write locks, and how often? Counts per (thread name, pid,
//! user stack) of calls to `pthread_rwlock_wrlock`, printed at the end in
//! bpftrace's map-with-stack layout (or JSON).

use std::mem::MaybeUninit;
use std::path::PathBuf;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use serde_json::json;

use shared::args::{check_pid_exists_or_exit, CommonArgsD};
use shared::bpf;
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::output::Output;
use shared::runner::Session;
use shared::stacks::read_stack;
use shared::symbolize::{Frame, Symbolizer};
use shared::uprobe;

mod skel {
    include!(concat!(
        env!("OUT_DIR"),
        "/pthread_rwlock_wrlock_stack.skel.rs"
    ));
}
use skel::PthreadRwlockWrlockStackSkelBuilder;

pub static HOOKS: &[HookPoint] = &[HookPoint {
    name: "entry",
    required: true,
    candidates: &[Candidate::new(Kind::Uprobe, "wrlock_stack", "uprobe")],
}];

pub const DEFAULT_LIBS: &[&str] = &["libpthread.so.0", "libc.so.6"];

/// Mirror of `struct count_key` (src/bpf/pthread_rwlock_wrlock_stack.bpf.c).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct CountKey {
    pub comm: [u8; 16],
    pub tgid: u32,
    pub ustack_id: i32,
}
// SAFETY: plain old data.
unsafe impl plain::Plain for CountKey {}
const _: () = assert!(std::mem::size_of::<CountKey>() == 24);

fn parse_pid_arg(s: &str) -> Result<u32, String> {
    shared::args::parse_pid(s)
}

fn parse_depth(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=127).contains(&n) => Ok(n as usize),
        Ok(_) => Err("must be 1-127".into()),
        Err(_) => Err("not a number".into()),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "pthread_rwlock_wrlock-stack",
    about = "Count pthread_rwlock_wrlock() calls in process PID per thread name and user stack",
    after_help = "Stacks are unwound with frame pointers only (no DWARF), at most 127 frames. \
At a function-entry uprobe the immediate caller is skipped by kernels without the \
entry-uprobe fix (before ~6.12): expect pthread_rwlock_wrlock+0 followed by the caller's \
caller there. Libraries built without frame pointers give short stacks."
)]
pub struct Args {
    /// Process to trace (required)
    #[arg(value_name = "PID", value_parser = parse_pid_arg, allow_hyphen_values = true)]
    pub pid: u32,

    /// Library (or executable) to probe (default: the file PID maps that defines the symbol)
    #[arg(long, value_name = "PATH")]
    pub lib: Option<PathBuf>,

    /// Function to count (default pthread_rwlock_wrlock)
    #[arg(long, value_name = "NAME", default_value = "pthread_rwlock_wrlock")]
    pub symbol: String,

    /// Frames kept per stack, 1-127
    #[arg(long, value_name = "N", default_value_t = 127, value_parser = parse_depth, allow_hyphen_values = true)]
    pub max_depth: usize,

    #[command(flatten)]
    pub common: CommonArgsD,
}

/// One output entry.
pub struct Entry {
    pub comm: String,
    pub pid: u32,
    pub count: u64,
    /// None: the stack was lost (negative id other than EFAULT).
    pub frames: Option<Vec<Frame>>,
}

/// bpftrace map-with-ustack layout.
pub fn render(e: &Entry) -> String {
    let mut s = format!("@[{}, {}, \n", e.comm, e.pid);
    match &e.frames {
        Some(f) => {
            for fr in f {
                s.push_str(&format!("        {}\n", fr.bpftrace()));
            }
        }
        None => s.push_str("        [Missed User Stack]\n"),
    }
    s.push_str(&format!("]: {}", e.count));
    s
}

pub fn to_json(e: &Entry) -> serde_json::Value {
    json!({
        "comm": e.comm,
        "pid": e.pid,
        "count": e.count,
        "user_stack": e.frames.as_ref().map(|f| f.iter().map(Frame::to_json).collect::<Vec<_>>()).unwrap_or_default(),
        "user_stack_lost": e.frames.is_none(),
    })
}

pub fn run() {
    let args: Args = shared::cli::parse();
    check_pid_exists_or_exit("PID", args.pid);
    let target = match uprobe::resolve(
        args.lib.as_deref(),
        Some(args.pid),
        &args.symbol,
        DEFAULT_LIBS,
    ) {
        Ok(t) => t,
        Err(e) => shared::cli::usage_error(format!(
            "{}: {e}",
            if args.lib.is_some() { "--lib" } else { "PID" }
        )),
    };
    let common = args.common.common();
    eprintln!("Probe: {} (pid {})", target.describe(), args.pid);
    let mut out = Output::stdout(common.json);
    let mut session = Session::start(common.duration, common.verbose);
    let (_kernel, mut plan) = bpf::plan(&common, HOOKS);
    plan.set_target("entry", target.describe());

    let mut symbolizer = Symbolizer::new();
    symbolizer.remember(args.pid);

    let mut open_object = MaybeUninit::uninit();
    let mut open = PthreadRwlockWrlockStackSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    bpf::prepare(open.open_object_mut(), &plan);
    bpf::set_rodata(
        open.open_object_mut(),
        "target_tgid",
        &args.pid.to_ne_bytes(),
    )
    .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    let skel = bpf::load(open);
    let _link = uprobe::attach(&skel.progs.wrlock_stack, false, Some(args.pid), &target)
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));

    out.banner("Attaching 2 probes...");
    session.attached(&plan.summary());
    let r = session.run(
        |t| {
            std::thread::sleep(t);
            Ok(())
        },
        || {},
    );
    if let Err(e) = r {
        shared::die(shared::EXIT_RUNTIME, e);
    }

    let counts = &skel.maps.counts;
    let stacks = &skel.maps.stacks;
    let mut entries = Vec::new();
    for k in counts.keys() {
        let mut key = CountKey::default();
        if plain::copy_from_bytes(&mut key, &k).is_err() {
            continue;
        }
        let Ok(Some(v)) = counts.lookup(&k, MapFlags::ANY) else {
            continue;
        };
        let count = u64::from_ne_bytes(v[..8].try_into().unwrap());
        let frames = match read_stack(stacks, key.ustack_id) {
            Ok(addrs) => {
                let mut f = symbolizer.user(key.tgid, &addrs);
                f.truncate(args.max_depth);
                Some(f)
            }
            Err(_) if key.ustack_id == -14 => Some(Vec::new()),
            Err(_) => None,
        };
        entries.push(Entry {
            comm: shared::fmt::cstr(&key.comm),
            pid: key.tgid,
            count,
            frames,
        });
    }
    entries.sort_by(|a, b| a.count.cmp(&b.count).then(a.comm.cmp(&b.comm)));
    if !entries.is_empty() && !common.json {
        out.raw("");
    }
    for e in &entries {
        if common.json {
            out.event(&to_json(e));
        } else {
            out.raw(&render(e));
            out.raw("");
        }
    }
    session.verbose_footer();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpftrace_layout() {
        let e = Entry {
            comm: "rw-a".into(),
            pid: 4242,
            count: 500,
            frames: Some(vec![
                Frame {
                    addr: 0x10,
                    func: Some("pthread_rwlock_wrlock".into()),
                    offset: 0,
                    module: None,
                },
                Frame::unknown(0x7f00),
            ]),
        };
        assert_eq!(
            render(&e),
            "@[rw-a, 4242, \n        pthread_rwlock_wrlock+0\n        0x7f00\n]: 500"
        );
        let lost = Entry { frames: None, ..e };
        assert!(render(&lost).contains("        [Missed User Stack]\n"));
        assert_eq!(to_json(&lost)["user_stack_lost"], true);
    }
}
