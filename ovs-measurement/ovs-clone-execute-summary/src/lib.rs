//! `ovs-clone-execute-summary`: which packets of a flow go through nested
//! `clone_execute` calls in the OVS kernel datapath (recirculation, clone,
//! sample, check_pkt_len inside one another), with which recirc_id and
//! conntrack state; per event like the original, or (`--summary`) as a table
//! of counts, which is what the name promised.

use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use serde_json::json;

use shared::bpf;
use shared::cli::{parse_interval, CommonArgs, PacketFilterArgs};
use shared::events::Drain;
use shared::filter::RawPktFilter;
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::ksyms::Kallsyms;
use shared::output::Output;
use shared::pkt::PktMeta;
use shared::runner::Session;
use shared::time::Clock;
use shared::usyms::UserSyms;

mod skel {
    include!(concat!(
        env!("OUT_DIR"),
        "/ovs_clone_execute_summary.skel.rs"
    ));
}
use skel::OvsCloneExecuteSummarySkelBuilder;

/// clone_execute has 8 arguments: BPF trampolines (fentry) take at most 6
/// before 6.4, so the typed way is the kprobe (args 7/8 read from the stack);
/// the tracepoint works without kprobes but cannot see last/clone_flow_key.
static HOOKS: &[HookPoint] = &[HookPoint {
    name: "clone_execute",
    required: true,
    candidates: &[
        Candidate::new(Kind::Kprobe, "kprobe_clone_execute", "clone_execute"),
        Candidate::new(
            Kind::TpBtf,
            "tp_btf_ovs_do_execute_action",
            "ovs_do_execute_action",
        )
        .loses("last/clone_flow_key unknown (printed as -); the call is seen at the action that makes it"),
    ],
}];

const MAX_KFRAMES: usize = 40;
const MAX_UFRAMES: usize = 20;

/// Mirror of `struct ce_event` (src/bpf/ovs_clone_execute_summary.bpf.c).
#[repr(C)]
#[derive(Clone, Copy)]
struct CeEvent {
    ts_ns: u64,
    tid: u32,
    tgid: u32,
    comm: [u8; 16],
    recirc_id: u32,
    last: u8,
    clone_flow_key: u8,
    has_args: u8,
    ct_state: u8,
    key_valid: u8,
    depth: u8,
    action: u8,
    nk: u8,
    nu: u8,
    pad: [u8; 3],
    pkt: PktMeta,
    pad2: u32,
    kstack: [u64; MAX_KFRAMES],
    ustack: [u64; MAX_UFRAMES],
}
const _: () = assert!(std::mem::size_of::<CeEvent>() == 672);
// SAFETY: plain old data.
unsafe impl plain::Plain for CeEvent {}

impl Default for CeEvent {
    fn default() -> Self {
        // SAFETY: every field is an integer or an array of them.
        unsafe { std::mem::zeroed() }
    }
}

fn parse_min_depth(s: &str) -> Result<u8, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=40).contains(&n) => Ok(n as u8),
        Ok(_) => Err("must be 1-40 (clone_execute frames on the stack)".into()),
        Err(_) => Err("not a whole number".into()),
    }
}

#[derive(Parser, Debug)]
#[command(
    about = "Packets that go through nested clone_execute calls in the OVS kernel datapath (recirculation, clone, sample, check_pkt_len)"
)]
pub struct Args {
    #[command(flatten)]
    pub filter: PacketFilterArgs,
    /// Minimum number of clone_execute frames on the kernel stack to report (the original hard-codes 2)
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = parse_min_depth, allow_hyphen_values = true)]
    pub min_depth: u8,
    /// Also print the user stack (it belongs to whatever task the softirq interrupted)
    #[arg(long)]
    pub user_stack: bool,
    /// No per-event blocks: a table of counts every --interval seconds and at exit
    #[arg(long)]
    pub summary: bool,
    /// Seconds between tables in --summary mode
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = parse_interval, allow_hyphen_values = true)]
    pub interval: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// (saddr, daddr, proto, sport, dport, recirc_id, ct_state, depth)
type Key = (String, String, String, u16, u16, u32, Option<u8>, u8);

