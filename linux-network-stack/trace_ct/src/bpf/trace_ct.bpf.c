// SPDX-License-Identifier: GPL-2.0
/* trace_ct / trace_ct_multi_conn: the conntrack entry (nf_conn) attached to
 * each packet of the filtered flows at each conntrack / OVS ct step.
 *
 * Points (one program per way to reach each; user space loads what the kernel
 * has, HOOKS in src/lib.rs):
 *   netfilter links just before / after conntrack (>= 6.4),
 *   nf_conntrack_in, __nf_ct_refresh_acct, nf_conntrack_tcp_packet (entry and
 *   return), tcp_error (fentry/kprobe, 6.1 signatures),
 *   OVS: ovs_do_execute_action tracepoint for ct() actions, ovs_ct_execute,
 *   __ovs_ct_lookup, ovs_ct_update_key (fentry/kprobe),
 *   skb:kfree_skb for drops of the filtered flows. */
#define EVENT_MAX_SIZE 512
#include "common.h"
#include "skb.h"
#include "flowrules.h"
#include "conntrack.h"

enum probe_ids {
	PROBE_NF_CONNTRACK_IN = 1,
	PROBE_OVS_CT_LOOKUP = 2,
	PROBE_OVS_CT_UPDATE = 3,
	PROBE_NF_REFRESH_ACCT = 4,
	PROBE_TCP_PACKET = 6,
	PROBE_TCP_PACKET_RET = 7,
	PROBE_TCP_ERROR = 8,
	PROBE_OVS_CT_EXECUTE = 9,
	PROBE_PRE_CT = 10,
	PROBE_POST_CT = 11,
	PROBE_DROP = 12,
};

#define RET_ENTRY (-999)
#define NF_ACCEPT 1
#define OVS_ACTION_ATTR_CT 12
#define NLA_TYPE_MASK 0x3fff

/* Mirror: CtEvent in src/lib.rs. */
struct ct_event {
	__u64 ts_ns;
	__s64 ret;          /* RET_ENTRY for entry events */
	__u32 pid;
	__u32 tid;
	char comm[16];
	__s32 kstack_id;
	__u8 probe;
	__u8 has_pkt;
	__u8 sk_state;      /* 0xff: no socket */
	__u8 nf_hook;       /* netfilter hook of nf-link events, 0xff otherwise */
	__u32 tcp_seq;
	__u32 tcp_ack;
	__u32 reason;       /* PROBE_DROP */
	__u8 has_comm;      /* 0 where the program type cannot read the task */
	__u8 pad[3];
	struct pkt_meta pkt;
	__u8 pad2[4];
	struct ct_snap skb_ct;
	struct ct_snap arg_ct;  /* the nf_conn argument (tcp_packet) */
	struct ovs_ct_snap ovs;
};

const volatile bool want_stack = true;
const volatile bool want_label = true;
/* The kernel lets netfilter programs read the current task (user space probes). */
const volatile bool nf_task = false;
/* Report drops (skb:kfree_skb) only when a flow filter is set. */
const volatile bool want_drops = false;

DECLARE_STACK_MAP(stack_traces, 10240);

/* tcp_packet entry (kprobe) -> kretprobe: the nf_conn of a matching call. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, __u64);
} tcp_packet_calls SEC(".maps");

/* A minimal view of OVS's struct sw_flow_key (module BTF). */
struct sw_flow_key___ct {
	__u8 ct_state;
	__u16 ct_zone;
} __attribute__((preserve_access_index));

/* Parse the packet and apply the flow rules. Only IPv4. */
static __always_inline bool pkt_match(struct sk_buff *skb, struct pkt_meta *m, bool direct)
{
	__be32 s, d;

	if (!skb)
		return false;
	if (!parse_skb_(skb, m, false, direct) || m->family != 4)
		return false;
	__builtin_memcpy(&s, m->saddr, 4);
	__builtin_memcpy(&d, m->daddr, 4);
	return flow_rules_match(s, d, m->l4proto, m->sport, m->dport);
}

static __always_inline void read_tcp_extra(struct sk_buff *skb, struct ct_event *e)
{
	struct sock *sk;

	e->sk_state = 0xff;
	if (e->pkt.l4proto != IPPROTO_TCP)
		return;
	unsigned char *head = BPF_CORE_READ(skb, head);
	__be32 sa[2];
	if (!bpf_probe_read_kernel(sa, sizeof(sa), head + e->pkt.trans_off + 4)) {
		e->tcp_seq = bpf_ntohl(sa[0]);
		e->tcp_ack = bpf_ntohl(sa[1]);
	}
	sk = BPF_CORE_READ(skb, sk);
	if (sk)
		e->sk_state = BPF_CORE_READ(sk, __sk_common.skc_state);
}

