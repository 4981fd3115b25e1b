/* SPDX-License-Identifier: GPL-2.0 */
/* The stage tracker of the latency tools: one packet (or request/reply pair) is
 * followed through numbered stages (hook points) by a key the tool builds from
 * its headers (5-tuple + TCP seq/ack/len, ICMP id/seq, IP id). Per key an LRU
 * hash entry holds the first timestamp, skb pointer and kernel stack of every
 * stage. Rules, set by user space in .rodata before load:
 *   - an entry is created only at a stage in STAGE_CREATE; hitting the stage the
 *     entry started at again, once it or a later stage was seen, is a new packet
 *     with the same key: the old entry is counted as replaced and started afresh;
 *   - later stages only update an existing entry; the first timestamp wins;
 *     a stage that arrives after a later one was already seen is refused and
 *     counted (stage order is validated, never silently mixed);
 *   - an entry older than STAGE_MAX_AGE_NS is stale: counted and dropped on the
 *     next hit (user space also sweeps and counts them: shared::stages);
 *   - reaching a stage in STAGE_FINAL emits the whole entry (if every stage of
 *     STAGE_NEED was seen) and deletes it.
 * All timestamps come from bpf_ktime_get_ns() (one clock for every stage).
 * Mirrors: shared/src/stages.rs. Keep both in step (sizes are asserted). */
#pragma once
#include "common.h"

#define STAGE_MAX 16
#define STAGE_NONE 0xff

#ifndef STAGE_FLOWS_MAX
#define STAGE_FLOWS_MAX 10240
#endif

/* The packet identity. Unused fields stay 0. */
struct stage_key {
	__u32 saddr;   /* network order */
	__u32 daddr;
	__u16 sport;   /* host order; ICMP: echo id */
	__u16 dport;
	__u32 seq;     /* TCP sequence; ICMP: echo sequence */
	__u32 ack;
	__u16 len;     /* TCP payload bytes */
	__u16 ip_id;
	__u8 proto;
	__u8 kind;     /* tool-defined (e.g. ICMP type) */
	__u8 pad[2];
};
_Static_assert(sizeof(struct stage_key) == 28, "stage_key layout changed: update stages.rs");

/* Who/where at a stage: the task on the CPU and the skb's device. */
struct stage_ctx {
	__u32 pid;
	__u32 ifindex;
	char comm[16];
	char ifname[16];
	__u8 icmp_type;
	__u8 tcp_flags;
	__u8 set;
	__u8 stage;
	__u8 pad[4];
};
_Static_assert(sizeof(struct stage_ctx) == 48, "stage_ctx layout changed: update stages.rs");

struct stage_flow {
	__u64 ts[STAGE_MAX];
	__u64 skb[STAGE_MAX];
	__s32 kstack[STAGE_MAX];
	__u64 created_ns;
	__u32 seen;        /* bit per stage with a timestamp */
	__u8 start_stage;
	__u8 pad[3];
	struct stage_ctx ctx[2]; /* [0] at creation, [1] at the first STAGE_CTX2 stage */
};
_Static_assert(sizeof(struct stage_flow) == 432, "stage_flow layout changed: update stages.rs");

#define STAGE_EV_FLOW 1
#define STAGE_EV_HIT 2

/* A finished entry. */
struct stage_event {
	__u32 type;
	__u32 pad;
	struct stage_key key;
	__u32 pad2;
	struct stage_flow flow;
};
_Static_assert(sizeof(struct stage_event) == 472, "stage_event layout changed: update stages.rs");

/* One accepted stage hit (only with STAGE_EMIT_HITS). */
struct stage_hit_event {
	__u32 type;
	__u8 stage;
	__u8 pad[3];
	__u64 ts;
	struct stage_key key;
	__u32 pad2;
	struct stage_ctx ctx;
};
_Static_assert(sizeof(struct stage_hit_event) == 96, "stage_hit_event layout changed: update stages.rs");

