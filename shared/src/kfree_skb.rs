//! The drop hook every drop tool uses (BPF side: shared/bpf/kfree_skb.h): the
//! candidates, best first, and what user space derives from the chosen one.

use crate::hooks::{Candidate, HookPoint, Kind, Need, Plan};

/// Hook point name in plans and `--explain`.
pub const HOOK_NAME: &str = "kfree_skb";

/// The ways to reach a drop, best first.
pub static HOOKS: &[HookPoint] = &[HookPoint {
    name: HOOK_NAME,
    required: true,
    candidates: &[
        Candidate::new(Kind::TpBtf, "tp_btf_kfree_skb_reason", "kfree_skb")
            .need(Need::ArgsAtLeast(3)),
        Candidate::new(Kind::TpBtf, "tp_btf_kfree_skb", "kfree_skb")
            .need(Need::ArgsBelow(3))
            .loses("this kernel's tracepoint has no drop reason (Reason: N/A)"),
        Candidate::new(Kind::Tracepoint, "tp_kfree_skb", "skb/kfree_skb"),
        Candidate::new(
            Kind::Fentry,
            "fentry_sk_skb_reason_drop",
            "sk_skb_reason_drop",
        )
        .loses("location taken from the kernel stack"),
        Candidate::new(Kind::Fentry, "fentry_kfree_skb_reason", "kfree_skb_reason")
            .loses("location taken from the kernel stack"),
        Candidate::new(Kind::Fentry, "fentry_kfree_skb", "kfree_skb")
            .loses("no drop reason; also sees normal frees"),
        Candidate::new(
            Kind::Kprobe,
            "kprobe_sk_skb_reason_drop",
            "sk_skb_reason_drop",
        ),
        Candidate::new(Kind::Kprobe, "kprobe_kfree_skb_reason", "kfree_skb_reason"),
        Candidate::new(Kind::Kprobe, "kprobe_kfree_skb", "kfree_skb")
            .loses("no drop reason; also sees normal frees"),
    ],
}];

/// Whether the chosen way reports drop reasons (the tracefs tracepoint does
/// when its format has the field; CO-RE reads it then).
pub fn plan_has_reason(plan: &Plan) -> bool {
    plan.chosen(HOOK_NAME)
        .map(|c| !c.loses.contains("no drop reason"))
        .unwrap_or(false)
}

/// The freeing location when the hook could not report it (fentry): the first
/// frame of the symbolized kernel stack that is not the free function itself.
pub fn location_from_stack(kstack: &[String]) -> String {
    kstack
        .iter()
        .find(|s| {
            let f = s.split('+').next().unwrap_or("");
            !f.starts_with("bpf_") && !f.contains("kfree_skb") && !f.contains("skb_reason_drop")
        })
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_skips_the_free_functions() {
        let st = vec![
            "kfree_skb_reason+0x5".to_string(),
            "nf_hook_slow+0x9c".into(),
            "ip_rcv+0x1".into(),
        ];
        assert_eq!(location_from_stack(&st), "nf_hook_slow+0x9c");
        assert_eq!(location_from_stack(&[]), "");
    }
}
