//! `eth_drop`: frames of any EtherType (ARP, IPv4, IPv6, LLDP, pause, ...) the
//! kernel frees as dropped (skb:kfree_skb), with their Ethernet/VLAN and L3
//! headers, the interface, the drop reason by name, the freeing location and the
//! kernel stack.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel};
use libbpf_rs::{MapCore, Object};
use serde_json::{json, Value};

use shared::bpf;
use shared::cli::{
    parse_ethertype, parse_ifname, parse_ipv4, parse_port, parse_vlan_id, usage_error, CommonArgs,
    EtherTypeFilter, PacketFilterArgs, Protocol,
};
use shared::filter::RawPktFilter;
use shared::fmt::{cstr, hex_bytes, mac};
use shared::hooks::Kind;
use shared::kfree_skb;
use shared::ksyms::Kallsyms;
use shared::netdev;
use shared::output::Output;
use shared::pkt::PktMeta;
use shared::reasons::DropReasons;
use shared::runner::Session;
use shared::stacks::read_stack;
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/eth_drop.skel.rs"));
}
use skel::EthDropSkelBuilder;

/// The ways to reach a drop, best first (shared with `drop`).
pub use shared::kfree_skb::HOOKS;

/// Mirror of `struct eth_drop_event` (src/bpf/eth_drop.bpf.c).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct EthDropEvent {
    ts_ns: u64,
    location: u64,
    tid: u32,
    tgid: u32,
    comm: [u8; 16],
    kstack_id: i32,
    reason: u32,
    has_reason: u8,
    pad: [u8; 3],
    pkt: PktMeta,
}
const _: () = assert!(std::mem::size_of::<EthDropEvent>() == 192);
// SAFETY: plain old data.
unsafe impl plain::Plain for EthDropEvent {}

#[derive(Parser, Debug)]
#[command(
    about = "Trace frames of any EtherType the kernel drops: Ethernet/VLAN and L3 headers, interface, reason, location, kernel stack",
    after_help = "The address, --l4-protocol and port filters restrict IPv4 frames only: frames of \
other EtherTypes (ARP, IPv6, ...) still match unless --type excludes them. A port filter \
excludes IPv4 frames without TCP/UDP ports. --verbose also prints each skb's lengths and \
header offsets and the first 32 payload bytes of \"other\" frames."
)]
pub struct Args {
    /// EtherType after VLAN tags: arp, rarp, ipv4, ipv6, lldp, flow_control,
    /// other (none of these), all, or 0xXXXX
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_ethertype, default_value = "all")]
    pub ethertype: EtherTypeFilter,

    /// L4 protocol of IPv4 frames
    #[arg(long, value_enum, default_value_t = Protocol::All)]
    pub l4_protocol: Protocol,

    /// IPv4 source address (restricts IPv4 frames only)
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub src: Option<Ipv4Addr>,

    /// IPv4 destination address (restricts IPv4 frames only)
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub dst: Option<Ipv4Addr>,

    /// TCP/UDP source port of IPv4 frames (1-65535)
    #[arg(long, value_name = "PORT", value_parser = parse_port, allow_hyphen_values = true)]
    pub src_port: Option<u16>,

    /// TCP/UDP destination port of IPv4 frames (1-65535)
    #[arg(long, value_name = "PORT", value_parser = parse_port, allow_hyphen_values = true)]
    pub dst_port: Option<u16>,

    /// VLAN id (1-4094): the outer 802.1Q/802.1ad tag in the frame, else the skb's accelerated tag
    #[arg(long, value_name = "ID", value_parser = parse_vlan_id, allow_hyphen_values = true)]
    pub vlan_id: Option<u16>,

    /// Only drops on this device (name compared in the kernel, so devices of other network namespaces work)
    #[arg(long, value_name = "IFNAME", value_parser = parse_ifname)]
    pub interface: Option<String>,

    /// Do not print the kernel stack
    #[arg(long)]
    pub no_stack_trace: bool,

    /// Also show normal frees (freed from icmp_rcv, tcp_v4_rcv, ... without a drop reason)
    #[arg(long)]
    pub disable_normal_filter: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

impl Args {
    /// The packet filter the BPF program reads from .rodata.
    pub fn filter(&self) -> RawPktFilter {
        let mut f = RawPktFilter::from_args(&PacketFilterArgs {
            src: self.src.map(Into::into),
            dst: self.dst.map(Into::into),
            protocol: self.l4_protocol,
            src_port: self.src_port,
            dst_port: self.dst_port,
        });
        f.set_ethertype(self.ethertype);
        f.vlan = self.vlan_id.unwrap_or(0);
        if let Some(i) = &self.interface {
            f.set_ifname(i);
        }
        f
    }
}

