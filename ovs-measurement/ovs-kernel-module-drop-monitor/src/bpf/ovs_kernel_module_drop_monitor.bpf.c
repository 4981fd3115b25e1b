// SPDX-License-Identifier: GPL-2.0
/* ovs-kernel-module-drop-monitor: skbs the OVS kernel datapath frees as
 * dropped. Default: freed inside clone_execute (the per-CPU deferred-action
 * FIFO is full: "deferred action limit reached") or with the OVS recursion /
 * deferred-limit drop reasons (6.8+). --all-ovs: any free whose location is
 * in openvswitch.ko text, or any OVS-subsystem drop reason.
 *
 * Context of a drop: clone_execute's arguments (recirc_id, last,
 * clone_flow_key, key->ct_state) from a kprobe at its entry, kept per CPU
 * (the freed skb is a clone of the one clone_execute got, so it cannot be
 * looked up by pointer); and the last datapath action (openvswitch
 * tracepoint) per skb pointer in an LRU hash, plus per CPU. */
#define EVENT_MAX_SIZE 256
#include "common.h"
#include "skb.h"
#include "ovs.h"
#include "fnrange.h"

struct ce_rec {
	__u64 ts;
	__u32 recirc_id;
	__u8 last;
	__u8 clone_flow_key;
	__u8 ct_state;
	__u8 key_valid;
};

struct ex_rec {
	__u64 ts;
	__u32 recirc_id;   /* key->recirc_id (the flow's) */
	__u32 act_recirc;  /* RECIRC action: the new id */
	__u32 in_port;
	__u16 ct_zone;
	__u8 ct_state;
	__u8 action;
	__u8 key_valid;
	__u8 pad[7];
};

/* Mirror: DropEvent in src/lib.rs. */
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
	__u8 ce_valid;
	__u8 ce_last;
	__u8 ce_clone_key;
	__u32 ce_recirc;
	__u8 ce_ct_state;
	__u8 ce_key_valid;
	__u8 ex_valid;
	__u8 ex_key_valid;
	__u32 ex_recirc;
	__u32 ex_act_recirc;
	__u8 ex_ct_state;
	__u8 ex_action;
	__u16 ex_ct_zone;
	__u32 ex_in_port;
	struct pkt_meta pkt;
};

const volatile struct pkt_filter FILTER = {};
/* clone_execute (and split parts) */
DECLARE_FN_RANGES(CE, in_clone_execute)
const volatile __u64 MOD_LO = 0;     /* openvswitch.ko text */
const volatile __u64 MOD_HI = 0;
const volatile bool all_ovs = false;
const volatile __u32 R_DEFERRED = 0; /* OVS_DROP_DEFERRED_LIMIT, 0 if unknown */
const volatile __u32 R_RECURSION = 0;
const volatile __u32 OVS_SUBSYS = 0; /* SKB_DROP_REASON_SUBSYS_OPENVSWITCH, 0 if none */
const volatile bool want_ustack = false;
const volatile __u64 CE_MAX_AGE_NS = 50000000;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ce_rec);
} ce_last SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ex_rec);
} ex_last SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ex_rec);
} ex_by_skb SEC(".maps");

DECLARE_STACK_MAP(stacks, 4096);

