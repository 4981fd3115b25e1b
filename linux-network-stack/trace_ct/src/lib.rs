//! `trace_ct` and `trace_ct_multi_conn`: which conntrack entry (nf_conn) is
//! attached to each packet of the filtered flows at each conntrack / OVS ct
//! step, in which zone, with what status, ctinfo and label, and who called it.
//! The two tools share the BPF object and differ in output (a block per event
//! vs. one line per event) and in which nf_conn they show at `tcp_packet`.
//!
//! Hooks are decided at start for the running kernel (`--explain`): netfilter
//! links right before/after conntrack where the kernel has them (>= 6.4),
//! otherwise fentry/kprobe on the conntrack functions with their 5.x/6.x
//! signatures; OVS ct() through the `ovs_do_execute_action` tracepoint, else
//! fentry/kprobe on `ovs_ct_execute`.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, Object};
use serde_json::{json, Value};

use shared::bpf;
use shared::cli::{parse_ipv4, CommonArgs, Protocol};
use shared::conntrack::{
    ctinfo_name, tcp_flag_names, tcp_state_name, zone_dir_name, CtSnap, OvsCtSnap, StatusBits,
};
use shared::events::Drain;
use shared::flowrules::{self, FlowRule, MAX_FLOW_RULES};
use shared::hooks::{Candidate, HookPoint, Kind, Need};
use shared::ksyms::Kallsyms;
use shared::output::Output;
use shared::pkt::PktMeta;
use shared::reasons::DropReasons;
use shared::runner::Session;
use shared::stacks::read_stack;
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/trace_ct.skel.rs"));
}
use skel::TraceCtSkelBuilder;

const CONNTRACK_LOADED: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const NO_POST_CT: Need = Need::Unless("post_ct");

