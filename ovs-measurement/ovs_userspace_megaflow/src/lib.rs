//! `ovs_userspace_megaflow`: when a packet misses the OVS kernel datapath,
//! which megaflow (key, mask, actions) does ovs-vswitchd install for it?
//! Upcall events (the packet at miss time) and OVS_FLOW_CMD_NEW events (the
//! flow put, decoded in user space from the whole netlink message), with the
//! megaflow in `ovs-dpctl dump-flows` notation and, with `--correlate`, the
//! upcall -> flow put delay.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use serde_json::{json, Value};

use shared::bpf;
use shared::cli::CommonArgs;
use shared::events::Drain;
use shared::fmt::mac;
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::output::Output;
use shared::ovs::{self, FlowMsg, KeyFields};
use shared::pkt::PktMeta;
use shared::runner::Session;
use shared::time::Clock;

pub mod filter;
use filter::{Fields, Filter, FilterArgs};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/ovs_userspace_megaflow.skel.rs"));
}
use skel::OvsUserspaceMegaflowSkelBuilder;

static HOOKS: &[HookPoint] = &[
    HookPoint {
        name: "ovs_dp_upcall",
        required: true,
        candidates: &[
            Candidate::new(Kind::TpBtf, "tp_btf_ovs_dp_upcall", "ovs_dp_upcall"),
            Candidate::new(Kind::Fentry, "fentry_ovs_dp_upcall", "ovs_dp_upcall"),
            Candidate::new(Kind::Kprobe, "kprobe_ovs_dp_upcall", "ovs_dp_upcall"),
        ],
    },
    HookPoint {
        name: "ovs_flow_cmd_new",
        required: true,
        candidates: &[
            Candidate::new(Kind::Fentry, "fentry_ovs_flow_cmd_new", "ovs_flow_cmd_new"),
            Candidate::new(Kind::Kprobe, "kprobe_ovs_flow_cmd_new", "ovs_flow_cmd_new"),
            Candidate::new(Kind::Uprobe, "uprobe_sendmsg", "libc:sendmsg").loses(
                "flow puts read from ovs-vswitchd's sendmsg (libc uprobe) instead of the kernel",
            ),
        ],
    },
];

/// Mirror of `struct up_event` (also the upcall record of
/// ovs_userspace_megaflow_kernel_parse).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct UpEvent {
    pub ty: u8,
    pub cmd: u8,
    pub has_info: u8,
    pub key_valid: u8,
    pub tgid: u32,
    pub tid: u32,
    pub portid: u32,
    pub in_port: u32,
    pub mark: u32,
    pub mru: u16,
    pub parsed: u8,
    pub pad: u8,
    pub recirc_id: u32,
    pub ts_ns: u64,
    pub comm: [u8; 16],
    pub pkt: PktMeta,
}
const _: () = assert!(std::mem::size_of::<UpEvent>() == 200);
// SAFETY: plain old data.
unsafe impl plain::Plain for UpEvent {}

/// Mirror of the header of `struct flow_event` (the message follows).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FlowHdr {
    ty: u8,
    source: u8,
    pad: u16,
    tgid: u32,
    tid: u32,
    portid: u32,
    skb_len: u32,
    msg_len: u32,
    copied: u32,
    pad2: u32,
    ts_ns: u64,
    comm: [u8; 16],
}
const FLOW_HDR: usize = std::mem::size_of::<FlowHdr>();
const _: () = assert!(FLOW_HDR == 56);
// SAFETY: plain old data.
unsafe impl plain::Plain for FlowHdr {}

