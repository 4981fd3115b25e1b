//! Open vSwitch kernel datapath (openvswitch.ko) helpers for the
//! ovs-measurement tools: the datapath check every tool does first,
//! conntrack-state bits, uapi action/key attribute names, a netlink attribute
//! walker that keeps wire order, the generic-netlink OVS message parser, and
//! the formatting of flow keys, masks and actions in `ovs-dpctl dump-flows`
//! notation (so a megaflow a tool prints can be compared with what the
//! datapath shows).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{json, Value};

use crate::fmt::mac;

/// The datapath module.
pub const MODULE: &str = "openvswitch";

/// Is the OVS kernel datapath present (module loaded or its BTF visible)?
pub fn datapath_loaded() -> bool {
    std::path::Path::new("/sys/module/openvswitch").exists()
        || std::path::Path::new("/sys/kernel/btf/openvswitch").exists()
}

/// Exit 1 with the spec's message unless the datapath is there.
pub fn require_datapath() {
    if !datapath_loaded() {
        crate::die(
            crate::EXIT_RUNTIME,
            "openvswitch kernel datapath not loaded",
        );
    }
}

/// Does this kernel have module BTF for openvswitch (needed to read
/// `struct sw_flow_key` fields; absent on 5.10)?
pub fn module_btf() -> bool {
    std::path::Path::new("/sys/kernel/btf/openvswitch").exists()
}

/// PID of the running ovs-vswitchd: its pidfile, else the first process
/// whose comm is `ovs-vswitchd`.
pub fn vswitchd_pid() -> Option<u32> {
    for f in [
        "/run/openvswitch/ovs-vswitchd.pid",
        "/var/run/openvswitch/ovs-vswitchd.pid",
    ] {
        if let Some(p) = std::fs::read_to_string(f)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        {
            return Some(p);
        }
    }
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find(|p| {
        std::fs::read_to_string(format!("/proc/{p}/comm"))
            .map(|c| c.trim() == "ovs-vswitchd")
            .unwrap_or(false)
    })
}

/// The id the kernel gave generic-netlink family `name` (`ovs_flow`,
/// `ovs_packet`, ...): a CTRL_CMD_GETFAMILY request on a NETLINK_GENERIC socket.
pub fn genl_family_id(name: &str) -> Result<u16, String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket syscalls on buffers we own; the fd is owned.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_GENERIC,
        );
        if fd < 0 {
            return Err(format!(
                "netlink socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut attrs = Vec::new();
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        put_attr(&mut attrs, 2, &n); // CTRL_ATTR_FAMILY_NAME
        let mut msg = Vec::new();
        msg.extend_from_slice(&((20 + attrs.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&0x10u16.to_ne_bytes()); // GENL_ID_CTRL
        msg.extend_from_slice(&1u16.to_ne_bytes()); // NLM_F_REQUEST
        msg.extend_from_slice(&1u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[3, 1, 0, 0]); // CTRL_CMD_GETFAMILY, version 1
        msg.extend_from_slice(&attrs);
        let mut sa: libc::sockaddr_nl = std::mem::zeroed();
        sa.nl_family = libc::AF_NETLINK as u16;
        let r = libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr() as *const libc::c_void,
            msg.len(),
            0,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        );
        if r < 0 {
            return Err(format!("netlink send: {}", std::io::Error::last_os_error()));
        }
        let mut buf = vec![0u8; 8192];
        let r = libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
        );
        if r < 20 {
            return Err(format!("netlink recv: {}", std::io::Error::last_os_error()));
        }
        buf.truncate(r as usize);
        if u16_ne(&buf[4..]) == Some(2) {
            return Err(format!("generic netlink family {name} not found"));
        }
        let len = (u32_ne(&buf).unwrap_or(0) as usize).min(buf.len());
        find(&attrs_lossy(&buf[20..len]), 1) // CTRL_ATTR_FAMILY_ID
            .and_then(u16_ne)
            .ok_or_else(|| format!("no id for generic netlink family {name}"))
    }
}

// ---- conntrack state ---------------------------------------------------------

/// OVS_CS_F_* bits: (bit, long name, dpctl name).
pub const CT_STATE_BITS: &[(u32, &str, &str)] = &[
    (0x01, "NEW", "new"),
    (0x02, "ESTABLISHED", "est"),
    (0x04, "RELATED", "rel"),
    (0x08, "REPLY_DIR", "rpl"),
    (0x10, "INVALID", "inv"),
    (0x20, "TRACKED", "trk"),
    (0x40, "SRC_NAT", "snat"),
    (0x80, "DST_NAT", "dnat"),
];

/// Long names of the set bits, in bit order.
pub fn ct_state_flags(s: u32) -> Vec<&'static str> {
    CT_STATE_BITS
        .iter()
        .filter(|(b, _, _)| s & b != 0)
        .map(|(_, n, _)| *n)
        .collect()
}

/// `0x21 (NEW|TRACKED)`, `0x00 (NONE)`.
pub fn ct_state_str(s: u32) -> String {
    let f = ct_state_flags(s);
    if f.is_empty() {
        format!("0x{s:02x} (NONE)")
    } else {
        format!("0x{s:02x} ({})", f.join("|"))
    }
}

/// `+new+trk` (the ct_state match syntax), `-` when no bit is set.
pub fn ct_state_plus(s: u32) -> String {
    let out: String = CT_STATE_BITS
        .iter()
        .filter(|(b, _, _)| s & b != 0)
        .map(|(_, _, n)| format!("+{n}"))
        .collect();
    if out.is_empty() {
        "-".into()
    } else {
        out
    }
}

// ---- uapi numbers ----------------------------------------------------------------

pub mod key {
    pub const ENCAP: u16 = 1;
    pub const PRIORITY: u16 = 2;
    pub const IN_PORT: u16 = 3;
    pub const ETHERNET: u16 = 4;
    pub const VLAN: u16 = 5;
    pub const ETHERTYPE: u16 = 6;
    pub const IPV4: u16 = 7;
    pub const IPV6: u16 = 8;
    pub const TCP: u16 = 9;
    pub const UDP: u16 = 10;
    pub const ICMP: u16 = 11;
    pub const ICMPV6: u16 = 12;
    pub const ARP: u16 = 13;
    pub const ND: u16 = 14;
    pub const SKB_MARK: u16 = 15;
    pub const TUNNEL: u16 = 16;
    pub const SCTP: u16 = 17;
    pub const TCP_FLAGS: u16 = 18;
    pub const DP_HASH: u16 = 19;
    pub const RECIRC_ID: u16 = 20;
    pub const MPLS: u16 = 21;
    pub const CT_STATE: u16 = 22;
    pub const CT_ZONE: u16 = 23;
    pub const CT_MARK: u16 = 24;
    pub const CT_LABELS: u16 = 25;
    pub const CT_ORIG_TUPLE_IPV4: u16 = 26;
    pub const CT_ORIG_TUPLE_IPV6: u16 = 27;
    pub const NSH: u16 = 28;
    pub const PACKET_TYPE: u16 = 29;
    pub const ND_EXTENSIONS: u16 = 30;
    pub const IPV6_EXTHDRS: u16 = 32;
}

pub mod action {
    pub const OUTPUT: u16 = 1;
    pub const USERSPACE: u16 = 2;
    pub const SET: u16 = 3;
    pub const PUSH_VLAN: u16 = 4;
    pub const POP_VLAN: u16 = 5;
    pub const SAMPLE: u16 = 6;
    pub const RECIRC: u16 = 7;
    pub const HASH: u16 = 8;
    pub const PUSH_MPLS: u16 = 9;
    pub const POP_MPLS: u16 = 10;
    pub const SET_MASKED: u16 = 11;
    pub const CT: u16 = 12;
    pub const TRUNC: u16 = 13;
    pub const PUSH_ETH: u16 = 14;
    pub const POP_ETH: u16 = 15;
    pub const CT_CLEAR: u16 = 16;
    pub const PUSH_NSH: u16 = 17;
    pub const POP_NSH: u16 = 18;
    pub const METER: u16 = 19;
    pub const CLONE: u16 = 20;
    pub const CHECK_PKT_LEN: u16 = 21;
    pub const ADD_MPLS: u16 = 22;
    pub const DEC_TTL: u16 = 23;
}

