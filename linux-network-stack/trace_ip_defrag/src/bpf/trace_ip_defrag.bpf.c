// SPDX-License-Identifier: GPL-2.0
/* trace_ip_defrag: IPv4 fragments entering reassembly (ip_defrag), their
 * insertion into a reassembly queue (queued / duplicate / overlap), completed
 * datagrams, fragments arriving (the substitute where ip_defrag cannot be
 * traced) and fragment drops (skb:kfree_skb with the drop reason).
 * One program per way of reaching each point; user space loads the ones the
 * running kernel supports (HOOKS in src/lib.rs). */
#include "common.h"
#include "skb.h"
#include "fnrange.h"

enum {
	EV_IP_DEFRAG = 1,
	EV_DUP_INSERT = 2,
	EV_OVERLAP_INSERT = 3,
	EV_FRAG_DROP = 4,
	EV_FRAG_QUEUED = 5,
	EV_REASSEMBLED = 6,
	EV_FRAG_RCV = 7,
};

/* inet_frag_queue_insert() results (include/net/inet_frag.h, not in BTF). */
#define IPFRAG_OK 0
#define IPFRAG_DUP 1
#define IPFRAG_OVERLAP 2

/* Mirror: DefragEvent in src/lib.rs. */
struct defrag_event {
	__u64 ts_ns;
	__u64 location;  /* kfree_skb: the freeing call site (0 unknown) */
	__u32 pid;
	__u32 tid;
	char comm[16];
	__u8 type;
	__u8 has_reason;
	__u8 has_user;
	__u8 has_queue;
	__u32 user;
	__u32 reason;
	__s32 kstack_id;
	__s32 offset;
	__s32 end;
	__u32 q_saddr;   /* network order */
	__u32 q_daddr;
	__u32 q_user;
	__u16 q_id;      /* host order */
	__u16 q_proto;
	struct pkt_meta pkt;
};

const volatile struct pkt_filter FILTER = {};
/* Drop reasons that are about fragments (values from the kernel's BTF; 0 unused). */
const volatile __u32 frag_reasons[4] = {};
/* kfree_skb_list(_reason) and skb_release_data: where a reassembled
 * datagram's fragments (its frag_list) are freed with it. That goes through
 * kfree_skb without a reason (NOT_SPECIFIED) even when the datagram was
 * delivered and consumed (5.10 to 6.18): a normal release, not a drop. */
DECLARE_FN_RANGES(FRAG_LIST_FREE, in_frag_list_free)
const volatile __u32 reason_not_specified = 0;

DECLARE_STACK_MAP(stacks, 8192);

/* kprobe entry -> kretprobe: the arguments of the call in flight. */
struct call_args {
	struct sk_buff *skb;
	void *q;
	__u32 user;
	__s32 offset;
	__s32 end;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, struct call_args);
} defrag_calls SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, struct call_args);
} insert_calls SEC(".maps");

static __always_inline bool is_fragment(const struct pkt_meta *m)
{
	return (m->frag_off & 0x3fff) != 0; /* MF or an offset */
}

/* `direct`: skb is a BTF pointer (fentry, fexit, tp_btf; RD in common.h). */
static __always_inline struct defrag_event *new_event(struct sk_buff *skb, __u8 type, bool l2,
						      bool frags_only, bool direct)
{
	struct pkt_meta m = {};
	struct defrag_event *e;
	__u64 id;

	if (!skb)
		return NULL;
	if (!parse_skb_(skb, &m, l2, direct))
		return NULL;
	if (!filter_match(&FILTER, &m))
		return NULL;
	if (frags_only && !is_fragment(&m))
		return NULL;
	e = event_reserve(sizeof(*e));
	if (!e)
		return NULL;
	__builtin_memset(e, 0, sizeof(*e));
	id = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->type = type;
	e->kstack_id = -1;
	__builtin_memcpy(&e->pkt, &m, sizeof(m));
	return e;
}