#[derive(Parser, Debug)]
#[command(
    about = "Upcalls and the megaflows ovs-vswitchd installs for them: key, mask and actions of each flow put, in ovs-dpctl notation"
)]
pub struct Args {
    /// Also print events that do not match, parse details and why they did not match
    #[arg(long)]
    pub debug: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Pair each flow put with the latest matching upcall and print the delay
    #[arg(long)]
    pub correlate: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

struct Upcall {
    ts: u64,
    in_port: Option<u32>,
    recirc_id: Option<u32>,
    f: Fields,
}

#[derive(Default)]
pub struct Counts {
    pub upcalls: u64,
    pub upcalls_match: u64,
    pub flows: u64,
    pub flows_match: u64,
}

/// How a flow put reached user space.
pub struct FlowInfo {
    pub ts_ns: u64,
    pub tgid: u32,
    pub comm: String,
    pub portid: u32,
    pub skb_len: u32,
    pub msg_len: u32,
    /// "kernel", "sendmsg", or "bpf" (decoded in the kernel: kernel_parse)
    pub source: &'static str,
}

/// Output style: this tool, or ovs_userspace_megaflow_kernel_parse's lines.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Userspace,
    KernelParse,
}

pub struct State {
    pub out: Output,
    pub clock: Clock,
    pub filter: Filter,
    pub debug: bool,
    pub correlate: bool,
    recent: VecDeque<Upcall>,
    pub n: Counts,
    pub style: Style,
}

fn pkt_fields(p: &PktMeta) -> Fields {
    let v4 = |b: &[u8; 16]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    Fields {
        eth_src: (p.has_mac != 0).then_some(p.eth_src),
        eth_dst: (p.has_mac != 0).then_some(p.eth_dst),
        eth_type: (p.has_mac != 0).then_some(p.l3_proto),
        ip_src: (p.family == 4).then(|| v4(&p.saddr)),
        ip_dst: (p.family == 4).then(|| v4(&p.daddr)),
        ip_proto: (p.family != 0).then_some(p.l4proto),
        sport: (p.family != 0 && p.has_ports()).then_some(p.sport),
        dport: (p.family != 0 && p.has_ports()).then_some(p.dport),
    }
}

fn key_fields(k: &KeyFields) -> Fields {
    Fields {
        eth_src: k.eth_src,
        eth_dst: k.eth_dst,
        eth_type: k.eth_type,
        ip_src: k.ipv4_src,
        ip_dst: k.ipv4_dst,
        ip_proto: k.ip_proto,
        sport: k.sport,
        dport: k.dport,
    }
}

fn proto_text(p: Option<u8>) -> String {
    match p {
        Some(1) => "ICMP".into(),
        Some(6) => "TCP".into(),
        Some(17) => "UDP".into(),
        Some(58) => "ICMPv6".into(),
        Some(n) => format!("proto {n}"),
        None => "-".into(),
    }
}

fn opt_mac(m: Option<[u8; 6]>) -> String {
    m.map(|m| mac(&m)).unwrap_or_else(|| "-".into())
}

impl State {
    pub fn new(
        out: Output,
        clock: Clock,
        filter: Filter,
        debug: bool,
        correlate: bool,
        style: Style,
    ) -> Self {
        State {
            out,
            clock,
            filter,
            debug,
            correlate,
            recent: VecDeque::new(),
            n: Counts::default(),
            style,
        }
    }

    fn title(&self, what: &str, ok: bool) -> String {
        format!(
            "\n=== {what} EVENT ({}) ===",
            if ok { "filtered" } else { "debug - no match" }
        )
    }