/// `enum ovs_flow_attr`.
pub mod flow_attr {
    pub const KEY: u16 = 1;
    pub const ACTIONS: u16 = 2;
    pub const STATS: u16 = 3;
    pub const MASK: u16 = 7;
    pub const UFID: u16 = 9;
    pub const UFID_FLAGS: u16 = 10;
}

/// `enum ovs_flow_cmd`.
pub const FLOW_CMD_NEW: u8 = 1;
pub const FLOW_CMD_DEL: u8 = 2;
pub const FLOW_CMD_SET: u8 = 4;

/// Name of an action type as the datapath tracepoint shows it (lower case uapi name).
pub fn action_name(t: u32) -> String {
    let n = match t {
        1 => "output",
        2 => "userspace",
        3 => "set",
        4 => "push_vlan",
        5 => "pop_vlan",
        6 => "sample",
        7 => "recirc",
        8 => "hash",
        9 => "push_mpls",
        10 => "pop_mpls",
        11 => "set_masked",
        12 => "ct",
        13 => "trunc",
        14 => "push_eth",
        15 => "pop_eth",
        16 => "ct_clear",
        17 => "push_nsh",
        18 => "pop_nsh",
        19 => "meter",
        20 => "clone",
        21 => "check_pkt_len",
        22 => "add_mpls",
        23 => "dec_ttl",
        24 => "drop",
        25 => "psample",
        _ => return format!("action{t}"),
    };
    n.to_string()
}

/// dpctl name of a key attribute (`key<N>` when unknown, as OVS prints it).
pub fn key_attr_name(t: u16) -> String {
    let n = match t {
        key::ENCAP => "encap",
        key::PRIORITY => "skb_priority",
        key::IN_PORT => "in_port",
        key::ETHERNET => "eth",
        key::VLAN => "vlan",
        key::ETHERTYPE => "eth_type",
        key::IPV4 => "ipv4",
        key::IPV6 => "ipv6",
        key::TCP => "tcp",
        key::UDP => "udp",
        key::ICMP => "icmp",
        key::ICMPV6 => "icmpv6",
        key::ARP => "arp",
        key::ND => "nd",
        key::SKB_MARK => "skb_mark",
        key::TUNNEL => "tunnel",
        key::SCTP => "sctp",
        key::TCP_FLAGS => "tcp_flags",
        key::DP_HASH => "dp_hash",
        key::RECIRC_ID => "recirc_id",
        key::MPLS => "mpls",
        key::CT_STATE => "ct_state",
        key::CT_ZONE => "ct_zone",
        key::CT_MARK => "ct_mark",
        key::CT_LABELS => "ct_label",
        key::CT_ORIG_TUPLE_IPV4 => "ct_tuple4",
        key::CT_ORIG_TUPLE_IPV6 => "ct_tuple6",
        key::NSH => "nsh",
        key::PACKET_TYPE => "packet_type",
        key::ND_EXTENSIONS => "nd_ext",
        _ => return format!("key{t}"),
    };
    n.to_string()
}

// ---- netlink -------------------------------------------------------------------------

/// One netlink attribute: type with the NESTED/NET_BYTEORDER bits masked off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr<'a> {
    pub ty: u16,
    pub data: &'a [u8],
}

/// The attributes of `buf` in wire order (repeated types are kept). Stops at
/// the first malformed attribute; `Err` names it, with what was read so far.
pub fn attrs(buf: &[u8]) -> Result<Vec<Attr<'_>>, (Vec<Attr<'_>>, String)> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & 0x3fff;
        if len < 4 || off + len > buf.len() {
            return Err((
                out,
                format!(
                    "attribute at offset {off}: length {len} runs past {} bytes",
                    buf.len()
                ),
            ));
        }
        out.push(Attr {
            ty,
            data: &buf[off + 4..off + len],
        });
        off += (len + 3) & !3;
    }
    Ok(out)
}

/// Attributes, ignoring a malformed tail.
pub fn attrs_lossy(buf: &[u8]) -> Vec<Attr<'_>> {
    attrs(buf).unwrap_or_else(|(a, _)| a)
}

fn find<'a>(list: &[Attr<'a>], ty: u16) -> Option<&'a [u8]> {
    list.iter().find(|a| a.ty == ty).map(|a| a.data)
}

fn u16_ne(b: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(..2)?.try_into().ok()?))
}
fn u32_ne(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}
fn be16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}
fn ip4(b: &[u8]) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

/// A generic-netlink OVS message (`nlmsghdr` + `genlmsghdr` + `ovs_header`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenlMsg {
    pub len: u32,
    pub nl_type: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
    pub cmd: u8,
    pub version: u8,
    pub dp_ifindex: i32,
    /// The attribute area (after the 24-byte headers).
    pub payload: Vec<u8>,
}

/// Parse the message at the start of `buf`; also returns the bytes after it
/// (a batch of messages in one buffer).
pub fn parse_genl(buf: &[u8]) -> Result<(GenlMsg, &[u8]), String> {
    if buf.len() < 24 {
        return Err(format!("message too short ({} bytes, need 24)", buf.len()));
    }
    let len = u32_ne(buf).unwrap_or(0) as usize;
    if len < 24 {
        return Err(format!("nlmsg_len {len} smaller than the OVS headers"));
    }
    let end = len.min(buf.len());
    let m = GenlMsg {
        len: len as u32,
        nl_type: u16_ne(&buf[4..]).unwrap_or(0),
        flags: u16_ne(&buf[6..]).unwrap_or(0),
        seq: u32_ne(&buf[8..]).unwrap_or(0),
        pid: u32_ne(&buf[12..]).unwrap_or(0),
        cmd: buf[16],
        version: buf[17],
        dp_ifindex: u32_ne(&buf[20..]).unwrap_or(0) as i32,
        payload: buf[24..end].to_vec(),
    };
    let next = ((len + 3) & !3).min(buf.len());
    Ok((m, &buf[next..]))
}

/// An OVS_FLOW_CMD_* message: key, mask and actions as attribute bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowMsg {
    pub cmd: u8,
    pub dp_ifindex: i32,
    pub key: Option<Vec<u8>>,
    pub mask: Option<Vec<u8>>,
    pub actions: Option<Vec<u8>>,
    pub ufid: Option<Vec<u8>>,
    /// The message was cut (copy limit) or had a malformed attribute.
    pub error: Option<String>,
}

impl FlowMsg {
    pub fn from_genl(m: &GenlMsg) -> FlowMsg {
        let (list, error) = match attrs(&m.payload) {
            Ok(l) => (l, None),
            Err((l, e)) => (l, Some(e)),
        };
        FlowMsg {
            cmd: m.cmd,
            dp_ifindex: m.dp_ifindex,
            key: find(&list, flow_attr::KEY).map(<[u8]>::to_vec),
            mask: find(&list, flow_attr::MASK).map(<[u8]>::to_vec),
            actions: find(&list, flow_attr::ACTIONS).map(<[u8]>::to_vec),
            ufid: find(&list, flow_attr::UFID).map(<[u8]>::to_vec),
            error,
        }
    }

    /// `ufid:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` style (as dpctl prints it).
    pub fn ufid_str(&self) -> Option<String> {
        ufid_str(self.ufid.as_deref()?)
    }

    /// The megaflow in `ovs-dpctl dump-flows` notation, without statistics:
    /// `recirc_id(0),in_port(3),eth(...),eth_type(0x0800),ipv4(frag=no), actions:2`.
    pub fn dpctl(&self) -> String {
        let k = self.key.as_deref().unwrap_or(&[]);
        let mut s = format_key(k, self.mask.as_deref());
        s.push_str(", actions:");
        s.push_str(&format_actions(self.actions.as_deref().unwrap_or(&[])));
        s
    }
}