/* Counters (per-CPU array stage_stats), names in stages.rs. */
enum {
	ST_CREATED,
	ST_DONE,          /* emitted */
	ST_REPLACED,      /* a new packet with the key of an unfinished one */
	ST_STALE,         /* older than STAGE_MAX_AGE_NS when hit again */
	ST_ORDER,         /* stage refused: a later stage was already seen */
	ST_NO_ENTRY,      /* a non-start stage without an entry (not from the start point) */
	ST_INCOMPLETE,    /* final stage reached without every STAGE_NEED stage */
	ST_MAP_FULL,      /* entry could not be created */
	ST_MAX,
};

const volatile __u32 STAGE_CREATE = 0;
const volatile __u32 STAGE_FINAL = 0;
const volatile __u32 STAGE_NEED = 0;
const volatile __u32 STAGE_CTX2 = 0;
const volatile __u32 STAGE_STACKS = 0;
const volatile __u64 STAGE_MAX_AGE_NS = 5000000000ULL;
const volatile bool STAGE_EMIT_HITS = false;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STAGE_FLOWS_MAX);
	__type(key, struct stage_key);
	__type(value, struct stage_flow);
} stage_flows SEC(".maps");

/* An all-zero value to create entries from (too big for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stage_flow);
} stage_zero SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stage_stats SEC(".maps");

#ifndef STAGE_STACK_ENTRIES
#define STAGE_STACK_ENTRIES 1
#endif
DECLARE_STACK_MAP(stage_stacks, STAGE_STACK_ENTRIES);

static __always_inline void stage_stat(__u32 idx)
{
	__u64 *n = bpf_map_lookup_elem(&stage_stats, &idx);
	if (n)
		*n += 1;
}

/* ---- devices ------------------------------------------------------------- */

/* A device named by ifindex and name (ifindexes repeat across network
 * namespaces; the pair does not in practice). ifindex 0 = unused slot. */
struct stage_dev {
	__u32 ifindex;
	char name[16];
};

/* `direct`: dev is a BTF pointer (RD in common.h). */
static __always_inline bool stage_dev_is_(struct net_device *dev, const volatile struct stage_dev *d, bool direct)
{
	char name[16] = {};

	if (!dev || !d->ifindex || RD(direct, dev, ifindex) != d->ifindex)
		return false;
	read_dev_name(dev, name, direct);
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (name[i] != d->name[i])
			return false;
		if (!name[i])
			break;
	}
	return true;
}
#define stage_dev_is(dev, d) stage_dev_is_(dev, d, false)

/* ---- IPv4 header parsing -------------------------------------------------- */

struct stage_pkt {
	__u32 saddr;      /* network order */
	__u32 daddr;
	__u16 ip_id;      /* host order */
	__u16 tot_len;
	__u8 proto;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 tcp_flags;   /* low 6 bits: FIN SYN RST PSH ACK URG */
	__u16 icmp_id;    /* host order */
	__u16 icmp_seq;
	__u16 sport;      /* host order */
	__u16 dport;
	__u32 seq;        /* host order */
	__u32 ack;
	__u16 payload;    /* TCP payload bytes */
	__u8 has_l4;
	__u8 pad;
};

enum {
	STAGE_PARSE_AUTO,     /* network_header if it holds IPv4, else the MAC header / skb->data as Ethernet */
	STAGE_PARSE_DATA_ETH, /* skb->data is an Ethernet frame (OVS packets from user space) */
};
/* Or'ed into `how` by tp_btf programs: skb is a BTF pointer, its fields are
 * read with plain loads (RD in common.h). Must be a constant at the call. */
#define STAGE_BTF 0x100

struct stage_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* Offset (from skb->head) of an IPv4 header behind the Ethernet header at l2,
 * with up to two VLAN tags; 0 if the frame is not IPv4. */
static __always_inline __u32 stage_ip_behind_eth(unsigned char *head, __u32 l2)
{
	struct ethhdr eth;
	__u16 proto;
	__u32 off = l2 + sizeof(eth);

	if (bpf_probe_read_kernel(&eth, sizeof(eth), head + l2))
		return 0;
	proto = bpf_ntohs(eth.h_proto);
#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct stage_vlan_hdr vh;
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if (bpf_probe_read_kernel(&vh, sizeof(vh), head + off))
			return 0;
		proto = bpf_ntohs(vh.proto);
		off += sizeof(vh);
	}
	return proto == ETH_P_IP ? off : 0;
}

