//! `tun-abnormal-gso-type` (port of the bpftrace script): where on the host
//! path (OVS -> qdisc -> tun -> vhost) does a VM-bound skb get a bad GSO state
//! (gso_size set but no gso_type)? An skb snapshot (shared::skbsnap) at every
//! hook of the original: tun_net_xmit (with the tap's ring, `--tun-ring`,
//! queue = skb->queue_mapping, layout from BTF), sch_direct_xmit,
//! __dev_queue_xmit, netdev_frame_hook, queue_gso_packets,
//! queue_userspace_packet, validate_xmit_skb(_list), and with `--segments`
//! skb_segment's result. Tracepoint mode (no kprobe/fentry): tun_net_xmit ->
//! net_dev_start_xmit on tun devices, netdev_frame_hook -> netif_receive_skb,
//! __dev_queue_xmit -> net_dev_queue, queue_* -> openvswitch:ovs_dp_upcall.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::MapCore;

use shared::bpf;
use shared::cli::CommonArgs;
use shared::events::Drain;
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::ksyms::Kallsyms;
use shared::output::Output;
use shared::runner::Session;
use shared::skbsnap::{GsoNames, Match, Mode, Snap, SnapArgs};
use shared::stacks::read_stack;
use shared::time::Clock;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/tun_abnormal_gso_type.skel.rs"));
}
use skel::TunAbnormalGsoTypeSkelBuilder;

const FUNCS: [&str; 9] = [
    "tun_net_xmit",
    "sch_direct_xmit",
    "__dev_queue_xmit",
    "netdev_frame_hook",
    "queue_gso_packets",
    "queue_userspace_packet",
    "validate_xmit_skb_list",
    "validate_xmit_skb",
    "skb_segment",
];
/// What marks each hook in tracepoint mode.
const TP_NAMES: [&str; 9] = [
    "net_dev_start_xmit (tun device)",
    "",
    "net_dev_queue",
    "netif_receive_skb",
    "",
    "ovs_dp_upcall",
    "",
    "",
    "",
];

#[derive(Parser, Debug)]
#[command(
    name = "tun-abnormal-gso-type",
    about = "Where on the host path (OVS -> qdisc -> tun) does a VM-bound skb get a bad GSO state? skb snapshots at the tun path hooks"
)]
struct Args {
    #[command(flatten)]
    snap: SnapArgs,
    /// Print the tap's TX ring state at tun_net_xmit (queue = skb->queue_mapping)
    #[arg(long)]
    tun_ring: bool,
    /// Also snapshot skb_segment's result (kprobe mode only; very noisy)
    #[arg(long)]
    segments: bool,
    #[command(flatten)]
    common: CommonArgs,
}

const fn fk(f: &'static str, k: &'static str, func: &'static str) -> [Candidate; 2] {
    [
        Candidate::new(Kind::Fentry, f, func),
        Candidate::new(Kind::Kprobe, k, func),
    ]
}
const fn hp(name: &'static str, c: &'static [Candidate]) -> HookPoint {
    HookPoint {
        name,
        required: false,
        candidates: c,
    }
}
const C_TUN: [Candidate; 2] = fk("fentry_tun_net_xmit", "kprobe_tun_net_xmit", "tun_net_xmit");
const C_SCH: [Candidate; 2] = fk(
    "fentry_sch_direct_xmit",
    "kprobe_sch_direct_xmit",
    "sch_direct_xmit",
);
const C_DQX: [Candidate; 2] = fk(
    "fentry___dev_queue_xmit",
    "kprobe___dev_queue_xmit",
    "__dev_queue_xmit",
);
const C_FRAME: [Candidate; 2] = fk(
    "fentry_netdev_frame_hook",
    "kprobe_netdev_frame_hook",
    "netdev_frame_hook",
);
const C_QGSO: [Candidate; 2] = fk(
    "fentry_queue_gso_packets",
    "kprobe_queue_gso_packets",
    "queue_gso_packets",
);
const C_QUSR: [Candidate; 2] = fk(
    "fentry_queue_userspace_packet",
    "kprobe_queue_userspace_packet",
    "queue_userspace_packet",
);
const C_VLIST: [Candidate; 2] = fk(
    "fentry_validate_xmit_skb_list",
    "kprobe_validate_xmit_skb_list",
    "validate_xmit_skb_list",
);
const C_VAL: [Candidate; 2] = fk(
    "fentry_validate_xmit_skb",
    "kprobe_validate_xmit_skb",
    "validate_xmit_skb",
);
const C_SEG: &[Candidate] = &[Candidate::new(
    Kind::Kprobe,
    "kret_skb_segment",
    "skb_segment",
)];