/// Every probe is optional: missing ones are warnings, none at all is an error.
pub static HOOKS: &[HookPoint] = &[
    HookPoint {
        name: "nf_conntrack_in",
        required: false,
        candidates: &[
            Candidate::new(
                Kind::Netfilter,
                "nf_pre_ct",
                "ipv4:PRE_ROUTING,LOCAL_OUT:-201<",
            )
            .need(Need::Exists(CONNTRACK_LOADED))
            .loses("pre-ct netfilter hook: no kernel stack, per network namespace"),
            Candidate::new(Kind::Fentry, "fentry_nf_conntrack_in", "nf_conntrack_in")
                .need(Need::Param(0, "skb")),
            Candidate::new(Kind::Kprobe, "kprobe_nf_conntrack_in", "nf_conntrack_in")
                .need(Need::Param(0, "skb")),
        ],
    },
    HookPoint {
        name: "post_ct",
        required: false,
        candidates: &[Candidate::new(
            Kind::Netfilter,
            "nf_post_ct",
            "ipv4:PRE_ROUTING,LOCAL_OUT:-199>",
        )
        .need(Need::Exists(CONNTRACK_LOADED))
        .loses("post-ct netfilter hook: no kernel stack, per network namespace")],
    },
    HookPoint {
        name: "__ovs_ct_lookup",
        required: false,
        candidates: &[
            Candidate::new(Kind::Fentry, "fentry___ovs_ct_lookup", "__ovs_ct_lookup")
                .need(Need::Param(3, "skb")),
            Candidate::new(Kind::Kprobe, "kprobe___ovs_ct_lookup", "__ovs_ct_lookup")
                .need(Need::Param(3, "skb")),
        ],
    },
    HookPoint {
        name: "ovs_ct_update_key",
        required: false,
        candidates: &[
            Candidate::new(
                Kind::Fentry,
                "fentry_ovs_ct_update_key",
                "ovs_ct_update_key",
            )
            .need(Need::Param(0, "skb")),
            Candidate::new(
                Kind::Kprobe,
                "kprobe_ovs_ct_update_key",
                "ovs_ct_update_key",
            )
            .need(Need::Param(0, "skb")),
        ],
    },
    HookPoint {
        name: "__nf_ct_refresh_acct",
        required: false,
        candidates: &[
            Candidate::new(
                Kind::Fentry,
                "fentry___nf_ct_refresh_acct",
                "__nf_ct_refresh_acct",
            )
            .need(Need::All(&[NO_POST_CT, Need::Param(2, "skb")])),
            Candidate::new(
                Kind::Kprobe,
                "kprobe___nf_ct_refresh_acct",
                "__nf_ct_refresh_acct",
            )
            .need(Need::All(&[NO_POST_CT, Need::Param(2, "skb")])),
        ],
    },
    HookPoint {
        name: "tcp_packet",
        required: false,
        candidates: &[
            Candidate::new(
                Kind::Fentry,
                "fentry_nf_conntrack_tcp_packet",
                "nf_conntrack_tcp_packet",
            )
            .need(Need::All(&[NO_POST_CT, Need::Param(1, "skb")])),
            Candidate::new(
                Kind::Kprobe,
                "kprobe_nf_conntrack_tcp_packet",
                "nf_conntrack_tcp_packet",
            )
            .need(Need::All(&[NO_POST_CT, Need::Param(1, "skb")])),
            Candidate::new(Kind::Kprobe, "kprobe_tcp_packet", "tcp_packet")
                .need(Need::All(&[NO_POST_CT, Need::Param(1, "skb")])),
        ],
    },
    HookPoint {
        name: "tcp_packet_ret",
        required: false,
        candidates: &[
            Candidate::new(
                Kind::Fentry,
                "fexit_nf_conntrack_tcp_packet",
                "nf_conntrack_tcp_packet",
            )
            .need(NO_POST_CT),
            Candidate::new(
                Kind::Kprobe,
                "kretprobe_nf_conntrack_tcp_packet",
                "nf_conntrack_tcp_packet",
            )
            .need(NO_POST_CT),
            Candidate::new(Kind::Kprobe, "kretprobe_tcp_packet", "tcp_packet").need(NO_POST_CT),
        ],
    },
    HookPoint {
        name: "tcp_error",
        required: false,
        candidates: &[
            Candidate::new(Kind::Fentry, "fentry_tcp_error", "tcp_error")
                .need(Need::All(&[NO_POST_CT, Need::Param(1, "skb")])),
            Candidate::new(Kind::Kprobe, "kprobe_tcp_error", "tcp_error")
                .need(Need::All(&[NO_POST_CT, Need::Param(1, "skb")])),
        ],
    },
    HookPoint {
        name: "ovs_ct_execute",
        required: false,
        candidates: &[
            Candidate::new(
                Kind::TpBtf,
                "tp_btf_ovs_do_execute_action",
                "ovs_do_execute_action",
            )
            .need(Need::ArgsAtLeast(4)),
            Candidate::new(Kind::Fentry, "fentry_ovs_ct_execute", "ovs_ct_execute")
                .need(Need::Param(1, "skb")),
            Candidate::new(Kind::Kprobe, "kprobe_ovs_ct_execute", "ovs_ct_execute")
                .need(Need::Param(1, "skb")),
        ],
    },
    HookPoint {
        name: "kfree_skb",
        required: false,
        candidates: &[
            Candidate::new(Kind::TpBtf, "tp_btf_kfree_skb", "kfree_skb").need(Need::ArgsAtLeast(3)),
            Candidate::new(Kind::Tracepoint, "tp_kfree_skb", "skb/kfree_skb"),
        ],
    },
];

pub const PROBE_NF_CONNTRACK_IN: u8 = 1;
pub const PROBE_OVS_CT_LOOKUP: u8 = 2;
pub const PROBE_OVS_CT_UPDATE: u8 = 3;
pub const PROBE_NF_REFRESH_ACCT: u8 = 4;
pub const PROBE_TCP_PACKET: u8 = 6;
pub const PROBE_TCP_PACKET_RET: u8 = 7;
pub const PROBE_TCP_ERROR: u8 = 8;
pub const PROBE_OVS_CT_EXECUTE: u8 = 9;
pub const PROBE_PRE_CT: u8 = 10;
pub const PROBE_POST_CT: u8 = 11;
pub const PROBE_DROP: u8 = 12;
const RET_ENTRY: i64 = -999;

/// Mirror of `struct ct_event` (src/bpf/trace_ct.bpf.c).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct CtEvent {
    pub ts_ns: u64,
    pub ret: i64,
    pub pid: u32,
    pub tid: u32,
    pub comm: [u8; 16],
    pub kstack_id: i32,
    pub probe: u8,
    pub has_pkt: u8,
    pub sk_state: u8,
    pub nf_hook: u8,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    pub reason: u32,
    pub has_comm: u8,
    pub pad: [u8; 3],
    pub pkt: PktMeta,
    pub pad2: [u8; 4],
    pub skb_ct: CtSnap,
    pub arg_ct: CtSnap,
    pub ovs: OvsCtSnap,
}
const _: () = assert!(std::mem::size_of::<CtEvent>() == 64 + 140 + 4 + 56 + 56 + 24);
// SAFETY: plain old data.
unsafe impl plain::Plain for CtEvent {}