/* Parse IPv4 + ICMP/TCP/UDP of skb. Works at every point from ip_send_skb
 * (no MAC header, skb->protocol not yet set) to the receive path (MAC header
 * set, network header not yet reset) and on OVS user-space packets. */
static __always_inline bool stage_parse_ipv4_body(struct sk_buff *skb, struct stage_pkt *p, int how, __u8 want_proto)
{
	bool direct = how & STAGE_BTF;
	unsigned char *head = RD(direct, skb, head);
	__u32 net = 0;
	struct iphdr ip;

	how &= ~STAGE_BTF;
	if (how == STAGE_PARSE_AUTO) {
		__u16 nh = RD(direct, skb, network_header);
		/* The whole header at once where network_header points at IPv4: one
		 * helper call less on every packet (most of them, filtered out). */
		if (nh && nh != (__u16)~0U && !bpf_probe_read_kernel(&ip, sizeof(ip), head + nh) &&
		    ip.version == 4 && ip.ihl >= 5)
			net = nh;
		if (!net) {
			__u16 mh = RD(direct, skb, mac_header);
			__u32 l2 = mh != (__u16)~0U ? mh : (__u32)(RD(direct, skb, data) - head);
			net = stage_ip_behind_eth(head, l2);
			if (!net || net > 0xffff || bpf_probe_read_kernel(&ip, sizeof(ip), head + net))
				return false;
		}
	} else {
		net = stage_ip_behind_eth(head, (__u32)(RD(direct, skb, data) - head));
		if (!net || net > 0xffff || bpf_probe_read_kernel(&ip, sizeof(ip), head + net))
			return false;
	}
	if (ip.version != 4 || ip.ihl < 5)
		return false;
	p->saddr = ip.saddr;
	p->daddr = ip.daddr;
	p->ip_id = bpf_ntohs(ip.id);
	p->tot_len = bpf_ntohs(ip.tot_len);
	p->proto = ip.protocol;
	if (bpf_ntohs(ip.frag_off) & 0x1fff)
		return true; /* not the first fragment: no L4 header */
	if (want_proto && ip.protocol != want_proto)
		return true; /* the caller drops it: its L4 header is not worth a read */

	unsigned char *l4 = head + net + ip.ihl * 4;
	if (ip.protocol == IPPROTO_ICMP) {
		struct icmphdr ic;
		if (bpf_probe_read_kernel(&ic, sizeof(ic), l4))
			return true;
		p->icmp_type = ic.type;
		p->icmp_code = ic.code;
		p->icmp_id = bpf_ntohs(ic.un.echo.id);
		p->icmp_seq = bpf_ntohs(ic.un.echo.sequence);
		p->has_l4 = 1;
	} else if (ip.protocol == IPPROTO_TCP) {
		struct tcphdr th;
		__u32 hl;
		if (bpf_probe_read_kernel(&th, sizeof(th), l4))
			return true;
		p->sport = bpf_ntohs(th.source);
		p->dport = bpf_ntohs(th.dest);
		p->seq = bpf_ntohl(th.seq);
		p->ack = bpf_ntohl(th.ack_seq);
		p->tcp_flags = ((__u8 *)&th)[13] & 0x3f;
		hl = ip.ihl * 4 + th.doff * 4;
		p->payload = p->tot_len > hl ? p->tot_len - hl : 0;
		p->has_l4 = 1;
	} else if (ip.protocol == IPPROTO_UDP) {
		struct udphdr uh;
		if (bpf_probe_read_kernel(&uh, sizeof(uh), l4))
			return true;
		p->sport = bpf_ntohs(uh.source);
		p->dport = bpf_ntohs(uh.dest);
		p->has_l4 = 1;
	}
	return true;
}

/* The NULL check comes before any read: some kernels' BTF marks tracepoint
 * arguments nullable, and the verifier then refuses a plain load before it. */
static __always_inline bool stage_parse_ipv4_(struct sk_buff *skb, struct stage_pkt *p, int how, __u8 want_proto)
{
	return skb && stage_parse_ipv4_body(skb, p, how, want_proto);
}

