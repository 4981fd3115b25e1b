//! The preset runner of the linux-network-stack bpftrace ports built on the
//! skb snapshot engine (shared::skbsnap, bpf/skbsnap.h): the hook catalogue of
//! bpf/snaphooks.h (kernel functions for kprobe mode, stable tracepoints for
//! tracepoint mode), the extended record (`SnapX`: the snapshot plus the
//! hook's argument, qdisc, rc or drop reason), and `run()`, which a port calls
//! with its preset and skeleton builder. A port crate is its preset.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::mem::MaybeUninit;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::MapCore;
use serde_json::{json, Value};

use crate::bpf;
use crate::cli::{parse_port, CommonArgs};
use crate::events::Drain;
use crate::hooks::{Candidate, HookPoint, Kind, Need};
use crate::ksyms::Kallsyms;
use crate::output::Output;
use crate::reasons::DropReasons;
use crate::runner::Session;
use crate::skbsnap::{GsoNames, Match, Mode, Snap, SnapArgs};
use crate::stacks::read_stack;

/// Mirror of `struct snap_x` (shared/bpf/snaphooks.h).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct SnapX {
    pub s: Snap,
    pub extra: u64,
    pub extra2: u64,
    pub qdisc_kind: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<SnapX>() == 280);
// SAFETY: plain old data.
unsafe impl plain::Plain for SnapX {}

/// What a hook's `extra`/`extra2` mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extra {
    None,
    /// A `netdev_features_t` argument.
    Features,
    /// A GSO type mask argument (`iptunnel_handle_offloads`).
    GsoMask,
    Qdisc,
    /// net_dev_xmit: rc and length.
    Rc,
    /// kfree_skb: location and reason; consume_skb: location.
    Free,
    Icmp,
    OvsAction,
}

/// (id, name, extra) of every hook of bpf/snaphooks.h.
pub const HOOKS: &[(u32, &str, Extra)] = &[
    (1, "sch_direct_xmit", Extra::None),
    (2, "__dev_queue_xmit", Extra::None),
    (3, "validate_xmit_skb", Extra::None),
    (4, "validate_xmit_skb_list", Extra::None),
    (5, "htb_enqueue", Extra::None),
    (6, "fq_codel_enqueue", Extra::None),
    (7, "tcf_classify", Extra::None),
    (8, "tcf_action_exec", Extra::None),
    (9, "cls_cgroup_classify", Extra::None),
    (10, "tun_net_xmit", Extra::None),
    (11, "__ip_queue_xmit", Extra::None),
    (12, "__tcp_transmit_skb", Extra::None),
    (13, "tcp_add_backlog", Extra::None),
    (14, "tcp_v4_do_rcv", Extra::None),
    (15, "__netif_receive_skb_core", Extra::None),
    (16, "iptunnel_xmit", Extra::None),
    (17, "skb_udp_tunnel_segment", Extra::Features),
    (18, "__kfree_skb", Extra::None),
    (19, "iptunnel_handle_offloads", Extra::GsoMask),
    (20, "udp_tunnel_xmit_skb", Extra::None),
    (21, "skb_mac_gso_segment", Extra::Features),
    (22, "tcp_gso_segment", Extra::Features),
    (23, "__skb_gso_segment", Extra::Features),
    (24, "__udp_gso_segment", Extra::Features),
    (25, "skb_segment_list", Extra::Features),
    (26, "skb_segment", Extra::Features),
    (27, "__ip_finish_output", Extra::None),
    (28, "ip_finish_output_gso", Extra::None),
    (29, "__icmp_send", Extra::None),
    (30, "ip_fragment", Extra::None),
    (31, "mlx5e_xmit", Extra::None),
    (32, "internal_dev_xmit", Extra::None),
    (33, "netif_skb_features", Extra::None),
    (50, "net_dev_queue", Extra::None),
    (51, "qdisc_dequeue", Extra::Qdisc),
    (52, "qdisc_enqueue", Extra::Qdisc),
    (53, "net_dev_start_xmit", Extra::None),
    (54, "net_dev_xmit", Extra::Rc),
    (55, "netif_receive_skb", Extra::None),
    (56, "netif_receive_skb_entry", Extra::None),
    (57, "napi_gro_receive_entry", Extra::None),
    (58, "ovs_dp_upcall", Extra::None),
    (59, "ovs_do_execute_action", Extra::OvsAction),
    (60, "kfree_skb", Extra::Free),
    (61, "consume_skb", Extra::Free),
    (62, "icmp_send", Extra::Icmp),
];

