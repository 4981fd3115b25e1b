//! `ovs_userspace_megaflow_kernel_parse`: the megaflow tracker with the flow
//! put decoded inside BPF (no 2-8 KiB message copy per flow; filters applied
//! in the kernel), for high flow-setup rates. The BPF side fills fixed slots
//! for the key and mask attributes it knows and the first 8 actions; user space
//! turns them back into attributes and prints them like ovs_userspace_megaflow.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::MapCore;

use ovs_userspace_megaflow::filter::{Filter, FilterArgs};
use ovs_userspace_megaflow::{FlowInfo, State, Style, UpEvent};
use shared::bpf;
use shared::cli::CommonArgs;
use shared::events::{percpu_sum_u64, Drain};
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::output::Output;
use shared::ovs::{self, key, put_attr, FlowMsg};
use shared::runner::Session;

mod skel {
    include!(concat!(
        env!("OUT_DIR"),
        "/ovs_userspace_megaflow_kernel_parse.skel.rs"
    ));
}
use skel::OvsUserspaceMegaflowKernelParseSkelBuilder;

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
        ],
    },
];

const MAX_ACTS: usize = 8;

/// Mirror of `struct key_blob`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct KeyBlob {
    present: u64,
    recirc_id: u32,
    skb_mark: u32,
    in_port: u32,
    priority: u32,
    dp_hash: u32,
    ct_state: u32,
    ct_mark: u32,
    ct_zone: u16,
    eth_type: u16,
    tcp_flags: u16,
    pad: u16,
    eth: [u8; 12],
    ipv4: [u8; 12],
    ipv6: [u8; 40],
    l4: [u8; 4],
    icmp: [u8; 2],
    pad2: [u8; 2],
    arp: [u8; 24],
}
const _: () = assert!(std::mem::size_of::<KeyBlob>() == 144);

impl Default for KeyBlob {
    fn default() -> Self {
        // SAFETY: integers and byte arrays only.
        unsafe { std::mem::zeroed() }
    }
}

/// Mirror of `struct flow_event`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct FlowEvent {
    ty: u8,
    has_key: u8,
    has_mask: u8,
    has_actions: u8,
    tgid: u32,
    tid: u32,
    portid: u32,
    dp_ifindex: i32,
    n_actions: u32,
    act_type: [u16; MAX_ACTS],
    act_arg: [u32; MAX_ACTS],
    ts_ns: u64,
    comm: [u8; 16],
    key: KeyBlob,
    mask: KeyBlob,
    ufid: [u8; 16],
    has_ufid: u8,
    is_match: u8,
    pad: [u8; 6],
}
const _: () = assert!(std::mem::size_of::<FlowEvent>() == 408);
// SAFETY: plain old data.
unsafe impl plain::Plain for FlowEvent {}

#[derive(Parser, Debug)]
#[command(
    about = "Upcalls and the megaflows ovs-vswitchd installs, decoded inside BPF (key, mask, first actions), filtered in the kernel"
)]
pub struct Args {
    /// Also print events that do not match, with why
    #[arg(long)]
    pub debug: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The attributes the BPF side decoded, back as a netlink attribute list.
fn blob_attrs(k: &KeyBlob) -> Vec<u8> {
    let has = |t: u16| k.present & (1u64 << t) != 0;
    let mut b = Vec::new();
    let mut put = |t: u16, p: &[u8]| {
        if has(t) {
            put_attr(&mut b, t, p);
        }
    };
    put(key::RECIRC_ID, &k.recirc_id.to_ne_bytes());
    put(key::DP_HASH, &k.dp_hash.to_ne_bytes());
    put(key::PRIORITY, &k.priority.to_ne_bytes());
    put(key::IN_PORT, &k.in_port.to_ne_bytes());
    put(key::SKB_MARK, &k.skb_mark.to_ne_bytes());
    put(key::CT_STATE, &k.ct_state.to_ne_bytes());
    put(key::CT_ZONE, &k.ct_zone.to_ne_bytes());
    put(key::CT_MARK, &k.ct_mark.to_ne_bytes());
    put(key::ETHERNET, &k.eth);
    // eth_type and tcp_flags were copied as raw (network-order) bytes.
    put(key::ETHERTYPE, &k.eth_type.to_ne_bytes());
    put(key::IPV4, &k.ipv4);
    put(key::IPV6, &k.ipv6);
    put(key::ARP, &k.arp);
    put(key::TCP, &k.l4);
    put(key::TCP_FLAGS, &k.tcp_flags.to_ne_bytes());
    put(key::UDP, &k.l4);
    put(key::SCTP, &k.l4);
    put(key::ICMP, &k.icmp);
    put(key::ICMPV6, &k.icmp);
    b
}

fn action_attrs(e: &FlowEvent) -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..(e.n_actions as usize).min(MAX_ACTS) {
        let t = e.act_type[i];
        match t {
            ovs::action::OUTPUT | ovs::action::RECIRC | ovs::action::METER | ovs::action::TRUNC => {
                put_attr(&mut b, t, &e.act_arg[i].to_ne_bytes())
            }
            _ => put_attr(&mut b, t, &[]),
        }
    }
    b
}

