//! The common crate of every tool: command-line pieces, the BPF object life cycle
//! (hook plan with attach fallbacks, load, attach, event draining), BTF lookups,
//! stack symbolization, histograms and text/JSON output.
//!
//! A tool is its `.bpf.c`, a hook table, an event decoder and its output format;
//! everything else comes from here.

pub mod args;
pub mod bpf;
pub mod btf;
pub mod cli;
pub mod conntrack;
pub mod events;
pub mod exitwait;
pub mod filter;
pub mod flowrules;
pub mod fmt;
pub mod folded;
pub mod hist;
pub mod hooks;
pub mod kfree_skb;
pub mod ksyms;
pub mod netdev;
pub mod nflink;
pub mod output;
pub mod ovs;
pub mod percpu;
pub mod perf;
pub mod pkt;
pub mod proc;
pub mod reasons;
pub mod runner;
pub mod sched;
pub mod sizehist;
pub mod skbsnap;
pub mod snaphooks;
pub mod stacks;
pub mod stages;
pub mod symbolize;
pub mod time;
pub mod uprobe;
pub mod usyms;
pub mod vmhost;

/// Exit status of a runtime failure (not root, no BTF, load/attach error).
pub const EXIT_RUNTIME: i32 = 1;
/// Exit status of a bad command line.
pub const EXIT_USAGE: i32 = 2;

/// Print `error: <msg>` and exit with `code`. Used for every fatal error so the
/// user sees one line, never a panic or a backtrace.
pub fn die(code: i32, msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(code)
}