/// Ids 50 and up are tracepoints.
pub fn is_tracepoint(id: u32) -> bool {
    id >= 50
}

pub fn hook_name(id: u32) -> &'static str {
    HOOKS.iter().find(|h| h.0 == id).map(|h| h.1).unwrap_or("?")
}

fn hook_extra(id: u32) -> Extra {
    HOOKS
        .iter()
        .find(|h| h.0 == id)
        .map(|h| h.2)
        .unwrap_or(Extra::None)
}

/// A kprobe hook point on `func` (program `kp_<func>`) whose argument `idx`
/// must be called `arg` in the kernel's BTF.
macro_rules! kp {
    ($name:ident, $func:literal, $idx:literal, $arg:literal) => {
        pub const $name: HookPoint = HookPoint {
            name: $func,
            required: false,
            candidates: &[Candidate::new(Kind::Kprobe, concat!("kp_", $func), $func)
                .need(Need::Param($idx, $arg))],
        };
    };
    ($name:ident, $func:literal) => {
        pub const $name: HookPoint = HookPoint {
            name: $func,
            required: false,
            candidates: &[Candidate::new(Kind::Kprobe, concat!("kp_", $func), $func)],
        };
    };
}

/// A tracepoint hook point (program `tp_<tp>`); `$name_shown` is the hook
/// name in `--explain` and the attached line.
macro_rules! tp {
    ($name:ident, $tp:literal) => {
        pub const $name: HookPoint = HookPoint {
            name: $tp,
            required: false,
            candidates: &[Candidate::new(Kind::TpBtf, concat!("tp_", $tp), $tp)],
        };
    };
}

kp!(K_SCH_DIRECT_XMIT, "sch_direct_xmit", 0, "skb");
kp!(K_DEV_QUEUE_XMIT, "__dev_queue_xmit", 0, "skb");
kp!(K_VALIDATE_XMIT_SKB, "validate_xmit_skb", 0, "skb");
kp!(K_VALIDATE_XMIT_SKB_LIST, "validate_xmit_skb_list", 0, "skb");
kp!(K_HTB_ENQUEUE, "htb_enqueue", 0, "skb");
kp!(K_FQ_CODEL_ENQUEUE, "fq_codel_enqueue", 0, "skb");
kp!(K_TCF_CLASSIFY, "tcf_classify", 0, "skb");
kp!(K_TCF_ACTION_EXEC, "tcf_action_exec", 0, "skb");
kp!(K_CLS_CGROUP_CLASSIFY, "cls_cgroup_classify", 0, "skb");
kp!(K_TUN_NET_XMIT, "tun_net_xmit", 0, "skb");
kp!(K_IP_QUEUE_XMIT, "__ip_queue_xmit", 1, "skb");
kp!(K_TCP_TRANSMIT_SKB, "__tcp_transmit_skb", 1, "skb");
kp!(K_TCP_ADD_BACKLOG, "tcp_add_backlog", 1, "skb");
kp!(K_TCP_V4_DO_RCV, "tcp_v4_do_rcv", 1, "skb");
kp!(
    K_NETIF_RECEIVE_SKB_CORE,
    "__netif_receive_skb_core",
    0,
    "pskb"
);
kp!(K_IPTUNNEL_XMIT, "iptunnel_xmit", 2, "skb");
kp!(K_SKB_UDP_TUNNEL_SEGMENT, "skb_udp_tunnel_segment", 0, "skb");
kp!(K_KFREE_SKB, "__kfree_skb", 0, "skb");
kp!(
    K_IPTUNNEL_HANDLE_OFFLOADS,
    "iptunnel_handle_offloads",
    0,
    "skb"
);
kp!(K_UDP_TUNNEL_XMIT_SKB, "udp_tunnel_xmit_skb", 2, "skb");
kp!(K_SKB_MAC_GSO_SEGMENT, "skb_mac_gso_segment", 0, "skb");
kp!(K_TCP_GSO_SEGMENT, "tcp_gso_segment", 0, "skb");
kp!(K_SKB_GSO_SEGMENT, "__skb_gso_segment", 0, "skb");
kp!(K_UDP_GSO_SEGMENT, "__udp_gso_segment", 0, "gso_skb");
kp!(K_SKB_SEGMENT_LIST, "skb_segment_list", 0, "skb");
kp!(K_SKB_SEGMENT, "skb_segment", 0, "head_skb");
kp!(K_IP_FINISH_OUTPUT, "__ip_finish_output", 2, "skb");
kp!(K_IP_FINISH_OUTPUT_GSO, "ip_finish_output_gso", 2, "skb");
kp!(K_ICMP_SEND, "__icmp_send", 0, "skb_in");
// A compiler clone (ip_fragment.constprop.0) on most builds: no argument check.
kp!(K_IP_FRAGMENT, "ip_fragment");
kp!(K_MLX5E_XMIT, "mlx5e_xmit", 0, "skb");
kp!(K_INTERNAL_DEV_XMIT, "internal_dev_xmit", 0, "skb");
kp!(K_NETIF_SKB_FEATURES, "netif_skb_features", 0, "skb");

