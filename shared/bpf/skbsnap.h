/* SPDX-License-Identifier: GPL-2.0 */
/* "skb snapshot at hook X" (packet-drop-and-bpftrace.md B.0), the engine of the
 * bpftrace-tools ports: at a hook, take the skb, filter it by device name,
 * addresses, ports and a GSO predicate, and record the skb / GSO / device
 * feature state plus the kernel stack. Mirror: shared/src/skbsnap.rs (Snap,
 * SnapCfg). A tool's .bpf.c includes this file and defines one program per
 * hook calling snap_skb(); bpf/snaphooks.h has ready-made programs for the
 * hooks of the linux-network-stack ports. */
#pragma once
#include "common.h"
#include "skb.h"
#include "tun.h"

#define SNAP_MAX_DEVS 8

/* Mirror: SnapCfg. matching: 0 gso-anomaly (gso_size != 0 && gso_type == 0),
 * 1 gso (gso_type != 0), 2 all. */
struct snap_cfg {
	__u8 matching;
	__u8 include_dhcp;   /* else UDP from/to port 67/68 is skipped */
	__u8 stacks;
	__u8 ndevs;          /* 0: every device */
	__u8 l4proto;        /* 0 any */
	__u8 pad[3];
	__u8 saddr[4];       /* network order, 0.0.0.0 any */
	__u8 daddr[4];
	__u16 sport;         /* host order, 0 any */
	__u16 dport;
	__u32 max_events;    /* enforced in user space */
	char devs[SNAP_MAX_DEVS][16];
};
_Static_assert(sizeof(struct snap_cfg) == 152, "snap_cfg layout changed: update skbsnap.rs");

/* Mirror: Snap. */
struct skb_snap {
	__u64 ts_ns;
	__u64 skb;
	__u64 features;
	__u64 hw_features;
	__u64 wanted_features;
	__u64 hw_enc_features;
	__u64 gso_partial_features;
	__u32 hook;
	__u32 cpu;
	__u32 pid;
	__u32 tid;
	char comm[16];
	char dev[16];
	__s32 kstack_id;
	__u32 ifindex;
	__u32 len;
	__u32 data_len;
	__u8 ignore_df;
	__u8 cloned;
	__u8 encapsulation;
	__u8 ip_summed;
	__u8 pkt_type;
	__u8 inner_protocol_type;
	__u16 queue_mapping;
	__u16 network_header;
	__u16 transport_header;
	__u16 inner_network_header;
	__u16 inner_transport_header;
	__u16 inner_protocol;     /* host order */
	__u16 gso_size;
	__u16 gso_segs;
	__u8 nr_frags;
	__u8 has_frag_list;
	__u32 gso_type;
	__u32 dataref;
	__u16 frag_max_size;      /* IPCB(skb)->frag_max_size */
	__u8 smac[6];
	__u8 dmac[6];
	__u8 l4proto;
	__u8 family;              /* 4 when the IPv4 header was read */
	__u8 saddr[4];
	__u8 daddr[4];
	__u16 sport;              /* host order */
	__u16 dport;
	__u8 sk_saddr[4];
	__u8 sk_daddr[4];
	__u16 sk_dport;           /* host order */
	__u8 has_sk;
	__u8 pad;
	struct tun_ring ring;     /* tun devices with the ring read (tun.h) */
};
_Static_assert(sizeof(struct skb_snap) == 248, "skb_snap layout changed: update skbsnap.rs");

const volatile struct snap_cfg SNAP_CFG = {};
/* Tracepoint mode: ring hooks only report the tun/tap devices user space put
 * in snap_tun_devs (net_dev_start_xmit fires for every device). */
const volatile bool SNAP_TUN_SET = false;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} snap_tun_devs SEC(".maps");

DECLARE_STACK_MAP(snap_stacks, 16384);

static __always_inline bool snap_dev_match(const char *name)
{
	__u8 n = SNAP_CFG.ndevs;

	if (!n)
		return true;
#pragma unroll
	for (int i = 0; i < SNAP_MAX_DEVS; i++) {
		if (i >= n)
			break;
		if (ifname_eq(name, SNAP_CFG.devs[i]))
			return true;
	}
	return false;
}

static __always_inline bool snap_addr_is(const __u8 *a, const volatile __u8 *want)
{
	if (!(want[0] | want[1] | want[2] | want[3]))
		return true;
	return a[0] == want[0] && a[1] == want[1] && a[2] == want[2] && a[3] == want[3];
}

struct sk_buff___snap {
	__u8 inner_protocol_type : 1;
} __attribute__((preserve_access_index));

