// SPDX-License-Identifier: GPL-2.0
/* eth_drop: every freed-as-dropped frame of any EtherType that passes the
 * filter (EtherType, VLAN, interface name, IPv4 address/protocol/ports), with
 * its L2/L3 headers, the drop reason, the freeing location and the kernel
 * stack. The programs (one per way of reaching the drop, user space loads the
 * one the running kernel supports) are in shared/bpf/kfree_skb.h. */
#define EVENT_MAX_SIZE 256
#include "common.h"
#include "skb.h"

/* Mirror: EthDropEvent in src/lib.rs. */
struct eth_drop_event {
	__u64 ts_ns;
	__u64 location;
	__u32 tid;
	__u32 tgid;
	char comm[16];
	__s32 kstack_id;
	__u32 reason;
	__u8 has_reason;
	__u8 pad[3];
	struct pkt_meta pkt;
};
_Static_assert(sizeof(struct eth_drop_event) == 192, "eth_drop_event layout changed: update lib.rs");

const volatile struct pkt_filter FILTER = {};
const volatile bool want_kstack = true;

DECLARE_STACK_MAP(stacks, 8192);

static __always_inline int on_kfree_skb(void *ctx, struct sk_buff *skb, __u64 location,
				       __u32 reason, bool has_reason)
{
	struct pkt_meta m = {};
	struct eth_drop_event *e;
	__u8 family;
	bool match;
	__u64 id;

	if (!skb)
		return 0;
	if (!parse_skb(skb, &m, true))
		return 0;
	/* The address, L4 protocol and port filters only restrict IPv4 frames:
	 * every other frame is matched as if it had no IP header. */
	family = m.family;
	if (family != 4)
		m.family = 0;
	match = filter_match(&FILTER, &m);
	m.family = family;
	if (!match)
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
	e->kstack_id = want_kstack ? get_stack_id(ctx, &stacks, 0) : -1;
	e->reason = reason;
	e->has_reason = has_reason;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	__builtin_memcpy(&e->pkt, &m, sizeof(m));
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

#include "kfree_skb.h"