/* A new event for a matching skb; NULL when filtered out. `nf`: a netfilter
 * program, which cannot take stacks, and reads the task only where the kernel
 * allows it (nf_task, probed by user space). `direct`: skb is a BTF pointer
 * (fentry, tp_btf, netfilter; RD in common.h). */
static __always_inline struct ct_event *new_event(void *ctx, struct sk_buff *skb, __u8 probe, bool nf,
						  bool direct)
{
	struct pkt_meta m = {};
	struct ct_event *e;

	if (!pkt_match(skb, &m, direct))
		return NULL;
	e = event_reserve(sizeof(*e));
	if (!e)
		return NULL;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->ret = RET_ENTRY;
	e->probe = probe;
	e->has_pkt = 1;
	e->nf_hook = 0xff;
	e->kstack_id = -1;
	if (!nf || nf_task) {
		__u64 id = bpf_get_current_pid_tgid();
		e->pid = id >> 32;
		e->tid = (__u32)id;
		e->has_comm = 1;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	}
	if (!nf && want_stack)
		e->kstack_id = get_stack_id(ctx, &stack_traces, 0);
	__builtin_memcpy(&e->pkt, &m, sizeof(m));
	read_tcp_extra(skb, e);
	ct_read_skb(skb, &e->skb_ct, want_label);
	ct_snap_init(&e->arg_ct);
	e->ovs.err = -1;
	e->ovs.dir_err = -1;
	return e;
}

static __always_inline int skb_event(void *ctx, struct sk_buff *skb, __u8 probe, bool direct)
{
	struct ct_event *e = new_event(ctx, skb, probe, false, direct);
	if (e)
		event_submit(ctx, e, sizeof(*e));
	return 0;
}

