//! `trace-ovs-ct-invalid` (port of `trace-ovs-ct-invalid.bt`): why does
//! conntrack, used by OVS `ct()` actions or by netfilter, mark this TCP flow
//! invalid? The TCP window tracking values at `nf_conntrack_tcp_packet` /
//! `tcp_in_window` and their verdicts, what `nf_conntrack_in` left on the skb,
//! the ct_state the OVS flow key got, and the drops that follow.
//!
//! Without kprobes (the 6.18 host) only the tracepoints remain: OVS upcalls
//! and executed actions of packets whose key has `+inv`, and `kfree_skb` with
//! netfilter / OVS drop reasons; the tool says so at start.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, Object};
use serde_json::{json, Value};

use shared::bpf;
use shared::btf::KernelBtf;
use shared::cli::{parse_ifname, parse_ipv4, parse_port, CommonArgs, PacketFilterArgs};
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
use shared::usyms::UserSyms;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/trace_ovs_ct_invalid.skel.rs"));
}
use skel::TraceOvsCtInvalidSkelBuilder;

static HOOKS: &[HookPoint] = &[
    HookPoint {
        name: "nf_conntrack_in",
        required: false,
        candidates: &[
            Candidate::new(Kind::Kprobe, "kprobe_nf_conntrack_in", "nf_conntrack_in")
                .need(Need::Named("skb"))
                .with(&["kretprobe_nf_conntrack_in"]),
        ],
    },
    HookPoint {
        name: "nf_conntrack_tcp_packet",
        required: false,
        candidates: &[Candidate::new(
            Kind::Kprobe,
            "kprobe_nf_conntrack_tcp_packet",
            "nf_conntrack_tcp_packet",
        )
        .need(Need::All(&[Need::Named("skb"), Need::Named("ct")]))
        .with(&["kretprobe_nf_conntrack_tcp_packet"])],
    },
    HookPoint {
        name: "tcp_in_window",
        required: false,
        candidates: &[
            Candidate::new(Kind::Kprobe, "kprobe_tcp_in_window", "tcp_in_window")
                .need(Need::All(&[Need::Named("skb"), Need::Named("dir")]))
                .with(&["kretprobe_tcp_in_window"]),
        ],
    },
    HookPoint {
        name: "__nf_ct_refresh_acct",
        required: false,
        candidates: &[Candidate::new(
            Kind::Kprobe,
            "kprobe___nf_ct_refresh_acct",
            "__nf_ct_refresh_acct",
        )
        .need(Need::Named("skb"))],
    },
    HookPoint {
        name: "__ovs_ct_lookup",
        required: false,
        candidates: &[
            Candidate::new(Kind::Kprobe, "kprobe___ovs_ct_lookup", "__ovs_ct_lookup")
                .need(Need::Named("skb")),
        ],
    },
    // An .isra clone may have other arguments: the parameter check refuses it.
    HookPoint {
        name: "ovs_ct_update_key",
        required: false,
        candidates: &[Candidate::new(
            Kind::Kprobe,
            "kprobe_ovs_ct_update_key",
            "ovs_ct_update_key",
        )
        .need(Need::All(&[Need::Named("skb"), Need::Named("key")]))
        .with(&["kretprobe_ovs_ct_update_key"])],
    },
    HookPoint {
        name: "ovs_do_execute_action",
        required: false,
        candidates: &[Candidate::new(
            Kind::TpBtf,
            "tp_btf_ovs_do_execute_action",
            "ovs_do_execute_action",
        )],
    },
    HookPoint {
        name: "ovs_dp_upcall",
        required: false,
        candidates: &[Candidate::new(
            Kind::TpBtf,
            "tp_btf_ovs_dp_upcall",
            "ovs_dp_upcall",
        )],
    },
    HookPoint {
        name: "kfree_skb",
        required: false,
        candidates: &[
            Candidate::new(Kind::TpBtf, "tp_btf_kfree_skb_reason", "kfree_skb")
                .need(Need::ArgsAtLeast(3)),
            Candidate::new(Kind::TpBtf, "tp_btf_kfree_skb", "kfree_skb")
                .need(Need::ArgsBelow(3))
                .loses("no drop reasons: every drop of the filtered packets is shown"),
            Candidate::new(Kind::Tracepoint, "tp_kfree_skb", "skb/kfree_skb"),
        ],
    },
];