/// Functions whose plain frees are normal releases, not drops (the original's list).
const NORMAL_FREERS: &[&str] = &[
    "icmp_rcv",
    "tcp_v4_rcv",
    "tcp_v4_do_rcv",
    "skb_release_data",
    "__kfree_skb",
    "tcp_recvmsg",
    "sk_stream_kill_queues",
];

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_RARP: u16 = 0x8035;
const UNSET: u16 = 0xffff;

/// The L3 kind of a frame by its inner EtherType.
fn l3_kind(ethertype: u16) -> &'static str {
    match ethertype {
        ETH_P_IP => "ipv4",
        ETH_P_IPV6 => "ipv6",
        ETH_P_ARP => "arp",
        ETH_P_RARP => "rarp",
        _ => "other",
    }
}

fn hex16(v: u16) -> String {
    format!("0x{v:04x}")
}

fn offset(v: u16) -> Value {
    if v == UNSET {
        Value::Null
    } else {
        json!(v)
    }
}

fn offset_text(v: u16) -> String {
    if v == UNSET {
        "unset".into()
    } else {
        v.to_string()
    }
}

/// Is a free at `location` (function+off) one of the normal releases? With a
/// drop reason only an unspecified one can be (as in `drop`: a NO_SOCKET drop
/// in tcp_v4_rcv is a real drop).
fn is_normal_free(location: Option<&str>, reason: Option<u32>, not_specified: Option<u32>) -> bool {
    let Some(loc) = location else { return false };
    let func = loc.split('+').next().unwrap_or("");
    let listed = NORMAL_FREERS.iter().any(|f| func.contains(f));
    match reason {
        Some(r) => listed && Some(r) == not_specified,
        None => listed,
    }
}

/// The L3 part of the text block (after the Ethernet header).
fn l3_text(p: &PktMeta, verbose: bool) -> String {
    let mut s = String::new();
    let prefix = if p.has_vlan != 0 {
        format!("[VLAN {}] ", p.vlan_id)
    } else {
        String::new()
    };
    let ports = |s: &mut String| {
        if p.has_ports() && p.frag_off & 0x1fff == 0 {
            let name = if p.l4proto == 6 { "TCP" } else { "UDP" };
            s.push_str(&format!("  {name} Ports: {} -> {}\n", p.sport, p.dport));
        }
    };
    match l3_kind(p.l3_proto) {
        "ipv4" => {
            s.push_str(&format!("{prefix}IPv4 PACKET\n"));
            if p.family != 4 {
                s.push_str("IPv4 Header: N/A (not readable in this skb)\n");
                return s;
            }
            let src = p.src_ip().map(|a| a.to_string()).unwrap_or_default();
            let dst = p.dst_ip().map(|a| a.to_string()).unwrap_or_default();
            s.push_str("IPv4 Header:\n");
            s.push_str("  Version:    4\n");
            s.push_str(&format!("  ToS:        0x{:02x}\n", p.tos));
            s.push_str(&format!("  Length:     {}\n", p.ip_len));
            s.push_str(&format!("  ID:         0x{:04x}\n", p.ip_id));
            s.push_str(&format!("  TTL:        {}\n", p.ttl));
            s.push_str(&format!("  Protocol:   {}\n", p.l4proto));
            s.push_str(&format!("  Source IP:  {src}\n"));
            s.push_str(&format!("  Dest IP:    {dst}\n"));
            ports(&mut s);
        }
        "ipv6" => {
            s.push_str(&format!("{prefix}IPv6 PACKET\n"));
            if p.family != 6 {
                s.push_str("IPv6 Header: N/A (not readable in this skb)\n");
                return s;
            }
            let src = p.src_ip().map(|a| a.to_string()).unwrap_or_default();
            let dst = p.dst_ip().map(|a| a.to_string()).unwrap_or_default();
            s.push_str("IPv6 Header:\n");
            s.push_str("  Version:     6\n");
            s.push_str(&format!("  Payload Len: {}\n", p.ip_len));
            s.push_str(&format!("  Next Header: {}\n", p.l4proto));
            s.push_str(&format!("  Hop Limit:   {}\n", p.ttl));
            s.push_str(&format!("  Source IP:   {src}\n"));
            s.push_str(&format!("  Dest IP:     {dst}\n"));
            ports(&mut s);
        }
        kind @ ("arp" | "rarp") => {
            let (name, rarp) = if kind == "arp" {
                ("ARP", false)
            } else {
                ("RARP", true)
            };
            s.push_str(&format!("{prefix}{name} PACKET\n"));
            let Some(a) = p.arp() else {
                s.push_str(&format!("{name} Header: N/A (not readable in this skb)\n"));
                return s;
            };
            s.push_str(&format!("{name} Header:\n"));
            s.push_str(&format!("  Hardware Type: 0x{:04x}\n", a.hrd));
            s.push_str(&format!("  Protocol Type: 0x{:04x}\n", a.pro));
            s.push_str(&format!("  Operation:     {}\n", a.op_name(rarp)));
            s.push_str(&format!("  Sender MAC:    {}\n", mac(&a.sha)));
            s.push_str(&format!("  Sender IP:     {}\n", a.sip));
            s.push_str(&format!("  Target MAC:    {}\n", mac(&a.tha)));
            s.push_str(&format!("  Target IP:     {}\n", a.tip));
        }
        _ => {
            s.push_str(&format!("{prefix}OTHER PROTOCOL\n"));
            s.push_str(&format!("  EtherType: 0x{:04x}\n", p.l3_proto));
            if verbose {
                s.push_str(&format!(
                    "  Payload (first 32 bytes): {}\n",
                    hex_bytes(&p.l2_payload)
                ));
            }
        }
    }
    s
}

