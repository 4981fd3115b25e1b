/* SPDX-License-Identifier: GPL-2.0 */
/* Every way to see an skb being freed as a drop, one program each; user space
 * loads the one the running kernel supports (shared::hooks::KFREE_SKB). The
 * including tool defines, before including this file:
 *
 *   static __always_inline int on_kfree_skb(void *ctx, struct sk_buff *skb,
 *                                           __u64 location, __u32 reason, bool has_reason);
 *
 * location is the freeing caller's address, 0 where the hook cannot tell (fentry:
 * user space takes it from the kernel stack). */
#pragma once
#include "common.h"

/* skb:kfree_skb with a reason argument (>= 5.17). */
SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_btf_kfree_skb_reason, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	return on_kfree_skb(ctx, skb, (__u64)location, reason, true);
}

/* skb:kfree_skb before drop reasons existed (5.10). */
SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_btf_kfree_skb, struct sk_buff *skb, void *location)
{
	return on_kfree_skb(ctx, skb, (__u64)location, 0, false);
}

/* The same tracepoint through tracefs. */
SEC("tracepoint/skb/kfree_skb")
int tp_kfree_skb(struct trace_event_raw_kfree_skb *args)
{
	__u32 reason = 0;
	bool has = bpf_core_field_exists(args->reason);
	if (has)
		reason = BPF_CORE_READ(args, reason);
	return on_kfree_skb(args, BPF_CORE_READ(args, skbaddr), (__u64)BPF_CORE_READ(args, location), reason, has);
}

/* Function entry: sk_skb_reason_drop (>= 6.11), kfree_skb_reason (5.17-6.10),
 * kfree_skb (before 5.17). */
SEC("fentry/sk_skb_reason_drop")
int BPF_PROG(fentry_sk_skb_reason_drop, struct sock *sk, struct sk_buff *skb, enum skb_drop_reason reason)
{
	return on_kfree_skb(ctx, skb, 0, reason, true);
}

SEC("fentry/kfree_skb_reason")
int BPF_PROG(fentry_kfree_skb_reason, struct sk_buff *skb, enum skb_drop_reason reason)
{
	return on_kfree_skb(ctx, skb, 0, reason, true);
}

SEC("fentry/kfree_skb")
int BPF_PROG(fentry_kfree_skb, struct sk_buff *skb)
{
	return on_kfree_skb(ctx, skb, 0, 0, false);
}

static __always_inline __u64 kprobe_caller(struct pt_regs *ctx)
{
	__u64 ret = 0;
	bpf_probe_read_kernel(&ret, sizeof(ret), (void *)PT_REGS_SP(ctx));
	return ret;
}

SEC("kprobe/sk_skb_reason_drop")
int BPF_KPROBE(kprobe_sk_skb_reason_drop, struct sock *sk, struct sk_buff *skb, __u32 reason)
{
	return on_kfree_skb(ctx, skb, kprobe_caller(ctx), reason, true);
}

SEC("kprobe/kfree_skb_reason")
int BPF_KPROBE(kprobe_kfree_skb_reason, struct sk_buff *skb, __u32 reason)
{
	return on_kfree_skb(ctx, skb, kprobe_caller(ctx), reason, true);
}

SEC("kprobe/kfree_skb")
int BPF_KPROBE(kprobe_kfree_skb, struct sk_buff *skb)
{
	return on_kfree_skb(ctx, skb, kprobe_caller(ctx), 0, false);
}
