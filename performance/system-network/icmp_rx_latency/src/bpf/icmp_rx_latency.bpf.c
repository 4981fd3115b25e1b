// SPDX-License-Identifier: GPL-2.0
/* icmp_rx_latency: incoming ICMP echo requests and replies, keyed by
 * (src, dst, ICMP type, id, seq), from the physical NIC to icmp_rcv through up
 * to 7 stages. Entries are created only where the packet enters from the NIC
 * (stage 0) and deleted when reported. */
#define EVENT_MAX_SIZE 512
#define STAGE_STACK_ENTRIES 4096
#include "stages.h"

/* Hook ids = stage ids. */
enum {
	S_NETIF_RECV,
	S_FRAME,
	S_DP_PROCESS,
	S_UPCALL,
	S_EXEC,
	S_VPORT_SEND,
	S_ICMP_RCV,
};

enum { DEV_ANY, DEV_PHY };

const volatile __u32 SRC_IP = 0; /* network order, 0 = any */
const volatile __u32 DST_IP = 0;
const volatile struct stage_dev PHY[2] = {};
/* Tracepoint mode has no end point for echo requests (the kernel answers in
 * icmp_rcv) unless the reply being queued stands for it. */
const volatile bool TRACK_REQUESTS = true;
const volatile bool END_AT_REPLY = false;

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
	if (!stage_parse_ipv4_proto(skb, &p, how, IPPROTO_ICMP) || p.proto != IPPROTO_ICMP || !p.has_l4)
		return 0;
	if (p.icmp_type != 0 && p.icmp_type != 8)
		return 0;
	if (p.icmp_type == 8 && !TRACK_REQUESTS)
		return 0;
	if ((SRC_IP && p.saddr != SRC_IP) || (DST_IP && p.daddr != DST_IP))
		return 0;
	k.saddr = p.saddr;
	k.daddr = p.daddr;
	k.proto = IPPROTO_ICMP;
	k.kind = p.icmp_type;
	k.sport = p.icmp_id;
	k.seq = p.icmp_seq;
	return stage_hit(ctx, &k, stage, skb, &p);
}

static __always_inline int on_skb(void *ctx, struct sk_buff *skb, __u32 stage)
{
	int rule = stage <= S_DP_PROCESS ? DEV_PHY : DEV_ANY;
	return track(ctx, skb, stage, rule, STAGE_PARSE_AUTO);
}

STAGE_FN_HOOK1(__netif_receive_skb, S_NETIF_RECV)
STAGE_FN_HOOK_PSKB1(netdev_frame_hook, S_FRAME)
STAGE_FN_HOOK1(ovs_dp_process_packet, S_DP_PROCESS)
STAGE_FN_HOOK2(ovs_dp_upcall, S_UPCALL)
STAGE_FN_HOOK2(ovs_execute_actions, S_EXEC)
STAGE_FN_HOOK2(ovs_vport_send, S_VPORT_SEND)
STAGE_FN_HOOK1(icmp_rcv, S_ICMP_RCV)

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_netif_receive_skb, struct sk_buff *skb)
{
	return track(ctx, skb, S_NETIF_RECV, DEV_PHY, STAGE_PARSE_AUTO | STAGE_BTF);
}

SEC("tp_btf/ovs_dp_upcall")
int BPF_PROG(tp_ovs_dp_upcall, void *dp, struct sk_buff *skb)
{
	return track(ctx, skb, S_UPCALL, DEV_ANY, STAGE_PARSE_DATA_ETH | STAGE_BTF);
}

SEC("tp_btf/ovs_do_execute_action")
int BPF_PROG(tp_ovs_exec, void *dp, struct sk_buff *skb)
{
	return track(ctx, skb, S_EXEC, DEV_ANY, STAGE_PARSE_DATA_ETH | STAGE_BTF);
}

SEC("tp_btf/ovs_do_execute_action")
int BPF_PROG(tp_ovs_output, void *dp, struct sk_buff *skb, void *key, const struct nlattr *a)
{
	__u16 type = ovs_action_type(a);
	if (type != OVS_ACTION_ATTR_OUTPUT_)
		return 0;
	return track(ctx, skb, S_VPORT_SEND, DEV_ANY, STAGE_PARSE_DATA_ETH | STAGE_BTF);
}

/* An echo reply read by the ping socket: stands for icmp_rcv (app read). */
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(tp_app_read, struct sk_buff *skb)
{
	struct stage_pkt p = {};

	/* only replies: a request is never read by a socket here */
	if (!stage_parse_ipv4_proto(skb, &p, STAGE_PARSE_AUTO | STAGE_BTF, IPPROTO_ICMP) || p.proto != IPPROTO_ICMP || p.icmp_type != 0)
		return 0;
	return track(ctx, skb, S_ICMP_RCV, DEV_ANY, STAGE_PARSE_AUTO | STAGE_BTF);
}

/* --tracepoint-end-at-reply: the kernel's reply to a tracked request being
 * queued on a device ends the request (same id/seq, reversed addresses). */
SEC("tp_btf/net_dev_queue")
int BPF_PROG(tp_reply_queued, struct sk_buff *skb)
{
	struct stage_pkt p = {};
	struct stage_key k = {};

	if (!END_AT_REPLY)
		return 0;
	if (!stage_parse_ipv4_proto(skb, &p, STAGE_PARSE_AUTO | STAGE_BTF, IPPROTO_ICMP) || p.proto != IPPROTO_ICMP ||
	    !p.has_l4 || p.icmp_type != 0)
		return 0;
	if ((SRC_IP && p.daddr != SRC_IP) || (DST_IP && p.saddr != DST_IP))
		return 0;
	k.saddr = p.daddr;
	k.daddr = p.saddr;
	k.proto = IPPROTO_ICMP;
	k.kind = 8;
	k.sport = p.icmp_id;
	k.seq = p.icmp_seq;
	return stage_hit(ctx, &k, S_ICMP_RCV, skb, &p);
}