#define stage_parse_ipv4(skb, p, how) stage_parse_ipv4_(skb, p, how, 0)
/* For callers that only want protocol `proto` (IPPROTO_*): other packets come
 * back without their L4 header read (has_l4 0). */
#define stage_parse_ipv4_proto(skb, p, how, proto) stage_parse_ipv4_(skb, p, how, proto)

/* ---- the tracker ---------------------------------------------------------- */

static __always_inline void stage_fill_ctx(struct stage_ctx *c, struct sk_buff *skb,
					   const struct stage_pkt *p, __u32 stage)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);

	if (!dev) {
		/* e.g. at ip_output's entry: the device of the route */
		unsigned long refdst = BPF_CORE_READ(skb, _skb_refdst);
		struct dst_entry *dst = (struct dst_entry *)(refdst & ~1UL);
		if (dst)
			dev = BPF_CORE_READ(dst, dev);
	}
	c->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(c->comm, sizeof(c->comm));
	if (dev) {
		c->ifindex = BPF_CORE_READ(dev, ifindex);
		bpf_probe_read_kernel_str(c->ifname, sizeof(c->ifname), dev->name);
	}
	c->icmp_type = p->icmp_type;
	c->tcp_flags = p->tcp_flags;
	c->stage = stage;
	c->set = 1;
}

static __always_inline void stage_emit_hit(void *ctx, const struct stage_key *key, __u32 stage,
					   __u64 now, struct sk_buff *skb, const struct stage_pkt *p)
{
	struct stage_hit_event *e = event_reserve(sizeof(*e));
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->type = STAGE_EV_HIT;
	e->stage = stage;
	e->ts = now;
	__builtin_memcpy(&e->key, key, sizeof(*key));
	stage_fill_ctx(&e->ctx, skb, p, stage);
	event_submit(ctx, e, sizeof(*e));
}

static __always_inline void stage_emit_flow(void *ctx, const struct stage_key *key,
					    const struct stage_flow *f)
{
	struct stage_event *e = event_reserve(sizeof(*e));
	if (!e)
		return;
	e->type = STAGE_EV_FLOW;
	e->pad = 0;
	e->pad2 = 0;
	__builtin_memcpy(&e->key, key, sizeof(*key));
	__builtin_memcpy(&e->flow, f, sizeof(*f));
	event_submit(ctx, e, sizeof(*e));
}

/* Record that the packet `key` reached `stage` now. */
static __always_inline int stage_hit(void *ctx, const struct stage_key *key, __u32 stage,
				     struct sk_buff *skb, const struct stage_pkt *p)
{
	struct stage_flow *f;
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0, bit;

	if (stage >= STAGE_MAX)
		return 0;
	stage &= STAGE_MAX - 1;
	bit = 1U << stage;

	f = bpf_map_lookup_elem(&stage_flows, key);
	if (f && now - f->created_ns > STAGE_MAX_AGE_NS) {
		stage_stat(ST_STALE);
		bpf_map_delete_elem(&stage_flows, key);
		f = NULL;
	}
	if (f && (f->seen & ~(bit - 1))) {
		/* this stage or a later one was seen already */
		if ((STAGE_CREATE & bit) && f->start_stage == stage) {
			stage_stat(ST_REPLACED);
			bpf_map_delete_elem(&stage_flows, key);
			f = NULL;
		} else {
			if (!(f->seen & bit))
				stage_stat(ST_ORDER);
			return 0; /* a repeat: the first timestamp wins */
		}
	}
	if (!f) {
		struct stage_flow *z;
		if (!(STAGE_CREATE & bit)) {
			stage_stat(ST_NO_ENTRY);
			return 0;
		}
		z = bpf_map_lookup_elem(&stage_zero, &zero);
		if (!z)
			return 0;
		bpf_map_update_elem(&stage_flows, key, z, BPF_ANY);
		f = bpf_map_lookup_elem(&stage_flows, key);
		if (!f) {
			stage_stat(ST_MAP_FULL);
			return 0;
		}
		f->created_ns = now;
		f->start_stage = stage;
		stage_fill_ctx(&f->ctx[0], skb, p, stage);
		stage_stat(ST_CREATED);
	}
	f->ts[stage] = now;
	f->skb[stage] = (__u64)skb;
	f->seen |= bit;
	if (STAGE_STACKS & bit)
		f->kstack[stage] = get_stack_id(ctx, &stage_stacks, 0);
	if ((STAGE_CTX2 & bit) && !f->ctx[1].set)
		stage_fill_ctx(&f->ctx[1], skb, p, stage);
	if (STAGE_EMIT_HITS)
		stage_emit_hit(ctx, key, stage, now, skb, p);
	if (STAGE_FINAL & bit) {
		if ((f->seen & STAGE_NEED) == STAGE_NEED) {
			stage_emit_flow(ctx, key, f);
			stage_stat(ST_DONE);
		} else {
			stage_stat(ST_INCOMPLETE);
		}
		bpf_map_delete_elem(&stage_flows, key);
	}
	return 0;
}