impl CtEvent {
    fn is_ret(&self) -> bool {
        self.ret != RET_ENTRY
    }
}

/// The FUNC name of a probe (nf-link events carry their hook).
pub fn probe_name(probe: u8, nf_hook: u8) -> String {
    match probe {
        PROBE_NF_CONNTRACK_IN => "nf_conntrack_in".into(),
        PROBE_OVS_CT_LOOKUP => "__ovs_ct_lookup".into(),
        PROBE_OVS_CT_UPDATE => "ovs_ct_update_key".into(),
        PROBE_NF_REFRESH_ACCT => "__nf_ct_refresh_acct".into(),
        PROBE_TCP_PACKET => "tcp_packet".into(),
        PROBE_TCP_PACKET_RET => "tcp_packet_ret".into(),
        PROBE_TCP_ERROR => "tcp_error".into(),
        PROBE_OVS_CT_EXECUTE => "ovs_ct_execute".into(),
        PROBE_PRE_CT => format!("pre_ct:{}", shared::nflink::hook_name(nf_hook as i32)),
        PROBE_POST_CT => format!("post_ct:{}", shared::nflink::hook_name(nf_hook as i32)),
        PROBE_DROP => "kfree_skb".into(),
        n => format!("Unknown Probe ({n})"),
    }
}

fn json_probe(probe: u8) -> &'static str {
    match probe {
        PROBE_NF_CONNTRACK_IN => "nf_conntrack_in",
        PROBE_OVS_CT_LOOKUP => "__ovs_ct_lookup",
        PROBE_OVS_CT_UPDATE => "ovs_ct_update_key",
        PROBE_NF_REFRESH_ACCT => "__nf_ct_refresh_acct",
        PROBE_TCP_PACKET => "tcp_packet",
        PROBE_TCP_PACKET_RET => "tcp_packet_ret",
        PROBE_TCP_ERROR => "tcp_error",
        PROBE_OVS_CT_EXECUTE => "ovs_ct_execute",
        PROBE_PRE_CT => "pre_ct",
        PROBE_POST_CT => "post_ct",
        PROBE_DROP => "kfree_skb",
        _ => "unknown",
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `trace_ct`: a block per event, skb conntrack with label.
    TraceCt,
    /// `trace_ct_multi_conn`: one line per event, nf_conn argument at tcp_packet.
    MultiConn,
}