tp!(T_NET_DEV_QUEUE, "net_dev_queue");
tp!(T_QDISC_DEQUEUE, "qdisc_dequeue");
tp!(T_QDISC_ENQUEUE, "qdisc_enqueue");
tp!(T_NET_DEV_START_XMIT, "net_dev_start_xmit");
tp!(T_NET_DEV_XMIT, "net_dev_xmit");
tp!(T_NETIF_RECEIVE_SKB, "netif_receive_skb");
tp!(T_NETIF_RECEIVE_SKB_ENTRY, "netif_receive_skb_entry");
tp!(T_NAPI_GRO_RECEIVE_ENTRY, "napi_gro_receive_entry");
tp!(T_OVS_DP_UPCALL, "ovs_dp_upcall");
tp!(T_CONSUME_SKB, "consume_skb");
tp!(T_ICMP_SEND, "icmp_send");
/// kfree_skb with its drop reason (>= 5.17).
pub const T_KFREE_SKB: HookPoint = HookPoint {
    name: "kfree_skb",
    required: false,
    candidates: &[
        Candidate::new(Kind::TpBtf, "tp_kfree_skb", "kfree_skb").need(Need::ArgsAtLeast(3))
    ],
};
/// net_dev_start_xmit on tun/tap devices: the tracepoint stand-in of tun_net_xmit.
pub const T_TUN_START_XMIT: HookPoint = HookPoint {
    name: "tun_net_xmit",
    required: false,
    candidates: &[Candidate::new(
        Kind::TpBtf,
        "tp_net_dev_start_xmit_tun",
        "net_dev_start_xmit",
    )],
};

/// How a port prints an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Headline, the full dump, the stack.
    Full,
    /// The dump only for TCP/UDP packets (dev-queue-xmit); headline and stack always.
    DumpTcpUdp,
    /// Tracepoint events as one short line (tracepoint-qdisc-dequeue).
    ShortTracepoints,
}

/// A port: its hooks in each mode and its defaults.
pub struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    pub kprobe_hooks: &'static [HookPoint],
    pub tp_hooks: &'static [HookPoint],
    /// Kernel functions without a tracepoint stand-in (named in the notice).
    pub tp_skipped: &'static str,
    pub default_match: Match,
    pub dev_required: bool,
    pub layout: Layout,
    /// `--port`, `--udp-only`, `--features` (the tunnel / UDP presets).
    pub tunnel_flags: bool,
    /// Filter every event on the outer UDP port (trace-offloading-segment).
    pub port_filters_all: bool,
    /// Skip ICMP (vpc-vm-udp-datapath).
    pub skip_icmp: bool,
    /// The per-hook counter table at exit.
    pub summary: bool,
    /// `--compare` (validate-xmit-skb).
    pub compare: bool,
}

