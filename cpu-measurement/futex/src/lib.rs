//! `futex`: how long futex() system calls take, system-wide or for one
//! process: a log2 histogram printed at Ctrl-C or after `-d` seconds, in the
//! bpftrace `hist()` layout of the original `futex.bt`.

use std::mem::MaybeUninit;

use clap::{Parser, ValueEnum};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use shared::args::{check_pid_exists_or_exit, parse_pid, CommonArgsD};
use shared::bpf;
use shared::hist::read_bpf_hist;
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::output::Output;
use shared::runner::Session;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/futex.skel.rs"));
}
use skel::FutexSkelBuilder;

pub static HOOKS: &[HookPoint] = &[
    HookPoint {
        name: "sys_enter_futex",
        required: true,
        candidates: &[Candidate::new(
            Kind::Tracepoint,
            "futex_enter",
            "syscalls/sys_enter_futex",
        )],
    },
    HookPoint {
        name: "sys_exit_futex",
        required: true,
        candidates: &[Candidate::new(
            Kind::Tracepoint,
            "futex_exit",
            "syscalls/sys_exit_futex",
        )],
    },
];

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Unit {
    Ms,
    Us,
    Ns,
}

impl Unit {
    pub fn divisor(self) -> u64 {
        match self {
            Unit::Ms => 1_000_000,
            Unit::Us => 1_000,
            Unit::Ns => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::Us => "us",
            Unit::Ns => "ns",
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "futex",
    about = "Histogram of futex() system call durations (all processes, or one with -p)",
    after_help = "Every futex operation (WAIT, WAKE, REQUEUE, LOCK_PI...) goes into one histogram; \
WAKE calls fill the lowest buckets. Calls already in progress when tracing starts are skipped. \
The futex2 system calls (futex_wait, futex_wake, futex_waitv) are not traced."
)]
pub struct Args {
    /// Only this process (tgid)
    #[arg(short = 'p', long, value_name = "PID", value_parser = parse_pid, allow_hyphen_values = true)]
    pub pid: Option<u32>,

    /// Histogram unit (the original: ms, integer division)
    #[arg(long, value_enum, default_value_t = Unit::Ms)]
    pub unit: Unit,

    #[command(flatten)]
    pub common: CommonArgsD,
}

pub fn run() {
    let args: Args = shared::cli::parse();
    if let Some(p) = args.pid {
        check_pid_exists_or_exit("--pid", p);
    }
    let common = args.common.common();
    let mut out = Output::stdout(common.json);
    let mut session = Session::start(common.duration, common.verbose);
    let (_kernel, plan) = bpf::plan(&common, HOOKS);

    let mut open_object = MaybeUninit::uninit();
    let mut open = FutexSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    bpf::prepare(open.open_object_mut(), &plan);
    let cfg = |o: &mut libbpf_rs::OpenObject, name: &str, b: &[u8]| {
        bpf::set_rodata(o, name, b).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e))
    };
    cfg(
        open.open_object_mut(),
        "target_tgid",
        &args.pid.unwrap_or(0).to_ne_bytes(),
    );
    cfg(
        open.open_object_mut(),
        "unit_div",
        &args.unit.divisor().to_ne_bytes(),
    );
    let mut skel = bpf::load(open);
    let _links = bpf::attach(&plan, &mut skel);

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
    let (hist, sum) = read_bpf_hist(&skel.maps.lat);
    if common.json {
        let mut v = hist.to_json_bpftrace("lat", args.unit.name(), sum);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(Unit::Ms.divisor(), 1_000_000);
        assert_eq!(Unit::Us.name(), "us");
    }

    #[test]
    fn hooks_are_tracepoints_only() {
        assert!(HOOKS
            .iter()
            .all(|h| h.candidates.iter().all(|c| c.kind == Kind::Tracepoint)));
    }
}
