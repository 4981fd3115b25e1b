// SPDX-License-Identifier: GPL-2.0
/* tcp_latency: TCP segments between --src-ip (local) and --dst-ip (remote),
 * keyed by (saddr, daddr, sport, dport, seq, ack, payload length), through 7
 * stages in one direction: outgoing (IP output -> OVS -> NIC queue) or
 * incoming (NIC -> OVS -> tcp_v4_rcv). Every program passes its stage id. */
#define EVENT_MAX_SIZE 512
#define STAGE_FLOWS_MAX 16384
#include "stages.h"

enum { DEV_ANY, DEV_PHY, DEV_NOT_PHY };

/* The packet's addresses in the traced direction (network order). */
const volatile __u32 PKT_SADDR = 0;
const volatile __u32 PKT_DADDR = 0;
const volatile __u16 PORT_A = 0; /* each, if set, must be one of the two ports */
const volatile __u16 PORT_B = 0;
const volatile struct stage_dev PHY[2] = {};
/* incoming on tracepoints: the end point is the application's read, so
 * segments without payload can never finish and are not tracked */
const volatile bool NEED_PAYLOAD = false;

static __always_inline bool on_phy(struct sk_buff *skb, bool direct)
{
	struct net_device *dev = RD(direct, skb, dev);
	return stage_dev_is_(dev, &PHY[0], direct) || stage_dev_is_(dev, &PHY[1], direct);
}

static __always_inline int track(void *ctx, struct sk_buff *skb, __u32 stage, int dev_rule, int how)
{
	struct stage_pkt p = {};
	struct stage_key k = {};

	if (!skb)
		return 0;
	if (dev_rule == DEV_PHY && !on_phy(skb, how & STAGE_BTF))
		return 0;
	if (dev_rule == DEV_NOT_PHY && on_phy(skb, how & STAGE_BTF))
		return 0;
	if (!stage_parse_ipv4_proto(skb, &p, how, IPPROTO_TCP) || p.proto != IPPROTO_TCP || !p.has_l4)
		return 0;
	if (p.saddr != PKT_SADDR || p.daddr != PKT_DADDR)
		return 0;
	if (PORT_A && p.sport != PORT_A && p.dport != PORT_A)
		return 0;
	if (PORT_B && p.sport != PORT_B && p.dport != PORT_B)
		return 0;
	if (NEED_PAYLOAD && !p.payload)
		return 0;
	k.saddr = p.saddr;
	k.daddr = p.daddr;
	k.sport = p.sport;
	k.dport = p.dport;
	k.seq = p.seq;
	k.ack = p.ack;
	k.len = p.payload;
	k.proto = IPPROTO_TCP;
	return stage_hit(ctx, &k, stage, skb, &p);
}

static __always_inline int on_skb(void *ctx, struct sk_buff *skb, __u32 stage_and_rule)
{
	return track(ctx, skb, stage_and_rule & 0xff, stage_and_rule >> 8,
		     (stage_and_rule >> 16) ? STAGE_PARSE_DATA_ETH : STAGE_PARSE_AUTO);
}

#define PHY_ONLY (DEV_PHY << 8)
#define DATA_ETH (1 << 16)

/* outgoing */
STAGE_FN_HOOK3(ip_output, 0)
STAGE_FN_HOOK1(internal_dev_xmit, 1)
STAGE_FN_HOOK1(__dev_queue_xmit, 6 | PHY_ONLY)
STAGE_FN_HOOK1(dev_queue_xmit, 6 | PHY_ONLY)
/* incoming */
STAGE_FN_HOOK1(__netif_receive_skb, 0 | PHY_ONLY)
STAGE_FN_HOOK_PSKB1(netdev_frame_hook, 1 | PHY_ONLY)
STAGE_FN_HOOK1(tcp_v4_rcv, 6)
/* OVS, both */
STAGE_FN_HOOK1(ovs_dp_process_packet, 2)
STAGE_FN_HOOK2(ovs_dp_upcall, 3)
STAGE_FN_HOOK3(ovs_flow_key_extract_userspace, 4 | DATA_ETH)
STAGE_FN_HOOK2(ovs_vport_send, 5)

SEC("tp_btf/net_dev_queue")
int BPF_PROG(tp_dev_queue_phy, struct sk_buff *skb)
{
	return track(ctx, skb, 6, DEV_PHY, STAGE_PARSE_AUTO | STAGE_BTF);
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(tp_dev_queue_internal, struct sk_buff *skb)
{
	return track(ctx, skb, 1, DEV_NOT_PHY, STAGE_PARSE_AUTO | STAGE_BTF);
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_netif_receive_skb, struct sk_buff *skb)
{
	return track(ctx, skb, 0, DEV_PHY, STAGE_PARSE_AUTO | STAGE_BTF);
}

SEC("tp_btf/ovs_dp_upcall")
int BPF_PROG(tp_ovs_dp_upcall, void *dp, struct sk_buff *skb)
{
	return track(ctx, skb, 3, DEV_ANY, STAGE_PARSE_DATA_ETH | STAGE_BTF);
}

SEC("tp_btf/ovs_do_execute_action")
int BPF_PROG(tp_ovs_output, void *dp, struct sk_buff *skb, void *key, const struct nlattr *a)
{
	__u16 type = ovs_action_type(a);
	if (type != OVS_ACTION_ATTR_OUTPUT_)
		return 0;
	return track(ctx, skb, 5, DEV_ANY, STAGE_PARSE_DATA_ETH | STAGE_BTF);
}

/* incoming: the application reads the segment's payload (after tcp_v4_rcv) */
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(tp_app_read, struct sk_buff *skb)
{
	return track(ctx, skb, 6, DEV_ANY, STAGE_PARSE_AUTO | STAGE_BTF);
}
