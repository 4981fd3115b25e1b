// SPDX-License-Identifier: GPL-2.0
/* trace-abnormal-arp: ARP packets with a given sender/target IP on given
 * devices, received (netif_receive_skb) or sent (net_dev_start_xmit), with
 * the ARP header, the Ethernet addresses, the process context and the kernel
 * stack; and a packet count of every skb on those devices per (comm, dev). */
#define EVENT_MAX_SIZE 256
#include "common.h"
#include "skb.h"

#define MAX_DEVS 8

/* Mirror: Cfg in src/main.rs. */
struct arp_cfg {
	__u8 spa[4];      /* 0.0.0.0 any */
	__u8 tpa[4];
	__u16 op;         /* 0 any */
	__u8 ndevs;
	__u8 stacks;
	char devs[MAX_DEVS][16];
};

/* Mirror: ArpEvent. */
struct arp_event {
	__u64 ts_ns;
	__u32 pid;
	__u32 ifindex;
	char comm[16];
	char dev[16];
	__s32 kstack_id;
	__u8 tx;
	__u8 pkt_type;
	__u16 proto;      /* skb->protocol, host order */
	__u16 hrd;
	__u16 pro;
	__u16 op;
	__u8 hln;
	__u8 pln;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
	__u8 eth_src[6];
	__u8 eth_dst[6];
};

struct count_key {
	char comm[16];
	char dev[16];
};

const volatile struct arp_cfg CFG = {};

DECLARE_STACK_MAP(stacks, 4096);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct count_key);
	__type(value, __u64);
} counts SEC(".maps");

struct arp_hdr_eth {
	__be16 hrd;
	__be16 pro;
	__u8 hln;
	__u8 pln;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

static __always_inline bool dev_match(const char *name)
{
#pragma unroll
	for (int i = 0; i < MAX_DEVS; i++) {
		if (i >= CFG.ndevs)
			break;
		if (ifname_eq(name, CFG.devs[i]))
			return true;
	}
	return false;
}

static __always_inline bool ip_is(const __u8 *a, const volatile __u8 *want)
{
	if (!(want[0] | want[1] | want[2] | want[3]))
		return true;
	return a[0] == want[0] && a[1] == want[1] && a[2] == want[2] && a[3] == want[3];
}

/* `direct`: skb and dev are BTF pointers (tp_btf; RD in common.h). */
static __always_inline int on_skb(void *ctx, struct sk_buff *skb, struct net_device *dev, bool tx, bool direct)
{
	struct count_key k = {};
	struct arp_hdr_eth arp;
	struct arp_event *e;
	unsigned char *head, *l3;
	__u16 mac, proto;
	__u64 one = 1, *n;

	if (!skb)
		return 0;
	if (!dev)
		dev = RD(direct, skb, dev);
	if (!dev)
		return 0;
	read_dev_name(dev, k.dev, direct);
	if (!dev_match(k.dev))
		return 0;
	bpf_get_current_comm(k.comm, sizeof(k.comm));
	n = bpf_map_lookup_elem(&counts, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&counts, &k, &one, BPF_NOEXIST);

	head = RD(direct, skb, head);
	mac = RD(direct, skb, mac_header);
	if (tx) {
		/* At the driver data is the Ethernet header (also for frames a
		 * packet socket built, whose skb->protocol may be anything). */
		struct ethhdr eth;
		unsigned char *data = RD(direct, skb, data);
		if (bpf_probe_read_kernel(&eth, sizeof(eth), data))
			return 0;
		proto = bpf_ntohs(eth.h_proto);
		l3 = data + sizeof(eth);
	} else {
		proto = bpf_ntohs(RD(direct, skb, protocol));
		l3 = RD(direct, skb, data);
	}
	if (proto != ETH_P_ARP)
		return 0;
	if (bpf_probe_read_kernel(&arp, sizeof(arp), l3))
		return 0;
	if (CFG.op && bpf_ntohs(arp.op) != CFG.op)
		return 0;
	if (!ip_is(arp.spa, CFG.spa) || !ip_is(arp.tpa, CFG.tpa))
		return 0;

	e = event_reserve(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ifindex = BPF_CORE_READ(dev, ifindex);
	__builtin_memcpy(e->comm, k.comm, 16);
	__builtin_memcpy(e->dev, k.dev, 16);
	e->kstack_id = CFG.stacks ? get_stack_id(ctx, &stacks, 0) : -1;
	e->tx = tx;
	e->pkt_type = BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
	e->proto = proto;
	e->hrd = bpf_ntohs(arp.hrd);
	e->pro = bpf_ntohs(arp.pro);
	e->op = bpf_ntohs(arp.op);
	e->hln = arp.hln;
	e->pln = arp.pln;
	__builtin_memcpy(e->sha, arp.sha, 6);
	__builtin_memcpy(e->spa, arp.spa, 4);
	__builtin_memcpy(e->tha, arp.tha, 6);
	__builtin_memcpy(e->tpa, arp.tpa, 4);
	{
		struct ethhdr eth;
		unsigned char *l2 = tx ? BPF_CORE_READ(skb, data) : (mac != (__u16)~0U ? head + mac : NULL);
		if (l2 && !bpf_probe_read_kernel(&eth, sizeof(eth), l2)) {
			__builtin_memcpy(e->eth_src, eth.h_source, 6);
			__builtin_memcpy(e->eth_dst, eth.h_dest, 6);
		}
	}
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_netif_receive_skb, struct sk_buff *skb)
{
	return on_skb(ctx, skb, NULL, false, true);
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tp_net_dev_start_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return on_skb(ctx, skb, dev, true, true);
}

/* The originals' functions, for kernels without BTF tracepoints. */
SEC("kprobe/__netif_receive_skb")
int BPF_KPROBE(kp___netif_receive_skb, struct sk_buff *skb)
{
	return on_skb(ctx, skb, NULL, false, false);
}

SEC("kprobe/dev_hard_start_xmit")
int BPF_KPROBE(kp_dev_hard_start_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return on_skb(ctx, skb, dev, true, false);
}
