// SPDX-License-Identifier: GPL-2.0
/* drop / multi-protocol-drop-monitor: every freed-as-dropped skb that passes the
 * packet filter, with its drop reason, the freeing location and both stacks.
 * One program per way of reaching the drop; user space loads only the one the
 * running kernel supports (see src/main.rs HOOKS). */
#define EVENT_MAX_SIZE 256
#include "common.h"
#include "skb.h"

/* Mirror: DropEvent in src/main.rs. */
struct drop_event {
	__u64 ts_ns;
	__u64 location;
	__u32 tid;
	__u32 tgid;
	char comm[16];
	__s32 kstack_id;
	__s32 ustack_id;
	__u32 reason;
	__u8 has_reason;
	__u8 pad[3];
	struct pkt_meta pkt;
};

const volatile struct pkt_filter FILTER = {};
const volatile bool parse_l2 = false;
const volatile bool want_ustack = true;

DECLARE_STACK_MAP(stacks, 8192);

static __always_inline int on_kfree_skb(void *ctx, struct sk_buff *skb, __u64 location,
					__u32 reason, bool has_reason)
{
	struct pkt_meta m = {};
	struct drop_event *e;
	__u64 id;

	if (!skb)
		return 0;
	/* drop trusts skb->protocol; multi-protocol-drop-monitor looks at the frame itself */
	if (FILTER.ipv4_only && !parse_l2 && BPF_CORE_READ(skb, protocol) != bpf_htons(ETH_P_IP))
		return 0;
	if (!parse_skb(skb, &m, parse_l2))
		return 0;
	if (!filter_match(&FILTER, &m))
		return 0;

	e = event_reserve(sizeof(*e));
	if (!e)
		return 0;
	id = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->location = location;
	e->tid = (__u32)id;
	e->tgid = id >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->kstack_id = get_stack_id(ctx, &stacks, 0);
	e->ustack_id = want_ustack ? get_stack_id(ctx, &stacks, BPF_F_USER_STACK) : -1;
	e->reason = reason;
	e->has_reason = has_reason;
	__builtin_memcpy(&e->pkt, &m, sizeof(m));
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

#include "kfree_skb.h"