static __always_inline int on_ip_defrag(void *ctx, struct sk_buff *skb, __u32 user)
{
	struct defrag_event *e = new_event(skb, EV_IP_DEFRAG, false, false, false);
	if (!e)
		return 0;
	e->user = user;
	e->has_user = 1;
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

/* ip_defrag() returned 0: skb is now the whole datagram. */
static __always_inline int on_ip_defrag_ret(void *ctx, struct sk_buff *skb, __u32 user, int ret)
{
	struct defrag_event *e;
	if (ret != 0)
		return 0;
	e = new_event(skb, EV_REASSEMBLED, false, false, false);
	if (!e)
		return 0;
	e->user = user;
	e->has_user = 1;
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

static __always_inline int on_insert_ret(void *ctx, struct inet_frag_queue *q, struct sk_buff *skb,
					 int offset, int end, int ret)
{
	struct defrag_event *e;
	__u8 type;

	if (ret == IPFRAG_OK)
		type = EV_FRAG_QUEUED;
	else if (ret == IPFRAG_DUP)
		type = EV_DUP_INSERT;
	else if (ret == IPFRAG_OVERLAP)
		type = EV_OVERLAP_INSERT;
	else
		return 0;
	e = new_event(skb, type, false, false, false);
	if (!e)
		return 0;
	e->offset = offset;
	e->end = end;
	if (q) {
		e->has_queue = 1;
		e->q_saddr = BPF_CORE_READ(q, key.v4.saddr);
		e->q_daddr = BPF_CORE_READ(q, key.v4.daddr);
		e->q_user = BPF_CORE_READ(q, key.v4.user);
		e->q_id = bpf_ntohs(BPF_CORE_READ(q, key.v4.id));
		e->q_proto = BPF_CORE_READ(q, key.v4.protocol);
	}
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

static __always_inline bool frag_reason(__u32 r)
{
	if (!r)
		return false;
#pragma unroll
	for (int i = 0; i < 4; i++)
		if (frag_reasons[i] && frag_reasons[i] == r)
			return true;
	return false;
}

static __always_inline int on_free(void *ctx, struct sk_buff *skb, __u64 location, __u32 reason,
				   bool has_reason)
{
	struct pkt_meta m = {};
	struct defrag_event *e;
	__u64 id;

	if (!skb || BPF_CORE_READ(skb, protocol) != bpf_htons(ETH_P_IP))
		return 0;
	if (!parse_skb(skb, &m, false) || !filter_match(&FILTER, &m))
		return 0;
	if (!is_fragment(&m) && !(has_reason && frag_reason(reason)))
		return 0;
	if (location && in_frag_list_free(location) &&
	    (!has_reason || reason == reason_not_specified))
		return 0;
	e = event_reserve(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	id = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->type = EV_FRAG_DROP;
	e->location = location;
	e->reason = reason;
	e->has_reason = has_reason;
	e->kstack_id = get_stack_id(ctx, &stacks, 0);
	__builtin_memcpy(&e->pkt, &m, sizeof(m));
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

static __always_inline int on_rcv(void *ctx, struct sk_buff *skb, bool direct)
{
	struct defrag_event *e;
	unsigned char *data;
	__be16 frag_off;

	if (!skb || RD(direct, skb, protocol) != bpf_htons(ETH_P_IP))
		return 0;
	/* Most packets are not fragments: one read of frag_off (skb->data is the
	 * IPv4 header once eth_type_trans ran) before the whole parse. */
	data = RD(direct, skb, data);
	if (bpf_probe_read_kernel(&frag_off, sizeof(frag_off), data + offsetof(struct iphdr, frag_off)) ||
	    !(bpf_ntohs(frag_off) & 0x3fff))
		return 0;
	e = new_event(skb, EV_FRAG_RCV, true, true, direct);
	if (e)
		event_submit(ctx, e, sizeof(*e));
	return 0;
}

/* ---- ip_defrag(net, skb, user) ---- */
SEC("fentry/ip_defrag")
int BPF_PROG(fentry_ip_defrag, struct net *net, struct sk_buff *skb, u32 user)
{
	return on_ip_defrag(ctx, skb, user);
}

SEC("kprobe/ip_defrag")
int BPF_KPROBE(kprobe_ip_defrag, struct net *net, struct sk_buff *skb, u32 user)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call_args a = { .skb = skb, .user = user };
	bpf_map_update_elem(&defrag_calls, &id, &a, BPF_ANY);
	return on_ip_defrag(ctx, skb, user);
}

SEC("fexit/ip_defrag")
int BPF_PROG(fexit_ip_defrag, struct net *net, struct sk_buff *skb, u32 user, int ret)
{
	return on_ip_defrag_ret(ctx, skb, user, ret);
}

/* Needs kprobe_ip_defrag (the "ip_defrag" hook) for the arguments. */
SEC("kretprobe/ip_defrag")
int BPF_KRETPROBE(kretprobe_ip_defrag, int ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call_args *a = bpf_map_lookup_elem(&defrag_calls, &id);
	if (!a)
		return 0;
	struct call_args c = *a;
	bpf_map_delete_elem(&defrag_calls, &id);
	return on_ip_defrag_ret(ctx, c.skb, c.user, ret);
}

/* ---- inet_frag_queue_insert(q, skb, offset, end) ---- */
SEC("fexit/inet_frag_queue_insert")
int BPF_PROG(fexit_inet_frag_queue_insert, struct inet_frag_queue *q, struct sk_buff *skb,
	     int offset, int end, int ret)
{
	return on_insert_ret(ctx, q, skb, offset, end, ret);
}

SEC("kprobe/inet_frag_queue_insert")
int BPF_KPROBE(kprobe_inet_frag_queue_insert, struct inet_frag_queue *q, struct sk_buff *skb,
	       int offset, int end)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call_args a = { .skb = skb, .q = q, .offset = offset, .end = end };
	bpf_map_update_elem(&insert_calls, &id, &a, BPF_ANY);
	return 0;
}

SEC("kretprobe/inet_frag_queue_insert")
int BPF_KRETPROBE(kretprobe_inet_frag_queue_insert, int ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call_args *a = bpf_map_lookup_elem(&insert_calls, &id);
	if (!a)
		return 0;
	struct call_args c = *a;
	bpf_map_delete_elem(&insert_calls, &id);
	return on_insert_ret(ctx, c.q, c.skb, c.offset, c.end, ret);
}

/* ---- fragments arriving (the substitute for ip_defrag) ---- */
SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_btf_netif_receive_skb, struct sk_buff *skb)
{
	return on_rcv(ctx, skb, true);
}

SEC("tracepoint/net/netif_receive_skb")
int tp_netif_receive_skb(struct trace_event_raw_net_dev_template *args)
{
	return on_rcv(args, (struct sk_buff *)BPF_CORE_READ(args, skbaddr), false);
}

/* ---- fragment drops ---- */
SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_btf_kfree_skb_reason, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	return on_free(ctx, skb, (__u64)location, reason, true);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_btf_kfree_skb, struct sk_buff *skb, void *location)
{
	return on_free(ctx, skb, (__u64)location, 0, false);
}

SEC("tracepoint/skb/kfree_skb")
int tp_kfree_skb(struct trace_event_raw_kfree_skb *args)
{
	__u32 reason = 0;
	bool has = bpf_core_field_exists(args->reason);
	if (has)
		reason = BPF_CORE_READ(args, reason);
	return on_free(args, BPF_CORE_READ(args, skbaddr), (__u64)BPF_CORE_READ(args, location), reason, has);
}

SEC("kprobe/kfree_skb_reason")
int BPF_KPROBE(kprobe_kfree_skb_reason, struct sk_buff *skb, __u32 reason)
{
	return on_free(ctx, skb, 0, reason, true);
}

SEC("kprobe/__kfree_skb")
int BPF_KPROBE(kprobe___kfree_skb, struct sk_buff *skb)
{
	return on_free(ctx, skb, 0, 0, false);
}