const FILTERS_HELP: &str = "\
Filters file (--filters-file): a JSON array of up to 10 rules, OR'ed; each rule
matches a packet in either direction; missing fields match anything:
  [
    {\"src_ip\": \"10.200.0.243\", \"dst_ip\": \"10.200.0.245\", \"protocol\": \"tcp\", \"src_port\": 9900},
    {\"src_ip\": \"10.200.0.245\", \"protocol\": \"udp\", \"dst_port\": 53}
  ]
When a filters file is given, --src-ip/--dst-ip/--protocol/--src-port/--dst-port are ignored.";

#[derive(Parser, Debug)]
#[command(
    about = "Trace the conntrack entry (nf_conn) of each packet at each conntrack / OVS ct step",
    after_help = FILTERS_HELP
)]
pub struct Args {
    /// Source IPv4 address (a rule matches both directions)
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub src_ip: Option<Ipv4Addr>,
    /// Destination IPv4 address
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub dst_ip: Option<Ipv4Addr>,
    /// IP protocol: tcp, udp, icmp or all
    #[arg(long, value_enum, default_value_t = Protocol::All)]
    pub protocol: Protocol,
    /// TCP/UDP source port, 0 = any
    #[arg(long, value_name = "PORT", default_value_t = 0, value_parser = flowrules::parse_port_or_any, allow_hyphen_values = true)]
    pub src_port: u16,
    /// TCP/UDP destination port, 0 = any
    #[arg(long, value_name = "PORT", default_value_t = 0, value_parser = flowrules::parse_port_or_any, allow_hyphen_values = true)]
    pub dst_port: u16,
    /// Print seconds since the first event instead of the date and time
    #[arg(long)]
    pub rel_time: bool,
    /// JSON file with up to 10 filter rules (see below)
    #[arg(long, value_name = "PATH")]
    pub filters_file: Option<PathBuf>,
    /// Print the kernel stack of each event: true/false (1/0, yes/no)
    #[arg(long, value_name = "BOOL", default_value = "true", value_parser = flowrules::parse_bool_word, action = clap::ArgAction::Set)]
    pub stack: bool,
    /// Also attach the netfilter-link hooks in this network namespace (a name
    /// under /run/netns, a path, or `all`); repeatable. Netfilter hooks see only
    /// the namespace they are attached in (default: the tool's own)
    #[arg(long, value_name = "NETNS")]
    pub netns: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

struct State {
    out: Output,
    clock: Clock,
    ksyms: Kallsyms,
    bits: StatusBits,
    reasons: DropReasons,
    variant: Variant,
    rel_time: bool,
    stack: bool,
    first_ts: Option<u64>,
    events: u64,
}

fn ip(b: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

impl State {
    fn time_label(&mut self, ts: u64) -> (String, String) {
        let first = *self.first_ts.get_or_insert(ts);
        if self.rel_time {
            let s = ts.saturating_sub(first) as f64 / 1e9;
            ("TIME(s):".into(), format!("{s:<9.4}"))
        } else {
            ("DATETIME:".into(), self.clock.datetime_ms(ts))
        }
    }

    fn stack(&mut self, obj: &Object, id: i32) -> Option<Result<Vec<String>, i32>> {
        if !self.stack {
            return None;
        }
        let map = obj
            .maps()
            .find(|m| m.name().to_string_lossy() == "stack_traces")?;
        Some(
            read_stack(&map as &dyn MapCore, id)
                .map(|a| self.ksyms.format_stack(&a))
                .map_err(|_| id),
        )
    }

    /// `10.0.0.1:40000 -> 10.0.0.2:5201 (TCP) IP_ID:0x1a2b SEQ:1 ACK:0`
    /// (+ ` FLAGS:[SYN]` for trace_ct) `[TCP_SYN_SENT]`.
    fn pkt_info(&self, e: &CtEvent, flags: bool) -> String {
        let p = &e.pkt;
        let proto = match p.l4proto {
            1 => "ICMP".to_string(),
            6 => "TCP".to_string(),
            17 => "UDP".to_string(),
            n => n.to_string(),
        };
        let mut id = format!("IP_ID:0x{:x}", p.ip_id);
        let tcp = p.l4proto == 6;
        if tcp {
            id.push_str(&format!(" SEQ:{} ACK:{}", e.tcp_seq, e.tcp_ack));
        }
        let mut fl = String::new();
        if flags && tcp {
            fl = format!(" FLAGS:[{}]", tcp_flag_names(p.tcp_flags).join("|"));
        }
        let mut s = if p.has_ports() && p.sport != 0 {
            format!(
                "{}:{} -> {}:{} ({proto}) {id}{fl}",
                ip(&p.saddr),
                p.sport,
                ip(&p.daddr),
                p.dport
            )
        } else {
            format!("{} -> {} ({proto}) {id}{fl}", ip(&p.saddr), ip(&p.daddr))
        };
        if tcp {
            s.push_str(&format!(" [{}]", tcp_state_name(e.sk_state)));
        }
        s
    }

    fn dev(&self, e: &CtEvent) -> String {
        if e.pkt.ifindex == 0 {
            return "DEV: N/A".into();
        }
        let n = e.pkt.ifname();
        if n.is_empty() {
            format!("DEV: ifidx={}", e.pkt.ifindex)
        } else {
            format!("DEV: {}[{}]", n, e.pkt.ifindex)
        }
    }

    fn comm(e: &CtEvent) -> String {
        if e.has_comm != 0 {
            shared::fmt::cstr(&e.comm)
        } else {
            "N/A".into()
        }
    }

    /// The conntrack shown for an event: the nf_conn after the packet for
    /// return events, else skb->_nfct.
    fn shown_ct(e: &CtEvent) -> &CtSnap {
        if e.probe == PROBE_TCP_PACKET_RET {
            &e.arg_ct
        } else {
            &e.skb_ct
        }
    }

    fn on_event(&mut self, obj: &Object, data: &[u8]) {
        let mut e = CtEvent::default();
        if plain::copy_from_bytes(&mut e, data).is_err() {
            return;
        }
        self.events += 1;
        // Netfilter programs cannot take stacks: nothing to show there.
        let stack = if matches!(e.probe, PROBE_PRE_CT | PROBE_POST_CT) {
            None
        } else {
            self.stack(obj, e.kstack_id)
        };
        if self.out.json() {
            let v = self.json(&e, &stack);
            self.out.event(&v);
            return;
        }
        let text = match self.variant {
            Variant::TraceCt => self.block(&e, &stack),
            Variant::MultiConn => self.line(&e, &stack),
        };
        self.out.line(&text);
    }

    fn json(&mut self, e: &CtEvent, stack: &Option<Result<Vec<String>, i32>>) -> Value {
        let p = &e.pkt;
        let ret = e.is_ret();
        let ct = Self::shown_ct(e);
        let mut skb_ct = ct.json(&self.bits);
        if self.variant == Variant::MultiConn {
            skb_ct["label"] = Value::Null;
        }
        let mut v = json!({
            "ts_ns": e.ts_ns,
            "time": self.clock.rfc3339_ms(e.ts_ns),
            "probe": json_probe(e.probe),
            "comm": if e.has_comm != 0 { json!(Self::comm(e)) } else { Value::Null },
            "pid": if e.has_comm != 0 { json!(e.pid) } else { Value::Null },
            "dev": if ret || p.ifindex == 0 { Value::Null } else { json!(p.ifname()) },
            "ifindex": if ret || p.ifindex == 0 { Value::Null } else { json!(p.ifindex) },
            "skb_ct": skb_ct,
            "ovs_ct": e.ovs.json(),
        });
        if !ret {
            v["saddr"] = json!(ip(&p.saddr).to_string());
            v["daddr"] = json!(ip(&p.daddr).to_string());
            v["proto"] = json!(p.l4proto);
            v["sport"] = if p.has_ports() {
                json!(p.sport)
            } else {
                Value::Null
            };
            v["dport"] = if p.has_ports() {
                json!(p.dport)
            } else {
                Value::Null
            };
            v["ip_id"] = json!(p.ip_id);
            if p.l4proto == 6 {
                v["tcp_seq"] = json!(e.tcp_seq);
                v["tcp_ack"] = json!(e.tcp_ack);
                if self.variant == Variant::TraceCt {
                    v["tcp_flags"] = json!(tcp_flag_names(p.tcp_flags));
                }
                v["sk_state"] = if e.sk_state == 0xff {
                    Value::Null
                } else {
                    json!(tcp_state_name(e.sk_state))
                };
            }
        } else {
            v["ret"] = json!(e.ret);
        }
        if e.probe == PROBE_PRE_CT || e.probe == PROBE_POST_CT {
            v["nf_hook"] = json!(shared::nflink::hook_name(e.nf_hook as i32));
        }
        if e.probe == PROBE_TCP_PACKET {
            v["arg_ct"] = e.arg_ct.json(&self.bits);
        }
        if e.probe == PROBE_DROP {
            v["drop_reason"] = json!(self.reasons.name(e.reason));
        }
        match stack {
            Some(Ok(f)) => v["stack"] = json!(f),
            Some(Err(id)) => {
                v["stack"] = Value::Null;
                v["stack_err"] = json!(shared::stacks::stack_error(*id));
            }
            None => v["stack"] = Value::Null,
        }
        v
    }

    /// trace_ct: the original's block.
    fn block(&mut self, e: &CtEvent, stack: &Option<Result<Vec<String>, i32>>) -> String {
        let (label, t) = self.time_label(e.ts_ns);
        let func = probe_name(e.probe, e.nf_hook);
        let ret = e.is_ret();
        let mut s = format!("{label} {t} COMM: {:<16} FUNC: {:<25}", Self::comm(e), func);
        if !ret && e.pkt.ifindex != 0 {
            s.push(' ');
            s.push_str(&self.dev(e));
        }
        s.push('\n');
        if ret || e.has_pkt == 0 {
            s.push_str("PKTINFO: (Pkt N/A)\n");
        } else {
            s.push_str(&format!("PKTINFO: {}\n", self.pkt_info(e, true)));
        }
        if ret {
            s.push_str(&format!("RET: {}\n", e.ret));
        }
        if e.probe == PROBE_DROP {
            s.push_str(&format!("DROP_REASON: {}\n", self.reasons.name(e.reason)));
        }
        s.push_str(&format!("OVS_CT_INFO: {}\n", ovs_ct_text(&e.ovs)));
        s.push_str(&format!(
            "SKB_CT_INFO: {}\n",
            skb_ct_text(Self::shown_ct(e), &self.bits)
        ));
        match stack {
            Some(Ok(frames)) => frames.iter().for_each(|f| s.push_str(&format!("  {f}\n"))),
            Some(Err(id)) => s.push_str(&format!("  [Kernel Stack Trace Error: {id}]\n")),
            None => {}
        }
        s.push_str(&"-".repeat(80));
        s
    }

    /// trace_ct_multi_conn: the original's one line.
    fn line(&mut self, e: &CtEvent, stack: &Option<Result<Vec<String>, i32>>) -> String {
        let (label, t) = self.time_label(e.ts_ns);
        let ret = e.is_ret();
        let sk = &e.skb_ct;
        let nfct_info = if ret {
            "NFCT_PTR: N/A".to_string()
        } else {
            format!(
                "NFCT_PTR: 0x{:x} {}",
                sk.nfct,
                if sk.nfct == 0 { "(INVALID/NULL)" } else { "" }
            )
        };
        let pkt_info = if ret || e.has_pkt == 0 {
            "(Pkt N/A)".to_string()
        } else {
            self.pkt_info(e, false)
        };
        let retval = if ret {
            format!("RET: {}", e.ret)
        } else {
            String::new()
        };
        // tcp_packet: the nf_conn argument's status and zone replace the skb's.
        let status_src = if matches!(e.probe, PROBE_TCP_PACKET | PROBE_TCP_PACKET_RET) {
            &e.arg_ct
        } else {
            sk
        };
        let status = match status_src.status_error() {
            Some(err) => format!("CT_STATUS: N/A ({err})"),
            None => format!(
                "CT_STATUS: 0x{:x} ({})",
                status_src.status,
                self.bits
                    .describe(status_src.status)
                    .replacen("NOT_TEMPLATE", "NOT TEMPLATE", 1)
            ),
        };
        let ctinfo = if !ret && sk.nfct != 0 {
            format!("CTINFO: {} ({})", sk.ctinfo, ctinfo_name(sk.ctinfo))
        } else {
            "CTINFO: N/A".to_string()
        };
        let mut extra = String::new();
        if matches!(
            e.probe,
            PROBE_OVS_CT_LOOKUP | PROBE_OVS_CT_UPDATE | PROBE_OVS_CT_EXECUTE
        ) {
            let o = &e.ovs;
            let skb_nfct = if sk.nfct == 0 {
                "(skbNFCT:NULL)".to_string()
            } else {
                format!("(skbNFCT:0x{:x})", sk.nfct)
            };
            extra = match o.error() {
                None => format!(
                    "Commit:{} ZoneID:{} ZoneDir:{} InfoNFCT:0x{:x} {skb_nfct}",
                    o.commit,
                    o.zone_id,
                    ovs_dir(o),
                    o.ct
                ),
                Some(err) => format!(
                    "Commit:N/A({err}) ZoneID:N/A({err}) ZoneDir:N/A({err}) InfoNFCT:N/A({err}) {skb_nfct}"
                ),
            };
        } else if matches!(e.probe, PROBE_TCP_PACKET | PROBE_TCP_ERROR) {
            let z = if e.probe == PROBE_TCP_PACKET {
                &e.arg_ct
            } else {
                sk
            };
            extra = format!("ZoneID:{} ZoneDir:{}", zone_id(z, false), zone_dir(z));
        }
        let dev = if ret { String::new() } else { self.dev(e) };
        let mut s = format!(
            "{label} {t} COMM: {:<16} FUNC: {:<25} {nfct_info} {pkt_info} {retval} {status} {ctinfo} {extra} {dev}",
            Self::comm(e),
            probe_name(e.probe, e.nf_hook)
        );
        if e.probe == PROBE_DROP {
            s.push_str(&format!(" DROP_REASON: {}", self.reasons.name(e.reason)));
        }
        match stack {
            Some(Ok(frames)) => frames.iter().for_each(|f| s.push_str(&format!("\n  {f}"))),
            Some(Err(id)) => s.push_str(&format!("\n  [Kernel Stack Trace Error: {id}]")),
            None => {}
        }
        s
    }
}

fn zone_id(c: &CtSnap, long: bool) -> String {
    match c.zone_error() {
        _ if c.conn().is_none() && c.status_err != 0 => "N/A(Init)".into(),
        Some(e) => format!("N/A({e})"),
        None if c.zone_id == 0 && long => "0(KernelDefaultZone)".into(),
        None => c.zone_id.to_string(),
    }
}

fn zone_dir(c: &CtSnap) -> String {
    match c.dir_error() {
        _ if c.conn().is_none() && c.status_err != 0 => "N/A(Init)".into(),
        Some(e) => format!("N/A({e})"),
        None => format!("{}({})", c.zone_dir, zone_dir_name(c.zone_dir)),
    }
}

fn ovs_dir(o: &OvsCtSnap) -> String {
    if o.dir_err == 0 {
        format!("{}({})", o.zone_dir, zone_dir_name(o.zone_dir))
    } else {
        "N/A(NoCfg)".into()
    }
}

/// `CT_STATUS:... CTINFO:... NFCT_PTR:... SKBZoneID:... SKBZoneDir:... CT_LABEL:...`
pub fn skb_ct_text(c: &CtSnap, bits: &StatusBits) -> String {
    let status = match c.status_error() {
        Some(e) => format!("CT_STATUS:N/A({e})"),
        None => format!("CT_STATUS:0x{:x}({})", c.status, bits.describe(c.status)),
    };
    let ctinfo = if c.has_nfct == 1 && c.nfct != 0 {
        format!("CTINFO:{}({})", c.ctinfo, ctinfo_name(c.ctinfo))
    } else {
        "CTINFO:N/A".to_string()
    };
    let nfct = if c.nfct == 0 {
        "NFCT_PTR:NULL".to_string()
    } else {
        format!("NFCT_PTR:0x{:x}", c.nfct)
    };
    let label = match (c.label(), c.label_err) {
        (Some(l), _) => format!("CT_LABEL:{l}"),
        (None, -2) => "CT_LABEL:N/A(ReadFail)".to_string(),
        _ => "CT_LABEL:N/A".to_string(),
    };
    format!(
        "{status} {ctinfo} {nfct} SKBZoneID:{} SKBZoneDir:{} {label}",
        zone_id(c, true),
        zone_dir(c)
    )
}

/// `OvsConInfoNFCT:0x.. OvsCommit:1 OvsZoneID:5 OvsZoneDir:3(ORIG|REPL)`
pub fn ovs_ct_text(o: &OvsCtSnap) -> String {
    match o.error() {
        None => format!(
            "OvsConInfoNFCT:0x{:x} OvsCommit:{} OvsZoneID:{} OvsZoneDir:{}",
            o.ct,
            o.commit,
            o.zone_id,
            ovs_dir(o)
        ),
        Some(e) => format!(
            "OvsConInfoNFCT:N/A({e}) OvsCommit:N/A({e}) OvsZoneID:N/A({e}) OvsZoneDir:N/A({e})"
        ),
    }
}

/// The flow rules of the command line, or of `--filters-file` (exit 2 on any error).
pub fn rules_from_args(a: &Args) -> Vec<FlowRule> {
    if let Some(path) = &a.filters_file {
        return flowrules::load_rules_file(path, MAX_FLOW_RULES).unwrap_or_else(|e| {
            shared::cli::usage_error(format!("invalid value for '--filters-file': {e}"))
        });
    }
    let r = FlowRule {
        src_ip: a.src_ip,
        dst_ip: a.dst_ip,
        protocol: a.protocol,
        src_port: a.src_port,
        dst_port: a.dst_port,
    };
    if r.is_any() {
        Vec::new()
    } else {
        vec![r]
    }
}

pub fn run(variant: Variant) {
    let args: Args = shared::cli::parse();
    let rules = rules_from_args(&args);
    let netns = shared::nflink::netns_files(&args.netns)
        .unwrap_or_else(|e| shared::cli::usage_error(format!("invalid value for '--netns': {e}")));
    let out = Output::stdout(args.common.json);
    let mut session = Session::start(args.common.duration, args.common.verbose);
    let (kernel, mut plan) = bpf::plan(&args.common, HOOKS);
    if rules.is_empty() {
        plan.skip(
            "kfree_skb",
            "drops are reported for filtered flows only (no filter given)",
        );
    }
    let bits = StatusBits::load(&kernel.btf);
    let reasons = DropReasons::load(&kernel.btf);
    drop(kernel);

    let mut open_object = MaybeUninit::uninit();
    let mut open = TraceCtSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    let cfg = |o: &mut libbpf_rs::OpenObject, name: &str, b: &[u8]| {
        bpf::set_rodata(o, name, b).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e))
    };
    let (raw, n) = flowrules::raw_rules(&rules);
    cfg(
        open.open_object_mut(),
        "filter_rules",
        &flowrules::rules_bytes(&raw),
    );
    cfg(open.open_object_mut(), "num_filters", &n.to_ne_bytes());
    cfg(
        open.open_object_mut(),
        "want_stack",
        &[u8::from(args.stack)],
    );
    cfg(
        open.open_object_mut(),
        "want_label",
        &[u8::from(variant == Variant::TraceCt)],
    );
    cfg(
        open.open_object_mut(),
        "want_drops",
        &[u8::from(!rules.is_empty())],
    );
    let nf_used = plan
        .hooks
        .iter()
        .any(|r| matches!(r.chosen, Some((c, _)) if c.kind == Kind::Netfilter));
    let nf_task = nf_used && shared::nflink::task_helpers();
    cfg(open.open_object_mut(), "nf_task", &[u8::from(nf_task)]);
    let mut skel = bpf::load(open);
    let (_links, attached) = bpf::attach_or_warn(&plan, &mut skel);
    let mut ns_links = Vec::new();
    for (name, path) in &netns {
        match shared::nflink::attach_plan_in(&plan, skel.object_mut(), path) {
            Ok(l) => ns_links.extend(l),
            Err(e) => eprintln!("WARN: cannot attach in network namespace {name}: {e}"),
        }
    }

