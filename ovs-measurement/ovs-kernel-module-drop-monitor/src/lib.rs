//! `ovs-kernel-module-drop-monitor`: is the OVS kernel datapath dropping
//! packets of this flow because the per-CPU deferred-action FIFO is full (or
//! the recursion limit was hit) during recirculation / sample / clone? The
//! kernel only logs a rate-limited "deferred action limit reached"; this names
//! the packets.
//!
//! Drops come from `skb:kfree_skb` (location and, on >= 5.17, reason). A drop
//! is reported when its location lies in `clone_execute` (address range from
//! /proc/kallsyms, checked in BPF) or, on 6.8+, its reason is
//! `OVS_DROP_DEFERRED_LIMIT` / `OVS_DROP_RECURSION_LIMIT`; with `--all-ovs`,
//! when the location is anywhere in openvswitch.ko or the reason is any OVS one.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, Object};
use serde_json::json;

use shared::bpf;
use shared::cli::{CommonArgs, PacketFilterArgs};
use shared::events::Drain;
use shared::filter::RawPktFilter;
use shared::hooks::{Candidate, HookPoint, Kind};
use shared::ksyms::Kallsyms;
use shared::output::Output;
use shared::pkt::PktMeta;
use shared::reasons::DropReasons;
use shared::runner::Session;
use shared::stacks::read_stack;
use shared::time::Clock;
use shared::usyms::UserSyms;

mod skel {
    include!(concat!(
        env!("OUT_DIR"),
        "/ovs_kernel_module_drop_monitor.skel.rs"
    ));
}
use skel::OvsKernelModuleDropMonitorSkelBuilder;

static HOOKS: &[HookPoint] = &[
    HookPoint {
        name: shared::kfree_skb::HOOK_NAME,
        required: true,
        candidates: &[
            Candidate::new(Kind::TpBtf, "tp_btf_kfree_skb_reason", "kfree_skb")
                .need(shared::hooks::Need::ArgsAtLeast(3)),
            Candidate::new(Kind::TpBtf, "tp_btf_kfree_skb", "kfree_skb")
                .need(shared::hooks::Need::ArgsBelow(3))
                .loses("this kernel's tracepoint has no drop reason (Reason: N/A)"),
            Candidate::new(Kind::Tracepoint, "tp_kfree_skb", "skb/kfree_skb"),
            Candidate::new(
                Kind::Fentry,
                "fentry_sk_skb_reason_drop",
                "sk_skb_reason_drop",
            )
            .loses("location taken from the kernel stack; every drop goes to user space"),
            Candidate::new(Kind::Fentry, "fentry_kfree_skb_reason", "kfree_skb_reason")
                .loses("location taken from the kernel stack; every drop goes to user space"),
            Candidate::new(Kind::Fentry, "fentry_kfree_skb", "kfree_skb")
                .loses("no drop reason; location from the kernel stack"),
            Candidate::new(
                Kind::Kprobe,
                "kprobe_sk_skb_reason_drop",
                "sk_skb_reason_drop",
            ),
            Candidate::new(Kind::Kprobe, "kprobe_kfree_skb_reason", "kfree_skb_reason"),
            Candidate::new(Kind::Kprobe, "kprobe_kfree_skb", "kfree_skb").loses("no drop reason"),
        ],
    },
    // Context of the drop: clone_execute's arguments. fentry is not offered:
    // clone_execute has 8 arguments, more than trampolines take before 6.4.
    HookPoint {
        name: "clone_execute",
        required: false,
        candidates: &[Candidate::new(
            Kind::Kprobe,
            "kprobe_clone_execute",
            "clone_execute",
        )],
    },
    // The datapath action last executed on the skb (recirc_id, ct_state).
    HookPoint {
        name: "ovs_do_execute_action",
        required: false,
        candidates: &[Candidate::new(
            Kind::TpBtf,
            "tp_btf_ovs_do_execute_action",
            "ovs_do_execute_action",
        )],
    },
];