    pub fn on_upcall(&mut self, e: &UpEvent) {
        self.n.upcalls += 1;
        let p = &e.pkt;
        let f = pkt_fields(p);
        let verdict = self.filter.check(&f);
        let ok = verdict.is_ok();
        if ok {
            self.n.upcalls_match += 1;
        }
        if self.correlate {
            self.recent.push_back(Upcall {
                ts: e.ts_ns,
                in_port: (e.key_valid != 0).then_some(e.in_port),
                recirc_id: (e.key_valid != 0).then_some(e.recirc_id),
                f: f.clone(),
            });
            if self.recent.len() > 4096 {
                self.recent.pop_front();
            }
        }
        if !ok && !self.debug {
            return;
        }
        let cmd = if e.has_info == 0 {
            "N/A".to_string()
        } else {
            match e.cmd {
                1 => "MISS".into(),
                2 => "ACTION".into(),
                n => n.to_string(),
            }
        };
        if self.out.json() {
            let mut v = json!({
                "type": "upcall",
                "ts_ns": e.ts_ns,
                "time": self.clock.rfc3339(e.ts_ns),
                "pid": e.tgid,
                "comm": shared::fmt::cstr(&e.comm),
                "portid": (e.has_info != 0).then_some(e.portid),
                "cmd": cmd,
                "mru": (e.has_info != 0).then_some(e.mru),
                "dev": p.ifname(),
                "in_port": (e.key_valid != 0).then_some(e.in_port),
                "recirc_id": (e.key_valid != 0).then_some(e.recirc_id),
                "mark": e.mark,
                "eth_src": opt_mac(f.eth_src),
                "eth_dst": opt_mac(f.eth_dst),
                "eth_type": f.eth_type.map(|t| format!("0x{t:04x}")),
                "ip_src": f.ip_src.map(|a| a.to_string()),
                "ip_dst": f.ip_dst.map(|a| a.to_string()),
                "ip_proto": f.ip_proto,
                "sport": f.sport,
                "dport": f.dport,
                "match": ok,
            });
            if let Err(m) = &verdict {
                v["mismatch"] = json!(m.reason);
            }
            self.out.event(&v);
            return;
        }
        let mut s = self.title("UPCALL", ok);
        s.push('\n');
        s.push_str(&format!(
            "Time: {} (kernel: {})\n",
            self.clock.hms(e.ts_ns),
            e.ts_ns
        ));
        s.push_str(&format!(
            "Process: {} (PID: {})\n",
            shared::fmt::cstr(&e.comm),
            e.tgid
        ));
        let na = |b: bool, v: String| if b { v } else { "N/A".into() };
        s.push_str(&format!(
            "PortID: {}, Device: {}\n",
            na(e.has_info != 0, e.portid.to_string()),
            p.ifname()
        ));
        s.push_str(&format!(
            "Upcall: cmd={cmd}, in_port={}, recirc_id={}\n",
            na(e.key_valid != 0, e.in_port.to_string()),
            na(e.key_valid != 0, e.recirc_id.to_string())
        ));
        s.push_str(&format!("SKB Mark: {:#x}\n", e.mark));
        s.push_str(&format!(
            "SKB Eth: {} -> {}, type=0x{:04x}\n",
            mac(&p.eth_src),
            mac(&p.eth_dst),
            p.l3_proto
        ));
        if let Some(a) = p.arp() {
            let _ = a;
            s.push_str("SKB ARP: Request/Reply packet (no IP/port info)\n");
        } else if p.family == 4 {
            let (a, b) = (f.ip_src.unwrap(), f.ip_dst.unwrap());
            if p.has_ports() {
                s.push_str(&format!(
                    "SKB IP: {a}:{} -> {b}:{} ({})\n",
                    p.sport,
                    p.dport,
                    proto_text(Some(p.l4proto))
                ));
            } else {
                s.push_str(&format!(
                    "SKB IP: {a} -> {b} ({})\n",
                    proto_text(Some(p.l4proto))
                ));
            }
        } else if p.family == 6 {
            s.push_str(&format!(
                "SKB IPv6: {} -> {} ({})\n",
                p.src_ip().unwrap(),
                p.dst_ip().unwrap(),
                proto_text(Some(p.l4proto))
            ));
        }
        if self.debug {
            s.push_str("Debug Fields:\n");
            s.push_str(&format!(
                "  Parse status: {}\n",
                if e.parsed == 0 {
                    "0 (ok)"
                } else {
                    "1 (read failed)"
                }
            ));
            let tname = match p.l3_proto {
                0x0800 => "IPv4",
                0x0806 => "ARP",
                0x86dd => "IPv6",
                0x8100 | 0x88a8 => "VLAN",
                _ => "other",
            };
            s.push_str(&format!(
                "  Ethernet type: 0x{:04x} ({tname})\n",
                p.l3_proto
            ));
            if let (Some(a), Some(b)) = (f.ip_src, f.ip_dst) {
                s.push_str(&format!(
                    "  IP src: {a} (0x{:08x}), IP dst: {b} (0x{:08x}), proto: {}\n",
                    u32::from(a),
                    u32::from(b),
                    p.l4proto
                ));
            }
            if let (Some(sp), Some(dp)) = (f.sport, f.dport) {
                s.push_str(&format!("  Ports: {sp} -> {dp}\n"));
            }
            if let Err(m) = &verdict {
                s.push_str("  Filter Status: Does not match filter conditions\n");
                s.push_str(&format!("    Reason: {}\n", m.reason));
                s.push_str(&format!(
                    "    Expected: {}, Actual: {}\n",
                    m.expected, m.actual
                ));
            }
        }
        s.push_str("==================================================");
        self.out.line(&s);
    }