const P_CT_IN: u8 = 1;
const P_CT_IN_RET: u8 = 2;
const P_TCP_PACKET: u8 = 3;
const P_TCP_PACKET_RET: u8 = 4;
const P_IN_WINDOW: u8 = 5;
const P_IN_WINDOW_RET: u8 = 6;
const P_REFRESH: u8 = 7;
const P_OVS_LOOKUP: u8 = 8;
const P_OVS_UPDATE_KEY: u8 = 9;
const P_OVS_EXEC: u8 = 10;
const P_OVS_UPCALL: u8 = 11;
const P_DROP: u8 = 12;

fn probe_name(p: u8) -> &'static str {
    match p {
        P_CT_IN => "nf_conntrack_in",
        P_CT_IN_RET => "nf_conntrack_in:return",
        P_TCP_PACKET => "nf_conntrack_tcp_packet",
        P_TCP_PACKET_RET => "nf_conntrack_tcp_packet:return",
        P_IN_WINDOW => "tcp_in_window",
        P_IN_WINDOW_RET => "tcp_in_window:return",
        P_REFRESH => "__nf_ct_refresh_acct",
        P_OVS_LOOKUP => "__ovs_ct_lookup",
        P_OVS_UPDATE_KEY => "ovs_ct_update_key",
        P_OVS_EXEC => "ovs_do_execute_action",
        P_OVS_UPCALL => "ovs_dp_upcall",
        P_DROP => "kfree_skb",
        _ => "?",
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct Win {
    td_end: u32,
    td_maxend: u32,
    td_maxwin: u32,
    td_maxack: u32,
    td_scale: u8,
    flags: u8,
    pad: [u8; 2],
}

/// Mirror of `struct ci_event` (src/bpf/trace_ovs_ct_invalid.bpf.c).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CiEvent {
    ts_ns: u64,
    nfct: u64,
    ct: u64,
    ret: i64,
    location: u64,
    tid: u32,
    tgid: u32,
    comm: [u8; 16],
    kstack_id: i32,
    ustack_id: i32,
    reason: u32,
    recirc_id: u32,
    tcp_seq: u32,
    tcp_ack: u32,
    tcp_win: u16,
    ct_zone: u16,
    probe: u8,
    dir: u8,
    tcp_state: u8,
    has_win: u8,
    ct_state: u8,
    key_valid: u8,
    action: u8,
    has_ret: u8,
    has_reason: u8,
    pad: [u8; 3],
    win: [Win; 2],
    pkt: PktMeta,
    pad2: u32,
}
const _: () = assert!(std::mem::size_of::<CiEvent>() == 288);
// SAFETY: plain old data.
unsafe impl plain::Plain for CiEvent {}