/// OVS prints a UFID as a UUID: 32-bit words in host order.
pub fn ufid_str(u: &[u8]) -> Option<String> {
    if u.len() < 16 {
        return None;
    }
    let w: Vec<u32> = (0..4).map(|i| u32_ne(&u[i * 4..]).unwrap()).collect();
    Some(format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:04x}{:08x}",
        w[0],
        w[1] >> 16,
        w[1] & 0xffff,
        w[2] >> 16,
        w[2] & 0xffff,
        w[3]
    ))
}

// ---- decoded key fields (filters, correlation, JSON) -----------------------------------

/// The fields the tools filter and correlate on, from a key attribute list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyFields {
    pub recirc_id: Option<u32>,
    pub dp_hash: Option<u32>,
    pub priority: Option<u32>,
    pub in_port: Option<u32>,
    pub skb_mark: Option<u32>,
    pub eth_src: Option<[u8; 6]>,
    pub eth_dst: Option<[u8; 6]>,
    pub eth_type: Option<u16>,
    pub vlan_tci: Option<u16>,
    pub ipv4_src: Option<Ipv4Addr>,
    pub ipv4_dst: Option<Ipv4Addr>,
    pub ip_proto: Option<u8>,
    pub ip_tos: Option<u8>,
    pub ip_ttl: Option<u8>,
    pub ip_frag: Option<u8>,
    pub ipv6_src: Option<Ipv6Addr>,
    pub ipv6_dst: Option<Ipv6Addr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub ct_state: Option<u32>,
    pub ct_zone: Option<u16>,
    pub ct_mark: Option<u32>,
    pub tcp_flags: Option<u16>,
}

impl KeyFields {
    /// Decode a key (or mask) attribute list; ENCAP (inner key after a VLAN
    /// tag) is merged in.
    pub fn parse(buf: &[u8]) -> KeyFields {
        let mut k = KeyFields::default();
        k.merge(buf);
        k
    }

    fn merge(&mut self, buf: &[u8]) {
        for a in attrs_lossy(buf) {
            let d = a.data;
            match a.ty {
                key::ENCAP => self.merge(d),
                key::RECIRC_ID => self.recirc_id = u32_ne(d),
                key::DP_HASH => self.dp_hash = u32_ne(d),
                key::PRIORITY => self.priority = u32_ne(d),
                key::IN_PORT => self.in_port = u32_ne(d),
                key::SKB_MARK => self.skb_mark = u32_ne(d),
                key::ETHERNET if d.len() >= 12 => {
                    self.eth_src = d[0..6].try_into().ok();
                    self.eth_dst = d[6..12].try_into().ok();
                }
                // The outer ETHERTYPE is 0x8100 when a VLAN attr follows; the
                // inner one (in ENCAP) comes later and wins.
                key::ETHERTYPE => self.eth_type = be16(d),
                key::VLAN => self.vlan_tci = be16(d),
                key::IPV4 if d.len() >= 12 => {
                    self.ipv4_src = ip4(d);
                    self.ipv4_dst = ip4(&d[4..]);
                    self.ip_proto = Some(d[8]);
                    self.ip_tos = Some(d[9]);
                    self.ip_ttl = Some(d[10]);
                    self.ip_frag = Some(d[11]);
                }
                key::IPV6 if d.len() >= 40 => {
                    self.ipv6_src = <[u8; 16]>::try_from(&d[0..16]).ok().map(Ipv6Addr::from);
                    self.ipv6_dst = <[u8; 16]>::try_from(&d[16..32]).ok().map(Ipv6Addr::from);
                    self.ip_proto = Some(d[36]);
                    self.ip_tos = Some(d[37]);
                    self.ip_ttl = Some(d[38]);
                    self.ip_frag = Some(d[39]);
                }
                key::TCP | key::UDP | key::SCTP if d.len() >= 4 => {
                    self.sport = be16(d);
                    self.dport = be16(&d[2..]);
                }
                key::ICMP | key::ICMPV6 if d.len() >= 2 => {
                    self.icmp_type = Some(d[0]);
                    self.icmp_code = Some(d[1]);
                }
                key::CT_STATE => self.ct_state = u32_ne(d),
                key::CT_ZONE => self.ct_zone = u16_ne(d),
                key::CT_MARK => self.ct_mark = u32_ne(d),
                key::TCP_FLAGS => self.tcp_flags = be16(d),
                _ => {}
            }
        }
    }

    /// JSON object of the fields present.
    pub fn json(&self) -> Value {
        let mut o = serde_json::Map::new();
        let mut put = |k: &str, v: Value| {
            o.insert(k.to_string(), v);
        };
        if let Some(v) = self.recirc_id {
            put("recirc_id", json!(v));
        }
        if let Some(v) = self.dp_hash {
            put("dp_hash", json!(v));
        }
        if let Some(v) = self.priority {
            put("skb_priority", json!(v));
        }
        if let Some(v) = self.in_port {
            put("in_port", json!(v));
        }
        if let Some(v) = self.skb_mark {
            put("skb_mark", json!(v));
        }
        if let Some(v) = self.eth_src {
            put("eth_src", json!(mac(&v)));
        }
        if let Some(v) = self.eth_dst {
            put("eth_dst", json!(mac(&v)));
        }
        if let Some(v) = self.eth_type {
            put("eth_type", json!(format!("0x{v:04x}")));
        }
        if let Some(v) = self.vlan_tci {
            put("vlan_tci", json!(v));
        }
        if let Some(v) = self.ipv4_src {
            put("ipv4_src", json!(v.to_string()));
        }
        if let Some(v) = self.ipv4_dst {
            put("ipv4_dst", json!(v.to_string()));
        }
        if let Some(v) = self.ipv6_src {
            put("ipv6_src", json!(v.to_string()));
        }
        if let Some(v) = self.ipv6_dst {
            put("ipv6_dst", json!(v.to_string()));
        }
        if let Some(v) = self.ip_proto {
            put("ip_proto", json!(v));
        }
        if let Some(v) = self.ip_tos {
            put("ip_tos", json!(v));
        }
        if let Some(v) = self.ip_ttl {
            put("ip_ttl", json!(v));
        }
        if let Some(v) = self.ip_frag {
            put("ip_frag", json!(v));
        }
        if let Some(v) = self.sport {
            put("sport", json!(v));
        }
        if let Some(v) = self.dport {
            put("dport", json!(v));
        }
        if let Some(v) = self.icmp_type {
            put("icmp_type", json!(v));
        }
        if let Some(v) = self.icmp_code {
            put("icmp_code", json!(v));
        }
        if let Some(v) = self.ct_state {
            put("ct_state", json!(v));
        }
        if let Some(v) = self.ct_zone {
            put("ct_zone", json!(v));
        }
        if let Some(v) = self.ct_mark {
            put("ct_mark", json!(v));
        }
        if let Some(v) = self.tcp_flags {
            put("tcp_flags", json!(v));
        }
        Value::Object(o)
    }
}

// ---- dpctl notation: keys and masks --------------------------------------------------------

/// The order in which the kernel dumps key attributes (`__ovs_nla_put_key`),
/// which is what `ovs-dpctl dump-flows` prints; vswitchd sends them in
/// another order.
fn key_rank(t: u16) -> u32 {
    const ORDER: &[u16] = &[
        key::RECIRC_ID,
        key::DP_HASH,
        key::PRIORITY,
        key::TUNNEL,
        key::IN_PORT,
        key::SKB_MARK,
        key::CT_STATE,
        key::CT_ZONE,
        key::CT_MARK,
        key::CT_LABELS,
        key::CT_ORIG_TUPLE_IPV4,
        key::CT_ORIG_TUPLE_IPV6,
        key::NSH,
        key::PACKET_TYPE,
        key::ETHERNET,
        key::VLAN,
        key::ETHERTYPE,
        key::ENCAP,
        key::IPV4,
        key::IPV6,
        key::IPV6_EXTHDRS,
        key::ARP,
        key::MPLS,
        key::TCP,
        key::TCP_FLAGS,
        key::UDP,
        key::SCTP,
        key::ICMP,
        key::ICMPV6,
        key::ND,
        key::ND_EXTENSIONS,
    ];
    ORDER
        .iter()
        .position(|&x| x == t)
        .map(|p| p as u32)
        .unwrap_or(1000 + t as u32)
}