/// The L3 part of the JSON object: `l3` and one of ipv4/ipv6/arp/rarp/other.
fn l3_json(p: &PktMeta, v: &mut Value) {
    let kind = l3_kind(p.l3_proto);
    v["l3"] = json!(kind);
    let l4 = |o: &mut Value| {
        if p.frag_off & 0x1fff != 0 {
            return;
        }
        if p.has_ports() {
            o["sport"] = json!(p.sport);
            o["dport"] = json!(p.dport);
        } else if p.is_icmp() {
            o["icmp_type"] = json!(p.icmp_type);
            o["icmp_code"] = json!(p.icmp_code);
        }
    };
    match kind {
        "ipv4" if p.family == 4 => {
            let mut o = json!({
                "version": 4,
                "tos": p.tos,
                "len": p.ip_len,
                "id": p.ip_id,
                "ttl": p.ttl,
                "protocol": p.l4proto,
                "saddr": p.src_ip().map(|a| a.to_string()),
                "daddr": p.dst_ip().map(|a| a.to_string()),
            });
            l4(&mut o);
            v["ipv4"] = o;
        }
        "ipv6" if p.family == 6 => {
            let mut o = json!({
                "version": 6,
                "payload_len": p.ip_len,
                "next_header": p.l4proto,
                "hop_limit": p.ttl,
                "saddr": p.src_ip().map(|a| a.to_string()),
                "daddr": p.dst_ip().map(|a| a.to_string()),
            });
            l4(&mut o);
            v["ipv6"] = o;
        }
        "ipv4" | "ipv6" => v[kind] = Value::Null,
        "arp" | "rarp" => {
            v[kind] = match p.arp() {
                Some(a) => json!({
                    "hrd": a.hrd,
                    "pro": hex16(a.pro),
                    "op": a.op,
                    "op_name": a.op_name(kind == "rarp"),
                    "sha": mac(&a.sha),
                    "sip": a.sip.to_string(),
                    "tha": mac(&a.tha),
                    "tip": a.tip.to_string(),
                }),
                None => Value::Null,
            };
        }
        _ => {
            v["other"] = json!({
                "ethertype": hex16(p.l3_proto),
                "payload_hex": p.l2_payload.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            });
        }
    }
}

struct State {
    out: Output,
    clock: Clock,
    ksyms: Kallsyms,
    reasons: DropReasons,
    not_specified: Option<u32>,
    normal_filter: bool,
    show_stack: bool,
    verbose: bool,
    printed: u64,
    hidden: u64,
}

