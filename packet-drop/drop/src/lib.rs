//! `drop` and `multi-protocol-drop-monitor`: IPv4 packets the kernel frees as
//! dropped (skb:kfree_skb), with the drop reason by name, the freeing location,
//! and kernel and user stacks. The two tools share this code and differ only in
//! the `Variant` defaults.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel};
use libbpf_rs::{MapCore, Object};
use serde_json::json;

use shared::bpf;
use shared::cli::{CommonArgs, LogFileArg, PacketFilterArgs, Protocol};
use shared::filter::RawPktFilter;
use shared::kfree_skb::{self, HOOKS};
use shared::ksyms::Kallsyms;
use shared::output::Output;
use shared::pkt::PktMeta;
use shared::reasons::DropReasons;
use shared::runner::Session;
use shared::stacks::{read_stack, stack_error};
use shared::time::Clock;
use shared::usyms::UserSyms;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/drop.skel.rs"));
}
use skel::DropSkelBuilder;

/// Mirror of `struct drop_event` (src/bpf/drop.bpf.c).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct DropEvent {
    ts_ns: u64,
    location: u64,
    tid: u32,
    tgid: u32,
    comm: [u8; 16],
    kstack_id: i32,
    ustack_id: i32,
    reason: u32,
    has_reason: u8,
    pad: [u8; 3],
    pkt: PktMeta,
}
// SAFETY: plain old data.
unsafe impl plain::Plain for DropEvent {}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `drop`: hides normal releases by default.
    Drop,
    /// `multi-protocol-drop-monitor`: prints every matching drop, always both stacks.
    MultiProtocol,
}

#[derive(Parser, Debug)]
#[command(
    about = "Trace IPv4 packets the kernel drops: reason, location, device, kernel and user stacks"
)]
pub struct Args {
    #[command(flatten)]
    pub filter: PacketFilterArgs,
    #[command(flatten)]
    pub log: LogFileArg,
    /// Also print drops that are normal releases (drop only; multi-protocol-drop-monitor never hides them)
    #[arg(long)]
    pub no_normal_filter: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Functions whose plain frees are normal releases, not drops.
const NORMAL_FREERS: &[&str] = &["icmp_rcv", "tcp_v4_rcv", "skb_release_data", "tcp_recvmsg"];

struct State {
    out: Output,
    clock: Clock,
    ksyms: Kallsyms,
    usyms: UserSyms,
    reasons: DropReasons,
    not_specified: Option<u32>,
    normal_filter: bool,
    variant: Variant,
    printed: u64,
    hidden: u64,
}

impl State {
    fn is_normal_release(&mut self, e: &DropEvent, kstack: &[String], location: &str) -> bool {
        if !self.normal_filter {
            return false;
        }
        if e.has_reason != 0 {
            // With a reason, only an unspecified free from a normal freer is a release.
            return Some(e.reason) == self.not_specified
                && NORMAL_FREERS
                    .iter()
                    .any(|f| location.split('+').next() == Some(f));
        }
        let has = |f: &str| kstack.iter().any(|s| s.split('+').next() == Some(f));
        (e.pkt.l4proto == 1 && has("icmp_rcv"))
            || has("tcp_v4_rcv")
            || (has("skb_release_data") && has("tcp_recvmsg"))
    }