static __always_inline int on_kfree_skb(void *ctx, struct sk_buff *skb, __u64 location, __u32 reason,
					bool has_reason)
{
	struct pkt_meta m = {};
	struct drop_event *e;
	__u32 zero = 0;
	bool in_ce, want;
	__u64 id, now;

	if (!skb)
		return 0;
	in_ce = location && in_clone_execute(location);
	if (all_ovs)
		want = (location && location >= MOD_LO && location < MOD_HI) ||
		       (has_reason && OVS_SUBSYS && (reason >> 16) == OVS_SUBSYS);
	else
		want = in_ce || (has_reason && R_DEFERRED && (reason == R_DEFERRED || reason == R_RECURSION));
	/* fentry hooks cannot tell the location: user space decides from the stack. */
	if (!location)
		want = true;
	if (!want)
		return 0;
	if (BPF_CORE_READ(skb, protocol) != bpf_htons(ETH_P_IP))
		return 0;
	if (!parse_skb(skb, &m, false) || !filter_match(&FILTER, &m))
		return 0;

	e = event_reserve(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	now = bpf_ktime_get_ns();
	id = bpf_get_current_pid_tgid();
	e->ts_ns = now;
	e->location = location;
	e->tid = (__u32)id;
	e->tgid = id >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->kstack_id = get_stack_id(ctx, &stacks, 0);
	e->ustack_id = want_ustack ? get_stack_id(ctx, &stacks, BPF_F_USER_STACK) : -1;
	e->reason = reason;
	e->has_reason = has_reason;

	struct ce_rec *c = bpf_map_lookup_elem(&ce_last, &zero);
	if (c && c->ts && now - c->ts < CE_MAX_AGE_NS && (in_ce || !location)) {
		e->ce_valid = 1;
		e->ce_recirc = c->recirc_id;
		e->ce_last = c->last;
		e->ce_clone_key = c->clone_flow_key;
		e->ce_ct_state = c->ct_state;
		e->ce_key_valid = c->key_valid;
	}
	__u64 key = (__u64)skb;
	struct ex_rec *x = bpf_map_lookup_elem(&ex_by_skb, &key);
	if (x && now - x->ts >= CE_MAX_AGE_NS)
		x = NULL; /* a reused skb address */
	if (!x) {
		x = bpf_map_lookup_elem(&ex_last, &zero);
		if (x && (!x->ts || now - x->ts >= CE_MAX_AGE_NS))
			x = NULL;
	}
	if (x) {
		e->ex_valid = 1;
		e->ex_recirc = x->recirc_id;
		e->ex_act_recirc = x->act_recirc;
		e->ex_ct_state = x->ct_state;
		e->ex_action = x->action;
		e->ex_ct_zone = x->ct_zone;
		e->ex_in_port = x->in_port;
		e->ex_key_valid = x->key_valid;
	}
	__builtin_memcpy(&e->pkt, &m, sizeof(m));
	event_submit(ctx, e, sizeof(*e));
	bpf_map_delete_elem(&ex_by_skb, &key);
	return 0;
}

#include "kfree_skb.h"

/* ---- clone_execute(dp, skb, key, recirc_id, actions, len, last, clone_flow_key) ----
 * kprobe at function entry: args 1-6 in registers, 7 and 8 on the stack
 * above the return address (sp+8, sp+16). */
SEC("kprobe/clone_execute")
int BPF_KPROBE(kprobe_clone_execute, void *dp, struct sk_buff *skb, const struct sw_flow_key *key,
	       __u32 recirc_id)
{
	__u32 zero = 0;
	struct ce_rec *c = bpf_map_lookup_elem(&ce_last, &zero);
	struct ovs_key_info ki = {};
	__u64 a7 = 0, a8 = 0;

	if (!c)
		return 0;
	bpf_probe_read_kernel(&a7, sizeof(a7), (void *)(PT_REGS_SP(ctx) + 8));
	bpf_probe_read_kernel(&a8, sizeof(a8), (void *)(PT_REGS_SP(ctx) + 16));
	ovs_read_key(key, &ki);
	c->ts = bpf_ktime_get_ns();
	c->recirc_id = recirc_id;
	c->last = (__u8)a7 & 1;
	c->clone_flow_key = (__u8)a8 & 1;
	c->ct_state = ki.ct_state;
	c->key_valid = ki.valid;
	return 0;
}

/* ---- the datapath action being executed (tracepoint, >= 5.18) ---- */
SEC("tp_btf/ovs_do_execute_action")
int BPF_PROG(tp_btf_ovs_do_execute_action, void *dp, struct sk_buff *skb, struct sw_flow_key *key,
	     const struct nlattr *a, int rem)
{
	__u32 zero = 0;
	struct ex_rec r = {};
	struct ovs_key_info ki = {};
	__u64 k = (__u64)skb;
	__u16 t;

	/* 6.12 types these arguments "trusted or NULL": check before any use. */
	if (!skb || !a)
		return 0;
	t = BPF_CORE_READ(a, nla_type) & OVS_NLA_TYPE_MASK;
	ovs_read_key(key, &ki);
	r.ts = bpf_ktime_get_ns();
	r.recirc_id = ki.recirc_id;
	r.ct_state = ki.ct_state;
	r.ct_zone = ki.ct_zone;
	r.in_port = ki.in_port;
	r.key_valid = ki.valid;
	r.action = t;
	if (t == OVS_ACTION_ATTR_RECIRC)
		bpf_probe_read_kernel(&r.act_recirc, 4, (void *)a + 4);
	bpf_map_update_elem(&ex_by_skb, &k, &r, BPF_ANY);
	struct ex_rec *l = bpf_map_lookup_elem(&ex_last, &zero);
	if (l)
		*l = r;
	return 0;
}