#[derive(Parser, Debug)]
#[command(
    about = "Why conntrack (OVS ct() or netfilter) marks a flow invalid: TCP window tracking, verdicts, the ct_state OVS got, the drops"
)]
pub struct Args {
    /// Only packets on this device (skb->dev; repeat for up to 4). Packets
    /// without a device (sent by a local socket, at the OUTPUT hook before
    /// routing: dev=N/A) are on no device and are left out
    #[arg(long, value_name = "IFNAME", value_parser = parse_ifname)]
    pub dev: Vec<String>,
    /// Source IPv4 address
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub src: Option<Ipv4Addr>,
    /// Destination IPv4 address
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub dst: Option<Ipv4Addr>,
    /// TCP/UDP source port
    #[arg(long, value_name = "PORT", value_parser = parse_port, allow_hyphen_values = true)]
    pub sport: Option<u16>,
    /// TCP/UDP destination port
    #[arg(long, value_name = "PORT", value_parser = parse_port, allow_hyphen_values = true)]
    pub dport: Option<u16>,
    /// Do not take kernel and user stacks
    #[arg(long)]
    pub no_stack: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Names the running kernel gives conntrack's TCP states and tcp_in_window's answers.
struct Names {
    tcp_states: Vec<(String, i64)>,
    tcp_actions: Vec<(String, i64)>,
    reasons: DropReasons,
    ovs_reasons: Vec<(String, i64)>,
}

impl Names {
    fn tcp_state(&self, s: u8) -> String {
        self.tcp_states
            .iter()
            .find(|(_, v)| *v == s as i64)
            .map(|(n, _)| n.trim_start_matches("TCP_CONNTRACK_").to_string())
            .unwrap_or_else(|| s.to_string())
    }
    fn reason(&self, r: u32) -> String {
        self.ovs_reasons
            .iter()
            .find(|(_, v)| *v as u32 == r)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| self.reasons.name(r))
    }
}

struct State {
    out: Output,
    clock: Clock,
    ksyms: Kallsyms,
    usyms: UserSyms,
    names: Names,
    count: u64,
    /// The reason for `dev=N/A` was printed.
    no_dev_said: bool,
}

fn nf_verdict(r: i64) -> &'static str {
    match r {
        0 => "NF_DROP",
        1 => "NF_ACCEPT",
        2 => "NF_STOLEN",
        3 => "NF_QUEUE",
        4 => "NF_REPEAT",
        -1 => "-NF_ACCEPT (invalid)",
        _ => "?",
    }
}

fn win_json(w: &Win) -> Value {
    json!({"td_end": w.td_end, "td_maxend": w.td_maxend, "td_maxwin": w.td_maxwin,
           "td_maxack": w.td_maxack, "td_scale": w.td_scale, "flags": w.flags})
}

fn win_text(w: &Win) -> String {
    format!(
        "td_end={} td_maxend={} td_maxwin={} td_maxack={} scale={} flags={:#x}",
        w.td_end, w.td_maxend, w.td_maxwin, w.td_maxack, w.td_scale, w.flags
    )
}

impl State {
    fn verdict(&self, e: &CiEvent) -> Option<String> {
        if e.has_ret == 0 {
            return None;
        }
        Some(match e.probe {
            P_CT_IN_RET => {
                let after = if e.nfct & !7 == 0 {
                    "no conntrack on the skb: INVALID".to_string()
                } else {
                    shared::conntrack::ctinfo_name((e.nfct & 7) as u8).to_string()
                };
                format!("{} ({})", nf_verdict(e.ret), after)
            }
            P_TCP_PACKET_RET => nf_verdict(e.ret).to_string(),
            P_IN_WINDOW_RET => {
                if self.names.tcp_actions.is_empty() {
                    if e.ret != 0 {
                        "in window"
                    } else {
                        "OUT OF WINDOW"
                    }
                    .to_string()
                } else {
                    self.names
                        .tcp_actions
                        .iter()
                        .find(|(_, v)| *v == e.ret)
                        .map(|(n, _)| n.clone())
                        .unwrap_or_else(|| e.ret.to_string())
                }
            }
            _ => e.ret.to_string(),
        })
    }