impl State {
    fn on_event(&mut self, obj: &Object, data: &[u8]) {
        let mut e = EthDropEvent::default();
        if plain::copy_from_bytes(&mut e, data).is_err() {
            return;
        }
        let kaddrs = if e.kstack_id == -1 && !self.show_stack {
            Ok(Vec::new()) // not captured (--no-stack-trace)
        } else {
            match obj.maps().find(|m| m.name().to_string_lossy() == "stacks") {
                Some(m) => read_stack(&m as &dyn MapCore, e.kstack_id),
                None => Err("no stack map".into()),
            }
        };
        let kstack: Vec<String> = match &kaddrs {
            Ok(a) => self.ksyms.format_stack(a),
            Err(_) => Vec::new(),
        };
        let location = if e.location != 0 {
            Some(self.ksyms.format(e.location))
        } else {
            // fentry: taken from the stack.
            Some(kfree_skb::location_from_stack(&kstack)).filter(|l| !l.is_empty())
        };
        let reason_code = (e.has_reason != 0).then_some(e.reason);
        if self.normal_filter
            && is_normal_free(location.as_deref(), reason_code, self.not_specified)
        {
            self.hidden += 1;
            return;
        }
        self.printed += 1;
        let p = &e.pkt;
        let comm = cstr(&e.comm);
        let reason = match reason_code {
            Some(r) => self.reasons.name(r),
            None => "N/A".to_string(),
        };
        let ifname = p.ifname();

        if self.out.json() {
            let mut v = json!({
                "ts": self.clock.rfc3339(e.ts_ns),
                "time": self.clock.rfc3339(e.ts_ns),
                "ts_ns": e.ts_ns,
                "pid": e.tid,
                "tgid": e.tgid,
                "comm": comm,
                "ifname": ifname,
                "reason": reason,
                "reason_code": reason_code,
                "location": location,
                "eth": if p.has_mac != 0 {
                    json!({"src": p.src_mac(), "dst": p.dst_mac(), "type": hex16(p.eth_type)})
                } else {
                    Value::Null
                },
                "vlan": if p.has_vlan != 0 {
                    json!({
                        "id": p.vlan_id,
                        "prio": p.vlan_prio,
                        "inner": hex16(p.l3_proto),
                        "accel": p.has_vlan == 2,
                    })
                } else {
                    Value::Null
                },
                "skb": {
                    "len": p.len,
                    "data_len": p.data_len,
                    "mac": offset(p.mac_off),
                    "net": offset(p.net_off),
                    "trans": offset(p.trans_off),
                },
                "kstack": if self.show_stack { json!(kstack) } else { Value::Null },
            });
            l3_json(p, &mut v);
            self.out.event(&v);
            return;
        }

        let mut s = format!(
            "[{}] PID: {} COMM: {}\n",
            self.clock.hms(e.ts_ns),
            e.tid,
            comm
        );
        if self.verbose {
            s.push_str("Debug Info:\n");
            s.push_str(&format!(
                "  SKB Length: {} bytes, Data Length: {} bytes\n",
                p.len, p.data_len
            ));
            s.push_str(&format!(
                "  MAC Header Offset: {}, Network Header Offset: {}, Transport Header Offset: {}\n",
                offset_text(p.mac_off),
                offset_text(p.net_off),
                offset_text(p.trans_off)
            ));
        }
        if p.has_vlan != 0 {
            s.push_str(&format!(
                "VLAN ID: {}, Priority: {}, Inner Protocol: 0x{:04x}\n",
                p.vlan_id, p.vlan_prio, p.l3_proto
            ));
        }
        if p.has_mac != 0 {
            s.push_str("Ethernet Header:\n");
            s.push_str(&format!("  Source MAC: {}\n", p.src_mac()));
            s.push_str(&format!("  Dest MAC:   {}\n", p.dst_mac()));
            s.push_str(&format!("  EtherType:  0x{:04x}\n", p.eth_type));
        } else {
            s.push_str("Ethernet Header: N/A (no link-layer header in this skb)\n");
        }
        s.push_str(&l3_text(p, self.verbose));
        s.push_str(&format!(
            "Interface: {}\n",
            if ifname.is_empty() { "N/A" } else { &ifname }
        ));
        s.push_str(&format!(
            "Reason: {}  Location: {}\n",
            reason,
            location.as_deref().unwrap_or("N/A")
        ));
        if self.show_stack {
            s.push_str("Stack trace:\n");
            match &kaddrs {
                Ok(_) if kstack.is_empty() => s.push_str("  No kernel stack frames found\n"),
                Ok(_) => kstack.iter().for_each(|f| s.push_str(&format!("  {f}\n"))),
                Err(err) => s.push_str(&format!(
                    "  Failed to capture kernel stack trace (Error: {}, code: {})\n",
                    err, e.kstack_id
                )),
            }
        }
        s.push_str(&"-".repeat(80));
        self.out.line(&s);
    }
}

