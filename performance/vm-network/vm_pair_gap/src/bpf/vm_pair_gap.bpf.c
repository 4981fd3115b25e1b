// SPDX-License-Identifier: GPL-2.0
/* vm_pair_gap / multi_port_gap / multi_vm_pair_multi_port_gap: the time
 * between consecutive UDP packets of one flow at VM taps. Ingress taps (the VM
 * sends; the host sees the frame in netif_receive_skb) and egress taps (the
 * host hands the frame to the VM; net_dev_start_xmit, before the driver — the
 * originals read the skb at net_dev_xmit, after tun_net_xmit queued it, when
 * the reader may already have freed it). Per (flow, tap, side) the last
 * timestamp is kept; a gap above THRESHOLD_NS is sent to user space; every
 * gap goes into the per-(tap, side) statistics. */
#define EVENT_MAX_SIZE 64
#include "common.h"
#include "skb.h"
#include "hist.h"

#define SIDE_RCV 0 /* ingress tap: netif_receive_skb */
#define SIDE_SND 1 /* egress tap: net_dev_start_xmit */

/* Mirror: GapEvent in src/lib.rs. */
struct gap_event {
	__u64 ts_ns;
	__u64 gap_ns;
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u32 ifindex;
	__u8 side;
	__u8 pad[3];
	char ifname[16];
};

/* Mirror: DevInfo. */
struct dev_info {
	__u8 sides; /* bit per side this device is watched on */
	__u8 pad[3];
	char name[16];
};

struct flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u32 ifindex;
	__u32 side;
};

#define GAP_HIST 32
/* Mirror: GapStats. */
struct gap_stats {
	__u64 packets;
	__u64 gaps;
	__u64 over;
	__u64 max_ns;
	__u64 hist_us[GAP_HIST];
};

struct stats_key {
	__u32 ifindex;
	__u32 side;
};

const volatile __u64 THRESHOLD_NS = 0;
/* Zeroed value to create stats entries from (too big for the stack). */
struct gap_stats zero_stats = {};
const volatile bool ANY_PORT = false;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct dev_info);
} devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, __u64);
} last_ts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, struct stats_key);
	__type(value, struct gap_stats);
} stats SEC(".maps");

static __always_inline int on_pkt(void *ctx, struct sk_buff *skb, __u32 side)
{
	struct net_device *dev;
	struct dev_info *di;
	struct pkt_meta m = {};
	struct flow_key k = {};
	struct stats_key sk = {};
	struct gap_stats *st;
	__u32 ifindex;
	__u64 now, *last, gap;
	char name[16];

	if (!skb)
		return 0;
	/* Both hooks are tp_btf: skb and dev are BTF pointers, read with plain
	 * loads (RD in common.h), not helper calls. */
	dev = skb->dev;
	if (!dev)
		return 0;
	ifindex = dev->ifindex;
	di = bpf_map_lookup_elem(&devs, &ifindex);
	if (!di || !(di->sides & (1 << side)))
		return 0;
	/* ifindexes repeat across network namespaces: the name must match too */
	__builtin_memset(name, 0, sizeof(name));
	read_dev_name(dev, name, true);
	for (int i = 0; i < 16; i++) {
		if (name[i] != di->name[i])
			return 0;
		if (!name[i])
			break;
	}
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	if (!parse_skb_btf(skb, &m, false) || m.family != 4 || m.l4proto != IPPROTO_UDP)
		return 0;
	if (m.frag_off & 0x1fff)
		return 0; /* not the first fragment: no ports */
	if (!ANY_PORT && !bpf_map_lookup_elem(&ports, &m.sport) && !bpf_map_lookup_elem(&ports, &m.dport))
		return 0;

	now = bpf_ktime_get_ns();
	__builtin_memcpy(&k.saddr, m.saddr, 4);
	__builtin_memcpy(&k.daddr, m.daddr, 4);
	k.sport = m.sport;
	k.dport = m.dport;
	k.ifindex = ifindex;
	k.side = side;

	sk.ifindex = ifindex;
	sk.side = side;
	st = bpf_map_lookup_elem(&stats, &sk);
	if (!st) {
		bpf_map_update_elem(&stats, &sk, &zero_stats, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&stats, &sk);
		if (!st)
			return 0;
	}
	__sync_fetch_and_add(&st->packets, 1);

	last = bpf_map_lookup_elem(&last_ts, &k);
	if (!last) {
		bpf_map_update_elem(&last_ts, &k, &now, BPF_ANY);
		return 0;
	}
	gap = now > *last ? now - *last : 0;
	*last = now;
	__sync_fetch_and_add(&st->gaps, 1);
	if (gap > st->max_ns)
		st->max_ns = gap;
	__u64 b = log2_bucket(gap / 1000);
	/* the verifier must see the bound on the register used for the access */
	asm volatile("%0 &= 31" : "+r"(b));
	__sync_fetch_and_add(&st->hist_us[b], 1);
	if (gap <= THRESHOLD_NS)
		return 0;
	__sync_fetch_and_add(&st->over, 1);

	struct gap_event *e = event_reserve(sizeof(*e));
	if (!e)
		return 0;
	e->ts_ns = now;
	e->gap_ns = gap;
	e->saddr = k.saddr;
	e->daddr = k.daddr;
	e->sport = k.sport;
	e->dport = k.dport;
	e->ifindex = ifindex;
	e->side = side;
	__builtin_memcpy(e->ifname, name, 16);
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(gap_rcv, struct sk_buff *skb)
{
	return on_pkt(ctx, skb, SIDE_RCV);
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(gap_snd, struct sk_buff *skb, struct net_device *dev)
{
	return on_pkt(ctx, skb, SIDE_SND);
}