struct State {
    out: Output,
    clock: Clock,
    ksyms: Kallsyms,
    usyms: UserSyms,
    summary: bool,
    /// Counts since the last table.
    rows: HashMap<Key, u64>,
    /// Counts of the whole run (the table at exit).
    run_rows: HashMap<Key, u64>,
    total: u64,
    /// When the interval of `rows` began (attach, then each table).
    since: Instant,
    /// When the tool was attached (the start of the whole-run table).
    started: Instant,
}

fn bool_word(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

impl State {
    fn on_event(&mut self, data: &[u8]) {
        let mut e = CeEvent::default();
        if plain::copy_from_bytes(&mut e, data).is_err() {
            return;
        }
        self.total += 1;
        let p = e.pkt;
        let saddr = p.src_ip().map(|a| a.to_string()).unwrap_or_default();
        let daddr = p.dst_ip().map(|a| a.to_string()).unwrap_or_default();
        let ct = (e.key_valid != 0).then_some(e.ct_state);
        let (sport, dport) = if p.has_ports() {
            (p.sport, p.dport)
        } else {
            (0, 0)
        };
        if self.summary {
            let k = (
                saddr,
                daddr,
                p.proto_name(),
                sport,
                dport,
                e.recirc_id,
                ct,
                e.depth,
            );
            *self.run_rows.entry(k.clone()).or_insert(0) += 1;
            *self.rows.entry(k).or_insert(0) += 1;
            return;
        }
        let nk = (e.nk as usize).min(MAX_KFRAMES);
        let kstack = self.ksyms.format_stack(&e.kstack[..nk]);
        let nu = (e.nu as usize).min(MAX_UFRAMES);
        let ustack = (nu > 0).then(|| self.usyms.format(e.tgid, &e.ustack[..nu]));
        let comm = shared::fmt::cstr(&e.comm);
        let last = (e.has_args != 0).then_some(e.last != 0);
        let clone_key = (e.has_args != 0).then_some(e.clone_flow_key != 0);
        if self.out.json() {
            let mut v = json!({
                "ts_ns": e.ts_ns,
                "time": self.clock.rfc3339(e.ts_ns),
                "tid": e.tid,
                "comm": comm,
                "saddr": saddr,
                "daddr": daddr,
                "proto": p.proto_name(),
                "dev": p.ifname(),
                "recirc_id": e.recirc_id,
                "last": last,
                "clone_flow_key": clone_key,
                "ct_state": ct,
                "ct_state_flags": ct.map(|c| shared::ovs::ct_state_flags(c as u32)),
                "depth": e.depth,
                "kstack": kstack,
            });
            if e.action != 0 {
                v["action"] = json!(shared::ovs::action_name(e.action as u32));
            }
            if p.is_icmp() {
                v["icmp_type"] = json!(p.icmp_type);
                v["icmp_code"] = json!(p.icmp_code);
            } else if p.has_ports() {
                v["sport"] = json!(p.sport);
                v["dport"] = json!(p.dport);
            }
            if let Some(u) = ustack {
                v["ustack"] = json!(u);
            }
            self.out.event(&v);
            return;
        }
        let mut s = String::from("=== OpenVSwitch clone_execute Call ===\n");
        let t = self.clock.wall(e.ts_ns).format("%H:%M:%S%.3f");
        s.push_str(&format!("Time: {t}  PID: {:<7} Comm: {comm}\n", e.tid));
        s.push_str(&format!(
            "Source IP: {:<16} Destination IP: {:<16} Protocol: {}\n",
            saddr,
            daddr,
            p.proto_name()
        ));
        s.push_str(&format!("clone_execute call count in stack: {}\n", e.depth));
        s.push_str("OVS Parameters:\n");
        s.push_str(&format!(
            "  recirc_id: {:<10} last: {:<6} clone_flow_key: {}\n",
            format!("{:#x}", e.recirc_id),
            last.map(bool_word).unwrap_or("-"),
            clone_key.map(bool_word).unwrap_or("-")
        ));
        s.push_str(&format!(
            "  ct_state: {}\n",
            ct.map(|c| shared::ovs::ct_state_str(c as u32))
                .unwrap_or_else(|| "N/A (no openvswitch module BTF)".into())
        ));
        if e.action != 0 {
            s.push_str(&format!(
                "  action: {}\n",
                shared::ovs::action_name(e.action as u32)
            ));
        }
        if p.is_icmp() {
            s.push_str(&format!(
                "ICMP Type: {:<3} Code: {}\n",
                p.icmp_type, p.icmp_code
            ));
        } else if p.has_ports() {
            s.push_str(&format!(
                "Source Port: {:<6} Destination Port: {}\n",
                p.sport, p.dport
            ));
        }
        s.push_str(&format!("Device: {}\n", p.ifname()));
        s.push_str("Kernel Stack Trace:\n");
        kstack.iter().for_each(|f| s.push_str(&format!("  {f}\n")));
        if let Some(u) = ustack {
            s.push_str("User Stack Trace:\n");
            u.iter().for_each(|f| s.push_str(&format!("  {f}\n")));
        }
        s.push_str("===============================================");
        self.out.line(&s);
    }

    /// The table of the last interval (and reset it). A periodic table is
    /// headed with `--interval`; the one at exit with the time it really
    /// covers (since the table before it), followed by the whole run's table.
    fn flush_summary(&mut self, interval: u64, at_exit: bool) {
        if !self.summary || (self.rows.is_empty() && !at_exit) {
            return;
        }
        let now = Instant::now();
        let rows: Vec<(Key, u64)> = self.rows.drain().collect();
        if at_exit {
            let covered = now.duration_since(self.since).as_secs_f64();
            self.table(&rows, Span::Last(covered), true);
            let run: Vec<(Key, u64)> = self.run_rows.iter().map(|(k, n)| (k.clone(), *n)).collect();
            let whole = now.duration_since(self.started).as_secs_f64();
            self.table(&run, Span::Run(whole), true);
        } else {
            self.table(&rows, Span::Interval(interval), false);
        }
        self.since = now;
    }

    fn table(&mut self, rows: &[(Key, u64)], span: Span, at_exit: bool) {
        let mut rows = rows.to_vec();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: u64 = rows.iter().map(|r| r.1).sum();
        let ct_text = |c: Option<u8>| {
            c.map(|c| shared::ovs::ct_state_plus(c as u32))
                .unwrap_or_else(|| "N/A".into())
        };
        if self.out.json() {
            let mut v = json!({
                "type": "summary",
                "final": at_exit,
                "rows": rows.iter().map(|((s, d, p, sp, dp, r, c, depth), n)| json!({
                    "saddr": s, "daddr": d, "proto": p, "sport": sp, "dport": dp,
                    "recirc_id": r, "ct_state": c, "ct_state_flags": c.map(|c| shared::ovs::ct_state_flags(c as u32)),
                    "depth": depth, "count": n})).collect::<Vec<_>>(),
                "total": total,
            });
            // interval_s: the seconds the table covers (for the whole run:
            // since attach).
            let (scope, secs) = match span {
                Span::Interval(s) => ("interval", json!(s)),
                Span::Last(s) => ("interval", json!(secs3(s))),
                Span::Run(s) => ("run", json!(secs3(s))),
            };
            v["scope"] = json!(scope);
            v["interval_s"] = secs;
            self.out.event(&v);
            return;
        }
        let header = [
            "SRC",
            "DST",
            "PROTO",
            "SPORT",
            "DPORT",
            "RECIRC_ID",
            "CT_STATE",
            "DEPTH",
            "COUNT",
        ];
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|((s, d, p, sp, dp, r, c, depth), n)| {
                vec![
                    s.clone(),
                    d.clone(),
                    p.clone(),
                    sp.to_string(),
                    dp.to_string(),
                    format!("{r:#x}"),
                    ct_text(*c),
                    depth.to_string(),
                    n.to_string(),
                ]
            })
            .collect();
        let now = self.clock.hms(Clock::mono_now_ns());
        let what = match span {
            Span::Interval(s) => format!("last {s} s"),
            Span::Last(s) => format!("last {s:.1} s"),
            Span::Run(s) => format!("whole run, {s:.1} s"),
        };
        let mut s = format!("--- {now} clone_execute calls, {what} ---\n");
        s.push_str(&shared::fmt::table(&header, &table));
        s.push_str(&format!("\nTotal: {total}"));
        self.out.line(&s);
    }
}

