// SPDX-License-Identifier: GPL-2.0
/* vm_latency: one packet of a VM through the host, per stage, between the
 * VM's tap (vnetN) and the physical NIC, in one direction:
 *   tx (VM -> wire): 0 VNET_RX (netif_receive_skb on the tap), 1-5 OVS,
 *                    6 PHY_QUEUE (net_dev_queue on the NIC), 7 PHY_XMIT (net_dev_start_xmit on the NIC)
 *   rx (wire -> VM): 0 PHY_RX (netif_receive_skb on the NIC), 1-5 OVS,
 *                    6 VNET_XMIT (tun_net_xmit, or net_dev_start_xmit on the tap),
 *                    7 VNET_CONSUMED (consume_skb of that skb: the reader copied it to the guest),
 *                    8 VNET_DROPPED (kfree_skb of that skb, e.g. FULL_RING)
 * Packet identity (the shared stage tracker's key): addresses, protocol and
 * ICMP id/seq/type, TCP ports/seq/payload length, UDP ports/IPv4 id. */
#define EVENT_MAX_SIZE 512
#define STAGE_STACK_ENTRIES 4096
#include "stages.h"


#define DIR_TX 0
#define DIR_RX 1

enum {
	H_FRAME = 1,
	H_DP = 2,
	H_UPCALL = 3,
	H_KEYEXT = 4,
	H_VPORT = 5,
};

const volatile __u8 DIR = DIR_TX;
const volatile struct stage_dev VM_DEV = {};
const volatile struct stage_dev PHY[2] = {};
const volatile __u32 F_SADDR = 0, F_DADDR = 0; /* network order, 0 any */
const volatile __u16 F_SPORT = 0, F_DPORT = 0;
const volatile __u8 F_PROTO = 0;

/* rx: skb handed to the tap -> its key, until consumed or freed. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct stage_key);
} at_tap SEC(".maps");

/* rx: drop reason of a packet that reached VNET_DROPPED (read by user space). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct stage_key);
	__type(value, __u32);
} drop_reason SEC(".maps");

/* `direct`: dev is a BTF pointer (tp_btf; RD in common.h). */
static __always_inline bool on_phy(struct net_device *dev, bool direct)
{
	return stage_dev_is_(dev, &PHY[0], direct) || stage_dev_is_(dev, &PHY[1], direct);
}

static __always_inline bool make_key(struct sk_buff *skb, int how, struct stage_key *k, struct stage_pkt *p)
{
	if (!stage_parse_ipv4(skb, p, how) || !p->has_l4)
		return false;
	if (F_SADDR && p->saddr != F_SADDR)
		return false;
	if (F_DADDR && p->daddr != F_DADDR)
		return false;
	if (F_PROTO && p->proto != F_PROTO)
		return false;
	if (F_SPORT || F_DPORT) {
		if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
			return false;
		if (F_SPORT && p->sport != F_SPORT)
			return false;
		if (F_DPORT && p->dport != F_DPORT)
			return false;
	}
	k->saddr = p->saddr;
	k->daddr = p->daddr;
	k->proto = p->proto;
	if (p->proto == IPPROTO_ICMP) {
		k->sport = p->icmp_id;
		k->seq = p->icmp_seq;
		k->kind = p->icmp_type;
	} else if (p->proto == IPPROTO_TCP) {
		k->sport = p->sport;
		k->dport = p->dport;
		k->seq = p->seq;
		k->len = p->payload;
	} else if (p->proto == IPPROTO_UDP) {
		k->sport = p->sport;
		k->dport = p->dport;
		k->ip_id = p->ip_id;
	} else {
		return false;
	}
	return true;
}

static __always_inline int track(void *ctx, struct sk_buff *skb, __u32 stage, int how)
{
	struct stage_pkt p = {};
	struct stage_key k = {};

	if (!skb || !make_key(skb, how, &k, &p))
		return 0;
	return stage_hit(ctx, &k, stage, skb, &p);
}

/* OVS hooks (stages.h generators call this): hook id == stage id. */
static __always_inline int on_skb(void *ctx, struct sk_buff *skb, __u32 hook)
{
	return track(ctx, skb, hook, hook == H_KEYEXT ? STAGE_PARSE_DATA_ETH : STAGE_PARSE_AUTO);
}

