//! `trace_ip_defrag`: are IPv4 fragments of a flow reaching reassembly, are
//! some rejected as duplicates or overlaps, are datagrams completed, and where
//! are fragment skbs dropped?
//!
//! Points: `ip_defrag` entry (fentry/kprobe), its return (0 = reassembled),
//! `inet_frag_queue_insert` return (queued / IPFRAG_DUP / IPFRAG_OVERLAP),
//! `net:netif_receive_skb` for arriving fragments where `ip_defrag` cannot be
//! traced (kernels without kprobes and fentry), and `skb:kfree_skb` for
//! fragment drops with the drop reason.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, Object};
use serde_json::{json, Value};

use shared::bpf;
use shared::btf::KernelBtf;
use shared::cli::{parse_ipv4, CommonArgs};
use shared::events::Drain;
use shared::filter::RawPktFilter;
use shared::hooks::{Candidate, HookPoint, Kind, Need};
use shared::ksyms::Kallsyms;
use shared::output::Output;
use shared::pkt::PktMeta;
use shared::reasons::DropReasons;
use shared::runner::Session;
use shared::stacks::read_stack;
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/trace_ip_defrag.skel.rs"));
}
use skel::TraceIpDefragSkelBuilder;

/// Every point is optional: the tool runs with whatever the kernel offers
/// and warns about the rest; nothing at all is an error.
pub static HOOKS: &[HookPoint] = &[
    HookPoint {
        name: "ip_defrag",
        required: false,
        candidates: &[
            Candidate::new(Kind::Fentry, "fentry_ip_defrag", "ip_defrag"),
            Candidate::new(Kind::Kprobe, "kprobe_ip_defrag", "ip_defrag"),
        ],
    },
    HookPoint {
        name: "ip_defrag return",
        required: false,
        candidates: &[
            Candidate::new(Kind::Fentry, "fexit_ip_defrag", "ip_defrag"),
            // Its arguments come from kprobe_ip_defrag (the hook above).
            Candidate::new(Kind::Kprobe, "kretprobe_ip_defrag", "ip_defrag"),
        ],
    },
    HookPoint {
        name: "inet_frag_queue_insert",
        required: false,
        candidates: &[
            Candidate::new(
                Kind::Fentry,
                "fexit_inet_frag_queue_insert",
                "inet_frag_queue_insert",
            ),
            Candidate::new(
                Kind::Kprobe,
                "kretprobe_inet_frag_queue_insert",
                "inet_frag_queue_insert",
            )
            .with(&["kprobe_inet_frag_queue_insert"]),
        ],
    },
    HookPoint {
        name: "netif_receive_skb",
        required: false,
        candidates: &[
            Candidate::new(Kind::TpBtf, "tp_btf_netif_receive_skb", "netif_receive_skb")
                .need(Need::Unless("ip_defrag")),
            Candidate::new(
                Kind::Tracepoint,
                "tp_netif_receive_skb",
                "net/netif_receive_skb",
            )
            .need(Need::Unless("ip_defrag")),
        ],
    },
    HookPoint {
        name: "kfree_skb",
        required: false,
        candidates: &[
            Candidate::new(Kind::TpBtf, "tp_btf_kfree_skb_reason", "kfree_skb")
                .need(Need::ArgsAtLeast(3)),
            Candidate::new(Kind::TpBtf, "tp_btf_kfree_skb", "kfree_skb")
                .need(Need::ArgsBelow(3))
                .loses("no drop reason: fragments recognised by MF/offset only"),
            Candidate::new(Kind::Tracepoint, "tp_kfree_skb", "skb/kfree_skb"),
            Candidate::new(Kind::Kprobe, "kprobe_kfree_skb_reason", "kfree_skb_reason"),
            Candidate::new(Kind::Kprobe, "kprobe___kfree_skb", "__kfree_skb")
                .loses("no drop reason: fragments recognised by MF/offset only"),
        ],
    },
];