fn all(b: &[u8], v: u8) -> bool {
    b.iter().all(|&x| x == v)
}

struct F<'a> {
    out: String,
    verbose: bool,
    _k: std::marker::PhantomData<&'a ()>,
}

impl F<'_> {
    fn sep(&mut self) {
        self.out.push(',');
    }
    fn chomp(&mut self) {
        if self.out.ends_with(',') {
            self.out.pop();
        }
    }
    fn eth(&mut self, name: &str, k: &[u8], m: Option<&[u8]>) {
        if self.verbose || !m.is_some_and(|m| all(m, 0)) {
            let _ = write!(self.out, "{name}={}", mac6(k));
            if let Some(m) = m.filter(|m| !all(m, 0xff)) {
                let _ = write!(self.out, "/{}", mac6(m));
            }
            self.sep();
        }
    }
    fn ipv4(&mut self, name: &str, k: &[u8], m: Option<&[u8]>) {
        if self.verbose || !m.is_some_and(|m| all(m, 0)) {
            let _ = write!(self.out, "{name}={}", ip4(k).unwrap());
            if let Some(m) = m.filter(|m| !all(m, 0xff)) {
                let _ = write!(self.out, "/{}", ip4(m).unwrap());
            }
            self.sep();
        }
    }
    fn ipv6(&mut self, name: &str, k: &[u8], m: Option<&[u8]>) {
        if self.verbose || !m.is_some_and(|m| all(m, 0)) {
            let a: [u8; 16] = k.try_into().unwrap();
            let _ = write!(self.out, "{name}={}", Ipv6Addr::from(a));
            if let Some(m) = m.filter(|m| !all(m, 0xff)) {
                let a: [u8; 16] = m.try_into().unwrap();
                let _ = write!(self.out, "/{}", Ipv6Addr::from(a));
            }
            self.sep();
        }
    }
    fn u8u(&mut self, name: &str, k: u8, m: Option<u8>) {
        if self.verbose || m.is_none_or(|m| m != 0) {
            let _ = write!(self.out, "{name}={k}");
            if let Some(m) = m.filter(|&m| m != 0xff) {
                let _ = write!(self.out, "/{}", hex_alt(m as u64));
            }
            self.sep();
        }
    }
    fn u8x(&mut self, name: &str, k: u8, m: Option<u8>) {
        if self.verbose || m.is_none_or(|m| m != 0) {
            let _ = write!(self.out, "{name}={}", hex_alt(k as u64));
            if let Some(m) = m.filter(|&m| m != 0xff) {
                let _ = write!(self.out, "/{}", hex_alt(m as u64));
            }
            self.sep();
        }
    }
    fn be16(&mut self, name: &str, k: u16, m: Option<u16>) {
        if self.verbose || m.is_none_or(|m| m != 0) {
            let _ = write!(self.out, "{name}={k}");
            if let Some(m) = m.filter(|&m| m != 0xffff) {
                let _ = write!(self.out, "/{}", hex_alt(m as u64));
            }
            self.sep();
        }
    }
    fn frag(&mut self, name: &str, k: u8, m: Option<u8>) {
        if self.verbose || m.is_none_or(|m| m != 0) {
            if m.is_some_and(|m| m & 3 != 3) {
                let _ = write!(
                    self.out,
                    "error: partial mask not supported for frag ({}),",
                    hex_alt(m.unwrap() as u64)
                );
            } else {
                let s = match k {
                    0 => "no",
                    1 => "first",
                    2 => "later",
                    _ => "<error>",
                };
                let _ = write!(self.out, "{name}={s},");
            }
        }
    }
}

fn mac6(b: &[u8]) -> String {
    let mut a = [0u8; 6];
    let n = b.len().min(6);
    a[..n].copy_from_slice(&b[..n]);
    mac(&a)
}

/// C's `%#x`: `0` for zero, `0x..` otherwise.
fn hex_alt(v: u64) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

fn flags_str(bits: u32, names: &dyn Fn(u32) -> Option<&'static str>) -> String {
    if bits == 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    let mut bad = 0;
    let mut f = bits;
    while f != 0 {
        let bit = f & f.wrapping_neg();
        match names(bit) {
            Some(n) => out.push(n.to_string()),
            None => bad |= bit,
        }
        f &= !bit;
    }
    if bad != 0 {
        out.push(format!("{bad:#x}"));
    }
    out.join("|")
}

fn flags_masked(
    v: u32,
    mask: u32,
    max: u32,
    names: &dyn Fn(u32) -> Option<&'static str>,
) -> String {
    if mask == max {
        return flags_str(v, names);
    }
    if mask == 0 {
        return "0/0".into();
    }
    let mut s = String::new();
    let mut m = mask;
    while m != 0 {
        let bit = m & m.wrapping_neg();
        s.push(if v & bit != 0 { '+' } else { '-' });
        s.push_str(names(bit).unwrap_or("[Unknown]"));
        m &= !bit;
    }
    s
}

fn ct_bit(b: u32) -> Option<&'static str> {
    CT_STATE_BITS
        .iter()
        .find(|(x, _, _)| *x == b)
        .map(|(_, _, n)| *n)
}

fn tcp_bit(b: u32) -> Option<&'static str> {
    Some(match b {
        0x001 => "fin",
        0x002 => "syn",
        0x004 => "rst",
        0x008 => "psh",
        0x010 => "ack",
        0x020 => "urg",
        0x040 => "ece",
        0x080 => "cwr",
        0x100 => "ns",
        _ => return None,
    })
}