STAGE_FN_HOOK_PSKB1(netdev_frame_hook, H_FRAME)
STAGE_FN_HOOK1(ovs_dp_process_packet, H_DP)
STAGE_FN_HOOK2(ovs_dp_upcall, H_UPCALL)
STAGE_FN_HOOK3(ovs_flow_key_extract_userspace, H_KEYEXT)
STAGE_FN_HOOK2(ovs_vport_send, H_VPORT)

SEC("tp_btf/ovs_dp_upcall")
int BPF_PROG(tp_ovs_dp_upcall, void *dp, struct sk_buff *skb)
{
	return track(ctx, skb, H_UPCALL, STAGE_PARSE_DATA_ETH);
}

SEC("tp_btf/ovs_do_execute_action")
int BPF_PROG(tp_ovs_output, void *dp, struct sk_buff *skb, void *key, const struct nlattr *a)
{
	if (ovs_action_type(a) != OVS_ACTION_ATTR_OUTPUT_)
		return 0;
	return track(ctx, skb, H_VPORT, STAGE_PARSE_DATA_ETH);
}

/* ---- device stages ---- */

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_netif_rcv, struct sk_buff *skb)
{
	struct net_device *dev;

	if (!skb)
		return 0;
	dev = skb->dev;
	if (DIR == DIR_TX ? stage_dev_is_(dev, &VM_DEV, true) : on_phy(dev, true))
		return track(ctx, skb, 0, STAGE_PARSE_AUTO | STAGE_BTF);
	return 0;
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(tp_dev_queue, struct sk_buff *skb)
{
	if (DIR == DIR_TX && skb && on_phy(skb->dev, true))
		return track(ctx, skb, 6, STAGE_PARSE_AUTO | STAGE_BTF);
	return 0;
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tp_start_xmit_phy, struct sk_buff *skb, struct net_device *dev)
{
	if (DIR == DIR_TX && on_phy(dev, true))
		return track(ctx, skb, 7, STAGE_PARSE_AUTO | STAGE_BTF);
	return 0;
}

/* rx stage 6: remember the skb so its consumption (or drop) ends the record. */
static __always_inline int at_vnet_xmit(void *ctx, struct sk_buff *skb, struct net_device *dev)
{
	struct stage_pkt p = {};
	struct stage_key k = {};
	__u64 ptr = (__u64)skb;

	if (DIR != DIR_RX || !skb || !stage_dev_is(dev, &VM_DEV))
		return 0;
	if (!make_key(skb, STAGE_PARSE_AUTO, &k, &p))
		return 0;
	if (!bpf_map_lookup_elem(&stage_flows, &k))
		return 0; /* not seen at PHY_RX: not ours */
	bpf_map_update_elem(&at_tap, &ptr, &k, BPF_ANY);
	return stage_hit(ctx, &k, 6, skb, &p);
}

SEC("fentry/tun_net_xmit")
int BPF_PROG(fentry_tun_net_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return at_vnet_xmit(ctx, skb, dev);
}

SEC("kprobe/tun_net_xmit")
int BPF_KPROBE(kprobe_tun_net_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return at_vnet_xmit(ctx, skb, dev);
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tp_start_xmit_vm, struct sk_buff *skb, struct net_device *dev)
{
	return at_vnet_xmit(ctx, skb, dev);
}

static __always_inline int at_tap_end(void *ctx, struct sk_buff *skb, __u32 stage, __u32 reason)
{
	struct stage_key k;
	struct stage_key *kp;
	struct stage_pkt p = {};
	__u64 ptr = (__u64)skb;

	kp = bpf_map_lookup_elem(&at_tap, &ptr);
	if (!kp)
		return 0;
	__builtin_memcpy(&k, kp, sizeof(k));
	bpf_map_delete_elem(&at_tap, &ptr);
	if (stage == 8)
		bpf_map_update_elem(&drop_reason, &k, &reason, BPF_ANY);
	p.icmp_type = k.kind;
	return stage_hit(ctx, &k, stage, skb, &p);
}

SEC("tp_btf/consume_skb")
int BPF_PROG(tp_consume_skb, struct sk_buff *skb)
{
	return at_tap_end(ctx, skb, 7, 0);
}

static __always_inline int on_kfree_skb(void *ctx, struct sk_buff *skb, __u64 location, __u32 reason, bool has_reason)
{
	return at_tap_end(ctx, skb, 8, has_reason ? reason : 0xffffffff);
}

#include "kfree_skb.h"