const EV_IP_DEFRAG: u8 = 1;
const EV_DUP_INSERT: u8 = 2;
const EV_OVERLAP_INSERT: u8 = 3;
const EV_FRAG_DROP: u8 = 4;
const EV_FRAG_QUEUED: u8 = 5;
const EV_REASSEMBLED: u8 = 6;
const EV_FRAG_RCV: u8 = 7;

/// Mirror of `struct defrag_event` (src/bpf/trace_ip_defrag.bpf.c).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct DefragEvent {
    ts_ns: u64,
    location: u64,
    pid: u32,
    tid: u32,
    comm: [u8; 16],
    kind: u8,
    has_reason: u8,
    has_user: u8,
    has_queue: u8,
    user: u32,
    reason: u32,
    kstack_id: i32,
    offset: i32,
    end: i32,
    q_saddr: [u8; 4],
    q_daddr: [u8; 4],
    q_user: u32,
    q_id: u16,
    q_proto: u16,
    pkt: PktMeta,
}
// SAFETY: plain old data.
unsafe impl plain::Plain for DefragEvent {}

#[derive(Parser, Debug)]
#[command(
    about = "Trace IPv4 reassembly: fragments entering ip_defrag, queued, duplicate and overlapping fragments, reassembled datagrams and fragment drops"
)]
pub struct Args {
    /// Source IPv4 address to match (default: any)
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub src: Option<Ipv4Addr>,
    /// Destination IPv4 address to match (default: any)
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub dst: Option<Ipv4Addr>,
    /// IP protocol to match: tcp, udp, icmp or a number 0-255 (default: any)
    #[arg(long, value_name = "PROTO", value_parser = shared::flowrules::parse_ip_proto)]
    pub proto: Option<u8>,
    /// Also append every printed line to PATH (flushed per line)
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `enum ip_defrag_users` of the running kernel: 0 LOCAL_DELIVER, then
/// ranges of 65536 users per conntrack zone.
pub struct DefragUsers {
    members: Vec<(String, i64)>,
}

impl DefragUsers {
    pub fn load(btf: &KernelBtf) -> Self {
        let members = btf
            .enum_members("ip_defrag_users")
            .unwrap_or_default()
            .into_iter()
            .filter(|(n, _)| !n.starts_with("__"))
            .map(|(n, v)| (n.trim_start_matches("IP_DEFRAG_").to_string(), v))
            .collect();
        DefragUsers { members }
    }