/// The time a `--summary` table covers.
#[derive(Clone, Copy)]
enum Span {
    /// A periodic table: `--interval` seconds.
    Interval(u64),
    /// The table at exit: the seconds since the table before it.
    Last(f64),
    /// The whole run's table at exit: the seconds since attach.
    Run(f64),
}

/// Seconds with ms precision (JSON).
fn secs3(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

pub fn run() {
    let args: Args = shared::cli::parse();
    args.filter.require_ipv4();
    args.filter.require_ports_with_l4();
    let mut out = Output::stdout(args.common.json);
    let mut session = Session::start(args.common.duration, args.common.verbose);
    if !args.common.explain {
        shared::ovs::require_datapath();
    }
    let (_kernel, plan) = bpf::plan(&args.common, HOOKS);
    let ce = shared::ksyms::function_ranges("clone_execute");
    if ce.is_empty() {
        shared::die(
            shared::EXIT_RUNTIME,
            "clone_execute not found in /proc/kallsyms (needed to count nesting; kptr_restrict?)",
        );
    }

    let mut filter = RawPktFilter::from_args(&args.filter);
    filter.ipv4_only = 1;
    let mut open_object = MaybeUninit::uninit();
    let mut open = OvsCloneExecuteSummarySkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    let cfg = |o: &mut libbpf_rs::OpenObject, name: &str, b: &[u8]| {
        bpf::set_rodata(o, name, b).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e))
    };
    let o = open.open_object_mut();
    cfg(o, "FILTER", filter.as_bytes());
    bpf::set_function_ranges(o, "CE", &ce).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    cfg(o, "min_depth", &[args.min_depth]);
    cfg(o, "want_ustack", &[u8::from(args.user_stack)]);
    let mut skel = bpf::load(open);
    let _links = bpf::attach(&plan, &mut skel);

    let any = |a: Option<std::net::IpAddr>| {
        a.map(|x| x.to_string())
            .unwrap_or_else(|| "0.0.0.0".to_string())
    };
    let port = |p: Option<u16>| p.map(|x| x.to_string()).unwrap_or_else(|| "0".into());
    out.banner(&format!("Source IP: {}", any(args.filter.src)));
    out.banner(&format!("Destination IP: {}", any(args.filter.dst)));
    out.banner(&format!("Protocol: {}", args.filter.protocol.name()));
    out.banner(&format!("Source Port: {}", port(args.filter.src_port)));
    out.banner(&format!("Destination Port: {}", port(args.filter.dst_port)));
    out.banner(&format!("Minimum clone_execute depth: {}", args.min_depth));
    if !shared::ovs::module_btf() {
        out.banner("Note: no BTF for the openvswitch module: ct_state is N/A.");
    }
    out.banner("Tracing nested clone_execute calls... Hit Ctrl-C to end.");

    let state = RefCell::new(State {
        out,
        clock: session.clock,
        ksyms: Kallsyms::new(),
        usyms: UserSyms::new(),
        summary: args.summary,
        rows: HashMap::new(),
        run_rows: HashMap::new(),
        total: 0,
        since: Instant::now(),
        started: Instant::now(),
    });
    let obj = skel.object();
    let drain = Drain::open(obj, channel, |d| state.borrow_mut().on_event(d))
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    session.attached(&plan.summary());
    {
        // Events are counted from here: the tables' intervals start now.
        let mut st = state.borrow_mut();
        st.since = Instant::now();
        st.started = st.since;
    }
    let every = Duration::from_secs(args.interval);
    let mut next = Instant::now() + every;
    let result = session.run(
        |t| drain.poll(t),
        || {
            if Instant::now() >= next {
                next += every;
                state.borrow_mut().flush_summary(args.interval, false);
            }
        },
    );
    if let Err(e) = result {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    drain.flush();
    let lost = drain.lost(obj);
    let mut st = state.borrow_mut();
    st.flush_summary(args.interval, true);
    eprintln!(
        "Summary: {} nested clone_execute calls reported, {lost} events lost",
        st.total
    );
    session.verbose_footer();
}
