//! `trace-abnormal-arp`: are ARP packets claiming sender IP X arriving on /
//! being sent to interface Y (an ARP spoof or an IP conflict on a VM tap), and
//! in which context? Port of trace-abnormal-arp.bt with the hard-coded device
//! and address turned into flags, receive and transmit on any device.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use clap::{Parser, ValueEnum};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use serde_json::json;

use shared::bpf;
use shared::cli::{parse_ifname, parse_ipv4, CommonArgs};
use shared::events::Drain;
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::ksyms::Kallsyms;
use shared::output::Output;
use shared::runner::Session;
use shared::stacks::read_stack;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/trace_abnormal_arp.skel.rs"));
}

const MAX_DEVS: usize = 8;

static HOOKS: &[HookPoint] = &[
    HookPoint {
        name: "rx",
        required: false,
        candidates: &[
            Candidate::new(Kind::TpBtf, "tp_netif_receive_skb", "netif_receive_skb"),
            Candidate::new(
                Kind::Kprobe,
                "kp___netif_receive_skb",
                "__netif_receive_skb",
            ),
        ],
    },
    HookPoint {
        name: "tx",
        required: false,
        candidates: &[
            Candidate::new(Kind::TpBtf, "tp_net_dev_start_xmit", "net_dev_start_xmit"),
            Candidate::new(
                Kind::Kprobe,
                "kp_dev_hard_start_xmit",
                "dev_hard_start_xmit",
            ),
        ],
    },
];

/// Mirror of `struct arp_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Cfg {
    spa: [u8; 4],
    tpa: [u8; 4],
    op: u16,
    ndevs: u8,
    stacks: u8,
    devs: [[u8; 16]; MAX_DEVS],
}
// SAFETY: plain old data.
unsafe impl plain::Plain for Cfg {}

/// Mirror of `struct arp_event`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ArpEvent {
    ts_ns: u64,
    pid: u32,
    ifindex: u32,
    comm: [u8; 16],
    dev: [u8; 16],
    kstack_id: i32,
    tx: u8,
    pkt_type: u8,
    proto: u16,
    hrd: u16,
    pro: u16,
    op: u16,
    hln: u8,
    pln: u8,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
}
// SAFETY: plain old data.
unsafe impl plain::Plain for ArpEvent {}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Op {
    Request,
    Reply,
    Any,
}

#[derive(Parser, Debug)]
#[command(
    name = "trace-abnormal-arp",
    about = "Trace ARP packets with a given sender/target IP received or sent on given devices (ARP spoofing, IP conflicts), with context and kernel stack"
)]
struct Args {
    /// Device to watch (required, repeatable)
    #[arg(long = "dev", value_name = "NAME", value_parser = parse_ifname)]
    devs: Vec<String>,
    /// ARP sender protocol address to match (default any)
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    spa: Option<Ipv4Addr>,
    /// ARP target protocol address to match (default any)
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    tpa: Option<Ipv4Addr>,
    /// ARP operation to match
    #[arg(long, value_enum, default_value_t = Op::Any)]
    op: Op,
    /// Do not capture kernel stacks
    #[arg(long)]
    no_stack: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn op_name(op: u16) -> &'static str {
    match op {
        1 => "Request",
        2 => "Reply",
        _ => "Other",
    }
}