fn on_flow(st: &mut State, e: &FlowEvent) {
    let fm = FlowMsg {
        cmd: ovs::FLOW_CMD_NEW,
        dp_ifindex: e.dp_ifindex,
        key: (e.has_key != 0).then(|| blob_attrs(&e.key)),
        mask: (e.has_mask != 0).then(|| blob_attrs(&e.mask)),
        actions: (e.has_actions != 0).then(|| action_attrs(e)),
        ufid: (e.has_ufid != 0).then(|| e.ufid.to_vec()),
        error: None,
    };
    let info = FlowInfo {
        ts_ns: e.ts_ns,
        tgid: e.tgid,
        comm: shared::fmt::cstr(&e.comm),
        portid: e.portid,
        skb_len: 0,
        msg_len: 0,
        source: "bpf",
    };
    // Only the first MAX_ACTS actions are decoded (the JSON and Megaflow show those).
    st.on_flow_msg(&info, Some(fm), None, &[]);
}

pub fn run() {
    let args: Args = shared::cli::parse();
    let filter = Filter::from_args(&args.filter);
    let mut out = Output::stdout(args.common.json);
    let mut session = Session::start(args.common.duration, args.common.verbose);
    if !args.common.explain {
        ovs::require_datapath();
    }
    let (_kernel, plan) = bpf::plan(&args.common, HOOKS);

    let mut open_object = MaybeUninit::uninit();
    let mut open = OvsUserspaceMegaflowKernelParseSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    let cfg = |o: &mut libbpf_rs::OpenObject, name: &str, b: &[u8]| {
        bpf::set_rodata(o, name, b).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e))
    };
    let f = &args.filter;
    let o = open.open_object_mut();
    let flag = |b: bool| [u8::from(b)];
    cfg(o, "f_eth_src", &flag(f.eth_src.is_some()));
    cfg(o, "f_eth_dst", &flag(f.eth_dst.is_some()));
    cfg(o, "f_eth_type", &flag(f.eth_type.is_some()));
    cfg(o, "f_ip_src", &flag(f.ip_src.is_some()));
    cfg(o, "f_ip_dst", &flag(f.ip_dst.is_some()));
    cfg(o, "f_ip_proto", &flag(f.ip_proto.is_some()));
    cfg(o, "f_sport", &flag(f.l4_src_port.is_some()));
    cfg(o, "f_dport", &flag(f.l4_dst_port.is_some()));
    cfg(o, "F_ETH_SRC", &f.eth_src.unwrap_or_default());
    cfg(o, "F_ETH_DST", &f.eth_dst.unwrap_or_default());
    cfg(o, "F_ETH_TYPE", &f.eth_type.unwrap_or(0).to_ne_bytes());
    cfg(o, "F_SPORT", &f.l4_src_port.unwrap_or(0).to_ne_bytes());
    cfg(o, "F_DPORT", &f.l4_dst_port.unwrap_or(0).to_ne_bytes());
    cfg(
        o,
        "F_IP_SRC",
        &f.ip_src.map(|a| a.octets()).unwrap_or([0; 4]),
    );
    cfg(
        o,
        "F_IP_DST",
        &f.ip_dst.map(|a| a.octets()).unwrap_or([0; 4]),
    );
    cfg(o, "F_IP_PROTO", &[f.ip_proto.unwrap_or(0)]);
    cfg(o, "emit_all", &flag(args.debug));
    let mut skel = bpf::load(open);
    let _links = bpf::attach(&plan, &mut skel);

    out.banner("OVS Megaflow Tracker (flow key parsed in the kernel)");
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
    out.banner("Attached to ovs_flow_cmd_new");
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
        false,
        Style::KernelParse,
    ));
    let obj = skel.object();
    let drain = Drain::open(obj, channel, |d| {
        let mut st = state.borrow_mut();
        match d.first() {
            Some(1) => {
                let mut e = UpEvent::default();
                if plain::copy_from_bytes(&mut e, d).is_ok() {
                    st.on_upcall(&e);
                }
            }
            Some(3) => {
                let mut e = FlowEvent::default();
                if plain::copy_from_bytes(&mut e, d).is_ok() {
                    on_flow(&mut st, &e);
                }
            }
            _ => {}
        }
    })
    .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    session.attached(&plan.summary());
    if let Err(e) = session.run(|t| drain.poll(t), || {}) {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    drain.flush();
    let lost = drain.lost(obj);
    let c = |i: u32| -> u64 {
        obj.maps()
            .find(|m| m.name().to_string_lossy() == "counters")
            .map(|m| percpu_sum_u64(&m, i))
            .unwrap_or(0)
    };
    let mut st = state.borrow_mut();
    // Non-matching events stayed in the kernel: its counters are the truth.
    st.n.upcalls = c(0);
    st.n.upcalls_match = c(1);
    st.n.flows = c(2);
    st.n.flows_match = c(3);
    st.summary();
    eprintln!(
        "Summary: {} upcalls, {} flow puts, {lost} events lost",
        st.n.upcalls, st.n.flows
    );
    session.verbose_footer();
}