/* ---- hook program generators ---------------------------------------------
 * One fentry and one kprobe program per kernel function; the tool loads the
 * one its hook plan chose. Each calls the tool's
 *   static int on_skb(void *ctx, struct sk_buff *skb, __u32 hook);
 * STAGE_FN_HOOK{1,2,3}: the skb is argument 1, 2 or 3 of `fn`. */
#define STAGE_FN_HOOK1(fn, hook)                                               \
	SEC("fentry/" #fn)                                                     \
	int BPF_PROG(fentry_##fn, struct sk_buff *skb)                        \
	{ return on_skb(ctx, skb, hook); }                                     \
	SEC("kprobe/" #fn)                                                     \
	int BPF_KPROBE(kprobe_##fn, struct sk_buff *skb)                      \
	{ return on_skb(ctx, skb, hook); }

#define STAGE_FN_HOOK2(fn, hook)                                               \
	SEC("fentry/" #fn)                                                     \
	int BPF_PROG(fentry_##fn, void *a1, struct sk_buff *skb)              \
	{ return on_skb(ctx, skb, hook); }                                     \
	SEC("kprobe/" #fn)                                                     \
	int BPF_KPROBE(kprobe_##fn, void *a1, struct sk_buff *skb)            \
	{ return on_skb(ctx, skb, hook); }

#define STAGE_FN_HOOK3(fn, hook)                                               \
	SEC("fentry/" #fn)                                                     \
	int BPF_PROG(fentry_##fn, void *a1, void *a2, struct sk_buff *skb)    \
	{ return on_skb(ctx, skb, hook); }                                     \
	SEC("kprobe/" #fn)                                                     \
	int BPF_KPROBE(kprobe_##fn, void *a1, void *a2, struct sk_buff *skb)  \
	{ return on_skb(ctx, skb, hook); }

/* The skb behind a `struct sk_buff **` argument (netdev_frame_hook). fentry
 * cannot read a pointer-to-pointer argument from its context on 6.1 ("arg0
 * type PTR is not a struct"); bpf_get_func_arg (5.17+) reads it raw. */
#define STAGE_FN_HOOK_PSKB1(fn, hook)                                          \
	SEC("fentry/" #fn)                                                     \
	int fentry_##fn(__u64 *ctx)                                            \
	{                                                                      \
		struct sk_buff *skb = NULL;                                    \
		__u64 pskb = 0;                                                \
		if (bpf_get_func_arg(ctx, 0, &pskb) || !pskb)                  \
			return 0;                                              \
		bpf_probe_read_kernel(&skb, sizeof(skb), (void *)pskb);        \
		return skb ? on_skb(ctx, skb, hook) : 0;                       \
	}                                                                      \
	SEC("kprobe/" #fn)                                                     \
	int BPF_KPROBE(kprobe_##fn, struct sk_buff **pskb)                    \
	{                                                                      \
		struct sk_buff *skb = NULL;                                    \
		bpf_probe_read_kernel(&skb, sizeof(skb), pskb);                \
		return skb ? on_skb(ctx, skb, hook) : 0;                       \
	}

/* OVS action types (include/uapi/linux/openvswitch.h, stable ABI). */
#define OVS_ACTION_ATTR_OUTPUT_ 1