    // Banner: stderr (stdout is for events).
    eprintln!("--- Filters ---");
    if rules.is_empty() {
        eprintln!("No filter: every IPv4 packet");
    }
    for (i, r) in rules.iter().enumerate() {
        eprintln!("Rule {}: {} (both directions)", i + 1, r.describe());
    }
    eprintln!("---------------");
    let nf = plan.chosen("nf_conntrack_in").map(|c| c.kind);
    let mode = match nf {
        Some(Kind::Netfilter) => "nf-link",
        Some(Kind::Fentry) => "fentry",
        Some(Kind::Kprobe) => "kprobe",
        _ => match plan.chosen("ovs_ct_execute").map(|c| c.kind) {
            Some(Kind::TpBtf) => "tp_btf",
            Some(Kind::Fentry) => "fentry",
            Some(Kind::Kprobe) => "kprobe",
            _ => "none",
        },
    };
    eprintln!("Mode: {mode}");
    for h in &attached {
        if let Some(r) = plan.hooks.iter().find(|r| r.hook.name == *h) {
            if let Some((c, t)) = &r.chosen {
                eprintln!("Attached {} to {} ({})", c.kind.name(), t, h);
            }
        }
    }
    for (name, _) in &netns {
        if !ns_links.is_empty() {
            eprintln!("Attached netfilter hooks also in network namespace {name}");
        }
    }
    if nf_used {
        eprintln!(
            "Note: netfilter-link events (pre_ct/post_ct) carry no kernel stack (the program type cannot take one){}",
            if nf_task { "" } else { " and no process (this kernel does not let them read it)" }
        );
    }
    eprintln!("Tracing skb->_nfct pointer changes (filtered)... Press Ctrl-C to stop.");