    fn correlate(&mut self, ts: u64, k: &KeyFields) -> Option<u64> {
        let f = key_fields(k);
        let same = |u: &Upcall| {
            u.ts <= ts
                && (k.in_port.is_none() || u.in_port.is_none() || u.in_port == k.in_port)
                && (k.recirc_id.is_none() || u.recirc_id.is_none() || u.recirc_id == k.recirc_id)
                && f.eth_src == u.f.eth_src
                && f.eth_dst == u.f.eth_dst
                && (f.eth_type.is_none() || f.eth_type == u.f.eth_type)
                && (f.ip_src.is_none() || f.ip_src == u.f.ip_src)
                && (f.ip_dst.is_none() || f.ip_dst == u.f.ip_dst)
                && (f.ip_proto.is_none() || f.ip_proto == u.f.ip_proto)
                && (f.sport.is_none() || f.sport == u.f.sport)
                && (f.dport.is_none() || f.dport == u.f.dport)
        };
        self.recent
            .iter()
            .rev()
            .find(|u| same(u))
            .map(|u| ts - u.ts)
    }

    fn on_flow(&mut self, h: &FlowHdr, msg: &[u8]) {
        let parsed = ovs::parse_genl(msg);
        let (fm, perr) = match &parsed {
            Ok((g, _)) => {
                let m = FlowMsg::from_genl(g);
                let cut = (h.copied < h.msg_len).then(|| {
                    format!(
                        "message cut at {} of {} bytes (copy limit)",
                        h.copied, h.msg_len
                    )
                });
                let e = m.error.clone().or(cut);
                (Some(m), e)
            }
            Err(e) => (None, Some(e.clone())),
        };
        let info = FlowInfo {
            ts_ns: h.ts_ns,
            tgid: h.tgid,
            comm: shared::fmt::cstr(&h.comm),
            portid: h.portid,
            skb_len: h.skb_len,
            msg_len: h.msg_len,
            source: if h.source == 1 { "kernel" } else { "sendmsg" },
        };
        self.on_flow_msg(&info, fm, perr, msg);
    }

