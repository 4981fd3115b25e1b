// SPDX-License-Identifier: GPL-2.0
/* vm_pair_latency / multi_vm_pair_latency / multi_vm_pair_latency_pairid: the
 * time the host takes to forward one UDP packet from a sending VM's tap
 * (netif_receive_skb: stage 0) to the receiving VM's tap (net_dev_start_xmit,
 * just before the driver: stage 1), matched per packet through the shared
 * stage tracker (stages.h) by (saddr, daddr, sport, dport, IPv4 id) plus:
 *   multi:  the frame's MACs (from head + mac_header at both points), kept in
 *           the key's seq/len (source MAC) and ack/pad (destination MAC);
 *   pairid: the pair id of the tap (seq), so pairs never match each other. */
#define EVENT_MAX_SIZE 512
#define STAGE_FLOWS_MAX 16384
#include "stages.h"

#define MODE_SINGLE 0
#define MODE_MACS 1
#define MODE_PAIRID 2

struct dev_info {
	__u32 pair_id;
	char name[16];
};

const volatile __u8 MODE = MODE_SINGLE;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct dev_info);
} send_devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct dev_info);
} recv_devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

static __always_inline int on_pkt(void *ctx, struct sk_buff *skb, void *devs, __u32 stage)
{
	struct net_device *dev;
	struct dev_info *di;
	struct stage_pkt p = {};
	struct stage_key k = {};
	char name[16];
	__u32 ifindex;

	if (!skb)
		return 0;
	/* Both hooks are tp_btf: skb and dev are BTF pointers, read with plain
	 * loads (RD in common.h), not helper calls. */
	dev = skb->dev;
	if (!dev)
		return 0;
	ifindex = dev->ifindex;
	di = bpf_map_lookup_elem(devs, &ifindex);
	if (!di)
		return 0;
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
	if (!stage_parse_ipv4_proto(skb, &p, STAGE_PARSE_AUTO | STAGE_BTF, IPPROTO_UDP) || p.proto != IPPROTO_UDP || !p.has_l4)
		return 0;
	if (!bpf_map_lookup_elem(&ports, &p.sport) && !bpf_map_lookup_elem(&ports, &p.dport))
		return 0;
	k.saddr = p.saddr;
	k.daddr = p.daddr;
	k.sport = p.sport;
	k.dport = p.dport;
	k.ip_id = p.ip_id;
	k.proto = IPPROTO_UDP;
	if (MODE == MODE_MACS) {
		unsigned char *head = skb->head;
		__u16 mh = skb->mac_header;
		__u8 mac[12] = {};
		if (mh == (__u16)~0U || bpf_probe_read_kernel(mac, sizeof(mac), head + mh))
			return 0;
		/* dst MAC first in the frame */
		__builtin_memcpy(&k.ack, mac, 4);
		__builtin_memcpy(k.pad, mac + 4, 2);
		__builtin_memcpy(&k.seq, mac + 6, 4);
		__builtin_memcpy(&k.len, mac + 10, 2);
	} else if (MODE == MODE_PAIRID) {
		k.seq = di->pair_id;
	}
	return stage_hit(ctx, &k, stage, skb, &p);
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(pair_ingress, struct sk_buff *skb)
{
	return on_pkt(ctx, skb, &send_devs, 0);
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(pair_egress, struct sk_buff *skb, struct net_device *dev)
{
	return on_pkt(ctx, skb, &recv_devs, 1);
}