    fn on_event(&mut self, obj: &Object, data: &[u8]) {
        let mut e = CiEvent::default();
        if plain::copy_from_bytes(&mut e, data).is_err() {
            return;
        }
        self.count += 1;
        let p = &e.pkt;
        let stacks = obj.maps().find(|m| m.name().to_string_lossy() == "stacks");
        let kstack: Option<Vec<String>> = match &stacks {
            Some(m) if e.kstack_id >= 0 => read_stack(m as &dyn MapCore, e.kstack_id)
                .ok()
                .map(|a| self.ksyms.format_stack(&a)),
            _ => None,
        };
        let ustack: Option<Vec<String>> = match &stacks {
            Some(m) if e.ustack_id >= 0 => read_stack(m as &dyn MapCore, e.ustack_id)
                .ok()
                .map(|a| self.usyms.format(e.tgid, &a)),
            _ => None,
        };
        let saddr = p.src_ip().map(|a| a.to_string()).unwrap_or_default();
        let daddr = p.dst_ip().map(|a| a.to_string()).unwrap_or_default();
        let ctinfo = (e.nfct != 0).then(|| shared::conntrack::ctinfo_name((e.nfct & 7) as u8));
        let verdict = self.verdict(&e);
        let dir = if e.dir != 0 { "REPLY" } else { "ORIGINAL" };
        let (snd, rcv) = (e.win[e.dir as usize & 1], e.win[(e.dir as usize & 1) ^ 1]);
        let ovs = e.key_valid != 0;
        let reason = (e.probe == P_DROP).then(|| {
            if e.has_reason != 0 {
                self.names.reason(e.reason)
            } else {
                "N/A".into()
            }
        });
        let location =
            (e.probe == P_DROP && e.location != 0).then(|| self.ksyms.format(e.location));
        let flags: Vec<&str> = shared::conntrack::tcp_flag_names(p.tcp_flags);
        // A locally sent packet at the OUTPUT hook has no device yet.
        let dev = (p.ifname[0] != 0).then(|| p.ifname());
        if dev.is_none() && !self.no_dev_said {
            self.no_dev_said = true;
            eprintln!("Note: dev=N/A (null in JSON): the packet has no device yet (sent by a local socket, at the OUTPUT hook before routing)");
        }
        if self.out.json() {
            let mut v = json!({
                "probe": probe_name(e.probe),
                "ts_ns": e.ts_ns,
                "time": self.clock.rfc3339(e.ts_ns),
                "tid": e.tid,
                "comm": shared::fmt::cstr(&e.comm),
                "dev": dev,
                "saddr": saddr,
                "daddr": daddr,
                "proto": p.proto_name(),
                "nfct": format!("{:#x}", e.nfct),
                "ctinfo": ctinfo,
                "ct": format!("{:#x}", e.ct),
            });
            if p.has_ports() {
                v["sport"] = json!(p.sport);
                v["dport"] = json!(p.dport);
            }
            if p.l4proto == 6 {
                v["tcp_flags"] = json!(flags);
                v["tcp_seq"] = json!(e.tcp_seq);
                v["tcp_ack"] = json!(e.tcp_ack);
                v["tcp_win"] = json!(e.tcp_win);
            }
            if e.has_win != 0 {
                v["dir"] = json!(dir);
                v["tcp_state"] = json!(self.names.tcp_state(e.tcp_state));
                v["sender"] = win_json(&snd);
                v["receiver"] = win_json(&rcv);
            }
            if let Some(vd) = &verdict {
                v["ret"] = json!(e.ret);
                v["verdict"] = json!(vd);
            }
            if ovs {
                v["ct_state"] = json!(e.ct_state);
                v["ct_state_flags"] = json!(shared::ovs::ct_state_flags(e.ct_state as u32));
                v["ct_zone"] = json!(e.ct_zone);
                v["recirc_id"] = json!(e.recirc_id);
            }
            if e.probe == P_OVS_EXEC {
                v["action"] = json!(shared::ovs::action_name(e.action as u32));
            }
            if let Some(r) = reason {
                v["reason"] = json!(r);
                v["location"] = json!(location);
            }
            if let Some(k) = kstack {
                v["kstack"] = json!(k);
            }
            if let Some(u) = ustack {
                v["ustack"] = json!(u);
            }
            self.out.event(&v);
            return;
        }
        let t = self.clock.wall(e.ts_ns).format("%H:%M:%S%.3f");
        let ports = if p.has_ports() {
            (format!(":{}", p.sport), format!(":{}", p.dport))
        } else {
            (String::new(), String::new())
        };
        let mut s = format!(
            "{t} {} dev={} {saddr}{} -> {daddr}{} {}",
            probe_name(e.probe),
            dev.as_deref().unwrap_or("N/A"),
            ports.0,
            ports.1,
            p.proto_name()
        );
        if p.l4proto == 6 {
            s.push_str(&format!(
                " [{}] seq={} ack={} win={}",
                flags.join(","),
                e.tcp_seq,
                e.tcp_ack,
                e.tcp_win
            ));
        }
        s.push_str(&format!(" nfct={:#x}|{}", e.nfct, ctinfo.unwrap_or("none")));
        if e.ct != 0 && e.ct != e.nfct & !7 {
            s.push_str(&format!(" ct={:#x}", e.ct));
        }
        s.push('\n');
        if e.has_win != 0 {
            s.push_str(&format!(
                "    dir={dir} state={}\n    sender   (seen[dir]):  {}\n    receiver (seen[!dir]): {}\n",
                self.names.tcp_state(e.tcp_state),
                win_text(&snd),
                win_text(&rcv)
            ));
        }
        if let Some(vd) = &verdict {
            s.push_str(&format!("    -> ret={} {vd}\n", e.ret));
        }
        if ovs {
            s.push_str(&format!(
                "    ct_state={} zone={} recirc_id={:#x}{}\n",
                shared::ovs::ct_state_plus(e.ct_state as u32),
                e.ct_zone,
                e.recirc_id,
                if e.probe == P_OVS_EXEC {
                    format!(" action={}", shared::ovs::action_name(e.action as u32))
                } else {
                    String::new()
                }
            ));
        }
        if let Some(r) = reason {
            s.push_str(&format!(
                "    reason={r} location={}\n",
                location.unwrap_or_else(|| "?".into())
            ));
        }
        if let Some(k) = kstack {
            k.iter().for_each(|f| s.push_str(&format!("        {f}\n")));
        }
        if let Some(u) = ustack.filter(|u| !u.is_empty()) {
            s.push_str("    user stack:\n");
            u.iter().for_each(|f| s.push_str(&format!("        {f}\n")));
        }
        self.out.line(s.trim_end());
    }
}

