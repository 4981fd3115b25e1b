// SPDX-License-Identifier: GPL-2.0
/* trace-ovs-ct-invalid: why conntrack (netfilter, or OVS ct() actions) marks
 * a flow invalid. For the filtered packets:
 *   nf_conntrack_in      entry: skb->_nfct before; return: verdict and _nfct
 *                        after (0 = the packet got no conntrack: INVALID)
 *   nf_conntrack_tcp_packet  entry/return: TCP window tracking of both
 *                        directions (ct->proto.tcp.seen[]) and the verdict
 *                        (-NF_ACCEPT = invalid)
 *   tcp_in_window        where it is a real function: the same for the
 *                        sender/receiver of this packet, and its answer
 *   __nf_ct_refresh_acct, __ovs_ct_lookup, ovs_ct_update_key (ct_state the
 *                        flow key got, read on return)
 *   openvswitch tracepoints: ovs_do_execute_action / ovs_dp_upcall of packets
 *                        whose key has ct_state INVALID (no kprobes needed)
 *   skb:kfree_skb        NETFILTER_DROP or OVS drop reasons
 * Argument positions of the kprobed functions come from their BTF
 * prototypes (looked up by parameter name at start, passed in .rodata): the
 * signatures changed between kernels. */
#define EVENT_MAX_SIZE 320
#include "common.h"
#include "skb.h"
#include "ovs.h"

enum {
	P_CT_IN = 1,
	P_CT_IN_RET = 2,
	P_TCP_PACKET = 3,
	P_TCP_PACKET_RET = 4,
	P_IN_WINDOW = 5,
	P_IN_WINDOW_RET = 6,
	P_REFRESH = 7,
	P_OVS_LOOKUP = 8,
	P_OVS_UPDATE_KEY = 9,
	P_OVS_EXEC = 10,
	P_OVS_UPCALL = 11,
	P_DROP = 12,
};

#define OVS_CS_F_INVALID 0x10
#define NO_ARG 0xff

struct win {
	__u32 td_end;
	__u32 td_maxend;
	__u32 td_maxwin;
	__u32 td_maxack;
	__u8 td_scale;
	__u8 flags;
	__u8 pad[2];
};

/* Mirror: CiEvent in src/lib.rs. */
struct ci_event {
	__u64 ts_ns;
	__u64 nfct;
	__u64 ct;
	__s64 ret;
	__u64 location;
	__u32 tid;
	__u32 tgid;
	char comm[16];
	__s32 kstack_id;
	__s32 ustack_id;
	__u32 reason;
	__u32 recirc_id;
	__u32 tcp_seq;
	__u32 tcp_ack;
	__u16 tcp_win;
	__u16 ct_zone;
	__u8 probe;
	__u8 dir;
	__u8 tcp_state;
	__u8 has_win;
	__u8 ct_state;
	__u8 key_valid;
	__u8 action;
	__u8 has_ret;
	__u8 has_reason;
	__u8 pad[3];
	struct win win[2];
	struct pkt_meta pkt;
	__u32 pad2;
};

const volatile struct pkt_filter FILTER = {};
const volatile char DEVS[4][16] = {};
const volatile __u8 n_devs = 0;
const volatile bool want_stack = true;
/* argument positions (0-based), NO_ARG when the kernel's prototype lacks it */
const volatile __u8 I_IN_SKB = NO_ARG;
const volatile __u8 I_TP_CT = NO_ARG, I_TP_SKB = NO_ARG, I_TP_CTINFO = NO_ARG;
const volatile __u8 I_W_CT = NO_ARG, I_W_STATE = NO_ARG, I_W_DIR = NO_ARG, I_W_SKB = NO_ARG;
const volatile __u8 I_R_CT = NO_ARG, I_R_SKB = NO_ARG;
const volatile __u8 I_L_SKB = NO_ARG, I_L_KEY = NO_ARG;
const volatile __u8 I_U_SKB = NO_ARG, I_U_KEY = NO_ARG;
const volatile __u32 R_NF_DROP = 0;   /* SKB_DROP_REASON_NETFILTER_DROP on this kernel */
const volatile __u32 OVS_SUBSYS = 0;  /* SKB_DROP_REASON_SUBSYS_OPENVSWITCH */