pub fn run() {
    let args: Args = shared::cli::parse();
    if let Some(name) = &args.interface {
        if netdev::find(name).is_none() {
            // Named network namespaces are only visible to root.
            if !args.common.explain {
                bpf::require_root();
            }
            usage_error(format!(
                "invalid value '{name}' for '--interface': no such interface in this or any named network namespace"
            ));
        }
    }
    let mut out = Output::stdout(args.common.json);
    let mut session = Session::start(args.common.duration, args.common.verbose);
    let (kernel, plan) = bpf::plan(&args.common, HOOKS);
    let chosen = plan.chosen(kfree_skb::HOOK_NAME);
    let normal_filter = !args.disable_normal_filter;
    // fentry has no location argument: it is taken from the stack.
    let want_kstack = !args.no_stack_trace
        || (normal_filter && chosen.map(|c| c.kind == Kind::Fentry).unwrap_or(false));

    let mut open_object = MaybeUninit::uninit();
    let mut open = bpf::open(EthDropSkelBuilder::default(), &mut open_object);
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    let cfg = |o: &mut libbpf_rs::OpenObject, name: &str, b: &[u8]| {
        bpf::set_rodata(o, name, b).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e))
    };
    cfg(open.open_object_mut(), "FILTER", args.filter().as_bytes());
    cfg(
        open.open_object_mut(),
        "want_kstack",
        &[u8::from(want_kstack)],
    );
    let mut skel = bpf::load(open);
    let _links = bpf::attach(&plan, &mut skel);

    let reasons = DropReasons::load(&kernel.btf);
    let not_specified = reasons.code("NOT_SPECIFIED");
    let has_reason = kfree_skb::plan_has_reason(&plan);

    // Banner (stderr in JSON mode).
    let any = |a: Option<Ipv4Addr>| a.map(|x| x.to_string()).unwrap_or_else(|| "any".into());
    out.banner("Enhanced Ethernet Packet Drop Monitor");
    out.banner(&format!(
        "Protocol filter: {} (0x{:04x})",
        args.ethertype.name(),
        args.ethertype.value()
    ));
    out.banner(&format!("L4 Protocol filter: {}", args.l4_protocol.name()));
    out.banner(&format!("Source IP: {}", any(args.src)));
    out.banner(&format!("Destination IP: {}", any(args.dst)));
    if args.src_port.is_some() || args.dst_port.is_some() {
        let port = |p: Option<u16>| p.map(|x| x.to_string()).unwrap_or_else(|| "any".into());
        out.banner(&format!("Source port: {}", port(args.src_port)));
        out.banner(&format!("Destination port: {}", port(args.dst_port)));
    }
    if let Some(v) = args.vlan_id {
        out.banner(&format!("VLAN ID filter: {v}"));
    }
    if let Some(i) = &args.interface {
        out.banner(&format!("Interface filter: {i}"));
    }
    let on_off = |b: bool| if b { "ON" } else { "OFF" };
    out.banner(&format!("Verbose mode: {}", on_off(args.common.verbose)));
    out.banner(&format!("Stack trace: {}", on_off(!args.no_stack_trace)));
    out.banner(&format!("Normal pattern filter: {}", on_off(normal_filter)));
    if !has_reason {
        out.banner("Note: this kernel reports no drop reason here; Reason shows N/A.");
    }
    out.banner(&"-".repeat(80));
    out.banner("Starting packet drop monitoring... Press Ctrl+C to stop");

    let state = RefCell::new(State {
        out,
        clock: session.clock,
        ksyms: Kallsyms::new(),
        reasons,
        not_specified,
        normal_filter,
        show_stack: !args.no_stack_trace,
        verbose: args.common.verbose,
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
    st.out.banner("Stopping packet drop monitoring...");
    eprintln!(
        "Summary: {} drops reported, {} normal frees hidden, {} events lost",
        st.printed, st.hidden, lost
    );
    session.verbose_footer();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("eth_drop").chain(args.iter().copied()))
    }

    #[test]
    fn flags_build_the_filter() {
        let a = parse(&[
            "--type",
            "arp",
            "--vlan-id",
            "100",
            "--interface",
            "veth0",
            "--src",
            "10.0.0.1",
            "--l4-protocol",
            "udp",
            "--dst-port",
            "53",
        ])
        .unwrap();
        let f = a.filter();
        assert_eq!(f.ethertype, 0x0806);
        assert_eq!(f.ethertype_other, 0);
        assert_eq!(f.vlan, 100);
        assert_eq!(&f.ifname[..6], b"veth0\0");
        assert_eq!(&f.saddr[..4], &[10, 0, 0, 1]);
        assert_eq!(
            (f.family, f.l4proto, f.dport, f.ports_need_l4),
            (4, 17, 53, 1)
        );
        let o = parse(&["--type", "other"]).unwrap().filter();
        assert_eq!((o.ethertype, o.ethertype_other), (0, 1));
        let all = parse(&[]).unwrap().filter();
        assert_eq!(all, RawPktFilter::default());
    }

    #[test]
    fn bad_flags_are_rejected() {
        for bad in [
            &["--type", "foo"][..],
            &["--type", "0xZZ"],
            &["--type", "0x10000"],
            &["--vlan-id", "5000"],
            &["--vlan-id", "0"],
            &["--interface", "a234567890123456"],
            &["--src", "10.0.0.256"],
            &["--src", "fe80::1"],
            &["--dst", "foo"],
            &["--src-port", "70000"],
            &["--dst-port", "-1"],
            &["--l4-protocol", "sctp"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn normal_frees() {
        let ns = Some(2);
        assert!(is_normal_free(Some("icmp_rcv+0x1a"), None, ns));
        assert!(is_normal_free(Some("tcp_v4_rcv+0x9"), Some(2), ns));
        // A real drop reason in a listed function is a drop.
        assert!(!is_normal_free(Some("tcp_v4_rcv+0x9"), Some(3), ns));
        assert!(!is_normal_free(Some("nf_hook_slow+0x9"), None, ns));
        assert!(!is_normal_free(None, None, ns));
    }

    fn arp_meta() -> PktMeta {
        let mut p = PktMeta {
            l3_proto: ETH_P_ARP,
            eth_type: 0x8100,
            has_mac: 1,
            has_vlan: 1,
            vlan_id: 100,
            ..Default::default()
        };
        let hdr: [u8; 28] = [
            0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 99, 0, 1, 0, 0, 0, 0, 0, 0, 10, 99, 0, 2,
        ];
        p.l2_payload[..28].copy_from_slice(&hdr);
        p
    }

    #[test]
    fn arp_block() {
        let t = l3_text(&arp_meta(), false);
        assert!(t.starts_with("[VLAN 100] ARP PACKET\nARP Header:\n"), "{t}");
        assert!(t.contains("  Operation:     Request\n"));
        assert!(t.contains("  Sender MAC:    02:00:00:00:00:01\n"));
        assert!(t.contains("  Sender IP:     10.99.0.1\n"));
        assert!(t.contains("  Target IP:     10.99.0.2\n"));
        let mut v = json!({});
        l3_json(&arp_meta(), &mut v);
        assert_eq!(v["l3"], "arp");
        assert_eq!(v["arp"]["op_name"], "Request");
        assert_eq!(v["arp"]["sip"], "10.99.0.1");
    }

    #[test]
    fn ipv6_and_other_blocks() {
        let mut p = PktMeta {
            l3_proto: ETH_P_IPV6,
            family: 6,
            l4proto: 58,
            ttl: 64,
            ip_len: 64,
            icmp_type: 128,
            ..Default::default()
        };
        p.saddr[0] = 0xfd;
        p.saddr[15] = 1;
        let t = l3_text(&p, false);
        assert!(t.starts_with("IPv6 PACKET\n"));
        assert!(t.contains("  Next Header: 58\n"));
        assert!(t.contains("  Source IP:   fd00::1\n"));
        let mut v = json!({});
        l3_json(&p, &mut v);
        assert_eq!(v["ipv6"]["next_header"], 58);
        assert_eq!(v["ipv6"]["icmp_type"], 128);

        let o = PktMeta {
            l3_proto: 0x88cc,
            l2_payload: [0xab; 32],
            ..Default::default()
        };
        let t = l3_text(&o, true);
        assert!(
            t.contains("OTHER PROTOCOL\n  EtherType: 0x88cc\n  Payload (first 32 bytes): ab ab")
        );
        assert!(!l3_text(&o, false).contains("Payload"));
        let mut v = json!({});
        l3_json(&o, &mut v);
        assert_eq!(v["other"]["ethertype"], "0x88cc");
        assert_eq!(v["other"]["payload_hex"].as_str().unwrap().len(), 64);
    }
}