/// Flags of the ports: the snapshot flags plus the preset's extras.
#[derive(Parser, Debug)]
pub struct PortArgs {
    #[command(flatten)]
    pub snap: SnapArgs,
    /// Pair the same skb before/after and report GSO changes and software segmentation
    #[arg(long)]
    pub compare: bool,
    /// Tunnel UDP port of the outer headers (6081 Geneve, 4789 VXLAN)
    #[arg(long, value_name = "N", value_parser = parse_port, allow_hyphen_values = true)]
    pub port: Option<u16>,
    /// Only UDP packets
    #[arg(long)]
    pub udp_only: bool,
    /// Decode netdev_features_t arguments (and the device's feature sets) to names
    #[arg(long)]
    pub features: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Parse the command line for `preset`: flags it does not have are hidden
/// and rejected, defaults follow the preset; errors are one line, exit 2.
pub fn parse_args(preset: &Preset) -> PortArgs {
    let mut cmd = PortArgs::command()
        .name(preset.name)
        .bin_name(preset.name)
        .about(preset.about);
    let m = match preset.default_match {
        Match::GsoAnomaly => "gso-anomaly",
        Match::Gso => "gso",
        Match::All => "all",
    };
    cmd = cmd.mut_arg("matching", |a| a.default_value(m));
    if !preset.compare {
        cmd = cmd.mut_arg("compare", |a| a.hide(true));
    }
    if !preset.tunnel_flags {
        for f in ["port", "udp_only", "features"] {
            cmd = cmd.mut_arg(f, |a| a.hide(true));
        }
    }
    let matches: ArgMatches = match cmd.try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: bad command line");
            eprintln!("{}", first.trim_end());
            std::process::exit(crate::EXIT_USAGE);
        }
    };
    let a = PortArgs::from_arg_matches(&matches)
        .unwrap_or_else(|e| crate::cli::usage_error(e.to_string().trim()));
    let unsupported = |flag: &str| {
        crate::cli::usage_error(format!(
            "unexpected argument '{flag}' ({} has no such flag)",
            preset.name
        ))
    };
    if a.compare && !preset.compare {
        unsupported("--compare");
    }
    if !preset.tunnel_flags && (a.port.is_some() || a.udp_only || a.features) {
        unsupported(if a.port.is_some() {
            "--port"
        } else if a.udp_only {
            "--udp-only"
        } else {
            "--features"
        });
    }
    if preset.dev_required && a.snap.devs.is_empty() {
        crate::cli::usage_error("the following required arguments were not provided: --dev <NAME>");
    }
    a.snap.validate();
    a
}

/// Kernel functions can be hooked (kprobes)?
pub fn kprobes_available() -> bool {
    std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists()
}