struct call {
	__u64 skb;
	__u64 ct;
	__u64 key;
	__u8 dir;
	__u8 pad[7];
};

/* entry -> return of the kprobed functions, per thread and function */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* tid << 8 | probe */
	__type(value, struct call);
} calls SEC(".maps");

DECLARE_STACK_MAP(stacks, 4096);

static __always_inline __u64 arg_n(struct pt_regs *ctx, __u8 i)
{
	__u64 v = 0;
	/* probe reads: the compiler may turn a switch of direct ctx loads into a
	 * computed ctx offset, which the verifier refuses */
	switch (i) {
	case 0: return PT_REGS_PARM1_CORE(ctx);
	case 1: return PT_REGS_PARM2_CORE(ctx);
	case 2: return PT_REGS_PARM3_CORE(ctx);
	case 3: return PT_REGS_PARM4_CORE(ctx);
	case 4: return PT_REGS_PARM5_CORE(ctx);
	case 5: return PT_REGS_PARM6_CORE(ctx);
	case 6:
	case 7:
		/* on the stack above the return address */
		bpf_probe_read_kernel(&v, sizeof(v), (void *)(PT_REGS_SP(ctx) + 8 * (i - 5)));
		return v;
	}
	return 0;
}

static __always_inline bool dev_ok(const struct pkt_meta *m)
{
	if (!n_devs)
		return true;
	/* --dev: a packet without a device yet (a local sender's OUTPUT hook) is
	 * on none of the devices: left out, as the original's name compare did */
	if (!m->ifname[0])
		return false;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (i >= n_devs)
			break;
		if (ifname_eq(m->ifname, DEVS[i]))
			return true;
	}
	return false;
}

static __always_inline bool pkt_ok(struct sk_buff *skb, struct pkt_meta *m)
{
	if (!skb)
		return false;
	if (!parse_skb(skb, m, false) || m->family != 4)
		return false;
	return filter_match(&FILTER, m) && dev_ok(m);
}

static __always_inline void read_win(struct ip_ct_tcp *t, struct ci_event *e)
{
	struct ip_ct_tcp_state s[2];
	if (!t || bpf_probe_read_kernel(s, sizeof(s), &t->seen))
		return;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		e->win[i].td_end = s[i].td_end;
		e->win[i].td_maxend = s[i].td_maxend;
		e->win[i].td_maxwin = s[i].td_maxwin;
		e->win[i].td_maxack = s[i].td_maxack;
		e->win[i].td_scale = s[i].td_scale;
		e->win[i].flags = s[i].flags;
	}
	bpf_probe_read_kernel(&e->tcp_state, 1, &t->state);
	e->has_win = 1;
}

static __always_inline struct ip_ct_tcp *ct_tcp(__u64 ct)
{
	struct nf_conn *c = (struct nf_conn *)ct;
	if (!ct || !bpf_core_field_exists(c->proto))
		return NULL;
	return (struct ip_ct_tcp *)((void *)c + bpf_core_field_offset(c->proto));
}

static __always_inline struct ci_event *new_event(void *ctx, __u8 probe, struct sk_buff *skb,
						  struct pkt_meta *m)
{
	struct ci_event *e = event_reserve(sizeof(*e));
	if (!e)
		return NULL;
	__builtin_memset(e, 0, sizeof(*e));
	__u64 id = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->tid = (__u32)id;
	e->tgid = id >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->probe = probe;
	e->kstack_id = want_stack ? get_stack_id(ctx, &stacks, 0) : -1;
	e->ustack_id = want_stack ? get_stack_id(ctx, &stacks, BPF_F_USER_STACK) : -1;
	if (skb) {
		e->nfct = BPF_CORE_READ(skb, _nfct);
		if (m->l4proto == IPPROTO_TCP) {
			struct tcphdr th;
			unsigned char *head = BPF_CORE_READ(skb, head);
			if (!bpf_probe_read_kernel(&th, sizeof(th), head + m->trans_off)) {
				e->tcp_seq = bpf_ntohl(th.seq);
				e->tcp_ack = bpf_ntohl(th.ack_seq);
				e->tcp_win = bpf_ntohs(th.window);
			}
		}
	}
	__builtin_memcpy(&e->pkt, m, sizeof(*m));
	return e;
}