/// Position of the first parameter called one of `names`, NO_ARG if none.
fn idx(params: &Option<Vec<String>>, names: &[&str]) -> u8 {
    params
        .as_ref()
        .and_then(|p| p.iter().position(|n| names.contains(&n.as_str())))
        .map(|i| i as u8)
        .unwrap_or(0xff)
}

pub fn run() {
    let args: Args = shared::cli::parse();
    if args.dev.len() > 4 {
        shared::cli::usage_error("invalid value for '--dev': at most 4 devices");
    }
    let mut out = Output::stdout(args.common.json);
    let mut session = Session::start(args.common.duration, args.common.verbose);
    // Kprobes whose arguments BTF cannot place are refused by the plan
    // (Need::Named), so --explain shows the same decision as a real start.
    let (kernel, plan) = bpf::plan(&args.common, HOOKS);

    // Argument positions from the running kernel's prototypes.
    let btf: &KernelBtf = &kernel.btf;
    let fp = |f: &str| btf.func_params_any(f);
    let p_in = fp("nf_conntrack_in");
    let p_tp = fp("nf_conntrack_tcp_packet");
    let p_w = fp("tcp_in_window");
    let p_r = fp("__nf_ct_refresh_acct");
    let p_l = fp("__ovs_ct_lookup");
    let p_u = fp("ovs_ct_update_key");
    let ix = [
        ("I_IN_SKB", idx(&p_in, &["skb"])),
        ("I_TP_CT", idx(&p_tp, &["ct"])),
        ("I_TP_SKB", idx(&p_tp, &["skb"])),
        ("I_TP_CTINFO", idx(&p_tp, &["ctinfo"])),
        ("I_W_CT", idx(&p_w, &["ct"])),
        ("I_W_STATE", idx(&p_w, &["state"])),
        ("I_W_DIR", idx(&p_w, &["dir"])),
        ("I_W_SKB", idx(&p_w, &["skb"])),
        ("I_R_CT", idx(&p_r, &["ct"])),
        ("I_R_SKB", idx(&p_r, &["skb"])),
        ("I_L_SKB", idx(&p_l, &["skb"])),
        ("I_L_KEY", idx(&p_l, &["key"])),
        ("I_U_SKB", idx(&p_u, &["skb"])),
        ("I_U_KEY", idx(&p_u, &["key"])),
    ];
    let names = Names {
        tcp_states: btf.enum_members("tcp_conntrack").unwrap_or_default(),
        tcp_actions: btf.enum_members("nf_ct_tcp_action").unwrap_or_default(),
        reasons: DropReasons::load(btf),
        ovs_reasons: btf.enum_members("ovs_drop_reason").unwrap_or_default(),
    };
    let nf_drop = names.reasons.code("NETFILTER_DROP").unwrap_or(0);
    let subsys = btf
        .enum_members("skb_drop_reason_subsys")
        .and_then(|m| {
            m.into_iter()
                .find(|(n, _)| n == "SKB_DROP_REASON_SUBSYS_OPENVSWITCH")
        })
        .map(|(_, v)| v as u32)
        .unwrap_or(0);
    drop(kernel);

    let fa = PacketFilterArgs {
        src: args.src.map(std::net::IpAddr::V4),
        dst: args.dst.map(std::net::IpAddr::V4),
        protocol: shared::cli::Protocol::All,
        src_port: args.sport,
        dst_port: args.dport,
    };
    let mut filter = RawPktFilter::from_args(&fa);
    filter.ipv4_only = 1;
    let mut devs = [0u8; 64];
    for (i, d) in args.dev.iter().enumerate() {
        let b = d.as_bytes();
        devs[i * 16..i * 16 + b.len().min(15)].copy_from_slice(&b[..b.len().min(15)]);
    }

    let mut open_object = MaybeUninit::uninit();
    let mut open = TraceOvsCtInvalidSkelBuilder::default()
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
    cfg(o, "DEVS", &devs);
    cfg(o, "n_devs", &[args.dev.len() as u8]);
    cfg(o, "want_stack", &[u8::from(!args.no_stack)]);
    for (n, v) in &ix {
        cfg(o, n, &[*v]);
    }
    cfg(o, "R_NF_DROP", &nf_drop.to_ne_bytes());
    cfg(o, "OVS_SUBSYS", &subsys.to_ne_bytes());
    let mut skel = bpf::load(open);
    let (_links, attached) = bpf::attach_or_warn(&plan, &mut skel);

    let any = |a: Option<Ipv4Addr>| a.map(|x| x.to_string()).unwrap_or_else(|| "any".into());
    out.banner(&format!(
        "Filter: dev={} src={} dst={} sport={} dport={}",
        if args.dev.is_empty() {
            "any".to_string()
        } else {
            args.dev.join(",")
        },
        any(args.src),
        any(args.dst),
        args.sport
            .map(|p| p.to_string())
            .unwrap_or_else(|| "any".into()),
        args.dport
            .map(|p| p.to_string())
            .unwrap_or_else(|| "any".into())
    ));
    let has = |h: &str| attached.contains(&h);
    if !has("nf_conntrack_tcp_packet") && !has("tcp_in_window") {
        out.banner("Note: TCP window values need kprobes on nf_conntrack_tcp_packet / tcp_in_window: not available on this kernel. Showing only what the tracepoints give: OVS upcalls and actions of packets with ct_state +inv, and netfilter/OVS drops.");
    } else if !has("tcp_in_window") {
        out.banner("Note: tcp_in_window is not a traceable function here (inlined): its window values and verdict are shown at nf_conntrack_tcp_packet.");
    }
    out.banner("Tracing conntrack verdicts... Hit Ctrl-C to end.");

    let state = RefCell::new(State {
        out,
        clock: session.clock,
        ksyms: Kallsyms::new(),
        usyms: UserSyms::new(),
        names,
        count: 0,
        no_dev_said: false,
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
    eprintln!(
        "Summary: {} events, {lost} events lost",
        state.borrow().count
    );
    session.verbose_footer();
}