    /// Print one flow put (decoded message, or why it could not be).
    pub fn on_flow_msg(
        &mut self,
        h: &FlowInfo,
        fm: Option<FlowMsg>,
        perr: Option<String>,
        msg: &[u8],
    ) {
        self.n.flows += 1;
        let key = fm
            .as_ref()
            .and_then(|m| m.key.as_deref())
            .map(KeyFields::parse)
            .unwrap_or_default();
        let f = key_fields(&key);
        let verdict = self.filter.check(&f);
        let ok = verdict.is_ok() && fm.is_some();
        if ok {
            self.n.flows_match += 1;
        }
        if !ok && !self.debug {
            return;
        }
        let lat = if self.correlate && fm.is_some() {
            self.correlate(h.ts_ns, &key)
        } else {
            None
        };
        let comm = h.comm.clone();
        if self.out.json() {
            let mut v = json!({
                "type": "flow_new",
                "ts_ns": h.ts_ns,
                "time": self.clock.rfc3339(h.ts_ns),
                "pid": h.tgid,
                "comm": comm,
                "nl_portid": h.portid,
                "source": h.source,
                "msg_len": h.msg_len,
                "match": ok,
                "parse_error": perr,
                "upcall_latency_ns": lat,
            });
            if let Some(m) = &fm {
                let mask = m
                    .mask
                    .as_deref()
                    .map(|b| KeyFields::parse(b).json())
                    .unwrap_or(Value::Null);
                v["dp_ifindex"] = json!(m.dp_ifindex);
                v["ufid"] = json!(m.ufid_str());
                v["key"] = key.json();
                v["mask"] = mask;
                v["actions"] = json!(ovs::actions_json(m.actions.as_deref().unwrap_or(&[])));
                v["megaflow"] = json!(m.dpctl());
                v["mask_text"] = json!(m.mask.as_deref().map(ovs::format_mask));
            }
            if let Err(mm) = &verdict {
                v["mismatch"] = json!(mm.reason);
            }
            self.out.event(&v);
            return;
        }
        let mut s = self.title("FLOW CMD NEW", ok);
        s.push('\n');
        s.push_str(&format!(
            "Time: {} (kernel: {})\n",
            self.clock.hms(h.ts_ns),
            h.ts_ns
        ));
        s.push_str(&format!("Process: {comm} (PID: {})\n", h.tgid));
        let kp = self.style == Style::KernelParse;
        if kp {
            s.push_str(&format!(
                "DP: ifindex={}, Netlink PortID: {}\n",
                fm.as_ref().map(|m| m.dp_ifindex).unwrap_or(0),
                h.portid
            ));
        } else {
            s.push_str(&format!("Netlink PortID: {}\n", h.portid));
            s.push_str(&format!("SKB: len={}, data_len={}\n", h.skb_len, h.msg_len));
        }
        let Some(m) = &fm else {
            s.push_str("Warning: Netlink message parsing failed\n");
            s.push_str(&format!("Error: {}\n", perr.unwrap_or_default()));
            s.push_str("==================================================");
            self.out.line(&s);
            return;
        };
        let ip = |a: Option<Ipv4Addr>| a.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        let l4 = match (key.sport, key.dport) {
            (Some(a), Some(b)) => (format!(":{a}"), format!(":{b}")),
            _ => (String::new(), String::new()),
        };
        if !kp {
            s.push_str(&format!(
                "Packet: Eth: {} -> {}, {}{} -> {}{} ({})\n",
                opt_mac(key.eth_src),
                opt_mac(key.eth_dst),
                ip(key.ipv4_src),
                l4.0,
                ip(key.ipv4_dst),
                l4.1,
                proto_text(key.ip_proto)
            ));
        }
        let o = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "Key: recirc_id={}, in_port={}, mark={}\n",
            o(key.recirc_id),
            o(key.in_port),
            key.skb_mark
                .map(|m| format!("{m:#x}"))
                .unwrap_or_else(|| "-".into())
        ));
        s.push_str(&format!(
            "{} {} -> {}, type={}\n",
            if kp { "Eth:" } else { "Key Eth:" },
            opt_mac(key.eth_src),
            opt_mac(key.eth_dst),
            key.eth_type
                .map(|t| format!("0x{t:04x}"))
                .unwrap_or_else(|| "-".into())
        ));
        if key.ipv4_src.is_some() {
            s.push_str(&format!(
                "Key IP: {}{} {}{} ({})\n",
                ip(key.ipv4_src),
                l4.0,
                ip(key.ipv4_dst),
                l4.1,
                proto_text(key.ip_proto)
            ));
        }
        let mk = m.mask.as_deref().map(KeyFields::parse).unwrap_or_default();
        if m.mask.is_some() {
            s.push_str(&format!(
                "Mask Eth: {} -> {}\n",
                opt_mac(mk.eth_src),
                opt_mac(mk.eth_dst)
            ));
            if kp && mk.eth_src == Some([0; 6]) && mk.eth_dst == Some([0; 6]) {
                s.push_str("Warning: Mask parse may be wrong - all fields are 0\n");
            }
        }
        s.push_str(&format!(
            "Actions: {}\n",
            ovs::actions_brief(m.actions.as_deref().unwrap_or(&[]))
        ));
        s.push_str(&format!("Megaflow: {}\n", m.dpctl()));
        if let Some(mask) = m.mask.as_deref() {
            s.push_str(&format!("Mask: {}\n", ovs::format_mask(mask)));
        }
        if let Some(u) = m.ufid_str() {
            s.push_str(&format!("UFID: {u}\n"));
        }
        let yn = |b: bool| if b { "yes" } else { "no" };
        if kp {
            s.push_str(&format!(
                "Netlink: has_key={}, has_mask={}\n",
                yn(m.key.is_some()),
                yn(m.mask.is_some())
            ));
        } else {
            s.push_str(&format!(
                "Netlink: has_key={}, has_mask={}, has_actions={}\n",
                yn(m.key.is_some()),
                yn(m.mask.is_some()),
                yn(m.actions.is_some())
            ));
        }
        if self.correlate {
            match lat {
                Some(ns) => s.push_str(&format!("Upcall->FlowNew: {:.3} ms\n", ns as f64 / 1e6)),
                None => s.push_str("Upcall->FlowNew: no matching upcall seen\n"),
            }
        }
        if let Some(err) = &perr {
            s.push_str("Warning: Netlink message parsing failed\n");
            s.push_str(&format!("Error: {err}\n"));
            if self.debug {
                let head: Vec<String> = msg.iter().take(16).map(|b| format!("{b:02x}")).collect();
                s.push_str(&format!(
                    "Detailed parsing error: {err}; first 16 bytes: {}\n",
                    head.join(" ")
                ));
            }
        }
        if self.debug {
            s.push_str(&format!("Debug - Parsed Key fields: {}\n", key.json()));
            if let Err(mm) = &verdict {
                s.push_str("Warning: Does not match filter conditions\n");
                s.push_str(&format!("    Reason: {}\n", mm.reason));
                s.push_str(&format!(
                    "    Expected: {}, Actual: {}\n",
                    mm.expected, mm.actual
                ));
                s.push_str(&format!("    Available fields: {}\n", f.available()));
            }
        }
        s.push_str("==================================================");
        self.out.line(&s);
    }

    fn on_event(&mut self, data: &[u8]) {
        match data.first() {
            Some(1) => {
                let mut e = UpEvent::default();
                if plain::copy_from_bytes(&mut e, data).is_ok() {
                    self.on_upcall(&e);
                }
            }
            Some(2) if data.len() >= FLOW_HDR => {
                let mut h = FlowHdr::default();
                if plain::copy_from_bytes(&mut h, &data[..FLOW_HDR]).is_ok() {
                    let n = (h.copied as usize).min(data.len() - FLOW_HDR);
                    self.on_flow(&h, &data[FLOW_HDR..FLOW_HDR + n]);
                }
            }
            _ => {}
        }
    }

    pub fn summary(&mut self) {
        let c = &self.n;
        if self.out.json() {
            let v = json!({"type": "summary", "total_upcalls": c.upcalls,
                "filtered_upcalls": c.upcalls_match, "total_flows": c.flows,
                "filtered_flows": c.flows_match});
            self.out.event(&v);
            return;
        }
        let mut s = String::from("User interrupted...\n");
        s.push_str("============================================================\n");
        s.push_str("=== Statistics Summary ===\n\nStatistics:\n");
        s.push_str(&format!("   Total upcalls: {}\n", c.upcalls));
        s.push_str(&format!("   Filtered upcalls: {}\n", c.upcalls_match));
        s.push_str(&format!("   Total flows: {}\n", c.flows));
        s.push_str(&format!("   Filtered flows: {}\n", c.flows_match));
        if c.upcalls > 0 {
            s.push_str(&format!(
                "   Upcall filter rate: {:.2}%\n",
                100.0 * c.upcalls_match as f64 / c.upcalls as f64
            ));
        }
        if c.flows > 0 {
            s.push_str(&format!(
                "   Flow filter rate: {:.2}%\n",
                100.0 * c.flows_match as f64 / c.flows as f64
            ));
        }
        s.push_str("============================================================");
        self.out.line(&s);
    }
}