/// The hooks for `mode` and the notice when tracepoint mode stands in.
pub fn choose_hooks(preset: &Preset, mode: Mode) -> (&'static [HookPoint], Option<String>) {
    let tp = match mode {
        Mode::Kprobe => false,
        Mode::Tracepoint => true,
        Mode::Auto => !kprobes_available(),
    };
    if !tp {
        return (preset.kprobe_hooks, None);
    }
    let names: Vec<&str> = preset
        .tp_hooks
        .iter()
        .map(|h| h.candidates[0].target)
        .collect();
    let mut notice = format!(
        "notice: tracepoint mode{}: hooks {} instead of {}",
        if mode == Mode::Auto {
            " (this kernel has no kprobes)"
        } else {
            ""
        },
        names.join(", "),
        preset
            .kprobe_hooks
            .iter()
            .map(|h| h.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !preset.tp_skipped.is_empty() {
        notice.push_str(&format!(
            "; not traced (no tracepoint): {}",
            preset.tp_skipped
        ));
    }
    (preset.tp_hooks, Some(notice))
}

/// Names of the `NETIF_F_*` feature bits (from BTF) set in `f`.
pub struct FeatureNames(Vec<(u32, String)>);

impl FeatureNames {
    pub fn load(btf: &crate::btf::KernelBtf) -> Self {
        let v = btf
            .enum_with_member("NETIF_F_SG_BIT")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(n, v)| {
                let s = n.strip_prefix("NETIF_F_")?.strip_suffix("_BIT")?;
                (0..64).contains(&v).then(|| (v as u32, s.to_string()))
            })
            .collect();
        FeatureNames(v)
    }
    pub fn names(&self, f: u64) -> Vec<String> {
        self.0
            .iter()
            .filter(|(b, _)| f & (1u64 << b) != 0)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

/// One `--compare` pairing state: the skb last seen before the device.
struct Pending {
    ptr: u64,
    gso_size: u16,
    gso_type: u32,
    gso_segs: u16,
    len: u32,
    segs_seen: u32,
    flow: (u8, [u8; 4], [u8; 4], u16, u16),
}

struct St {
    out: Output,
    clock: crate::time::Clock,
    ksyms: Kallsyms,
    gso: GsoNames,
    feats: FeatureNames,
    reasons: DropReasons,
    preset: &'static Preset,
    anomaly_line: bool,
    features: bool,
    port: Option<u16>,
    port_in_kernel: bool,
    compare: bool,
    max: Option<u32>,
    printed: u64,
    counts: BTreeMap<(String, String), (u64, u64)>,
    pending: HashMap<String, Pending>,
    batch: Vec<(SnapX, Vec<u64>)>,
}

impl St {
    fn extra_lines(&mut self, e: &SnapX) -> (Option<String>, Value) {
        let id = e.s.hook;
        match hook_extra(id) {
            Extra::None => (None, Value::Null),
            Extra::Features => {
                let mut s = format!("features arg: {:#x}", e.extra);
                if self.features {
                    s.push_str(&format!(" [{}]", self.feats.names(e.extra).join("|")));
                }
                (
                    Some(s),
                    json!({"features_arg": format!("{:#x}", e.extra), "features_arg_names": self.feats.names(e.extra)}),
                )
            }
            Extra::GsoMask => (
                Some(format!(
                    "gso_type_mask arg: {:#x} [{}]",
                    e.extra,
                    self.gso.names(e.extra as u32).join("|")
                )),
                json!({"gso_type_mask": e.extra, "gso_type_mask_names": self.gso.names(e.extra as u32)}),
            ),
            Extra::Qdisc => {
                let kind = crate::fmt::cstr(&e.qdisc_kind);
                (
                    Some(format!(
                        "qdisc: kind={kind} handle={:#x} parent={:#x}",
                        e.extra as u32, e.extra2 as u32
                    )),
                    json!({"qdisc": {"kind": kind, "handle": format!("{:#x}", e.extra as u32), "parent": format!("{:#x}", e.extra2 as u32)}}),
                )
            }
            Extra::Rc => (
                Some(format!("rc: {} len: {}", e.extra as i64, e.extra2)),
                json!({"rc": e.extra as i64}),
            ),
            Extra::Free => {
                let loc = self.ksyms.format(e.extra);
                if id == 60 {
                    let r = self.reasons.name(e.extra2 as u32);
                    (
                        Some(format!("reason: {r} location: {loc}")),
                        json!({"reason": r, "location": loc}),
                    )
                } else {
                    (Some(format!("location: {loc}")), json!({"location": loc}))
                }
            }
            Extra::Icmp => (
                Some(format!(
                    "icmp: type={} code={}",
                    e.extra2 >> 8,
                    e.extra2 & 0xff
                )),
                json!({"icmp_type": e.extra2 >> 8, "icmp_code": e.extra2 & 0xff}),
            ),
            Extra::OvsAction => (
                Some(format!("ovs action: {}", e.extra)),
                json!({"ovs_action": e.extra}),
            ),
        }
    }

    /// `--compare`: before (qdisc_dequeue / validate entry) vs at the driver
    /// (net_dev_start_xmit); returns a report line when something changed.
    fn compare(&mut self, e: &SnapX) -> Option<(String, Value)> {
        let s = &e.s;
        let dev = crate::fmt::cstr(&s.dev);
        let key = format!("{dev}/{}", s.queue_mapping);
        let flow = (s.l4proto, s.saddr, s.daddr, s.sport, s.dport);
        let before = matches!(s.hook, 51 | 3 | 4);
        if before {
            let done = self.pending.remove(&key);
            self.pending.insert(
                key,
                Pending {
                    ptr: s.skb,
                    gso_size: s.gso_size,
                    gso_type: s.gso_type,
                    gso_segs: s.gso_segs,
                    len: s.len,
                    segs_seen: 0,
                    flow,
                },
            );
            return done.and_then(|p| self.segmented(&dev, &p));
        }
        let p = self.pending.get_mut(&key)?;
        if s.skb == p.ptr {
            let p = self.pending.remove(&key).unwrap();
            if p.gso_size != s.gso_size || p.gso_type != s.gso_type {
                let line = format!(
                    "compare: dev={dev} skb={:#x} GSO changed: gso_size {} -> {}, gso_type {:#x} -> {:#x}",
                    s.skb, p.gso_size, s.gso_size, p.gso_type, s.gso_type
                );
                let v = json!({"compare": "gso_changed", "dev": dev, "skb": format!("{:#x}", s.skb),
                    "gso_size_before": p.gso_size, "gso_size_after": s.gso_size,
                    "gso_type_before": p.gso_type, "gso_type_after": s.gso_type});
                return Some((line, v));
            }
            return None;
        }
        // Another skb of the same flow after a GSO skb was dequeued: a segment.
        if p.gso_size != 0 && p.flow == flow && s.gso_size == 0 {
            p.segs_seen += 1;
            if p.segs_seen >= p.gso_segs.max(1) as u32 {
                let p = self.pending.remove(&key).unwrap();
                return self.segmented(&dev, &p);
            }
        }
        None
    }

    fn segmented(&self, dev: &str, p: &Pending) -> Option<(String, Value)> {
        if p.segs_seen == 0 {
            return None;
        }
        let line = format!(
            "compare: dev={dev} skb={:#x} segmented in software: 1 GSO skb (len {}, gso_size {}, gso_segs {}, gso_type {:#x} [{}]) -> {} skbs",
            p.ptr,
            p.len,
            p.gso_size,
            p.gso_segs,
            p.gso_type,
            self.gso.names(p.gso_type).join("|"),
            p.segs_seen
        );
        let v = json!({"compare": "segmented", "dev": dev, "skb": format!("{:#x}", p.ptr), "len": p.len,
            "gso_size": p.gso_size, "gso_segs": p.gso_segs, "gso_type": p.gso_type, "segments": p.segs_seen});
        Some((line, v))
    }

    /// Handle one record; false once `--max-events` is reached.
    fn on_event(&mut self, obj: &libbpf_rs::Object, data: &[u8]) -> bool {
        let mut e = SnapX::default();
        if plain::copy_from_bytes(&mut e, data).is_err() {
            return true;
        }
        if let Some(m) = self.max {
            if self.printed >= m as u64 {
                return false;
            }
        }
        let s = &e.s;
        if self.preset.skip_icmp && s.family == 4 && s.l4proto == 1 {
            return true;
        }
        if let Some(port) = self.port {
            let outer_port = s.l4proto == 17 && (s.dport == port || s.sport == port);
            if self.preset.port_filters_all && !self.port_in_kernel {
                // Kprobe mode: the tunnel functions see the skb before the
                // outer headers exist; every other hook must show the port.
                if !matches!(s.hook, 16 | 17) && !outer_port {
                    return true;
                }
            } else if !self.preset.port_filters_all
                && s.encapsulation != 0
                && s.l4proto == 17
                && !outer_port
            {
                // Only encapsulated UDP packets are checked against the tunnel port.
                return true;
            }
        }
        let func = hook_name(s.hook);
        let dev = crate::fmt::cstr(&s.dev);
        let c = self
            .counts
            .entry((func.to_string(), dev.clone()))
            .or_default();
        c.0 += 1;
        if s.gso_type != 0 {
            c.1 += 1;
        }
        if self.compare {
            if let Some((line, v)) = self.compare(&e) {
                self.printed += 1;
                if self.out.json() {
                    let mut v = v;
                    v["time"] = json!(self.clock.rfc3339(s.ts_ns));
                    v["ts_ns"] = json!(s.ts_ns);
                    self.out.event(&v);
                } else {
                    self.out.line(&line);
                }
            }
            return true;
        }
        self.printed += 1;
        // Stacks are symbolized per batch (one kallsyms pass for all new frames).
        let addrs: Vec<u64> = match obj
            .maps()
            .find(|m| m.name().to_string_lossy() == "snap_stacks")
        {
            Some(m) if s.kstack_id >= 0 => {
                read_stack(&m as &dyn MapCore, s.kstack_id).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        self.batch.push((e, addrs));
        self.max.is_none_or(|m| self.printed < m as u64)
    }

    /// Print the events of the last poll.
    fn flush(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        let all: Vec<u64> = batch.iter().flat_map(|(_, a)| a.iter().copied()).collect();
        self.ksyms.prefetch(&all);
        for (e, addrs) in batch {
            let kstack = self.ksyms.format_stack(&addrs);
            self.print(&e, &kstack);
        }
    }

    fn print(&mut self, e: &SnapX, kstack: &[String]) {
        let s = &e.s;
        let func = hook_name(s.hook);
        let dev = crate::fmt::cstr(&s.dev);
        let (extra_line, extra_json) = self.extra_lines(e);
        if self.out.json() {
            let t = self.clock.rfc3339(s.ts_ns);
            let mut v = s.json(func, &self.gso, false, &t, kstack);
            if let Value::Object(m) = extra_json {
                for (k, x) in m {
                    v[k] = x;
                }
            }
            if self.features {
                v["features_names"] = json!(self.feats.names(s.features));
            }
            v["mode_hook"] = json!(if is_tracepoint(s.hook) {
                "tracepoint"
            } else {
                "kprobe"
            });
            self.out.event(&v);
            return;
        }
        let short = self.preset.layout == Layout::ShortTracepoints && is_tracepoint(s.hook);
        let mut text = if short {
            format!(
                "{func} unexpected gso type:{:#04x}, gso size: {}, skb_len: {}, data_len: {}\ndevice: {dev}\n",
                s.gso_type, s.gso_size, s.len, s.data_len
            )
        } else if self.preset.layout == Layout::DumpTcpUdp
            && !(s.family == 4 && matches!(s.l4proto, 6 | 17))
        {
            let mut h = format!("{func} probe\n");
            if self.anomaly_line {
                h.push_str(&format!(
                    "unexpected gso type:{:#04x}, gso size: {}\n",
                    s.gso_type, s.gso_size
                ));
            }
            h.push_str(&format!("device: {dev}\n"));
            h
        } else {
            s.text(func, self.anomaly_line, &self.gso, false)
        };
        if let Some(x) = extra_line {
            text.push_str(&x);
            text.push('\n');
        }
        if self.features && !short {
            text.push_str(&format!(
                "dev feature names: {}\n",
                self.feats.names(s.features).join("|")
            ));
        }
        if !kstack.is_empty() {
            text.push_str("kstack:\n");
            for f in kstack {
                text.push_str(&format!("  {f}\n"));
            }
        }
        self.out.line(text.trim_end_matches('\n'));
    }
}

/// Run a port: parse, choose the hooks, load `builder`'s object, print.
pub fn run<B>(preset: &'static Preset, builder: B)
where
    B: for<'o> SkelBuilder<'o>,
{
    let a = parse_args(preset);
    let common = a.common.clone();
    let mut out = Output::new(common.json, None);
    let mut session = Session::start(common.duration, common.verbose);
    // --compare pairs the tracepoints before (qdisc_dequeue) and at the driver.
    let mode = if a.compare {
        Mode::Tracepoint
    } else {
        a.snap.mode
    };
    let (hooks, notice) = choose_hooks(preset, mode);
    if common.explain {
        if let Some(n) = &notice {
            println!("{n}");
        }
    }
    let (kernel, plan) = bpf::plan(&common, hooks);
    let gso = GsoNames::load(&kernel.btf);
    let feats = FeatureNames::load(&kernel.btf);
    let reasons = DropReasons::load(&kernel.btf);
    drop(kernel);

    let mut cfg = a.snap.cfg();
    if a.udp_only {
        cfg.l4proto = 17;
    }
    let port = if preset.tunnel_flags {
        a.port.or(preset.port_filters_all.then_some(6081))
    } else {
        None
    };
    // The outer port is filtered in the kernel where the hooks see the outer
    // headers (the device tracepoints); in kprobe mode in user space.
    let port_in_kernel = preset.port_filters_all && notice.is_some();
    if port_in_kernel {
        if let Some(p) = port {
            cfg.l4proto = 17;
            cfg.dport = p;
        }
    }
    if a.compare {
        // Segments carry no GSO state: the pairing needs every skb.
        cfg.matching = 2;
    }
    let tun_set = plan
        .chosen("tun_net_xmit")
        .is_some_and(|c| c.kind == Kind::TpBtf);

    let mut open_object = MaybeUninit::uninit();
    let mut open = builder.open(&mut open_object).unwrap_or_else(|e| {
        crate::die(crate::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
    });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    for (n, b) in [
        ("SNAP_CFG", cfg.as_bytes()),
        ("SNAP_TUN_SET", &[u8::from(tun_set)][..]),
    ] {
        bpf::set_rodata(open.open_object_mut(), n, b)
            .unwrap_or_else(|e| crate::die(crate::EXIT_RUNTIME, e));
    }
    let mut skel = bpf::load(open);
    if tun_set {
        if let Some(m) = skel
            .object()
            .maps()
            .find(|m| m.name().to_string_lossy() == "snap_tun_devs")
        {
            crate::skbsnap::refresh_tun_devs(&m as &dyn MapCore);
        }
    }
    let (_links, _) = bpf::attach_or_warn(&plan, &mut skel);
    if let Some(n) = &notice {
        eprintln!("{n}");
    }
    let devs = if a.snap.devs.is_empty() {
        "all".to_string()
    } else {
        a.snap.devs.join(",")
    };
    let m = match cfg.matching {
        0 => "gso-anomaly",
        1 => "gso",
        _ => "all",
    };
    out.banner(&format!(
        "Tracing skbs (--match {m}) on devices: {devs}{}. Hit Ctrl-C to end.",
        if a.compare {
            ", comparing before/after the device"
        } else {
            ""
        }
    ));

    let state = RefCell::new(St {
        out,
        clock: session.clock,
        ksyms: Kallsyms::new(),
        gso,
        feats,
        reasons,
        preset,
        anomaly_line: a.snap.matching == Match::GsoAnomaly,
        features: a.features,
        port,
        port_in_kernel,
        compare: a.compare,
        max: a.snap.max_events,
        printed: 0,
        counts: BTreeMap::new(),
        pending: HashMap::new(),
        batch: Vec::new(),
    });
    let obj = skel.object();
    let drain = Drain::open(obj, channel, |d| {
        if !state.borrow_mut().on_event(obj, d) {
            session_stop();
        }
    })
    .unwrap_or_else(|e| crate::die(crate::EXIT_RUNTIME, e));
    session.attached(&plan.summary());
    if let Err(e) = session.run(
        |t| {
            if STOP.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(());
            }
            drain.poll(t)
        },
        || state.borrow_mut().flush(),
    ) {
        crate::die(crate::EXIT_RUNTIME, e);
    }
    drain.flush();
    state.borrow_mut().flush();
    let lost = drain.lost(obj);
    let mut st = state.borrow_mut();
    if preset.summary {
        let rows: Vec<Vec<String>> = st
            .counts
            .iter()
            .map(|((f, d), (n, g))| vec![f.clone(), d.clone(), n.to_string(), g.to_string()])
            .collect();
        let table = crate::fmt::table(&["func", "dev", "events", "gso_events"], &rows);
        if st.out.json() {
            let v: Vec<Value> = st
                .counts
                .iter()
                .map(|((f, d), (n, g))| json!({"func": f, "dev": d, "events": n, "gso_events": g}))
                .collect();
            st.out.event(&json!({"type": "summary", "hooks": v}));
        } else {
            st.out.line(&format!("\nPer-hook counters:\n{table}"));
        }
    }
    if st.max.is_some_and(|m| st.printed >= m as u64) {
        // What the kernel had no room for after we stopped reading is no loss.
        eprintln!(
            "Summary: {} events reported (--max-events reached)",
            st.printed
        );
    } else {
        eprintln!(
            "Summary: {} events reported, {} events lost",
            st.printed, lost
        );
    }
    session.verbose_footer();
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--max-events` reached: end the loop like Ctrl-C does (exit 0).
fn session_stop() {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
    // The runner polls its own flag; SIGINT to ourselves sets it.
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_table_is_consistent() {
        assert_eq!(hook_name(2), "__dev_queue_xmit");
        assert_eq!(hook_name(51), "qdisc_dequeue");
        assert!(is_tracepoint(60) && !is_tracepoint(33));
        assert_eq!(hook_extra(24), Extra::Features);
        let mut ids: Vec<u32> = HOOKS.iter().map(|h| h.0).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), HOOKS.len());
        assert_eq!(K_UDP_GSO_SEGMENT.candidates[0].prog, "kp___udp_gso_segment");
        assert_eq!(T_QDISC_DEQUEUE.candidates[0].prog, "tp_qdisc_dequeue");
    }
}
