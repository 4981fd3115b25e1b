//! `pthread_rwlock_wrlock`: how long threads wait to get a pthread rwlock
//! write lock. uprobe + uretprobe on `pthread_rwlock_wrlock` (or `--symbol`)
//! of the C library found on this host (or `--lib`, or the one process `-p`
//! maps), a log2 histogram in µs printed at Ctrl-C or after `-d` seconds.

use std::mem::MaybeUninit;
use std::path::PathBuf;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use shared::args::{check_pid_exists_or_exit, parse_pid, CommonArgsD};
use shared::bpf;
use shared::hist::read_bpf_hist;
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::output::Output;
use shared::runner::Session;
use shared::uprobe::{self, UprobeTarget};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/pthread_rwlock_wrlock.skel.rs"));
}
use skel::PthreadRwlockWrlockSkelBuilder;

pub static HOOKS: &[HookPoint] = &[
    HookPoint {
        name: "entry",
        required: true,
        candidates: &[Candidate::new(Kind::Uprobe, "wrlock_enter", "uprobe")],
    },
    HookPoint {
        name: "return",
        required: true,
        candidates: &[Candidate::new(Kind::Uprobe, "wrlock_exit", "uretprobe")],
    },
];

/// Libraries searched (ld.so cache, then the usual folders) when neither
/// `--lib` nor `-p` is given: glibc < 2.34 has the symbol in libpthread,
/// newer ones in libc (libpthread.so.0 is an empty stub there).
pub const DEFAULT_LIBS: &[&str] = &["libpthread.so.0", "libc.so.6"];

#[derive(Parser, Debug)]
#[command(
    name = "pthread_rwlock_wrlock",
    about = "Histogram (µs) of pthread_rwlock_wrlock() durations: how long threads wait for rwlock write locks",
    after_help = "The library is found automatically (libpthread.so.0, then libc.so.6 through the ld.so cache \
and the usual folders; with -p, the file the process maps that defines the symbol). \
Statically linked programs (Go, musl-static, Rust crt-static) are not covered; Rust's \
std::sync::RwLock uses futexes directly and is never seen."
)]
pub struct Args {
    /// Library (or executable) to probe (default: found automatically)
    #[arg(long, value_name = "PATH")]
    pub lib: Option<PathBuf>,

    /// Only this process; the library is taken from its /proc/PID/maps
    #[arg(short = 'p', long, value_name = "PID", value_parser = parse_pid, allow_hyphen_values = true)]
    pub pid: Option<u32>,

    /// Function to time (e.g. pthread_rwlock_rdlock, pthread_mutex_lock)
    #[arg(long, value_name = "NAME", default_value = "pthread_rwlock_wrlock")]
    pub symbol: String,

    #[command(flatten)]
    pub common: CommonArgsD,
}

/// Resolve the probe target or exit 2 with the reason (before any BPF).
pub fn resolve_target(
    lib: Option<&std::path::Path>,
    pid: Option<u32>,
    symbol: &str,
) -> UprobeTarget {
    if let Some(p) = pid {
        check_pid_exists_or_exit("--pid", p);
    }
    let r = uprobe::resolve(lib, pid, symbol, DEFAULT_LIBS);
    match r {
        Ok(t) => t,
        Err(e) => {
            let flag = if lib.is_some() {
                "--lib"
            } else if pid.is_some() {
                "--pid"
            } else {
                "--symbol"
            };
            shared::cli::usage_error(format!("{flag}: {e}"))
        }
    }
}

pub fn run() {
    let args: Args = shared::cli::parse();
    let target = resolve_target(args.lib.as_deref(), args.pid, &args.symbol);
    let common = args.common.common();
    eprintln!("Probe: {}", target.describe());
    let mut out = Output::stdout(common.json);
    let mut session = Session::start(common.duration, common.verbose);
    let (_kernel, mut plan) = bpf::plan(&common, HOOKS);
    plan.set_target("entry", target.describe());
    plan.set_target("return", format!("{} (return)", target.describe()));

    let mut open_object = MaybeUninit::uninit();
    let mut open = PthreadRwlockWrlockSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    bpf::prepare(open.open_object_mut(), &plan);
    bpf::set_rodata(
        open.open_object_mut(),
        "target_tgid",
        &args.pid.unwrap_or(0).to_ne_bytes(),
    )
    .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    let skel = bpf::load(open);
    let links = [
        uprobe::attach(&skel.progs.wrlock_enter, false, args.pid, &target),
        uprobe::attach(&skel.progs.wrlock_exit, true, args.pid, &target),
    ];
    let _links: Vec<libbpf_rs::Link> = links
        .into_iter()
        .map(|l| l.unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e)))
        .collect();

    out.banner("Attaching 3 probes...");
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
    let (hist, sum) = read_bpf_hist(&skel.maps.lat);
    if common.json {
        let mut v = hist.to_json_bpftrace("lat", "us", sum);
        v["library"] = serde_json::json!(target.path.display().to_string());
        v["symbol"] = serde_json::json!(target.symbol);
        v["offset"] = serde_json::json!(target.offset);
        if let Some(p) = args.pid {
            v["pid"] = serde_json::json!(p);
        }
        out.event(&v);
    } else {
        let text = hist.render_bpftrace("lat");
        if !text.is_empty() {
            out.raw(&format!("\n{}", text.trim_end_matches('\n')));
            out.raw("");
        }
    }
    session.verbose_footer();
}