static __always_inline void save_call(__u8 probe, __u64 skb, __u64 ct, __u64 key, __u8 dir)
{
	__u64 k = (bpf_get_current_pid_tgid() << 8) | probe;
	struct call c = {.skb = skb, .ct = ct, .key = key, .dir = dir};
	bpf_map_update_elem(&calls, &k, &c, BPF_ANY);
}

static __always_inline struct call *take_call(__u8 probe, struct call *out)
{
	__u64 k = (bpf_get_current_pid_tgid() << 8) | probe;
	struct call *c = bpf_map_lookup_elem(&calls, &k);
	if (!c)
		return NULL;
	*out = *c;
	bpf_map_delete_elem(&calls, &k);
	return out;
}

/* ---- nf_conntrack_in(skb, state) ---- */
SEC("kprobe/nf_conntrack_in")
int BPF_KPROBE(kprobe_nf_conntrack_in)
{
	struct pkt_meta m = {};
	struct sk_buff *skb;
	struct ci_event *e;

	if (I_IN_SKB == NO_ARG)
		return 0;
	skb = (struct sk_buff *)arg_n(ctx, I_IN_SKB);
	if (!pkt_ok(skb, &m))
		return 0;
	save_call(P_CT_IN, (__u64)skb, 0, 0, 0);
	e = new_event(ctx, P_CT_IN, skb, &m);
	if (e)
		event_submit(ctx, e, sizeof(*e));
	return 0;
}