    let state = RefCell::new(State {
        out,
        clock: session.clock,
        ksyms: Kallsyms::new(),
        bits,
        reasons,
        variant,
        rel_time: args.rel_time,
        stack: args.stack,
        first_ts: None,
        events: 0,
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
    st.out.banner("\nDetaching probes and exiting...");
    eprintln!("Summary: {} events, {} events lost", st.events, lost);
    drop(ns_links);
    session.verbose_footer();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skb_ct_texts() {
        let bits = StatusBits::from_members(&[
            ("IPS_SEEN_REPLY_BIT".into(), 1),
            ("IPS_CONFIRMED_BIT".into(), 3),
        ]);
        let none = CtSnap {
            has_nfct: 1,
            status_err: -4,
            zone_err: -1,
            dir_err: -1,
            label_err: -1,
            ..Default::default()
        };
        assert_eq!(
            skb_ct_text(&none, &bits),
            "CT_STATUS:N/A(_nfct=0) CTINFO:N/A NFCT_PTR:NULL SKBZoneID:N/A(Init) SKBZoneDir:N/A(Init) CT_LABEL:N/A"
        );
        let mut label = [0u8; 16];
        label[0] = 1;
        let c = CtSnap {
            nfct: 0xffff_8880_0000_1002,
            ct: 0xffff_8880_0000_1000,
            status: 0x8,
            ctinfo: 2,
            has_nfct: 1,
            zone_id: 5,
            zone_dir: 3,
            label,
            ..Default::default()
        };
        assert_eq!(
            skb_ct_text(&c, &bits),
            "CT_STATUS:0x8(NOT_TEMPLATE|CONFIRMED) CTINFO:2(IP_CT_NEW) NFCT_PTR:0xffff888000001002 SKBZoneID:5 SKBZoneDir:3(ORIG|REPL) CT_LABEL:0x00000000000000000000000000000001"
        );
        let ovs = OvsCtSnap {
            ct: 0,
            commit: 1,
            zone_id: 5,
            zone_dir: 3,
            ..Default::default()
        };
        assert_eq!(
            ovs_ct_text(&ovs),
            "OvsConInfoNFCT:0x0 OvsCommit:1 OvsZoneID:5 OvsZoneDir:3(ORIG|REPL)"
        );
        assert_eq!(
            ovs_ct_text(&OvsCtSnap {
                err: -1,
                ..Default::default()
            }),
            "OvsConInfoNFCT:N/A(Init) OvsCommit:N/A(Init) OvsZoneID:N/A(Init) OvsZoneDir:N/A(Init)"
        );
    }
}