fn main() {
    let a: Args = shared::cli::parse();
    if a.devs.is_empty() {
        shared::cli::usage_error("the following required argument was not provided: --dev <NAME>");
    }
    if a.devs.len() > MAX_DEVS {
        shared::cli::usage_error(format!("at most {MAX_DEVS} --dev"));
    }
    for d in &a.devs {
        if shared::netdev::ifindex(d).is_none() {
            eprintln!(
                "warning: device {d} is not in this network namespace (it may be in another)"
            );
        }
    }
    let mut cfg = Cfg {
        spa: a.spa.map(|x| x.octets()).unwrap_or([0; 4]),
        tpa: a.tpa.map(|x| x.octets()).unwrap_or([0; 4]),
        op: match a.op {
            Op::Request => 1,
            Op::Reply => 2,
            Op::Any => 0,
        },
        ndevs: a.devs.len() as u8,
        stacks: u8::from(!a.no_stack),
        ..Default::default()
    };
    for (i, d) in a.devs.iter().enumerate() {
        let n = d.len().min(15);
        cfg.devs[i][..n].copy_from_slice(&d.as_bytes()[..n]);
    }
    let mut out = Output::stdout(a.common.json);
    let mut session = Session::start(a.common.duration, a.common.verbose);
    let (_kernel, plan) = bpf::plan(&a.common, HOOKS);
    drop(_kernel);

    let mut open_object = MaybeUninit::uninit();
    let mut open = skel::TraceAbnormalArpSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    // SAFETY: repr(C) plain data.
    let bytes = unsafe { plain::as_bytes(&cfg) };
    bpf::set_rodata(open.open_object_mut(), "CFG", bytes)
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    let mut skel = bpf::load(open);
    let (_links, _) = bpf::attach_or_warn(&plan, &mut skel);
    let any = |x: Option<Ipv4Addr>| x.map(|v| v.to_string()).unwrap_or_else(|| "any".into());
    out.banner(&format!(
        "Tracing ARP on {} (spa={} tpa={} op={:?})... Hit Ctrl-C to end.",
        a.devs.join(","),
        any(a.spa),
        any(a.tpa),
        a.op
    ));

    struct St {
        out: Output,
        ksyms: Kallsyms,
        n: u64,
    }
    let clock = session.clock;
    let state = RefCell::new(St {
        out,
        ksyms: Kallsyms::new(),
        n: 0,
    });
    let obj = skel.object();
    let drain = Drain::open(obj, channel, |d| {
        let mut e = ArpEvent::default();
        if plain::copy_from_bytes(&mut e, d).is_err() {
            return;
        }
        let mut st = state.borrow_mut();
        st.n += 1;
        let kstack: Vec<String> = match obj.maps().find(|m| m.name().to_string_lossy() == "stacks") {
            Some(m) if e.kstack_id >= 0 => read_stack(&m as &dyn MapCore, e.kstack_id)
                .map(|x| st.ksyms.format_stack(&x))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mac = shared::fmt::mac;
        let dir = if e.tx != 0 { "tx" } else { "rx" };
        let dev = shared::fmt::cstr(&e.dev);
        let comm = shared::fmt::cstr(&e.comm);
        if st.out.json() {
            let v = json!({
                "ts_ns": e.ts_ns, "time": clock.rfc3339(e.ts_ns), "dir": dir, "dev": dev,
                "ifindex": e.ifindex, "pkt_type": e.pkt_type, "skb_protocol": e.proto,
                "op": e.op, "op_name": op_name(e.op), "hrd": e.hrd, "pro": e.pro,
                "sha": mac(&e.sha), "spa": Ipv4Addr::from(e.spa).to_string(),
                "tha": mac(&e.tha), "tpa": Ipv4Addr::from(e.tpa).to_string(),
                "eth_src": mac(&e.eth_src), "eth_dst": mac(&e.eth_dst),
                "comm": comm, "pid": e.pid, "kstack": kstack,
            });
            st.out.event(&v);
            return;
        }
        let mut s = format!(
            "{} {dir} dev={dev} pkt_type={} op={}({}) sha={} spa={} tha={} tpa={} eth_src={} eth_dst={} comm={comm} pid={}",
            clock.hms(e.ts_ns),
            e.pkt_type,
            e.op,
            op_name(e.op),
            mac(&e.sha),
            Ipv4Addr::from(e.spa),
            mac(&e.tha),
            Ipv4Addr::from(e.tpa),
            mac(&e.eth_src),
            mac(&e.eth_dst),
            e.pid
        );
        for f in &kstack {
            s.push_str(&format!("\n  {f}"));
        }
        st.out.line(&s);
    })
    .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    session.attached(&plan.summary());
    if let Err(e) = session.run(|t| drain.poll(t), || {}) {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    drain.flush();
    let lost = drain.lost(obj);

    // The packet count of every skb on the devices, per process and device.
    let mut rows: Vec<(String, String, u64)> = Vec::new();
    if let Some(m) = obj.maps().find(|m| m.name().to_string_lossy() == "counts") {
        for k in m.keys() {
            if let Ok(Some(v)) = m.lookup(&k, MapFlags::ANY) {
                let n = u64::from_ne_bytes(v[..8].try_into().unwrap_or([0; 8]));
                rows.push((
                    shared::fmt::cstr(&k[..16]),
                    shared::fmt::cstr(&k[16..32]),
                    n,
                ));
            }
        }
    }
    rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    let mut st = state.borrow_mut();
    if st.out.json() {
        let v: Vec<_> = rows
            .iter()
            .map(|(c, d, n)| json!({"comm": c, "dev": d, "packets": n}))
            .collect();
        st.out.event(&json!({"type": "packet_count", "rows": v}));
    } else {
        let t = shared::fmt::table(
            &["comm", "dev", "packets"],
            &rows
                .iter()
                .map(|(c, d, n)| vec![c.clone(), d.clone(), n.to_string()])
                .collect::<Vec<_>>(),
        );
        st.out
            .line(&format!("\nPacket count by process and interface:\n{t}"));
    }
    eprintln!(
        "Summary: {} ARP packets reported, {} events lost",
        st.n, lost
    );
    session.verbose_footer();
}