    fn on_event(&mut self, obj: &Object, data: &[u8]) {
        let mut e = DropEvent::default();
        if plain::copy_from_bytes(&mut e, data).is_err() {
            return;
        }
        let stacks = obj.maps().find(|m| m.name().to_string_lossy() == "stacks");
        let kaddrs = match &stacks {
            Some(m) => read_stack(m as &dyn MapCore, e.kstack_id),
            None => Err("no stack map".into()),
        };
        let kstack: Vec<String> = match &kaddrs {
            Ok(a) => self.ksyms.format_stack(a),
            Err(_) => Vec::new(),
        };
        let location = if e.location != 0 {
            self.ksyms.format(e.location)
        } else {
            kfree_skb::location_from_stack(&kstack)
        };
        if self.is_normal_release(&e, &kstack, &location) {
            self.hidden += 1;
            return;
        }
        let ustack: Result<Vec<String>, String> = match &stacks {
            Some(m) => {
                read_stack(m as &dyn MapCore, e.ustack_id).map(|a| self.usyms.format(e.tgid, &a))
            }
            None => Err("no stack map".into()),
        };
        self.printed += 1;
        let p = &e.pkt;
        let comm = shared::fmt::cstr(&e.comm);
        let reason = if e.has_reason != 0 {
            self.reasons.name(e.reason)
        } else {
            "N/A".to_string()
        };
        let saddr = p.src_ip().map(|a| a.to_string()).unwrap_or_default();
        let daddr = p.dst_ip().map(|a| a.to_string()).unwrap_or_default();
        let vlan = if p.has_vlan != 0 { p.vlan_id } else { 0 };

        if self.out.json() {
            let mut v = json!({
                "ts": self.clock.rfc3339(e.ts_ns),
                "time": self.clock.rfc3339(e.ts_ns),
                "ts_ns": e.ts_ns,
                "ktime_ns": e.ts_ns,
                "pid": e.tid,
                "tgid": e.tgid,
                "comm": comm,
                "saddr": saddr,
                "daddr": daddr,
                "proto": p.proto_name(),
                "ip_id": p.ip_id,
                "vlan": vlan,
                "dev": p.ifname(),
                "reason": reason,
                "reason_code": if e.has_reason != 0 { json!(e.reason) } else { json!(null) },
                "location": location,
                "kstack": kstack,
                "ustack": ustack.clone().unwrap_or_default(),
            });
            if p.is_icmp() {
                v["icmp_type"] = json!(p.icmp_type);
                v["icmp_code"] = json!(p.icmp_code);
            } else if p.has_ports() {
                v["sport"] = json!(p.sport);
                v["dport"] = json!(p.dport);
            }
            self.out.event(&v);
            return;
        }

        let mut s = String::new();
        s.push_str(&format!(
            "Time: {}  PID: {:<7} Comm: {}\n",
            self.clock.datetime(e.ts_ns),
            e.tid,
            comm
        ));
        let proto = p.proto_name();
        match self.variant {
            Variant::Drop => s.push_str(&format!(
                "Source IP: {:<16} Destination IP: {:<16} Protocol: {:<5} VLAN: {}  IP ID: {}\n",
                saddr, daddr, proto, vlan, p.ip_id
            )),
            Variant::MultiProtocol => s.push_str(&format!(
                "Source IP: {:<15}  Destination IP: {:<15}  Protocol: {}  IP ID: {}  VLAN: {}\n",
                saddr, daddr, proto, p.ip_id, vlan
            )),
        }
        if p.is_icmp() {
            s.push_str(&format!(
                "ICMP Type: {:<3} Code: {}\n",
                p.icmp_type, p.icmp_code
            ));
        } else if p.has_ports() {
            s.push_str(&format!(
                "Source Port: {:<7} Destination Port: {}\n",
                p.sport, p.dport
            ));
        }
        s.push_str(&format!("Device: {}\n", p.ifname()));
        s.push_str(&format!("Reason: {}  Location: {}\n", reason, location));
        s.push_str("Stack Trace:\n");
        match &kaddrs {
            Ok(_) if kstack.is_empty() => s.push_str("  No kernel stack frames found\n"),
            Ok(_) => kstack.iter().for_each(|f| s.push_str(&format!("  {f}\n"))),
            Err(err) => s.push_str(&format!(
                "  Failed to capture kernel stack trace (Error: {}, code: {})\n",
                err, e.kstack_id
            )),
        }
        s.push_str("User Stack Trace:\n");
        match &ustack {
            Ok(u) if u.is_empty() => s.push_str("  No user stack frames found\n"),
            Ok(u) => u.iter().for_each(|f| s.push_str(&format!("  {f}\n"))),
            Err(_) if e.ustack_id == -14 => s.push_str("  No user stack frames found\n"),
            Err(_) => s.push_str(&format!(
                "  Failed to capture user stack trace (Error: {}, code: {})\n",
                stack_error(e.ustack_id),
                e.ustack_id
            )),
        }
        self.out.line(&s);
    }
}

pub fn run(variant: Variant) {
    let args: Args = shared::cli::parse();
    args.filter.require_ipv4();
    let mut out = Output::new(args.common.json, args.log.log_file.as_deref());
    let mut session = Session::start(args.common.duration, args.common.verbose);
    let (kernel, plan) = bpf::plan(&args.common, HOOKS);

    let mut filter = RawPktFilter::from_args(&args.filter);
    filter.ipv4_only = 1;

    let mut open_object = MaybeUninit::uninit();
    let mut open = bpf::open(DropSkelBuilder::default(), &mut open_object);
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    let cfg = |o: &mut libbpf_rs::OpenObject, name: &str, b: &[u8]| {
        bpf::set_rodata(o, name, b).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e))
    };
    cfg(open.open_object_mut(), "FILTER", filter.as_bytes());
    cfg(
        open.open_object_mut(),
        "parse_l2",
        &[u8::from(variant == Variant::MultiProtocol)],
    );
    let mut skel = bpf::load(open);
    let _links = bpf::attach(&plan, &mut skel);

    let reasons = DropReasons::load(&kernel.btf);
    // The parsed kernel BTF is megabytes; nothing needs it from here on.
    drop(kernel);
    let not_specified = reasons.code("NOT_SPECIFIED");
    let has_reason = plan
        .chosen("kfree_skb")
        .map(|c| !c.loses.contains("no drop reason"))
        .unwrap_or(false);

    // Banner (stderr in JSON mode).
    let any =
        |a: Option<std::net::IpAddr>| a.map(|x| x.to_string()).unwrap_or_else(|| "any".into());
    if out.to_file() {
        out.raw(&format!(
            "=== Monitoring started at {} ===",
            shared::time::now_datetime()
        ));
    }
    out.banner(&format!("Monitoring source IP: {}", any(args.filter.src)));
    out.banner(&format!(
        "Monitoring destination IP: {}",
        any(args.filter.dst)
    ));
    out.banner(&format!("Protocol: {}", args.filter.protocol.name()));
    if matches!(args.filter.protocol, Protocol::Tcp | Protocol::Udp) {
        let port = |p: Option<u16>| p.map(|x| x.to_string()).unwrap_or_else(|| "any".into());
        out.banner(&format!("Source port: {}", port(args.filter.src_port)));
        out.banner(&format!("Destination port: {}", port(args.filter.dst_port)));
    }
    if !has_reason {
        out.banner("Note: this kernel reports no drop reason here; Reason shows N/A.");
    }
    out.banner("Tracing... Hit Ctrl-C to end.");

    let state = RefCell::new(State {
        out,
        clock: session.clock,
        ksyms: Kallsyms::new(),
        usyms: UserSyms::new(),
        reasons,
        not_specified,
        normal_filter: variant == Variant::Drop && !args.no_normal_filter,
        variant,
        printed: 0,
        hidden: 0,
    });
    let obj = skel.object();
    let lost = session.trace_events(
        obj,
        channel,
        &plan.summary(),
        |d| state.borrow_mut().on_event(obj, d),
        || {},
    );
    let mut st = state.borrow_mut();
    let summary = format!(
        "Summary: {} drops reported, {} normal releases hidden, {} events lost",
        st.printed, st.hidden, lost
    );
    eprintln!("{summary}");
    if st.out.to_file() {
        st.out.raw(&format!(
            "=== Monitoring ended at {} ===",
            shared::time::now_datetime()
        ));
    }
    session.verbose_footer();
}