    /// `LOCAL_DELIVER`, `CONNTRACK_IN(zone=5)`, or the number if unknown.
    pub fn name(&self, user: u32) -> String {
        let u = user as i64;
        let best = self
            .members
            .iter()
            .filter(|(_, v)| *v <= u)
            .max_by_key(|(_, v)| *v);
        match best {
            Some((n, v)) if n.starts_with("CONNTRACK_") => format!("{n}(zone={})", u - v),
            Some((n, v)) if *v == u => n.clone(),
            _ => user.to_string(),
        }
    }
}

struct State {
    out: Output,
    clock: Clock,
    ksyms: Kallsyms,
    users: DefragUsers,
    reasons: DropReasons,
    counts: [u64; 8],
}

fn type_label(kind: u8) -> (&'static str, &'static str) {
    match kind {
        EV_IP_DEFRAG => ("[ip_defrag]", "ip_defrag"),
        EV_DUP_INSERT => ("[DUP_INSERT]", "dup_insert"),
        EV_OVERLAP_INSERT => ("[OVERLAP_INSERT]", "overlap_insert"),
        EV_FRAG_DROP => ("[kfree_skb]", "frag_drop"),
        EV_FRAG_QUEUED => ("[FRAG_QUEUED]", "frag_queued"),
        EV_REASSEMBLED => ("[REASSEMBLED]", "reassembled"),
        EV_FRAG_RCV => ("[frag_rcv]", "frag_rcv"),
        _ => ("[?]", "unknown"),
    }
}

impl State {
    fn on_event(&mut self, obj: &Object, data: &[u8]) {
        let mut e = DefragEvent::default();
        if plain::copy_from_bytes(&mut e, data).is_err() {
            return;
        }
        if let Some(c) = self.counts.get_mut(e.kind as usize) {
            *c += 1;
        }
        let p = &e.pkt;
        let comm = shared::fmt::cstr(&e.comm);
        let dev = p.ifname();
        let saddr = p.src_ip().map(|a| a.to_string()).unwrap_or_default();
        let daddr = p.dst_ip().map(|a| a.to_string()).unwrap_or_default();
        let frag_bytes = (p.frag_off & 0x1fff) as u32 * 8;
        let mf = (p.frag_off & 0x2000) != 0;
        let is_frag = frag_bytes != 0 || mf;
        let l4 = frag_bytes == 0 && (p.has_ports() || p.is_icmp());
        let (label, jtype) = type_label(e.kind);

        let mut stack: Option<Result<Vec<String>, String>> = None;
        if e.kind == EV_FRAG_DROP {
            let map = obj.maps().find(|m| m.name().to_string_lossy() == "stacks");
            stack = Some(match &map {
                Some(m) => {
                    read_stack(m as &dyn MapCore, e.kstack_id).map(|a| self.ksyms.format_stack(&a))
                }
                None => Err("no stack map".into()),
            });
        }
        let reason = (e.kind == EV_FRAG_DROP).then(|| {
            if e.has_reason != 0 {
                self.reasons.name(e.reason)
            } else {
                "N/A".to_string()
            }
        });
        let user_name = (e.has_user != 0).then(|| self.users.name(e.user));
        // The freeing call site; kprobes have none (the stack's second frame tells).
        let location = (e.kind == EV_FRAG_DROP).then(|| {
            if e.location != 0 {
                self.ksyms.format(e.location)
            } else {
                match &stack {
                    Some(Ok(f)) => f.get(1).cloned().unwrap_or_default(),
                    _ => String::new(),
                }
            }
        });
        let queue = (e.has_queue != 0).then(|| {
            (
                Ipv4Addr::from(e.q_saddr),
                Ipv4Addr::from(e.q_daddr),
                e.q_id,
                e.q_proto,
            )
        });

        if self.out.json() {
            let mut v = json!({
                "type": jtype,
                "ts_ns": e.ts_ns,
                "time": self.clock.rfc3339_ms(e.ts_ns),
                "pid": e.pid,
                "comm": comm,
                "dev": if dev.is_empty() { Value::Null } else { json!(dev) },
                "saddr": saddr,
                "daddr": daddr,
                "proto": p.l4proto,
                "sport": if l4 && p.has_ports() { json!(p.sport) } else { Value::Null },
                "dport": if l4 && p.has_ports() { json!(p.dport) } else { Value::Null },
                "ip_id": p.ip_id,
                "len": p.ip_len,
                "frag_off": frag_bytes,
                "mf": u8::from(mf),
                "user": if e.has_user != 0 { json!(e.user) } else { Value::Null },
                "user_name": user_name,
                "queue": Value::Null,
                "offset": Value::Null,
                "end": Value::Null,
                "reason": reason,
                "location": location,
                "stack": Value::Null,
            });
            if let Some((s, d, id, proto)) = queue {
                v["queue"] = json!({"saddr": s.to_string(), "daddr": d.to_string(), "id": id, "proto": proto});
                v["offset"] = json!(e.offset);
                v["end"] = json!(e.end);
            }
            if let Some(st) = &stack {
                v["stack"] = match st {
                    Ok(f) => json!(f),
                    Err(_) => Value::Null,
                };
                if let Err(err) = st {
                    v["stack_err"] = json!(err);
                }
            }
            self.out.event(&v);
            return;
        }

        let who = format!("{}/{}", e.pid, comm);
        let dev = if dev.is_empty() { "?".to_string() } else { dev };
        let mut s = format!(
            "{} {} {:<20} DEV={:<6} ",
            label,
            self.clock.hms_ms(e.ts_ns),
            who,
            dev
        );
        let proto = if p.is_icmp() {
            "ICMP".to_string()
        } else {
            p.l4proto.to_string()
        };
        if l4 && p.has_ports() {
            s.push_str(&format!(
                "{saddr}:{} -> {daddr}:{} Proto={proto}",
                p.sport, p.dport
            ));
        } else if l4 {
            s.push_str(&format!("{saddr} -> {daddr} Proto={proto}"));
        } else if frag_bytes != 0 {
            s.push_str(&format!("{saddr} -> {daddr} Proto={proto} frag"));
        } else {
            s.push_str(&format!("{saddr} -> {daddr} Proto={proto} (L4 hdr?)"));
        }
        if is_frag {
            s.push_str(&format!(
                " FragOff={frag_bytes} MF={} IPID={} Len={}",
                u8::from(mf),
                p.ip_id,
                p.ip_len
            ));
        } else if e.kind == EV_REASSEMBLED {
            s.push_str(&format!(" IPID={} Len={}", p.ip_id, p.ip_len));
        }
        if let Some(u) = &user_name {
            s.push_str(&format!(" User={u}"));
        }
        if let Some((qs, qd, id, proto)) = queue {
            s.push_str(&format!(
                " Queue=({qs}->{qd} ID={id} Proto={proto}) Offset={} End={}",
                e.offset, e.end
            ));
        }
        if let Some(st) = &stack {
            s.push_str(&format!(
                " StackID={} Reason={} Location={} (Fragment Related)",
                e.kstack_id,
                reason.as_deref().unwrap_or("N/A"),
                location.as_deref().filter(|l| !l.is_empty()).unwrap_or("?")
            ));
            match st {
                Ok(frames) => {
                    s.push_str("\n  Stack Trace:");
                    for f in frames {
                        s.push_str(&format!("\n    - {f}"));
                    }
                }
                Err(_) => s.push_str(&format!(
                    "\n  [Stack Trace Unavailable (ID: {})]",
                    e.kstack_id
                )),
            }
        }
        self.out.line(&s);
    }
}

pub fn run() {
    let args: Args = shared::cli::parse();
    let mut out = Output::tee(args.common.json, args.log_file.as_deref());
    let mut session = Session::start(args.common.duration, args.common.verbose);
    let (kernel, plan) = bpf::plan(&args.common, HOOKS);

    let mut filter = RawPktFilter::default();
    if let Some(s) = args.src {
        filter.saddr[..4].copy_from_slice(&s.octets());
        filter.has_saddr = 1;
        filter.family = 4;
    }
    if let Some(d) = args.dst {
        filter.daddr[..4].copy_from_slice(&d.octets());
        filter.has_daddr = 1;
        filter.family = 4;
    }
    filter.l4proto = args.proto.unwrap_or(0);
    filter.ipv4_only = 1;

    let reasons = DropReasons::load(&kernel.btf);
    let users = DefragUsers::load(&kernel.btf);
    let mut frag_reasons = [0u32; 4];
    let mut reason_names = Vec::new();
    for (i, n) in [
        "DUP_FRAG",
        "FRAG_REASM_TIMEOUT",
        "FRAG_TOO_FAR",
        "IP_FRAGMENT",
    ]
    .iter()
    .enumerate()
    {
        if let Some(c) = reasons.code(n) {
            frag_reasons[i] = c;
            reason_names.push(*n);
        }
    }
    drop(kernel);

    let mut open_object = MaybeUninit::uninit();
    let mut open = TraceIpDefragSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    let cfg = |o: &mut libbpf_rs::OpenObject, name: &str, b: &[u8]| {
        bpf::set_rodata(o, name, b).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e))
    };
    cfg(open.open_object_mut(), "FILTER", filter.as_bytes());
    let fr: Vec<u8> = frag_reasons.iter().flat_map(|r| r.to_ne_bytes()).collect();
    cfg(open.open_object_mut(), "frag_reasons", &fr);
    let frag_list_free = shared::ksyms::functions_ranges(&[
        "kfree_skb_list_reason",
        "kfree_skb_list",
        "skb_release_data",
    ]);
    bpf::set_function_ranges(open.open_object_mut(), "FRAG_LIST_FREE", &frag_list_free)
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    let not_specified = reasons.code("NOT_SPECIFIED").unwrap_or(0);
    cfg(
        open.open_object_mut(),
        "reason_not_specified",
        &not_specified.to_ne_bytes(),
    );
    let mut skel = bpf::load(open);
    let (_links, _) = bpf::attach_or_warn(&plan, &mut skel);

    let any = |a: Option<Ipv4Addr>| a.map(|x| x.to_string()).unwrap_or_else(|| "any".into());
    out.banner(&format!(
        "Tracing IPv4 defragmentation (src={} dst={} proto={})... Hit Ctrl-C to end.",
        any(args.src),
        any(args.dst),
        args.proto
            .map(|p| p.to_string())
            .unwrap_or_else(|| "any".into())
    ));
    if plan.chosen("kfree_skb").is_some() && reason_names.is_empty() {
        eprintln!("Note: this kernel has no fragment drop reasons; frees of fragments are recognised by MF/offset");
    }
    if plan.chosen("ip_defrag").is_none() && plan.chosen("netif_receive_skb").is_some() {
        eprintln!("Note: ip_defrag cannot be traced here; arriving fragments are shown as [frag_rcv] instead");
    }

    let state = RefCell::new(State {
        out,
        clock: session.clock,
        ksyms: Kallsyms::new(),
        users,
        reasons,
        counts: [0; 8],
    });
    let obj = skel.object();
    let drain = Drain::open(obj, channel, |d| state.borrow_mut().on_event(obj, d))
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    session.attached(&plan.summary());
    if let Err(e) = session.run(|t| drain.poll(t), || {}) {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    drain.flush();
    let lost = drain.lost(obj);
    let mut st = state.borrow_mut();
    st.out.banner("Detaching probes and exiting...");
    let c = st.counts;
    eprintln!(
        "Summary: {} ip_defrag, {} queued, {} duplicate, {} overlapping, {} reassembled, {} fragments received, {} fragment drops, {} events lost",
        c[EV_IP_DEFRAG as usize],
        c[EV_FRAG_QUEUED as usize],
        c[EV_DUP_INSERT as usize],
        c[EV_OVERLAP_INSERT as usize],
        c[EV_REASSEMBLED as usize],
        c[EV_FRAG_RCV as usize],
        c[EV_FRAG_DROP as usize],
        lost
    );
    session.verbose_footer();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defrag_user_names() {
        let u = DefragUsers {
            members: vec![
                ("LOCAL_DELIVER".into(), 0),
                ("CALL_RA_CHAIN".into(), 1),
                ("CONNTRACK_IN".into(), 2),
                ("CONNTRACK_OUT".into(), 65538),
                ("CONNTRACK_BRIDGE_IN".into(), 131074),
                ("VS_IN".into(), 196610),
                ("MACVLAN".into(), 196614),
            ],
        };
        assert_eq!(u.name(0), "LOCAL_DELIVER");
        assert_eq!(u.name(2), "CONNTRACK_IN(zone=0)");
        assert_eq!(u.name(7), "CONNTRACK_IN(zone=5)");
        assert_eq!(u.name(65538 + 3), "CONNTRACK_OUT(zone=3)");
        assert_eq!(u.name(196610), "VS_IN");
        assert_eq!(u.name(196614), "MACVLAN");
        assert_eq!(u.name(300000), "300000");
    }

    #[test]
    fn running_kernel_names_users() {
        let btf = KernelBtf::load();
        if btf.available() {
            let u = DefragUsers::load(&btf);
            assert_eq!(u.name(0), "LOCAL_DELIVER");
            assert_eq!(u.name(7), "CONNTRACK_IN(zone=5)");
        }
    }
}
