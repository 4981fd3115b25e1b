// SPDX-License-Identifier: GPL-2.0
/* ovs-clone-execute-summary: packets going through nested clone_execute
 * calls (recirculation, clone, sample, check_pkt_len inside one another) in
 * the OVS kernel datapath.
 *
 * Nesting depth = clone_execute frames on the kernel stack, counted here
 * against clone_execute's address ranges (from kallsyms), so shallow calls
 * never leave the kernel. The stack travels in the ring-buffer record itself
 * (no stack map whose slots could be reused while user space prints them).
 *
 * kprobe on clone_execute(dp, skb, key, recirc_id, actions, len, last,
 * clone_flow_key): args 7 and 8 are on the stack at sp+8 / sp+16 at entry.
 * Or the openvswitch:ovs_do_execute_action tracepoint for the actions that
 * call clone_execute (SAMPLE, RECIRC, CLONE, CHECK_PKT_LEN): the call is about
 * to happen, so depth = frames + 1; last/clone_flow_key are not known there. */
#define EVENT_MAX_SIZE 1024
#include "common.h"
#include "skb.h"
#include "ovs.h"
#include "fnrange.h"

#define MAX_KFRAMES 40
#define MAX_UFRAMES 20

/* Mirror: CeEvent in src/lib.rs. */
struct ce_event {
	__u64 ts_ns;
	__u32 tid;
	__u32 tgid;
	char comm[16];
	__u32 recirc_id;
	__u8 last;
	__u8 clone_flow_key;
	__u8 has_args;   /* last/clone_flow_key known (kprobe) */
	__u8 ct_state;
	__u8 key_valid;  /* ct_state known (module BTF) */
	__u8 depth;
	__u8 action;     /* tracepoint: the datapath action; kprobe: 0 */
	__u8 nk;         /* kernel frames */
	__u8 nu;         /* user frames */
	__u8 pad[3];
	struct pkt_meta pkt;
	__u32 pad2;
	__u64 kstack[MAX_KFRAMES];
	__u64 ustack[MAX_UFRAMES];
};

const volatile struct pkt_filter FILTER = {};
/* clone_execute (and split parts) */
DECLARE_FN_RANGES(CE, in_ce)
const volatile __u8 min_depth = 2;
const volatile bool want_ustack = false;

/* The depth counter lives in map memory: a register would hold a different
 * constant on every path through the frame loop and the verifier could not
 * prune (2^40 paths); an atomic add keeps it in memory, where the verifier
 * does not track the value, so paths merge. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} depth_scratch SEC(".maps");

static __always_inline void event_discard(void *e)
{
	if (!use_perfbuf)
		bpf_ringbuf_discard(e, 0);
}

static __always_inline int report(void *ctx, struct sk_buff *skb, const struct sw_flow_key *key,
				  __u32 recirc_id, __u8 last, __u8 clone_key, bool has_args,
				  __u8 action, __u8 depth_extra)
{
	struct pkt_meta m = {};
	struct ovs_key_info ki = {};
	struct ce_event *e;
	long n;
	__u8 depth = depth_extra;

	if (!skb)
		return 0;
	if (BPF_CORE_READ(skb, protocol) != bpf_htons(ETH_P_IP))
		return 0;
	if (!parse_skb(skb, &m, false) || !filter_match(&FILTER, &m))
		return 0;
	e = event_reserve(sizeof(*e));
	if (!e)
		return 0;
	n = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);
	if (n < 0)
		n = 0;
	__u32 zero = 0;
	__u32 *cnt = bpf_map_lookup_elem(&depth_scratch, &zero);
	if (!cnt) {
		event_discard(e);
		return 0;
	}
	*cnt = depth;
	for (int i = 0; i < MAX_KFRAMES; i++) {
		if (i * 8 >= n)
			break;
		if (in_ce(e->kstack[i]))
			__sync_fetch_and_add(cnt, 1); /* in memory, not a register */
	}
	depth = *cnt;
	if (depth < min_depth) {
		event_discard(e);
		return 0;
	}
	e->nk = (__u64)n >> 3;
	e->nu = 0;
	if (want_ustack) {
		long u = bpf_get_stack(ctx, e->ustack, sizeof(e->ustack), BPF_F_USER_STACK);
		e->nu = u > 0 ? (__u64)u >> 3 : 0;
	}
	ovs_read_key(key, &ki);
	__u64 id = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->tid = (__u32)id;
	e->tgid = id >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->recirc_id = recirc_id;
	e->last = last;
	e->clone_flow_key = clone_key;
	e->has_args = has_args;
	e->ct_state = ki.ct_state;
	e->key_valid = ki.valid;
	e->depth = depth;
	e->action = action;
	__builtin_memcpy(&e->pkt, &m, sizeof(m));
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

SEC("kprobe/clone_execute")
int BPF_KPROBE(kprobe_clone_execute, void *dp, struct sk_buff *skb, const struct sw_flow_key *key,
	       __u32 recirc_id)
{
	__u64 a7 = 0, a8 = 0;

	bpf_probe_read_kernel(&a7, sizeof(a7), (void *)(PT_REGS_SP(ctx) + 8));
	bpf_probe_read_kernel(&a8, sizeof(a8), (void *)(PT_REGS_SP(ctx) + 16));
	/* The probed frame itself is on the stack (the probe's ip). */
	return report(ctx, skb, key, recirc_id, a7 & 1, a8 & 1, true, 0, 0);
}

SEC("tp_btf/ovs_do_execute_action")
int BPF_PROG(tp_btf_ovs_do_execute_action, void *dp, struct sk_buff *skb, struct sw_flow_key *key,
	     const struct nlattr *a, int rem)
{
	__u32 recirc = 0;
	__u16 t;

	if (!skb || !a) /* "trusted or NULL" on 6.12: check before use */
		return 0;
	t = BPF_CORE_READ(a, nla_type) & OVS_NLA_TYPE_MASK;
	if (t != OVS_ACTION_ATTR_RECIRC && t != OVS_ACTION_ATTR_CLONE && t != OVS_ACTION_ATTR_SAMPLE &&
	    t != OVS_ACTION_ATTR_CHECK_PKT_LEN)
		return 0;
	if (t == OVS_ACTION_ATTR_RECIRC)
		bpf_probe_read_kernel(&recirc, 4, (void *)a + 4);
	return report(ctx, skb, key, recirc, 0, 0, false, t, 1);
}
