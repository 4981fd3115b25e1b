//! Scheduler hook points with the fallback chain tp_btf -> raw_tp ->
//! tracepoint. The programs come from `shared/bpf/sched.h`
//! (`SCHED_SWITCH_PROGRAMS`, `SCHED_WAKEUP_PROGRAMS`), so every tool that uses
//! these has the same program names.

use crate::hooks::{Candidate, HookPoint, Kind, Need};

/// `sched:sched_switch`. tp_btf needs the 4th argument `prev_state` (>= 5.18);
/// raw_tp reads the state from `prev` (CO-RE `__state`/`state`).
pub const SCHED_SWITCH: HookPoint = HookPoint {
    name: "sched_switch",
    required: true,
    candidates: &[
        Candidate::new(Kind::TpBtf, "sched_switch_btf", "sched_switch").need(Need::ArgsAtLeast(4)),
        Candidate::new(Kind::RawTp, "sched_switch_raw", "sched_switch")
            .loses("task state read from prev (no prev_state argument)"),
        Candidate::new(Kind::Tracepoint, "sched_switch_tp", "sched/sched_switch")
            .loses("tgid of the switched-in task from a cache of tasks seen"),
    ],
};

pub const SCHED_WAKEUP: HookPoint = HookPoint {
    name: "sched_wakeup",
    required: true,
    candidates: &[
        Candidate::new(Kind::TpBtf, "sched_wakeup_btf", "sched_wakeup"),
        Candidate::new(Kind::RawTp, "sched_wakeup_raw", "sched_wakeup"),
        Candidate::new(Kind::Tracepoint, "sched_wakeup_tp", "sched/sched_wakeup")
            .loses("tgid of the woken task from a cache of tasks seen"),
    ],
};

pub const SCHED_WAKEUP_NEW: HookPoint = HookPoint {
    name: "sched_wakeup_new",
    required: true,
    candidates: &[
        Candidate::new(Kind::TpBtf, "sched_wakeup_new_btf", "sched_wakeup_new"),
        Candidate::new(Kind::RawTp, "sched_wakeup_new_raw", "sched_wakeup_new"),
        Candidate::new(
            Kind::Tracepoint,
            "sched_wakeup_new_tp",
            "sched/sched_wakeup_new",
        )
        .loses("tgid of the woken task from a cache of tasks seen"),
    ],
};

/// `task->flags` bit of kernel threads.
pub const PF_KTHREAD: u32 = 0x0020_0000;