static __always_inline int ovs_event(void *ctx, struct sk_buff *skb, const void *info, void *key, __u8 probe,
				     bool direct)
{
	struct ct_event *e = new_event(ctx, skb, probe, false, direct);
	if (!e)
		return 0;
	ovs_read_ct_info(info, &e->ovs);
	if (key && bpf_core_type_exists(struct sw_flow_key___ct)) {
		struct sw_flow_key___ct *k = key;
		e->ovs.key_ct_state = BPF_CORE_READ(k, ct_state);
		e->ovs.key_ct_zone = BPF_CORE_READ(k, ct_zone);
		e->ovs.key_valid = 1;
	}
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

/* tcp_packet entry: the nf_conn argument is parsed too (trace_ct_multi_conn shows it). */
static __always_inline int tcp_packet_event(void *ctx, struct nf_conn *ct, struct sk_buff *skb, bool remember,
					    bool direct)
{
	struct ct_event *e = new_event(ctx, skb, PROBE_TCP_PACKET, false, direct);
	if (!e)
		return 0;
	ct_read_arg(ct, &e->arg_ct, want_label);
	event_submit(ctx, e, sizeof(*e));
	if (remember) {
		__u64 id = bpf_get_current_pid_tgid(), c = (__u64)ct;
		bpf_map_update_elem(&tcp_packet_calls, &id, &c, BPF_ANY);
	}
	return 0;
}

/* tcp_packet return: the verdict and the nf_conn after the packet. */
static __always_inline int tcp_packet_ret_event(void *ctx, struct nf_conn *ct, long ret)
{
	struct ct_event *e = event_reserve(sizeof(*e));
	__u64 id = bpf_get_current_pid_tgid();

	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->ret = ret;
	e->probe = PROBE_TCP_PACKET_RET;
	e->nf_hook = 0xff;
	e->sk_state = 0xff;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->has_comm = 1;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->kstack_id = want_stack ? get_stack_id(ctx, &stack_traces, 0) : -1;
	ct_snap_init(&e->skb_ct);
	ct_read_arg(ct, &e->arg_ct, want_label);
	e->ovs.err = -1;
	e->ovs.dir_err = -1;
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

/* ---- netfilter links around conntrack (>= 6.4) ---- */
static __always_inline int nf_event(struct bpf_nf_ctx *ctx, __u8 probe)
{
	struct sk_buff *skb = ctx->skb;
	const struct nf_hook_state *state = ctx->state;
	struct ct_event *e = new_event(ctx, skb, probe, true, true);

	if (!e)
		return NF_ACCEPT;
	e->nf_hook = state->hook;
	if (!e->pkt.ifindex) {
		/* LOCAL_OUT: the skb has no device yet; the route's is the one. */
		struct net_device *dev = state->out ? state->out : state->in;
		if (dev) {
			e->pkt.ifindex = BPF_CORE_READ(dev, ifindex);
			bpf_probe_read_kernel_str(e->pkt.ifname, sizeof(e->pkt.ifname), dev->name);
		}
	}
	event_submit(ctx, e, sizeof(*e));
	return NF_ACCEPT;
}

SEC("netfilter")
int nf_pre_ct(struct bpf_nf_ctx *ctx)
{
	return nf_event(ctx, PROBE_PRE_CT);
}

SEC("netfilter")
int nf_post_ct(struct bpf_nf_ctx *ctx)
{
	return nf_event(ctx, PROBE_POST_CT);
}

/* ---- nf_conntrack_in(skb, state) (>= 5.x) ---- */
SEC("fentry/nf_conntrack_in")
int BPF_PROG(fentry_nf_conntrack_in, struct sk_buff *skb)
{
	return skb_event(ctx, skb, PROBE_NF_CONNTRACK_IN, true);
}

SEC("kprobe/nf_conntrack_in")
int BPF_KPROBE(kprobe_nf_conntrack_in, struct sk_buff *skb)
{
	return skb_event(ctx, skb, PROBE_NF_CONNTRACK_IN, false);
}

/* ---- __nf_ct_refresh_acct(ct, ctinfo, skb, extra_jiffies, do_acct) ---- */
SEC("fentry/__nf_ct_refresh_acct")
int BPF_PROG(fentry___nf_ct_refresh_acct, struct nf_conn *ct, int ctinfo, struct sk_buff *skb)
{
	return skb_event(ctx, skb, PROBE_NF_REFRESH_ACCT, true);
}

SEC("kprobe/__nf_ct_refresh_acct")
int BPF_KPROBE(kprobe___nf_ct_refresh_acct, struct nf_conn *ct, int ctinfo, struct sk_buff *skb)
{
	return skb_event(ctx, skb, PROBE_NF_REFRESH_ACCT, false);
}

/* ---- nf_conntrack_tcp_packet(ct, skb, dataoff, ctinfo, state); before 5.x tcp_packet(ct, skb, ...) ---- */
SEC("fentry/nf_conntrack_tcp_packet")
int BPF_PROG(fentry_nf_conntrack_tcp_packet, struct nf_conn *ct, struct sk_buff *skb)
{
	return tcp_packet_event(ctx, ct, skb, false, true);
}

SEC("fexit/nf_conntrack_tcp_packet")
int BPF_PROG(fexit_nf_conntrack_tcp_packet, struct nf_conn *ct, struct sk_buff *skb, unsigned int dataoff,
	     int ctinfo, const struct nf_hook_state *state, int ret)
{
	struct pkt_meta m = {};
	if (!pkt_match(skb, &m, true))
		return 0;
	return tcp_packet_ret_event(ctx, ct, ret);
}

SEC("kprobe/nf_conntrack_tcp_packet")
int BPF_KPROBE(kprobe_nf_conntrack_tcp_packet, struct nf_conn *ct, struct sk_buff *skb)
{
	return tcp_packet_event(ctx, ct, skb, true, false);
}

SEC("kprobe/tcp_packet")
int BPF_KPROBE(kprobe_tcp_packet, struct nf_conn *ct, struct sk_buff *skb)
{
	return tcp_packet_event(ctx, ct, skb, true, false);
}

static __always_inline int tcp_packet_kretprobe(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *ct = bpf_map_lookup_elem(&tcp_packet_calls, &id);
	if (!ct)
		return 0;
	struct nf_conn *c = (struct nf_conn *)*ct;
	bpf_map_delete_elem(&tcp_packet_calls, &id);
	return tcp_packet_ret_event(ctx, c, (int)PT_REGS_RC(ctx));
}

SEC("kretprobe/nf_conntrack_tcp_packet")
int BPF_KRETPROBE(kretprobe_nf_conntrack_tcp_packet)
{
	return tcp_packet_kretprobe(ctx);
}

SEC("kretprobe/tcp_packet")
int BPF_KRETPROBE(kretprobe_tcp_packet)
{
	return tcp_packet_kretprobe(ctx);
}

/* ---- tcp_error(th, skb, dataoff, state) (static, often inlined) ---- */
SEC("fentry/tcp_error")
int BPF_PROG(fentry_tcp_error, const struct tcphdr *th, struct sk_buff *skb)
{
	return skb_event(ctx, skb, PROBE_TCP_ERROR, true);
}

SEC("kprobe/tcp_error")
int BPF_KPROBE(kprobe_tcp_error, const struct tcphdr *th, struct sk_buff *skb)
{
	return skb_event(ctx, skb, PROBE_TCP_ERROR, false);
}

/* ---- OVS ---- */
/* openvswitch:ovs_do_execute_action(dp, skb, key, a, rem): before a ct()
 * action; the action's payload is the kernel's struct ovs_conntrack_info. */
SEC("tp_btf/ovs_do_execute_action")
int BPF_PROG(tp_btf_ovs_do_execute_action, void *dp, struct sk_buff *skb, void *key, const struct nlattr *a)
{
	__u16 type;

	/* 6.12's module BTF marks the argument nullable: the verifier allows
	 * no arithmetic on it before this check. */
	if (!a)
		return 0;
	type = BPF_CORE_READ(a, nla_type) & NLA_TYPE_MASK;
	if (type != OVS_ACTION_ATTR_CT)
		return 0;
	return ovs_event(ctx, skb, (const void *)a + 4 /* NLA_HDRLEN */, key, PROBE_OVS_CT_EXECUTE, true);
}

SEC("fentry/ovs_ct_execute")
int BPF_PROG(fentry_ovs_ct_execute, struct net *net, struct sk_buff *skb, void *key, const void *info)
{
	return ovs_event(ctx, skb, info, key, PROBE_OVS_CT_EXECUTE, true);
}

SEC("kprobe/ovs_ct_execute")
int BPF_KPROBE(kprobe_ovs_ct_execute, struct net *net, struct sk_buff *skb, void *key, const void *info)
{
	return ovs_event(ctx, skb, info, key, PROBE_OVS_CT_EXECUTE, false);
}

/* __ovs_ct_lookup(net, key, info, skb) (static) */
SEC("fentry/__ovs_ct_lookup")
int BPF_PROG(fentry___ovs_ct_lookup, struct net *net, void *key, const void *info, struct sk_buff *skb)
{
	return ovs_event(ctx, skb, info, key, PROBE_OVS_CT_LOOKUP, true);
}

SEC("kprobe/__ovs_ct_lookup")
int BPF_KPROBE(kprobe___ovs_ct_lookup, struct net *net, void *key, const void *info, struct sk_buff *skb)
{
	return ovs_event(ctx, skb, info, key, PROBE_OVS_CT_LOOKUP, false);
}

/* ovs_ct_update_key(skb, info, key, post_ct, keep_nat_flags) (static) */
SEC("fentry/ovs_ct_update_key")
int BPF_PROG(fentry_ovs_ct_update_key, struct sk_buff *skb, const void *info, void *key)
{
	return ovs_event(ctx, skb, info, key, PROBE_OVS_CT_UPDATE, true);
}

SEC("kprobe/ovs_ct_update_key")
int BPF_KPROBE(kprobe_ovs_ct_update_key, struct sk_buff *skb, const void *info, void *key)
{
	return ovs_event(ctx, skb, info, key, PROBE_OVS_CT_UPDATE, false);
}

/* ---- drops of the filtered flows ---- */
static __always_inline int drop_event(void *ctx, struct sk_buff *skb, __u32 reason, bool direct)
{
	struct ct_event *e;

	if (!want_drops || !skb || RD(direct, skb, protocol) != bpf_htons(ETH_P_IP))
		return 0;
	e = new_event(ctx, skb, PROBE_DROP, false, direct);
	if (!e)
		return 0;
	e->reason = reason;
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_btf_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	return drop_event(ctx, skb, reason, true);
}

SEC("tracepoint/skb/kfree_skb")
int tp_kfree_skb(struct trace_event_raw_kfree_skb *args)
{
	__u32 reason = 0;
	if (bpf_core_field_exists(args->reason))
		reason = BPF_CORE_READ(args, reason);
	return drop_event(args, BPF_CORE_READ(args, skbaddr), reason, false);
}