/// Mirror of `struct drop_event` (src/bpf/ovs_kernel_module_drop_monitor.bpf.c).
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
    ce_valid: u8,
    ce_last: u8,
    ce_clone_key: u8,
    ce_recirc: u32,
    ce_ct_state: u8,
    ce_key_valid: u8,
    ex_valid: u8,
    ex_key_valid: u8,
    ex_recirc: u32,
    ex_act_recirc: u32,
    ex_ct_state: u8,
    ex_action: u8,
    ex_ct_zone: u16,
    ex_in_port: u32,
    pkt: PktMeta,
}
const _: () = assert!(std::mem::size_of::<DropEvent>() == 224);
// SAFETY: plain old data.
unsafe impl plain::Plain for DropEvent {}

#[derive(Parser, Debug)]
#[command(
    about = "Packets the OVS kernel datapath drops inside clone_execute (deferred-action FIFO full, recursion limit), or anywhere in openvswitch.ko with --all-ovs"
)]
pub struct Args {
    #[command(flatten)]
    pub filter: PacketFilterArgs,
    /// Report every drop whose location is in the openvswitch module (or has an OVS drop reason), not only those in clone_execute
    #[arg(long)]
    pub all_ovs: bool,
    /// Also print the user stack (it belongs to whatever task the softirq interrupted)
    #[arg(long)]
    pub user_stack: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

struct Reasons {
    core: DropReasons,
    ovs: HashMap<u32, String>,
    deferred: Option<u32>,
    recursion: Option<u32>,
}

impl Reasons {
    fn name(&self, code: u32) -> String {
        self.ovs
            .get(&code)
            .cloned()
            .unwrap_or_else(|| self.core.name(code))
    }
}

struct State {
    out: Output,
    clock: Clock,
    ksyms: Kallsyms,
    usyms: UserSyms,
    reasons: Reasons,
    all_ovs: bool,
    has_reason: bool,
    per_flow: BTreeMap<(String, String), u64>,
    printed: u64,
}

fn bool_word(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

impl State {
    fn location(&mut self, e: &DropEvent, kstack: &[String]) -> String {
        if e.location != 0 {
            return match self.ksyms.resolve(e.location) {
                Some((n, off, _)) => format!("{n}+0x{off:x}"),
                None => format!("0x{:x}", e.location),
            };
        }
        let l = shared::kfree_skb::location_from_stack(kstack);
        l.split(" [").next().unwrap_or("").to_string()
    }

    /// The BPF side already filtered; this confirms what it could not know
    /// (fentry: no location; --all-ovs: the module range is a superset).
    fn wanted(&mut self, e: &DropEvent, location: &str, kstack: &[String]) -> bool {
        let ovs_reason = e.has_reason != 0 && self.reasons.ovs.contains_key(&e.reason);
        if self.all_ovs {
            if ovs_reason {
                return true;
            }
            if e.location != 0 {
                return matches!(self.ksyms.resolve(e.location), Some((_, _, Some(m))) if m == shared::ovs::MODULE);
            }
            let first = shared::kfree_skb::location_from_stack(kstack);
            return first.ends_with("[openvswitch]");
        }
        let limit = e.has_reason != 0
            && (Some(e.reason) == self.reasons.deferred
                || Some(e.reason) == self.reasons.recursion);
        limit || location.starts_with("clone_execute+") || location.starts_with("clone_execute.")
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
        let location = self.location(&e, &kstack);
        if !self.wanted(&e, &location, &kstack) {
            return;
        }
        self.printed += 1;
        let p = &e.pkt;
        let saddr = p.src_ip().map(|a| a.to_string()).unwrap_or_default();
        let daddr = p.dst_ip().map(|a| a.to_string()).unwrap_or_default();
        let comm = shared::fmt::cstr(&e.comm);
        let reason = if e.has_reason != 0 && self.has_reason {
            self.reasons.name(e.reason)
        } else {
            "N/A".to_string()
        };
        // recirc_id: clone_execute's argument (the id a deferred recirculation
        // would run with; 0 for clone/sample), else the flow's from the last action.
        let recirc = if e.ce_valid != 0 {
            Some(e.ce_recirc)
        } else if e.ex_valid != 0 && e.ex_key_valid != 0 {
            Some(if e.ex_action == 7 {
                e.ex_act_recirc
            } else {
                e.ex_recirc
            })
        } else {
            None
        };
        let ct_state = if e.ce_valid != 0 && e.ce_key_valid != 0 {
            Some(e.ce_ct_state as u32)
        } else if e.ex_valid != 0 && e.ex_key_valid != 0 {
            Some(e.ex_ct_state as u32)
        } else {
            None
        };
        let last = (e.ce_valid != 0).then_some(e.ce_last != 0);
        let clone_key = (e.ce_valid != 0).then_some(e.ce_clone_key != 0);
        let flow = format!(
            "{saddr} -> {daddr} {}{}",
            p.proto_name(),
            if p.has_ports() {
                format!(" {} -> {}", p.sport, p.dport)
            } else if p.is_icmp() {
                format!(" type {}", p.icmp_type)
            } else {
                String::new()
            }
        );
        *self.per_flow.entry((flow, location.clone())).or_insert(0) += 1;
        let ustack: Option<Vec<String>> = match (&stacks, e.ustack_id >= 0) {
            (Some(m), true) => read_stack(m as &dyn MapCore, e.ustack_id)
                .ok()
                .map(|a| self.usyms.format(e.tgid, &a)),
            _ => None,
        };

        if self.out.json() {
            let mut v = json!({
                "ts_ns": e.ts_ns,
                "time": self.clock.rfc3339(e.ts_ns),
                "tid": e.tid,
                "comm": comm,
                "saddr": saddr,
                "daddr": daddr,
                "proto": p.proto_name(),
                "dev": p.ifname(),
                "recirc_id": recirc,
                "last": last,
                "clone_flow_key": clone_key,
                "ct_state": ct_state,
                "ct_state_flags": ct_state.map(shared::ovs::ct_state_flags),
                "last_action": (e.ex_valid != 0).then(|| shared::ovs::action_name(e.ex_action as u32)),
                "in_port": (e.ex_valid != 0 && e.ex_key_valid != 0).then_some(e.ex_in_port),
                "location": location,
                "reason": reason,
                "kstack": kstack,
            });
            if p.is_icmp() {
                v["icmp_type"] = json!(p.icmp_type);
                v["icmp_code"] = json!(p.icmp_code);
            } else if p.has_ports() {
                v["sport"] = json!(p.sport);
                v["dport"] = json!(p.dport);
            }
            if let Some(u) = ustack {
                v["ustack"] = json!(u);
            }
            self.out.event(&v);
            return;
        }

        let title = if self.all_ovs {
            "=== OpenVSwitch Datapath Drop Event ==="
        } else {
            "=== OpenVSwitch Deferred Action Drop Event ==="
        };
        let mut s = format!("{title}\n");
        let t = self.clock.wall(e.ts_ns).format("%H:%M:%S%.3f");
        s.push_str(&format!("Time: {t}  PID: {:<7} Comm: {comm}\n", e.tid));
        s.push_str(&format!(
            "Source IP: {:<16} Destination IP: {:<16} Protocol: {}\n",
            saddr,
            daddr,
            p.proto_name()
        ));
        s.push_str("OVS Parameters:\n");
        let na = |o: Option<String>| o.unwrap_or_else(|| "N/A".into());
        s.push_str(&format!(
            "  recirc_id: {:<10} last: {:<6} clone_flow_key: {}\n",
            na(recirc.map(|r| format!("{r:#x}"))),
            last.map(bool_word).unwrap_or("-"),
            clone_key.map(bool_word).unwrap_or("-"),
        ));
        s.push_str(&format!(
            "  ct_state: {}\n",
            na(ct_state.map(shared::ovs::ct_state_str))
        ));
        if e.ex_valid != 0 {
            s.push_str(&format!(
                "  last action: {}{}\n",
                shared::ovs::action_name(e.ex_action as u32),
                if e.ex_key_valid != 0 {
                    format!("  in_port: {}", e.ex_in_port)
                } else {
                    String::new()
                }
            ));
        }
        if p.is_icmp() {
            s.push_str(&format!(
                "ICMP Type: {:<3} Code: {}\n",
                p.icmp_type, p.icmp_code
            ));
        } else if p.has_ports() {
            s.push_str(&format!(
                "Source Port: {:<6} Destination Port: {}\n",
                p.sport, p.dport
            ));
        }
        s.push_str(&format!("Device: {}\n", p.ifname()));
        s.push_str(&format!("Location: {location}\n"));
        s.push_str(&format!("Reason: {reason}\n"));
        s.push_str("Stack Trace:\n");
        match &kaddrs {
            Ok(_) => kstack.iter().for_each(|f| s.push_str(&format!("  {f}\n"))),
            Err(_) => s.push_str(&format!(
                "  [stack unavailable: {}]\n",
                nix_desc(e.kstack_id)
            )),
        }
        if let Some(u) = &ustack {
            s.push_str("User Stack Trace:\n");
            u.iter().for_each(|f| s.push_str(&format!("  {f}\n")));
        }
        s.push_str("===============================================");
        self.out.line(&s);
    }
}

fn nix_desc(id: i32) -> String {
    if id >= 0 {
        return "evicted".into();
    }
    shared::stacks::stack_error(id)
        .split(": ")
        .nth(1)
        .unwrap_or("")
        .to_string()
}

pub fn run() {
    let args: Args = shared::cli::parse();
    args.filter.require_ipv4();
    args.filter.require_ports_with_l4();
    let mut out = Output::stdout(args.common.json);
    let mut session = Session::start(args.common.duration, args.common.verbose);
    if !args.common.explain {
        shared::ovs::require_datapath();
    }
    let (kernel, plan) = bpf::plan(&args.common, HOOKS);

    // Where clone_execute and the module live (kallsyms), and the OVS drop reasons (BTF).
    let ce = shared::ksyms::function_ranges("clone_execute");
    if ce.is_empty() && !args.all_ovs {
        shared::die(
            shared::EXIT_RUNTIME,
            "clone_execute not found in /proc/kallsyms (openvswitch module without it, or kptr_restrict hides addresses)",
        );
    }
    let module = shared::ksyms::module_text_range(shared::ovs::MODULE);
    if module.is_none() && args.all_ovs {
        shared::die(
            shared::EXIT_RUNTIME,
            "no openvswitch symbols in /proc/kallsyms (kptr_restrict?)",
        );
    }
    let ovs_members = kernel
        .btf
        .enum_members("ovs_drop_reason")
        .unwrap_or_default();
    let ovs: HashMap<u32, String> = ovs_members
        .iter()
        .filter(|(n, _)| !n.starts_with("__") && !n.ends_with("_MAX"))
        .map(|(n, v)| (*v as u32, n.clone()))
        .collect();
    let code = |n: &str| {
        ovs_members
            .iter()
            .find(|(m, _)| m == n)
            .map(|(_, v)| *v as u32)
    };
    let subsys = kernel
        .btf
        .enum_members("skb_drop_reason_subsys")
        .and_then(|m| {
            m.into_iter()
                .find(|(n, _)| n == "SKB_DROP_REASON_SUBSYS_OPENVSWITCH")
        })
        .map(|(_, v)| v as u32);
    let reasons = Reasons {
        core: DropReasons::load(&kernel.btf),
        ovs,
        deferred: code("OVS_DROP_DEFERRED_LIMIT"),
        recursion: code("OVS_DROP_RECURSION_LIMIT"),
    };
    drop(kernel);

    let mut filter = RawPktFilter::from_args(&args.filter);
    filter.ipv4_only = 1;
    let mut open_object = MaybeUninit::uninit();
    let mut open = OvsKernelModuleDropMonitorSkelBuilder::default()
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
    bpf::set_function_ranges(o, "CE", &ce).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    let (mlo, mhi) = module.unwrap_or((0, 0));
    cfg(o, "MOD_LO", &mlo.to_ne_bytes());
    cfg(o, "MOD_HI", &mhi.to_ne_bytes());
    cfg(o, "all_ovs", &[u8::from(args.all_ovs)]);
    cfg(
        o,
        "R_DEFERRED",
        &reasons.deferred.unwrap_or(0).to_ne_bytes(),
    );
    cfg(
        o,
        "R_RECURSION",
        &reasons.recursion.unwrap_or(0).to_ne_bytes(),
    );
    cfg(o, "OVS_SUBSYS", &subsys.unwrap_or(0).to_ne_bytes());
    cfg(o, "want_ustack", &[u8::from(args.user_stack)]);
    let mut skel = bpf::load(open);
    let _links = bpf::attach(&plan, &mut skel);
    let has_reason = shared::kfree_skb::plan_has_reason(&plan);

    // Banner: the filters back, as the original did.
    let any = |a: Option<std::net::IpAddr>| {
        a.map(|x| x.to_string())
            .unwrap_or_else(|| Ipv4Addr::UNSPECIFIED.to_string())
    };
    let port = |p: Option<u16>| p.map(|x| x.to_string()).unwrap_or_else(|| "0".into());
    out.banner(&format!("Source IP: {}", any(args.filter.src)));
    out.banner(&format!("Destination IP: {}", any(args.filter.dst)));
    out.banner(&format!("Protocol: {}", args.filter.protocol.name()));
    out.banner(&format!("Source Port: {}", port(args.filter.src_port)));
    out.banner(&format!("Destination Port: {}", port(args.filter.dst_port)));
    out.banner(&format!(
        "Watching: {}",
        if args.all_ovs {
            "every drop in openvswitch.ko".to_string()
        } else {
            format!(
                "drops in clone_execute ({}){}",
                ce.iter()
                    .map(|(a, b)| format!("{a:#x}-{b:#x}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if reasons.deferred.is_some() {
                    " and OVS_DROP_DEFERRED_LIMIT / OVS_DROP_RECURSION_LIMIT"
                } else {
                    ""
                }
            )
        }
    ));
    if !has_reason {
        out.banner("Note: this kernel's drop hook has no drop reason: Reason shows N/A.");
    }
    if !shared::ovs::module_btf() {
        out.banner("Note: no BTF for the openvswitch module: ct_state and the last datapath action are N/A.");
    }
    out.banner("Tracing OVS datapath drops... Hit Ctrl-C to end.");

    let state = RefCell::new(State {
        out,
        clock: session.clock,
        ksyms: Kallsyms::new(),
        usyms: UserSyms::new(),
        reasons,
        all_ovs: args.all_ovs,
        has_reason,
        per_flow: BTreeMap::new(),
        printed: 0,
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
    let rows: Vec<(String, String, u64)> = st
        .per_flow
        .iter()
        .map(|((f, l), c)| (f.clone(), l.clone(), *c))
        .collect();
    if st.out.json() {
        let v = json!({
            "type": "summary",
            "reported": st.printed,
            "lost_events": lost,
            "rows": rows.iter().map(|(f, l, c)| json!({"flow": f, "location": l, "count": c})).collect::<Vec<_>>(),
        });
        st.out.event(&v);
    } else {
        let mut s = String::from("Exiting...\n");
        s.push_str(&format!("Drops reported: {}\n", st.printed));
        for (f, l, c) in &rows {
            s.push_str(&format!("  {c:>6}  {f}  at {l}\n"));
        }
        st.out.line(s.trim_end());
    }
    eprintln!("Summary: {} drops reported, {lost} events lost", st.printed);
    session.verbose_footer();
}