static HOOKS_FN: &[HookPoint] = &[
    hp("tun_net_xmit", &C_TUN),
    hp("sch_direct_xmit", &C_SCH),
    hp("__dev_queue_xmit", &C_DQX),
    hp("netdev_frame_hook", &C_FRAME),
    hp("queue_gso_packets", &C_QGSO),
    hp("queue_userspace_packet", &C_QUSR),
    hp("validate_xmit_skb_list", &C_VLIST),
    hp("validate_xmit_skb", &C_VAL),
];
static HOOKS_FN_SEG: &[HookPoint] = &[
    hp("tun_net_xmit", &C_TUN),
    hp("sch_direct_xmit", &C_SCH),
    hp("__dev_queue_xmit", &C_DQX),
    hp("netdev_frame_hook", &C_FRAME),
    hp("queue_gso_packets", &C_QGSO),
    hp("queue_userspace_packet", &C_QUSR),
    hp("validate_xmit_skb_list", &C_VLIST),
    hp("validate_xmit_skb", &C_VAL),
    hp("skb_segment", C_SEG),
];
static HOOKS_TP: &[HookPoint] = &[
    hp(
        "tun_net_xmit",
        &[Candidate::new(
            Kind::TpBtf,
            "tp_tun_xmit",
            "net_dev_start_xmit",
        )],
    ),
    hp(
        "netdev_frame_hook",
        &[Candidate::new(
            Kind::TpBtf,
            "tp_netif_receive_skb",
            "netif_receive_skb",
        )],
    ),
    hp(
        "__dev_queue_xmit",
        &[Candidate::new(
            Kind::TpBtf,
            "tp_net_dev_queue",
            "net_dev_queue",
        )],
    ),
    hp(
        "queue_userspace_packet",
        &[Candidate::new(
            Kind::TpBtf,
            "tp_ovs_dp_upcall",
            "ovs_dp_upcall",
        )],
    ),
];

fn function_hooks_possible() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe").exists()
}

