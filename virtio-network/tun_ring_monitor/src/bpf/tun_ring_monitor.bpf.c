// SPDX-License-Identifier: GPL-2.0
/* tun_ring_monitor: at every transmit to a tun/tap device (tun_net_xmit, or
 * net_dev_start_xmit on a tun device where there is no fentry/kprobe), read
 * the queue's ptr_ring and report when it is full (queue[producer] != NULL:
 * the packet is about to be dropped), or every transmit with ALL_EVENTS.
 * kfree_skb with reason FULL_RING counts the drops that really happened. */
#define EVENT_MAX_SIZE 192
#include "common.h"
#include "skb.h"
#include "tun.h"

/* Mirror: TunEvent in src/main.rs. */
struct tun_event {
	__u64 ts_ns;
	__u64 skb;
	__u32 pid;
	__u32 tid;
	char comm[16];
	char dev[16];
	__u32 ifindex;
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 parsed;
	__u8 pad[2];
	__s32 kstack_id;
	struct tun_ring ring;
};

struct qkey {
	__u32 ifindex;
	__u32 queue;
};

/* Mirror: QStats. */
struct qstats {
	__u64 xmit;
	__u64 full;
	__u64 drops;
	__u64 max_used_pct;
	char dev[16];
};

const volatile __u32 DEV_IFINDEX = 0;   /* 0: every tun device */
const volatile char DEV_NAME[16] = {};  /* a device of another netns: by name */
const volatile bool TUN_SET = false;    /* tracepoint mode: only ifindexes in tun_devs */
const volatile bool ALL_EVENTS = false;
const volatile bool HAS_FILTER = false; /* a 5-tuple filter is set */
const volatile __u32 F_SADDR = 0, F_DADDR = 0;
const volatile __u16 F_SPORT = 0, F_DPORT = 0;
const volatile __u8 F_PROTO = 0;
const volatile __u32 FULL_RING_REASON = 0; /* 0: unknown on this kernel */
const volatile bool WANT_STACK = false;

DECLARE_STACK_MAP(stacks, 2048);

struct qstats zero_qstats = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} tun_devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct qkey);
	__type(value, struct qstats);
} qstats SEC(".maps");

static __always_inline struct qstats *stats_of(struct net_device *dev, __u32 queue)
{
	struct qkey k = {.ifindex = BPF_CORE_READ(dev, ifindex), .queue = queue};
	struct qstats *s = bpf_map_lookup_elem(&qstats, &k);
	if (s)
		return s;
	bpf_map_update_elem(&qstats, &k, &zero_qstats, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&qstats, &k);
	if (s)
		bpf_probe_read_kernel_str(s->dev, sizeof(s->dev), dev->name);
	return s;
}

static __always_inline bool is_watched(struct net_device *dev, bool need_set)
{
	__u32 idx;
	if (!dev)
		return false;
	idx = BPF_CORE_READ(dev, ifindex);
	if (DEV_IFINDEX && idx != DEV_IFINDEX)
		return false;
	if (DEV_NAME[0]) {
		char n[16];
		bpf_probe_read_kernel_str(n, sizeof(n), dev->name);
		for (int i = 0; i < 16; i++) {
			if (n[i] != DEV_NAME[i])
				return false;
			if (!n[i])
				break;
		}
	}
	if (need_set && !bpf_map_lookup_elem(&tun_devs, &idx))
		return false;
	return true;
}

static __always_inline int on_xmit(void *ctx, struct sk_buff *skb, struct net_device *dev, bool need_set)
{
	struct pkt_meta m = {};
	struct tun_ring r = {};
	struct tun_event *e;
	struct qstats *st;
	__u64 id, used_pct = 0;
	bool parsed;

	if (!skb || !is_watched(dev, need_set))
		return 0;
	tun_read_ring(dev, skb, &r);
	parsed = parse_skb(skb, &m, true) && m.family == 4;
	if (HAS_FILTER) {
		/* every given field must match (the original passed a packet if any one did) */
		if (!parsed)
			return 0;
		if (F_SADDR && __builtin_memcmp(m.saddr, (void *)&F_SADDR, 4))
			return 0;
		if (F_DADDR && __builtin_memcmp(m.daddr, (void *)&F_DADDR, 4))
			return 0;
		if (F_PROTO && m.l4proto != F_PROTO)
			return 0;
		if ((F_SPORT || F_DPORT) && m.l4proto != IPPROTO_TCP && m.l4proto != IPPROTO_UDP)
			return 0;
		if (F_SPORT && m.sport != F_SPORT)
			return 0;
		if (F_DPORT && m.dport != F_DPORT)
			return 0;
	}
	if (r.ok && r.size > 0) {
		__s32 used = r.producer >= r.consumer_tail ? r.producer - r.consumer_tail
							   : r.size - r.consumer_tail + r.producer;
		used_pct = r.full ? 100 : (__u64)used * 100 / r.size;
	}
	st = stats_of(dev, r.queue);
	if (st) {
		__sync_fetch_and_add(&st->xmit, 1);
		if (r.full)
			__sync_fetch_and_add(&st->full, 1);
		if (used_pct > st->max_used_pct)
			st->max_used_pct = used_pct;
	}
	if (!ALL_EVENTS && !r.full)
		return 0;
	e = event_reserve(sizeof(*e));
	if (!e)
		return 0;
	id = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->skb = (__u64)skb;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_probe_read_kernel_str(e->dev, sizeof(e->dev), dev->name);
	e->ifindex = BPF_CORE_READ(dev, ifindex);
	__builtin_memcpy(&e->saddr, m.saddr, 4);
	__builtin_memcpy(&e->daddr, m.daddr, 4);
	e->sport = m.sport;
	e->dport = m.dport;
	e->proto = m.l4proto;
	e->parsed = parsed;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	e->kstack_id = WANT_STACK ? get_stack_id(ctx, &stacks, 0) : -1;
	__builtin_memcpy(&e->ring, &r, sizeof(r));
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

SEC("fentry/tun_net_xmit")
int BPF_PROG(fentry_tun_net_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return on_xmit(ctx, skb, dev, false);
}

SEC("kprobe/tun_net_xmit")
int BPF_KPROBE(kprobe_tun_net_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return on_xmit(ctx, skb, dev, false);
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tp_start_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return on_xmit(ctx, skb, dev, true);
}

/* Drops that really happened: kfree_skb with reason FULL_RING on a watched tun device. */
static __always_inline int on_kfree_skb(void *ctx, struct sk_buff *skb, __u64 location, __u32 reason, bool has_reason)
{
	struct net_device *dev;
	struct qstats *st;

	if (!has_reason || !FULL_RING_REASON || reason != FULL_RING_REASON || !skb)
		return 0;
	dev = BPF_CORE_READ(skb, dev);
	if (!dev || !is_watched(dev, TUN_SET))
		return 0;
	st = stats_of(dev, BPF_CORE_READ(skb, queue_mapping));
	if (st)
		__sync_fetch_and_add(&st->drops, 1);
	return 0;
}

#include "kfree_skb.h"