fn hex_plain(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_bytes_spaced(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn vlan_tci(f: &mut F<'_>, tci: u16, mask: u16) {
    let vid = tci & 0x0fff;
    let pcp = tci >> 13;
    if f.verbose || vid != 0 || mask & 0x0fff != 0 {
        let _ = write!(f.out, "vid={vid}");
        if mask & 0x0fff != 0x0fff {
            let _ = write!(f.out, "/0x{:x}", mask & 0x0fff);
        }
        f.sep();
    }
    if f.verbose || pcp != 0 || mask >> 13 != 0 {
        let _ = write!(f.out, "pcp={pcp}");
        if mask >> 13 != 7 {
            let _ = write!(f.out, "/0x{:x}", mask >> 13);
        }
        f.sep();
    }
    if tci & 0x1000 == 0 {
        f.out.push_str("cfi=0,");
    }
    f.chomp();
}

/// One key attribute `name(...)` with its mask (`None` = exact).
fn format_key_attr(f: &mut F<'_>, a: &Attr<'_>, ma: Option<&[u8]>) {
    let k = a.data;
    let exact = ma.is_none_or(|m| all(m, 0xff));
    f.out.push_str(&key_attr_name(a.ty));
    f.out.push('(');
    let m = |i: usize, n: usize| ma.and_then(|m| m.get(i..i + n));
    let len_ok = |n: usize| k.len() >= n && ma.is_none_or(|m| m.len() >= n);
    match a.ty {
        key::ENCAP => {
            let inner = format_key_verbose(k, ma, f.verbose);
            f.out.push_str(&inner);
        }
        key::PRIORITY | key::SKB_MARK | key::DP_HASH | key::RECIRC_ID if len_ok(4) => {
            f.out.push_str(&hex_alt(u32_ne(k).unwrap() as u64));
            if !exact {
                let _ = write!(f.out, "/{}", hex_alt(u32_ne(ma.unwrap()).unwrap() as u64));
            }
        }
        key::CT_MARK if len_ok(4) => {
            if f.verbose || !ma.is_some_and(|m| all(m, 0)) {
                f.out.push_str(&hex_alt(u32_ne(k).unwrap() as u64));
                if !exact {
                    let _ = write!(f.out, "/{}", hex_alt(u32_ne(ma.unwrap()).unwrap() as u64));
                }
            }
        }
        key::CT_STATE if len_ok(4) => {
            let v = u32_ne(k).unwrap();
            if f.verbose {
                f.out.push_str(&hex_alt(v as u64));
                if let Some(m) = ma {
                    let _ = write!(f.out, "/{}", hex_alt(u32_ne(m).unwrap() as u64));
                }
            } else if !exact {
                let mv = u32_ne(ma.unwrap()).unwrap();
                f.out.push_str(&flags_masked(v, mv, u32::MAX, &ct_bit));
            } else {
                f.out.push_str(&flags_str(v, &ct_bit));
            }
        }
        key::CT_ZONE if len_ok(2) => {
            if f.verbose || !ma.is_some_and(|m| all(m, 0)) {
                f.out.push_str(&hex_alt(u16_ne(k).unwrap() as u64));
                if !exact {
                    let _ = write!(f.out, "/{}", hex_alt(u16_ne(ma.unwrap()).unwrap() as u64));
                }
            }
        }
        key::IN_PORT if len_ok(4) => {
            let _ = write!(f.out, "{}", u32_ne(k).unwrap());
            if !exact {
                let _ = write!(f.out, "/{}", hex_alt(u32_ne(ma.unwrap()).unwrap() as u64));
            }
        }
        key::ETHERNET if len_ok(12) => {
            f.eth("src", &k[0..6], m(0, 6));
            f.eth("dst", &k[6..12], m(6, 6));
            f.chomp();
        }
        key::VLAN if len_ok(2) => {
            let mask = ma.map(|m| be16(m).unwrap()).unwrap_or(0xffff);
            vlan_tci(f, be16(k).unwrap(), mask);
        }
        key::ETHERTYPE if len_ok(2) => {
            let _ = write!(f.out, "0x{:04x}", be16(k).unwrap());
            if !exact {
                let _ = write!(f.out, "/0x{:04x}", be16(ma.unwrap()).unwrap());
            }
        }
        key::IPV4 if len_ok(12) => {
            f.ipv4("src", &k[0..4], m(0, 4));
            f.ipv4("dst", &k[4..8], m(4, 4));
            f.u8u("proto", k[8], ma.map(|m| m[8]));
            f.u8x("tos", k[9], ma.map(|m| m[9]));
            f.u8u("ttl", k[10], ma.map(|m| m[10]));
            f.frag("frag", k[11], ma.map(|m| m[11]));
            f.chomp();
        }
        key::IPV6 if len_ok(40) => {
            f.ipv6("src", &k[0..16], m(0, 16));
            f.ipv6("dst", &k[16..32], m(16, 16));
            let label = u32::from_be_bytes(k[32..36].try_into().unwrap());
            let lmask = ma.map(|m| u32::from_be_bytes(m[32..36].try_into().unwrap()));
            if f.verbose || lmask.is_none_or(|m| m != 0) {
                let _ = write!(f.out, "label={}", hex_alt(label as u64));
                if let Some(lm) = lmask.filter(|&m| m & 0xfffff != 0xfffff) {
                    let _ = write!(f.out, "/{}", hex_alt(lm as u64));
                }
                f.sep();
            }
            f.u8u("proto", k[36], ma.map(|m| m[36]));
            f.u8x("tclass", k[37], ma.map(|m| m[37]));
            f.u8u("hlimit", k[38], ma.map(|m| m[38]));
            f.frag("frag", k[39], ma.map(|m| m[39]));
            f.chomp();
        }
        key::TCP | key::UDP | key::SCTP if len_ok(4) => {
            f.be16("src", be16(k).unwrap(), ma.map(|m| be16(m).unwrap()));
            f.be16(
                "dst",
                be16(&k[2..]).unwrap(),
                ma.map(|m| be16(&m[2..]).unwrap()),
            );
            f.chomp();
        }
        key::TCP_FLAGS if len_ok(2) => {
            let v = be16(k).unwrap() as u32;
            if !exact {
                let mv = be16(ma.unwrap()).unwrap() as u32 & 0x0fff;
                f.out.push_str(&flags_masked(v, mv, 0x0fff, &tcp_bit));
            } else {
                f.out.push_str(&flags_str(v, &tcp_bit));
            }
        }
        key::ICMP | key::ICMPV6 if len_ok(2) => {
            f.u8u("type", k[0], ma.map(|m| m[0]));
            f.u8u("code", k[1], ma.map(|m| m[1]));
            f.chomp();
        }
        key::ARP if len_ok(24) => {
            f.ipv4("sip", &k[0..4], m(0, 4));
            f.ipv4("tip", &k[4..8], m(4, 4));
            f.be16(
                "op",
                be16(&k[8..]).unwrap(),
                ma.map(|m| be16(&m[8..]).unwrap()),
            );
            f.eth("sha", &k[10..16], m(10, 6));
            f.eth("tha", &k[16..22], m(16, 6));
            f.chomp();
        }
        _ => {
            f.out.push_str(&hex_bytes_spaced(k));
            if !exact {
                f.out.push('/');
                f.out.push_str(&hex_bytes_spaced(ma.unwrap()));
            }
        }
    }
    f.out.push(')');
}

fn format_key_verbose(key: &[u8], mask: Option<&[u8]>, verbose: bool) -> String {
    let mut list = attrs_lossy(key);
    list.sort_by_key(|a| key_rank(a.ty));
    let mlist = mask.map(attrs_lossy);
    let mut f = F {
        out: String::new(),
        verbose,
        _k: std::marker::PhantomData,
    };
    let has_ethtype = list.iter().any(|a| a.ty == key::ETHERTYPE);
    // As odp_flow_format(): PACKET_TYPE seen so far (kernel keys have none).
    let mut has_packet_type = false;
    let mut first = true;
    for a in &list {
        if a.ty == key::PACKET_TYPE {
            has_packet_type = true;
        }
        let ma = mlist.as_ref().map(|l| find(l, a.ty));
        // Missing from the mask list = wildcarded.
        let wildcard = match ma {
            Some(Some(m)) => all(m, 0),
            Some(None) => true,
            None => false,
        };
        // The kernel stores key & mask: print masked values, as dump-flows does.
        let masked: Vec<u8>;
        let a2 = match ma {
            Some(Some(m)) if a.ty != key::ENCAP && m.len() == a.data.len() => {
                masked = a.data.iter().zip(m).map(|(k, m)| k & m).collect();
                Attr {
                    ty: a.ty,
                    data: &masked,
                }
            }
            _ => *a,
        };
        let zeros;
        let ma_eff: Option<&[u8]> = match ma {
            Some(Some(m)) => Some(m),
            Some(None) => {
                zeros = vec![0u8; a.data.len()];
                Some(&zeros)
            }
            None => None,
        };
        if verbose || !wildcard {
            if !first {
                f.out.push(',');
            }
            format_key_attr(&mut f, &a2, ma_eff);
            first = false;
        } else if a.ty == key::ETHERNET && !has_packet_type {
            // An ETHERNET attribute, even all-wildcarded, says the packet is
            // an Ethernet frame (its absence: an L3 packet), so OVS prints
            // `eth()` for it whether or not eth_type follows.
            if !first {
                f.out.push(',');
            }
            f.out.push_str("eth()");
            first = false;
        }
    }
    if list.is_empty() {
        f.out.push_str("<empty>");
    }
    // A mask on eth_type without the key attribute: `eth_type(0/0x....)`.
    if !has_ethtype && !list.is_empty() {
        if let Some(m) = mlist
            .as_ref()
            .and_then(|l| find(l, key::ETHERTYPE))
            .and_then(be16)
        {
            let _ = write!(f.out, ",eth_type(0/0x{m:04x})");
        }
    }
    f.out
}

/// A flow key with its mask in `ovs-dpctl dump-flows` (non-verbose) notation:
/// wildcarded fields are left out, partly masked ones print `value/mask`.
pub fn format_key(key: &[u8], mask: Option<&[u8]>) -> String {
    format_key_verbose(key, mask, false)
}

/// A mask attribute that matches nothing: all-zero bytes, or for the nested
/// ones (tunnel, encap, nsh) only all-zero members. vswitchd sends e.g.
/// `tunnel(ttl=0)` in the mask of a flow without a tunnel; the kernel ignores
/// it and dump-flows does not show it.
fn mask_attr_is_zero(a: &Attr<'_>) -> bool {
    match a.ty {
        key::TUNNEL | key::ENCAP | key::NSH => attrs_lossy(a.data).iter().all(mask_attr_is_zero),
        _ => all(a.data, 0),
    }
}

/// Every field of every masked attribute, valued by its mask
/// (`ipv4(src=255.255.255.255,dst=0.0.0.0,proto=0,tos=0,ttl=0,frag=0xff)`):
/// which header bits made this megaflow specific.
pub fn format_mask(mask: &[u8]) -> String {
    let mut list = attrs_lossy(mask);
    list.sort_by_key(|a| key_rank(a.ty));
    let mut f = F {
        out: String::new(),
        verbose: true,
        _k: std::marker::PhantomData,
    };
    let mut first = true;
    for a in list.iter().filter(|a| !mask_attr_is_zero(a)) {
        if !first {
            f.out.push(',');
        }
        first = false;
        match a.ty {
            key::IPV4 if a.data.len() >= 12 => {
                let d = a.data;
                let _ = write!(
                    f.out,
                    "ipv4(src={},dst={},proto={},tos={},ttl={},frag={})",
                    ip4(d).unwrap(),
                    ip4(&d[4..]).unwrap(),
                    hex_alt(d[8] as u64),
                    hex_alt(d[9] as u64),
                    hex_alt(d[10] as u64),
                    hex_alt(d[11] as u64)
                );
            }
            key::IPV6 if a.data.len() >= 40 => {
                let d = a.data;
                let s: [u8; 16] = d[0..16].try_into().unwrap();
                let t: [u8; 16] = d[16..32].try_into().unwrap();
                let _ = write!(
                    f.out,
                    "ipv6(src={},dst={},label={},proto={},tclass={},hlimit={},frag={})",
                    Ipv6Addr::from(s),
                    Ipv6Addr::from(t),
                    hex_alt(u32::from_be_bytes(d[32..36].try_into().unwrap()) as u64),
                    hex_alt(d[36] as u64),
                    hex_alt(d[37] as u64),
                    hex_alt(d[38] as u64),
                    hex_alt(d[39] as u64)
                );
            }
            key::TCP | key::UDP | key::SCTP if a.data.len() >= 4 => {
                let _ = write!(
                    f.out,
                    "{}(src={},dst={})",
                    key_attr_name(a.ty),
                    hex_alt(be16(a.data).unwrap() as u64),
                    hex_alt(be16(&a.data[2..]).unwrap() as u64)
                );
            }
            key::ICMP | key::ICMPV6 if a.data.len() >= 2 => {
                let _ = write!(
                    f.out,
                    "{}(type={},code={})",
                    key_attr_name(a.ty),
                    hex_alt(a.data[0] as u64),
                    hex_alt(a.data[1] as u64)
                );
            }
            key::CT_STATE if a.data.len() >= 4 => {
                let _ = write!(
                    f.out,
                    "ct_state({})",
                    hex_alt(u32_ne(a.data).unwrap() as u64)
                );
            }
            key::IN_PORT if a.data.len() >= 4 => {
                let _ = write!(
                    f.out,
                    "in_port({})",
                    hex_alt(u32_ne(a.data).unwrap() as u64)
                );
            }
            key::ENCAP => {
                let _ = write!(f.out, "encap({})", format_mask(a.data));
            }
            _ => format_key_attr(&mut f, a, None),
        }
    }
    if first {
        f.out.push_str("<none>");
    }
    f.out
}

// ---- actions -------------------------------------------------------------------------------------

/// Actions in `ovs-dpctl` notation (`2,3`, `ct(commit,zone=1),recirc(0x1)`,
/// `drop` for none).
pub fn format_actions(buf: &[u8]) -> String {
    let list = attrs_lossy(buf);
    if list.is_empty() {
        return "drop".into();
    }
    list.iter().map(format_action).collect::<Vec<_>>().join(",")
}

fn format_action(a: &Attr<'_>) -> String {
    let d = a.data;
    match a.ty {
        action::OUTPUT if d.len() == 4 => u32_ne(d).unwrap().to_string(),
        action::METER if d.len() == 4 => format!("meter({})", u32_ne(d).unwrap()),
        action::TRUNC if d.len() == 4 => format!("trunc({})", u32_ne(d).unwrap()),
        action::RECIRC if d.len() == 4 => format!("recirc({})", hex_alt(u32_ne(d).unwrap() as u64)),
        action::HASH if d.len() == 8 => {
            let alg = u32_ne(d).unwrap();
            let basis = u32_ne(&d[4..]).unwrap();
            match alg {
                0 => format!("hash(l4({basis}))"),
                1 => format!("hash(sym_l4({basis}))"),
                n => format!("hash(Unknown hash algorithm({n}))"),
            }
        }
        action::USERSPACE => {
            let l = attrs_lossy(d);
            let mut s = format!(
                "userspace(pid={}",
                find(&l, 1).and_then(u32_ne).unwrap_or(0)
            );
            if let Some(u) = find(&l, 2) {
                let _ = write!(s, ",userdata({})", hex_plain(u));
            }
            if let Some(p) = find(&l, 3).and_then(u32_ne) {
                let _ = write!(s, ",tunnel_out_port={p}");
            }
            if find(&l, 4).is_some() {
                s.push_str(",actions");
            }
            s.push(')');
            s
        }
        action::SET => {
            let inner = attrs_lossy(d);
            let mut f = F {
                out: String::new(),
                verbose: true,
                _k: std::marker::PhantomData,
            };
            if let Some(k) = inner.first() {
                format_key_attr(&mut f, k, None);
            }
            format!("set({})", f.out)
        }
        action::SET_MASKED => {
            let inner = attrs_lossy(d);
            let mut f = F {
                out: String::new(),
                verbose: false,
                _k: std::marker::PhantomData,
            };
            if let Some(k) = inner.first() {
                let half = k.data.len() / 2;
                let (v, m) = k.data.split_at(half);
                let masked: Vec<u8> = v.iter().zip(m).map(|(a, b)| a & b).collect();
                format_key_attr(
                    &mut f,
                    &Attr {
                        ty: k.ty,
                        data: &masked,
                    },
                    Some(m),
                );
            }
            format!("set({})", f.out)
        }
        action::PUSH_VLAN if d.len() >= 4 => {
            let tpid = be16(d).unwrap();
            let tci = be16(&d[2..]).unwrap();
            let mut f = F {
                out: String::new(),
                verbose: false,
                _k: std::marker::PhantomData,
            };
            if tpid != 0x8100 {
                let _ = write!(f.out, "tpid=0x{tpid:04x},");
            }
            vlan_tci(&mut f, tci, 0xffff);
            format!("push_vlan({})", f.out)
        }
        action::POP_VLAN => "pop_vlan".into(),
        action::POP_ETH => "pop_eth".into(),
        action::CT_CLEAR => "ct_clear".into(),
        action::POP_NSH => "pop_nsh()".into(),
        24 => "drop".into(),
        action::SAMPLE => {
            let l = attrs_lossy(d);
            let p = find(&l, 1).and_then(u32_ne).unwrap_or(0);
            let pct = 100.0 * p as f64 / u32::MAX as f64;
            format!(
                "sample(sample={pct:.1}%,actions({}))",
                format_actions(find(&l, 2).unwrap_or(&[]))
            )
        }
        action::CLONE => format!("clone({})", format_actions(d)),
        action::CT => format_ct(d),
        action::CHECK_PKT_LEN => {
            let l = attrs_lossy(d);
            format!(
                "check_pkt_len(size={},gt({}),le({}))",
                find(&l, 1).and_then(u16_ne).unwrap_or(0),
                format_actions(find(&l, 2).unwrap_or(&[])),
                format_actions(find(&l, 3).unwrap_or(&[]))
            )
        }
        action::DEC_TTL => {
            let l = attrs_lossy(d);
            format!(
                "dec_ttl(le_1({}))",
                format_actions(find(&l, 1).unwrap_or(&[]))
            )
        }
        t => {
            let mut s = format!("action{t}");
            if !d.is_empty() {
                let _ = write!(s, "({})", hex_bytes_spaced(d));
            }
            s
        }
    }
}

fn format_ct(d: &[u8]) -> String {
    let l = attrs_lossy(d);
    let mut parts = Vec::new();
    if find(&l, 1).is_some() {
        parts.push("commit".to_string());
    }
    if find(&l, 7).is_some() {
        parts.push("force_commit".to_string());
    }
    if let Some(z) = find(&l, 2).and_then(u16_ne).filter(|&z| z != 0) {
        parts.push(format!("zone={z}"));
    }
    if let Some(m) = find(&l, 3).filter(|m| m.len() >= 8) {
        parts.push(format!(
            "mark={}/{}",
            hex_alt(u32_ne(m).unwrap() as u64),
            hex_alt(u32_ne(&m[4..]).unwrap() as u64)
        ));
    }
    if let Some(lb) = find(&l, 4) {
        parts.push(format!("label={}", hex_plain(lb)));
    }
    if let Some(h) = find(&l, 5) {
        parts.push(format!("helper={}", crate::fmt::cstr(h)));
    }
    if let Some(t) = find(&l, 9) {
        parts.push(format!("timeout={}", crate::fmt::cstr(t)));
    }
    if find(&l, 6).is_some() {
        parts.push("nat".to_string());
    }
    if parts.is_empty() {
        "ct".into()
    } else {
        format!("ct({})", parts.join(","))
    }
}

/// Actions as the original megaflow tool printed them, in wire order:
/// `output:3, ct(commit,zone=1), recirc(5)`; nested lists in parentheses.
pub fn actions_brief(buf: &[u8]) -> String {
    let list = attrs_lossy(buf);
    if list.is_empty() {
        return "drop".into();
    }
    list.iter().map(brief_action).collect::<Vec<_>>().join(", ")
}

fn brief_action(a: &Attr<'_>) -> String {
    let d = a.data;
    match a.ty {
        action::OUTPUT => format!("output:{}", u32_ne(d).unwrap_or(0)),
        action::USERSPACE => {
            let l = attrs_lossy(d);
            format!(
                "userspace(pid={},userdata_len={})",
                find(&l, 1).and_then(u32_ne).unwrap_or(0),
                find(&l, 2).map(<[u8]>::len).unwrap_or(0)
            )
        }
        action::RECIRC => format!("recirc({})", u32_ne(d).unwrap_or(0)),
        action::SET => format!(
            "set({})",
            attrs_lossy(d)
                .first()
                .map(|k| key_attr_name(k.ty))
                .unwrap_or_default()
        ),
        action::SET_MASKED => format!("set_masked(len={})", d.len()),
        action::PUSH_VLAN => format!(
            "push_vlan(vid={})",
            be16(&d[2.min(d.len())..]).unwrap_or(0) & 0xfff
        ),
        action::POP_VLAN => "pop_vlan".into(),
        action::TRUNC => format!("trunc({})", u32_ne(d).unwrap_or(0)),
        action::CT => format_ct(d),
        action::CLONE => format!("clone({})", actions_brief(d)),
        action::SAMPLE => {
            let l = attrs_lossy(d);
            format!("sample({})", actions_brief(find(&l, 2).unwrap_or(&[])))
        }
        action::CHECK_PKT_LEN => {
            let l = attrs_lossy(d);
            format!(
                "check_pkt_len(size={},gt({}),le({}))",
                find(&l, 1).and_then(u16_ne).unwrap_or(0),
                actions_brief(find(&l, 2).unwrap_or(&[])),
                actions_brief(find(&l, 3).unwrap_or(&[]))
            )
        }
        t @ (action::HASH
        | action::METER
        | action::CT_CLEAR
        | action::POP_ETH
        | action::PUSH_ETH
        | action::DEC_TTL) => action_name(t as u32),
        t => format!("unknown_{t}"),
    }
}

/// Actions as JSON objects in wire order: `{"type":"output","port":3}`, ...
pub fn actions_json(buf: &[u8]) -> Vec<Value> {
    attrs_lossy(buf)
        .iter()
        .map(|a| {
            let d = a.data;
            let mut v = json!({"type": action_name(a.ty as u32)});
            match a.ty {
                action::OUTPUT => v["port"] = json!(u32_ne(d)),
                action::RECIRC => v["recirc_id"] = json!(u32_ne(d)),
                action::TRUNC => v["max_len"] = json!(u32_ne(d)),
                action::METER => v["meter"] = json!(u32_ne(d)),
                action::CT => {
                    let l = attrs_lossy(d);
                    v["commit"] = json!(find(&l, 1).is_some());
                    v["zone"] = json!(find(&l, 2).and_then(u16_ne).unwrap_or(0));
                    v["nat"] = json!(find(&l, 6).is_some());
                }
                action::USERSPACE => {
                    let l = attrs_lossy(d);
                    v["pid"] = json!(find(&l, 1).and_then(u32_ne));
                    v["userdata_len"] = json!(find(&l, 2).map(<[u8]>::len).unwrap_or(0));
                }
                action::CLONE => v["actions"] = json!(actions_json(d)),
                action::SAMPLE => {
                    v["actions"] = json!(actions_json(find(&attrs_lossy(d), 2).unwrap_or(&[])))
                }
                action::SET | action::SET_MASKED => {
                    v["key"] = json!(attrs_lossy(d).first().map(|k| key_attr_name(k.ty)))
                }
                action::PUSH_VLAN => {
                    v["vid"] = json!(be16(&d[2.min(d.len())..]).map(|t| t & 0xfff))
                }
                _ => {}
            }
            v
        })
        .collect()
}

/// Number of actions in a list and the types of the first `n` (for BPF-side
/// summaries and tests).
pub fn action_types(buf: &[u8]) -> Vec<u16> {
    attrs_lossy(buf).iter().map(|a| a.ty).collect()
}

// ---- building attributes (tests, and tools that decode fields in BPF) -----------------

/// Append one attribute (`type`, payload) with padding.
pub fn put_attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = (4 + payload.len()) as u16;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    while buf.len() & 3 != 0 {
        buf.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_payload(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u8) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[proto, 0, 64, frag]);
        p
    }

    /// The key/mask vswitchd sends for a NORMAL-learned IPv4 flow (its order:
    /// priority, mark, ct..., recirc, dp_hash, in_port, eth, ...).
    fn normal_flow() -> (Vec<u8>, Vec<u8>) {
        let src = [0xaa, 0x4a, 0xa5, 0x2e, 0x33, 0x4d];
        let dst = [0x32, 0xfb, 0xd3, 0x95, 0x78, 0x2d];
        let mut eth = src.to_vec();
        eth.extend_from_slice(&dst);
        let mut k = Vec::new();
        put_attr(&mut k, key::PRIORITY, &0u32.to_ne_bytes());
        put_attr(&mut k, key::SKB_MARK, &0u32.to_ne_bytes());
        put_attr(&mut k, key::CT_STATE, &0u32.to_ne_bytes());
        put_attr(&mut k, key::CT_ZONE, &0u16.to_ne_bytes());
        put_attr(&mut k, key::RECIRC_ID, &0u32.to_ne_bytes());
        put_attr(&mut k, key::DP_HASH, &0u32.to_ne_bytes());
        put_attr(&mut k, key::IN_PORT, &3u32.to_ne_bytes());
        put_attr(&mut k, key::ETHERNET, &eth);
        put_attr(&mut k, key::ETHERTYPE, &0x0800u16.to_be_bytes());
        put_attr(
            &mut k,
            key::IPV4,
            &ipv4_payload([10, 0, 0, 1], [10, 0, 0, 2], 1, 0),
        );
        put_attr(&mut k, key::ICMP, &[8, 0]);
        let mut m = Vec::new();
        put_attr(&mut m, key::PRIORITY, &0u32.to_ne_bytes());
        put_attr(&mut m, key::SKB_MARK, &0u32.to_ne_bytes());
        put_attr(&mut m, key::CT_STATE, &0u32.to_ne_bytes());
        put_attr(&mut m, key::CT_ZONE, &0u16.to_ne_bytes());
        put_attr(&mut m, key::RECIRC_ID, &u32::MAX.to_ne_bytes());
        put_attr(&mut m, key::DP_HASH, &0u32.to_ne_bytes());
        put_attr(&mut m, key::IN_PORT, &u32::MAX.to_ne_bytes());
        put_attr(&mut m, key::ETHERNET, &[0xff; 12]);
        put_attr(&mut m, key::ETHERTYPE, &0xffffu16.to_be_bytes());
        put_attr(&mut m, key::IPV4, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff]);
        put_attr(&mut m, key::ICMP, &[0, 0]);
        (k, m)
    }

    #[test]
    fn normal_megaflow_matches_dpctl() {
        let (k, m) = normal_flow();
        assert_eq!(
            format_key(&k, Some(&m)),
            "recirc_id(0),in_port(3),eth(src=aa:4a:a5:2e:33:4d,dst=32:fb:d3:95:78:2d),eth_type(0x0800),ipv4(frag=no)"
        );
        let f = KeyFields::parse(&k);
        assert_eq!(f.in_port, Some(3));
        assert_eq!(f.ipv4_src, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(f.icmp_type, Some(8));
        assert_eq!(f.eth_type, Some(0x0800));
        let mask = format_mask(&m);
        assert!(
            mask.contains("ipv4(src=0.0.0.0,dst=0.0.0.0,proto=0,tos=0,ttl=0,frag=0xff)"),
            "{mask}"
        );
        assert!(mask.starts_with("recirc_id(0xffffffff),in_port(0xffffffff),eth(src=ff:ff:ff:ff:ff:ff,dst=ff:ff:ff:ff:ff:ff)"), "{mask}");
    }

    /// vswitchd's mask carries `tunnel(ttl=0)` for flows without a tunnel:
    /// not a masked field, so not in the mask text.
    #[test]
    fn zero_tunnel_mask_left_out() {
        let (_, mut m) = normal_flow();
        let mut tun = Vec::new();
        put_attr(&mut tun, 4, &[0]);
        put_attr(&mut m, key::TUNNEL, &tun);
        assert!(format_mask(&m).starts_with("recirc_id(0xffffffff),in_port(0xffffffff),"));
    }

    /// An all-wildcarded ETHERNET mask still prints `eth()` (the flow is
    /// for Ethernet frames), as ovs-dpctl dump-flows does.
    #[test]
    fn wildcarded_ethernet_prints_empty_eth() {
        let (k, mut m) = normal_flow();
        let eth = m.windows(12).position(|w| w == [0xff; 12]).unwrap();
        for b in &mut m[eth..eth + 12] {
            *b = 0;
        }
        assert_eq!(
            format_key(&k, Some(&m)),
            "recirc_id(0),in_port(3),eth(),eth_type(0x0800),ipv4(frag=no)"
        );
    }

    #[test]
    fn partial_masks_and_ports() {
        let mut k = Vec::new();
        put_attr(&mut k, key::RECIRC_ID, &5u32.to_ne_bytes());
        put_attr(&mut k, key::CT_STATE, &0x22u32.to_ne_bytes());
        put_attr(&mut k, key::ETHERTYPE, &0x0800u16.to_be_bytes());
        put_attr(
            &mut k,
            key::IPV4,
            &ipv4_payload([10, 0, 0, 1], [10, 0, 0, 2], 6, 0),
        );
        put_attr(&mut k, key::TCP, &[0x9c, 0x40, 0x14, 0x51]);
        let mut m = Vec::new();
        put_attr(&mut m, key::RECIRC_ID, &u32::MAX.to_ne_bytes());
        put_attr(&mut m, key::CT_STATE, &0x3fu32.to_ne_bytes());
        put_attr(&mut m, key::ETHERTYPE, &0xffffu16.to_be_bytes());
        put_attr(
            &mut m,
            key::IPV4,
            &[
                0xff, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0xff,
            ],
        );
        put_attr(&mut m, key::TCP, &[0, 0, 0xff, 0xf0]);
        assert_eq!(
            format_key(&k, Some(&m)),
            "recirc_id(0x5),ct_state(-new+est-rel-rpl-inv+trk),eth_type(0x0800),ipv4(src=10.0.0.0/255.255.255.0,dst=10.0.0.2,proto=6,frag=no),tcp(dst=5200/0xfff0)"
        );
    }

    #[test]
    fn actions_in_wire_order() {
        let mut a = Vec::new();
        put_attr(&mut a, action::OUTPUT, &2u32.to_ne_bytes());
        put_attr(&mut a, action::OUTPUT, &3u32.to_ne_bytes());
        assert_eq!(format_actions(&a), "2,3");
        assert_eq!(actions_brief(&a), "output:2, output:3");
        assert_eq!(actions_json(&a)[1]["port"], 3);
        let mut ct = Vec::new();
        put_attr(&mut ct, 1, &[]);
        put_attr(&mut ct, 2, &1u16.to_ne_bytes());
        let mut b = Vec::new();
        put_attr(&mut b, action::CT, &ct);
        put_attr(&mut b, action::RECIRC, &7u32.to_ne_bytes());
        assert_eq!(format_actions(&b), "ct(commit,zone=1),recirc(0x7)");
        assert_eq!(actions_brief(&b), "ct(commit,zone=1), recirc(7)");
        let mut c = Vec::new();
        put_attr(&mut c, action::CLONE, &b);
        assert_eq!(format_actions(&c), "clone(ct(commit,zone=1),recirc(0x7))");
        assert_eq!(format_actions(&[]), "drop");
    }

    #[test]
    fn genl_message_and_ufid() {
        let (k, m) = normal_flow();
        let mut acts = Vec::new();
        put_attr(&mut acts, action::OUTPUT, &2u32.to_ne_bytes());
        let mut attrs_buf = Vec::new();
        put_attr(&mut attrs_buf, flow_attr::KEY, &k);
        put_attr(&mut attrs_buf, flow_attr::MASK, &m);
        put_attr(&mut attrs_buf, flow_attr::ACTIONS, &acts);
        put_attr(&mut attrs_buf, flow_attr::UFID, &[0x11; 16]);
        let mut msg = Vec::new();
        msg.extend_from_slice(&((24 + attrs_buf.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&30u16.to_ne_bytes());
        msg.extend_from_slice(&5u16.to_ne_bytes());
        msg.extend_from_slice(&[0; 8]);
        msg.extend_from_slice(&[FLOW_CMD_NEW, 1, 0, 0]);
        msg.extend_from_slice(&7i32.to_ne_bytes());
        msg.extend_from_slice(&attrs_buf);
        let (g, rest) = parse_genl(&msg).unwrap();
        assert!(rest.is_empty());
        assert_eq!((g.cmd, g.dp_ifindex, g.nl_type), (FLOW_CMD_NEW, 7, 30));
        let f = FlowMsg::from_genl(&g);
        assert!(f.error.is_none());
        assert_eq!(
            f.dpctl(),
            "recirc_id(0),in_port(3),eth(src=aa:4a:a5:2e:33:4d,dst=32:fb:d3:95:78:2d),eth_type(0x0800),ipv4(frag=no), actions:2"
        );
        assert_eq!(
            f.ufid_str().unwrap(),
            "11111111-1111-1111-1111-111111111111"
        );
        // A cut message reports the error and keeps what it read.
        let (g2, _) = parse_genl(&msg[..60]).unwrap();
        assert!(FlowMsg::from_genl(&g2).error.is_some());
    }

    #[test]
    fn ct_state_text() {
        assert_eq!(ct_state_str(0x21), "0x21 (NEW|TRACKED)");
        assert_eq!(ct_state_str(0), "0x00 (NONE)");
        assert_eq!(ct_state_plus(0x30), "+inv+trk");
        assert_eq!(ct_state_flags(0x22), vec!["ESTABLISHED", "TRACKED"]);
        assert_eq!(action_name(7), "recirc");
    }
}