fn main() {
    let a: Args = shared::cli::parse();
    a.snap.validate();
    let tp_mode = match a.snap.mode {
        Mode::Tracepoint => true,
        Mode::Kprobe => false,
        Mode::Auto => !function_hooks_possible(),
    };
    if a.segments && tp_mode {
        shared::cli::usage_error("--segments needs kprobe mode (skb_segment has no tracepoint)");
    }
    let hooks = if tp_mode {
        HOOKS_TP
    } else if a.segments {
        HOOKS_FN_SEG
    } else {
        HOOKS_FN
    };
    let common = a.common.clone();
    let mut out = Output::new(common.json, None);
    let mut session = Session::start(common.duration, common.verbose);
    let (kernel, plan) = bpf::plan(&common, hooks);
    let gso = GsoNames::load(&kernel.btf);
    drop(kernel);

    let mut open_object = MaybeUninit::uninit();
    let mut open = TunAbnormalGsoTypeSkelBuilder::default()
        .open(&mut open_object)
        .unwrap_or_else(|e| {
            shared::die(shared::EXIT_RUNTIME, format!("opening the BPF object: {e}"))
        });
    let channel = bpf::prepare(open.open_object_mut(), &plan);
    {
        let o = open.open_object_mut();
        let set = |o: &mut libbpf_rs::OpenObject, n: &str, b: &[u8]| {
            bpf::set_rodata(o, n, b).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e))
        };
        set(o, "SNAP_CFG", a.snap.cfg().as_bytes());
        set(o, "SNAP_TUN_SET", &[u8::from(tp_mode)]);
        set(o, "TUN_RING", &[u8::from(a.tun_ring)]);
    }
    let mut skel = bpf::load(open);
    shared::skbsnap::refresh_tun_devs(&skel.maps.snap_tun_devs);
    let _links = bpf::attach(&plan, &mut skel);

    if tp_mode {
        let subs: Vec<String> = hooks
            .iter()
            .map(|h| {
                let i = FUNCS.iter().position(|f| *f == h.name).unwrap_or(0);
                format!("{} -> {}", h.name, TP_NAMES[i])
            })
            .collect();
        eprintln!(
            "notice: tracepoint mode (no kprobes/fentry): {}; not traced: sch_direct_xmit, queue_gso_packets, validate_xmit_skb(_list), skb_segment",
            subs.join(", ")
        );
    }
    let devs = if a.snap.devs.is_empty() {
        "all".to_string()
    } else {
        a.snap.devs.join(",")
    };
    let m = match a.snap.matching {
        Match::GsoAnomaly => "gso-anomaly",
        Match::Gso => "gso",
        Match::All => "all",
    };
    out.banner(&format!(
        "Tracing skbs (--match {m}) on devices: {devs}. Hit Ctrl-C to end."
    ));

    struct St {
        out: Output,
        clock: Clock,
        ksyms: Kallsyms,
        gso: GsoNames,
        n: u64,
        max: Option<u32>,
        ring: bool,
        anomaly: bool,
        tp: bool,
    }
    let state = RefCell::new(St {
        out,
        clock: session.clock,
        ksyms: Kallsyms::new(),
        gso,
        n: 0,
        max: a.snap.max_events,
        ring: a.tun_ring,
        anomaly: a.snap.matching == Match::GsoAnomaly,
        tp: tp_mode,
    });
    let obj = skel.object();
    let stacks = obj
        .maps()
        .find(|m| m.name().to_string_lossy() == "snap_stacks");
    let drain = Drain::open(obj, channel, |d| {
        let Some(e) = Snap::decode(d) else { return };
        let mut st = state.borrow_mut();
        if st.max.is_some_and(|m| st.n >= m as u64) {
            return;
        }
        st.n += 1;
        let i = (e.hook as usize).min(FUNCS.len() - 1);
        let func = if st.tp && !TP_NAMES[i].is_empty() {
            format!("{} ({})", FUNCS[i], TP_NAMES[i])
        } else {
            FUNCS[i].to_string()
        };
        let kstack: Vec<String> = match &stacks {
            Some(m) if e.kstack_id >= 0 => read_stack(m as &dyn MapCore, e.kstack_id)
                .map(|a| st.ksyms.format_stack(&a))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let ring = st.ring && e.hook == 0;
        if st.out.json() {
            let t = st.clock.datetime_ms(e.ts_ns);
            let v = e.json(&func, &st.gso, ring, &t, &kstack);
            st.out.event(&v);
        } else {
            let mut s = e.text(&func, st.anomaly, &st.gso, ring);
            if !kstack.is_empty() {
                s.push_str("kstack:\n");
                for f in &kstack {
                    s.push_str(&format!("  {f}\n"));
                }
            }
            let t = st.clock.datetime_ms(e.ts_ns);
            let text = format!("{t} {}", s.trim_end());
            st.out.line(&text);
        }
    })
    .unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    session.attached(&plan.summary());
    let mut last = Instant::now();
    let res = session.run(
        |t| drain.poll(t),
        || {
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                shared::skbsnap::refresh_tun_devs(&skel.maps.snap_tun_devs);
            }
            let st = state.borrow();
            if st.max.is_some_and(|m| st.n >= m as u64) {
                session.request_stop();
            }
        },
    );
    if let Err(e) = res {
        shared::die(shared::EXIT_RUNTIME, e);
    }
    drain.flush();
    let lost = drain.lost(obj);
    eprintln!(
        "Summary: {} skbs reported, {} events lost",
        state.borrow().n,
        lost
    );
    session.verbose_footer();
}