SEC("kretprobe/nf_conntrack_in")
int BPF_KRETPROBE(kretprobe_nf_conntrack_in, long ret)
{
	struct pkt_meta m = {};
	struct call c;
	struct ci_event *e;

	if (!take_call(P_CT_IN, &c))
		return 0;
	if (!pkt_ok((struct sk_buff *)c.skb, &m))
		return 0;
	e = new_event(ctx, P_CT_IN_RET, (struct sk_buff *)c.skb, &m);
	if (!e)
		return 0;
	e->ret = (int)ret;
	e->has_ret = 1;
	e->ct = e->nfct & ~7ULL;
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

/* ---- nf_conntrack_tcp_packet(ct, skb, dataoff, ctinfo, state) ---- */
SEC("kprobe/nf_conntrack_tcp_packet")
int BPF_KPROBE(kprobe_nf_conntrack_tcp_packet)
{
	struct pkt_meta m = {};
	struct sk_buff *skb;
	struct ci_event *e;
	__u64 ct;
	__u8 ctinfo = 0;

	if (I_TP_CT == NO_ARG || I_TP_SKB == NO_ARG)
		return 0;
	skb = (struct sk_buff *)arg_n(ctx, I_TP_SKB);
	ct = arg_n(ctx, I_TP_CT);
	if (!pkt_ok(skb, &m))
		return 0;
	if (I_TP_CTINFO != NO_ARG)
		ctinfo = arg_n(ctx, I_TP_CTINFO);
	save_call(P_TCP_PACKET, (__u64)skb, ct, 0, ctinfo >= 3);
	e = new_event(ctx, P_TCP_PACKET, skb, &m);
	if (!e)
		return 0;
	e->ct = ct;
	e->dir = ctinfo >= 3; /* IP_CT_IS_REPLY */
	read_win(ct_tcp(ct), e);
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

SEC("kretprobe/nf_conntrack_tcp_packet")
int BPF_KRETPROBE(kretprobe_nf_conntrack_tcp_packet, long ret)
{
	struct pkt_meta m = {};
	struct call c;
	struct ci_event *e;

	if (!take_call(P_TCP_PACKET, &c))
		return 0;
	if (!pkt_ok((struct sk_buff *)c.skb, &m))
		return 0;
	e = new_event(ctx, P_TCP_PACKET_RET, (struct sk_buff *)c.skb, &m);
	if (!e)
		return 0;
	e->ct = c.ct;
	e->dir = c.dir;
	e->ret = (int)ret;
	e->has_ret = 1;
	read_win(ct_tcp(c.ct), e);
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

/* ---- tcp_in_window: 6.x (ct, dir, index, skb, ...), older (ct, state, dir, index, skb, ...) ---- */
SEC("kprobe/tcp_in_window")
int BPF_KPROBE(kprobe_tcp_in_window)
{
	struct pkt_meta m = {};
	struct sk_buff *skb;
	struct ci_event *e;
	__u64 ct = 0, st = 0;
	__u8 dir;

	if (I_W_SKB == NO_ARG || I_W_DIR == NO_ARG)
		return 0;
	skb = (struct sk_buff *)arg_n(ctx, I_W_SKB);
	if (!pkt_ok(skb, &m))
		return 0;
	dir = arg_n(ctx, I_W_DIR) & 1;
	if (I_W_CT != NO_ARG)
		ct = arg_n(ctx, I_W_CT);
	if (I_W_STATE != NO_ARG)
		st = arg_n(ctx, I_W_STATE);
	else
		st = (__u64)ct_tcp(ct);
	save_call(P_IN_WINDOW, (__u64)skb, ct, st, dir);
	e = new_event(ctx, P_IN_WINDOW, skb, &m);
	if (!e)
		return 0;
	e->ct = ct;
	e->dir = dir;
	read_win((struct ip_ct_tcp *)st, e);
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

SEC("kretprobe/tcp_in_window")
int BPF_KRETPROBE(kretprobe_tcp_in_window, long ret)
{
	struct pkt_meta m = {};
	struct call c;
	struct ci_event *e;

	if (!take_call(P_IN_WINDOW, &c))
		return 0;
	if (!pkt_ok((struct sk_buff *)c.skb, &m))
		return 0;
	e = new_event(ctx, P_IN_WINDOW_RET, (struct sk_buff *)c.skb, &m);
	if (!e)
		return 0;
	e->ct = c.ct;
	e->dir = c.dir;
	e->ret = ret & 0xff;
	e->has_ret = 1;
	read_win((struct ip_ct_tcp *)c.key, e);
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

/* ---- __nf_ct_refresh_acct(ct, ctinfo, skb, ...) (skb argument until it was removed) ---- */
SEC("kprobe/__nf_ct_refresh_acct")
int BPF_KPROBE(kprobe___nf_ct_refresh_acct)
{
	struct pkt_meta m = {};
	struct sk_buff *skb;
	struct ci_event *e;

	if (I_R_SKB == NO_ARG)
		return 0;
	skb = (struct sk_buff *)arg_n(ctx, I_R_SKB);
	if (!pkt_ok(skb, &m))
		return 0;
	e = new_event(ctx, P_REFRESH, skb, &m);
	if (!e)
		return 0;
	if (I_R_CT != NO_ARG)
		e->ct = arg_n(ctx, I_R_CT);
	read_win(ct_tcp(e->ct), e);
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

/* ---- OVS: __ovs_ct_lookup(net, key, info, skb) ---- */
SEC("kprobe/__ovs_ct_lookup")
int BPF_KPROBE(kprobe___ovs_ct_lookup)
{
	struct pkt_meta m = {};
	struct sk_buff *skb;
	struct ci_event *e;
	struct ovs_key_info ki = {};

	if (I_L_SKB == NO_ARG)
		return 0;
	skb = (struct sk_buff *)arg_n(ctx, I_L_SKB);
	if (!pkt_ok(skb, &m))
		return 0;
	e = new_event(ctx, P_OVS_LOOKUP, skb, &m);
	if (!e)
		return 0;
	if (I_L_KEY != NO_ARG)
		ovs_read_key((const struct sw_flow_key *)arg_n(ctx, I_L_KEY), &ki);
	e->ct_state = ki.ct_state;
	e->ct_zone = ki.ct_zone;
	e->recirc_id = ki.recirc_id;
	e->key_valid = ki.valid;
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

/* ---- OVS: ovs_ct_update_key(skb, info, key, post_ct, keep_nat_flags): the ct_state on return ---- */
SEC("kprobe/ovs_ct_update_key")
int BPF_KPROBE(kprobe_ovs_ct_update_key)
{
	if (I_U_SKB == NO_ARG || I_U_KEY == NO_ARG)
		return 0;
	save_call(P_OVS_UPDATE_KEY, arg_n(ctx, I_U_SKB), 0, arg_n(ctx, I_U_KEY), 0);
	return 0;
}

SEC("kretprobe/ovs_ct_update_key")
int BPF_KRETPROBE(kretprobe_ovs_ct_update_key)
{
	struct pkt_meta m = {};
	struct call c;
	struct ci_event *e;
	struct ovs_key_info ki = {};

	if (!take_call(P_OVS_UPDATE_KEY, &c))
		return 0;
	if (!pkt_ok((struct sk_buff *)c.skb, &m))
		return 0;
	e = new_event(ctx, P_OVS_UPDATE_KEY, (struct sk_buff *)c.skb, &m);
	if (!e)
		return 0;
	ovs_read_key((const struct sw_flow_key *)c.key, &ki);
	e->ct_state = ki.ct_state;
	e->ct_zone = ki.ct_zone;
	e->recirc_id = ki.recirc_id;
	e->key_valid = ki.valid;
	e->ct = e->nfct & ~7ULL;
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

/* ---- OVS tracepoints: packets whose flow key says ct_state INVALID ---- */
static __always_inline int ovs_key_event(void *ctx, __u8 probe, struct sk_buff *skb,
					 const struct sw_flow_key *key, __u8 action)
{
	struct pkt_meta m = {};
	struct ovs_key_info ki = {};
	struct ci_event *e;

	ovs_read_key(key, &ki);
	if (!ki.valid || !(ki.ct_state & OVS_CS_F_INVALID))
		return 0;
	if (!pkt_ok(skb, &m))
		return 0;
	e = new_event(ctx, probe, skb, &m);
	if (!e)
		return 0;
	e->ct_state = ki.ct_state;
	e->ct_zone = ki.ct_zone;
	e->recirc_id = ki.recirc_id;
	e->key_valid = 1;
	e->action = action;
	e->ct = e->nfct & ~7ULL;
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

SEC("tp_btf/ovs_do_execute_action")
int BPF_PROG(tp_btf_ovs_do_execute_action, void *dp, struct sk_buff *skb, struct sw_flow_key *key,
	     const struct nlattr *a, int rem)
{
	if (!skb || !key || !a) /* "trusted or NULL" on 6.12 */
		return 0;
	return ovs_key_event(ctx, P_OVS_EXEC, skb, key, BPF_CORE_READ(a, nla_type) & OVS_NLA_TYPE_MASK);
}

SEC("tp_btf/ovs_dp_upcall")
int BPF_PROG(tp_btf_ovs_dp_upcall, void *dp, struct sk_buff *skb, const struct sw_flow_key *key,
	     const struct dp_upcall_info *info)
{
	if (!skb || !key)
		return 0;
	return ovs_key_event(ctx, P_OVS_UPCALL, skb, key, 0);
}

/* ---- drops: NETFILTER_DROP and OVS reasons (every drop of the flow without reasons) ---- */
static __always_inline int on_kfree_skb(void *ctx, struct sk_buff *skb, __u64 location, __u32 reason,
					bool has_reason)
{
	struct pkt_meta m = {};
	struct ci_event *e;

	if (has_reason && !(R_NF_DROP && reason == R_NF_DROP) &&
	    !(OVS_SUBSYS && (reason >> 16) == OVS_SUBSYS))
		return 0;
	if (!pkt_ok(skb, &m))
		return 0;
	e = new_event(ctx, P_DROP, skb, &m);
	if (!e)
		return 0;
	e->reason = reason;
	e->has_reason = has_reason;
	e->location = location;
	e->ct = e->nfct & ~7ULL;
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

#include "kfree_skb.h"