/* The Ethernet header: at head + mac_header when set, else at data. */
static __always_inline void snap_eth(struct sk_buff *skb, struct skb_snap *e, bool direct)
{
	unsigned char *head = RD(direct, skb, head);
	__u16 mac = RD(direct, skb, mac_header);
	unsigned char *l2 = mac != (__u16)~0U ? head + mac : RD(direct, skb, data);
	struct ethhdr eth;

	if (!bpf_probe_read_kernel(&eth, sizeof(eth), l2)) {
		__builtin_memcpy(e->smac, eth.h_source, 6);
		__builtin_memcpy(e->dmac, eth.h_dest, 6);
	}
}

/* IPv4 at head + network_header; TCP/UDP ports of first fragments. */
static __always_inline void snap_l34(struct sk_buff *skb, struct skb_snap *e, bool direct)
{
	unsigned char *head = RD(direct, skb, head);
	__u16 net = RD(direct, skb, network_header);
	struct iphdr ip;

	if (RD(direct, skb, protocol) != bpf_htons(ETH_P_IP) || !net || net == (__u16)~0U)
		return;
	if (bpf_probe_read_kernel(&ip, sizeof(ip), head + net) || ip.version != 4)
		return;
	e->family = 4;
	e->l4proto = ip.protocol;
	__builtin_memcpy(e->saddr, &ip.saddr, 4);
	__builtin_memcpy(e->daddr, &ip.daddr, 4);
	if ((ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) && !(bpf_ntohs(ip.frag_off) & 0x1fff)) {
		__be16 ports[2];
		if (!bpf_probe_read_kernel(ports, sizeof(ports), head + net + ip.ihl * 4)) {
			e->sport = bpf_ntohs(ports[0]);
			e->dport = bpf_ntohs(ports[1]);
		}
	}
}

static __always_inline bool snap_l34_match(const struct skb_snap *e)
{
	bool ports = e->l4proto == IPPROTO_TCP || e->l4proto == IPPROTO_UDP;

	if (!snap_addr_is(e->saddr, SNAP_CFG.saddr) || !snap_addr_is(e->daddr, SNAP_CFG.daddr))
		return false;
	if (SNAP_CFG.l4proto && SNAP_CFG.l4proto != e->l4proto)
		return false;
	if ((SNAP_CFG.sport || SNAP_CFG.dport) && !ports)
		return false;
	if (SNAP_CFG.sport && SNAP_CFG.sport != e->sport)
		return false;
	if (SNAP_CFG.dport && SNAP_CFG.dport != e->dport)
		return false;
	if (!SNAP_CFG.include_dhcp && e->l4proto == IPPROTO_UDP &&
	    (e->sport == 67 || e->sport == 68 || e->dport == 67 || e->dport == 68))
		return false;
	return true;
}

/* Filter skb and fill e (already zeroed). `dev`: the device argument of the
 * hook (NULL: skb->dev); `sk`: the socket argument of socket-level hooks
 * (NULL: skb->sk); `ring`: a tun transmit hook (tun devices only in
 * tracepoint mode; the ring state is read); `direct`: skb and dev are BTF
 * pointers (RD in common.h). False when filtered out. The filters come first,
 * cheapest first, so that a packet the filter rejects costs few reads. */
static __always_inline bool snap_fill(void *ctx, struct sk_buff *skb, __u32 hook, struct net_device *dev,
				      struct sock *sk, bool ring, struct skb_snap *e, bool direct)
{
	struct skb_shared_info *sh;
	unsigned char *head;
	__u64 id;

	if (!skb)
		return false;
	if (!dev)
		dev = RD(direct, skb, dev);
	if (dev) {
		read_dev_name(dev, e->dev, direct);
		e->ifindex = RD(direct, dev, ifindex);
	}
	/* Socket-level hooks see skbs before routing (no device yet): the
	 * device filter is for the skbs that have one. */
	if (!(sk && !dev) && !snap_dev_match(e->dev))
		return false;
	if (ring && SNAP_TUN_SET && !bpf_map_lookup_elem(&snap_tun_devs, &e->ifindex))
		return false;
	head = RD(direct, skb, head);
	sh = (struct skb_shared_info *)(head + RD(direct, skb, end));
	if (SNAP_CFG.matching != 2) {
		e->gso_size = BPF_CORE_READ(sh, gso_size);
		e->gso_type = BPF_CORE_READ(sh, gso_type);
		if (SNAP_CFG.matching == 0 && !(e->gso_size && !e->gso_type))
			return false;
		if (SNAP_CFG.matching == 1 && !e->gso_type)
			return false;
	}
	snap_l34(skb, e, direct);
	if (!snap_l34_match(e))
		return false;
	if (SNAP_CFG.matching == 2) {
		e->gso_size = BPF_CORE_READ(sh, gso_size);
		e->gso_type = BPF_CORE_READ(sh, gso_type);
	}
	snap_eth(skb, e, direct);