pub fn run() {
    let args: Args = shared::cli::parse();
    let filter = Filter::from_args(&args.filter);
    let mut out = Output::stdout(args.common.json);
    let mut session = Session::start(args.common.duration, args.common.verbose);
    if !args.common.explain {
        ovs::require_datapath();
    }
    let (_kernel, mut plan) = bpf::plan(&args.common, HOOKS);

    // Flow puts from vswitchd's sendmsg when the kernel side cannot be probed.
    let by_sendmsg = plan.chosen("ovs_flow_cmd_new").map(|c| c.kind) == Some(Kind::Uprobe);
    let mut sendmsg = None;
    let mut family = 0u16;
    if by_sendmsg {
        let pid = ovs::vswitchd_pid().unwrap_or_else(|| {
            shared::die(
                shared::EXIT_RUNTIME,
                "no hook for flow installs on this kernel and ovs-vswitchd is not running (its sendmsg would be traced)",
            )
        });
        let t = shared::uprobe::resolve(None, Some(pid), "sendmsg", &[])
            .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
        family = ovs::genl_family_id("ovs_flow")
            .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
        plan.set_target("ovs_flow_cmd_new", format!("{} (pid {pid})", t.describe()));
        sendmsg = Some((pid, t));
    }

    let mut open_object = MaybeUninit::uninit();
    let mut open = OvsUserspaceMegaflowSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    if let Some((pid, _)) = &sendmsg {
        let o = open.open_object_mut();
        bpf::set_rodata(o, "vswitchd_tgid", &pid.to_ne_bytes())
            .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
        bpf::set_rodata(o, "flow_family", &family.to_ne_bytes())
            .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    }
    let mut skel = bpf::load(open);
    let mut links = bpf::attach(&plan, &mut skel);
    if let Some((pid, t)) = &sendmsg {
        let prog = shared::uprobe::prog_mut(skel.object_mut(), "uprobe_sendmsg")
            .unwrap_or_else(|| shared::die(shared::EXIT_RUNTIME, "no program uprobe_sendmsg"));
        links.push(
            shared::uprobe::attach(&prog, false, Some(*pid), t)
                .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e)),
        );
    }

    out.banner("OVS Megaflow Tracker V8");
    let lines = filter.describe();
    if lines.is_empty() {
        out.banner("No filters configured - showing all events");
    } else {
        out.banner("Filter Configuration:");
        for l in lines {
            out.banner(&format!("  {l}"));
        }
    }
    out.banner("Attached to ovs_dp_upcall");
    out.banner(if by_sendmsg {
        "Attached to ovs-vswitchd sendmsg (flow puts)"
    } else {
        "Attached to ovs_flow_cmd_new"
    });
    if !ovs::module_btf() {
        out.banner(
            "Note: no BTF for the openvswitch module: upcall type, portid, input port are N/A.",
        );
    }

    let state = RefCell::new(State::new(
        out,
        session.clock,
        filter,
        args.debug,
        args.correlate,
        Style::Userspace,
    ));
    let obj = skel.object();
    let drain = Drain::open(obj, channel, |d| state.borrow_mut().on_event(d))
        .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    session.attached(&plan.summary());
    if let Err(e) = session.run(|t| drain.poll(t), || {}) {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    drain.flush();
    let lost = drain.lost(obj);
    let mut st = state.borrow_mut();
    st.summary();
    eprintln!(
        "Summary: {} upcalls, {} flow puts, {lost} events lost",
        st.n.upcalls, st.n.flows
    );
    session.verbose_footer();
}