	id = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->skb = (__u64)skb;
	e->hook = hook;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->kstack_id = SNAP_CFG.stacks ? get_stack_id(ctx, &snap_stacks, 0) : -1;
	if (dev) {
		e->features = BPF_CORE_READ(dev, features);
		e->hw_features = BPF_CORE_READ(dev, hw_features);
		e->wanted_features = BPF_CORE_READ(dev, wanted_features);
		e->hw_enc_features = BPF_CORE_READ(dev, hw_enc_features);
		e->gso_partial_features = BPF_CORE_READ(dev, gso_partial_features);
	}
	e->len = BPF_CORE_READ(skb, len);
	e->data_len = BPF_CORE_READ(skb, data_len);
	e->network_header = BPF_CORE_READ(skb, network_header);
	e->transport_header = BPF_CORE_READ(skb, transport_header);
	e->inner_network_header = BPF_CORE_READ(skb, inner_network_header);
	e->inner_transport_header = BPF_CORE_READ(skb, inner_transport_header);
	e->inner_protocol = bpf_ntohs(BPF_CORE_READ(skb, inner_protocol));
	e->queue_mapping = BPF_CORE_READ(skb, queue_mapping);
	e->inner_protocol_type = BPF_CORE_READ_BITFIELD_PROBED((struct sk_buff___snap *)skb, inner_protocol_type);
	e->ignore_df = BPF_CORE_READ_BITFIELD_PROBED(skb, ignore_df);
	e->cloned = BPF_CORE_READ_BITFIELD_PROBED(skb, cloned);
	e->encapsulation = BPF_CORE_READ_BITFIELD_PROBED(skb, encapsulation);
	e->ip_summed = BPF_CORE_READ_BITFIELD_PROBED(skb, ip_summed);
	e->pkt_type = BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
	e->gso_segs = BPF_CORE_READ(sh, gso_segs);
	e->nr_frags = BPF_CORE_READ(sh, nr_frags);
	e->has_frag_list = BPF_CORE_READ(sh, frag_list) != NULL;
	e->dataref = BPF_CORE_READ(sh, dataref.counter);
	{
		void *cb = (void *)skb + bpf_core_field_offset(struct sk_buff, cb);
		bpf_probe_read_kernel(&e->frag_max_size, sizeof(e->frag_max_size),
				      cb + bpf_core_field_offset(struct inet_skb_parm, frag_max_size));
	}
	if (!sk)
		sk = BPF_CORE_READ(skb, sk);
	if (sk) {
		__be32 a;
		e->has_sk = 1;
		a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__builtin_memcpy(e->sk_saddr, &a, 4);
		a = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->sk_daddr, &a, 4);
		e->sk_dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	}
	if (ring)
		tun_read_ring(dev, skb, &e->ring);
	return true;
}

/* Per-CPU scratch to build a record in before it is known to match (the
 * event_heap of common.h; the ring buffer is reserved only for matches). */
static __always_inline void *snap_scratch(__u32 size)
{
	__u32 zero = 0;
	void *p;

	if (size > EVENT_MAX_SIZE)
		return NULL;
	p = bpf_map_lookup_elem(&event_heap, &zero);
	if (p)
		__builtin_memset(p, 0, size);
	return p;
}

/* Send a record built in the scratch area. */
static __always_inline void snap_send(void *ctx, void *rec, __u32 size)
{
	void *e;

	if (use_perfbuf) {
		event_submit(ctx, rec, size);
		return;
	}
	e = event_reserve(size);
	if (!e)
		return;
	bpf_probe_read_kernel(e, size, rec);
	event_submit(ctx, e, size);
}

/* Snapshot `skb` at `hook` and send it (struct skb_snap). `direct`: see snap_fill. */
static __always_inline int snap_skb(void *ctx, struct sk_buff *skb, __u32 hook, struct net_device *dev, bool ring,
				    bool direct)
{
	struct skb_snap *e;

	if (!skb)
		return 0;
	e = snap_scratch(sizeof(*e));
	if (!e || !snap_fill(ctx, skb, hook, dev, NULL, ring, e, direct))
		return 0;
	snap_send(ctx, e, sizeof(*e));
	return 0;
}
