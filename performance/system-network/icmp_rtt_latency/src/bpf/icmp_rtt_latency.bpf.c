// SPDX-License-Identifier: GPL-2.0
/* icmp_rtt_latency: one ICMP echo request and its reply, matched by
 * (--src-ip, --dst-ip, ICMP id, seq), through up to 14 stages (7 per path).
 * Every hook has a fentry and a kprobe program (and some a tracepoint one);
 * user space loads the ones its hook plan chose and says in STAGE_OF which
 * stage each hook marks for a request (path 1) and a reply (path 2). */
#define EVENT_MAX_SIZE 512
#define STAGE_STACK_ENTRIES 4096
#include "stages.h"

enum {
	H_IP_SEND,
	H_INTERNAL,
	H_DP_PROCESS,
	H_UPCALL,
	H_KEYEXT,
	H_VPORT_SEND,
	H_DEV_QUEUE,
	H_NETIF_RCV,
	H_FRAME_HOOK,
	H_ICMP_RCV,
	H_MAX,
};

enum { DEV_ANY, DEV_PHY, DEV_NOT_PHY };

/* Mirror: StageOf in src/lib.rs. STAGE_NONE where a hook marks nothing. */
const volatile __u8 STAGE_OF[H_MAX][2] = {};
const volatile __u32 SRC_IP = 0; /* network order */
const volatile __u32 DST_IP = 0;
const volatile struct stage_dev PHY[2] = {};

static __always_inline bool on_phy(struct sk_buff *skb, bool direct)
{
	struct net_device *dev = RD(direct, skb, dev);
	return stage_dev_is_(dev, &PHY[0], direct) || stage_dev_is_(dev, &PHY[1], direct);
}

static __always_inline int track(void *ctx, struct sk_buff *skb, __u32 hook, int dev_rule, int how)
{
	struct stage_pkt p = {};
	struct stage_key k = {};
	__u32 path, stage;

	if (!skb || hook >= H_MAX)
		return 0;
	if (dev_rule == DEV_PHY && !on_phy(skb, how & STAGE_BTF))
		return 0;
	if (dev_rule == DEV_NOT_PHY && on_phy(skb, how & STAGE_BTF))
		return 0;
	if (!stage_parse_ipv4_proto(skb, &p, how, IPPROTO_ICMP) || p.proto != IPPROTO_ICMP || !p.has_l4)
		return 0;
	if (p.saddr == SRC_IP && p.daddr == DST_IP && p.icmp_type == 8)
		path = 0;
	else if (p.saddr == DST_IP && p.daddr == SRC_IP && p.icmp_type == 0)
		path = 1;
	else
		return 0;
	stage = STAGE_OF[hook][path];
	if (stage == STAGE_NONE)
		return 0;
	k.saddr = SRC_IP;
	k.daddr = DST_IP;
	k.proto = IPPROTO_ICMP;
	k.sport = p.icmp_id;
	k.seq = p.icmp_seq;
	return stage_hit(ctx, &k, stage, skb, &p);
}

static __always_inline int on_skb(void *ctx, struct sk_buff *skb, __u32 hook)
{
	int rule = (hook == H_DEV_QUEUE || hook == H_NETIF_RCV || hook == H_FRAME_HOOK) ? DEV_PHY : DEV_ANY;
	return track(ctx, skb, hook, rule, hook == H_KEYEXT ? STAGE_PARSE_DATA_ETH : STAGE_PARSE_AUTO);
}

STAGE_FN_HOOK3(ip_output, H_IP_SEND)
STAGE_FN_HOOK1(internal_dev_xmit, H_INTERNAL)
STAGE_FN_HOOK1(ovs_dp_process_packet, H_DP_PROCESS)
STAGE_FN_HOOK2(ovs_dp_upcall, H_UPCALL)
STAGE_FN_HOOK3(ovs_flow_key_extract_userspace, H_KEYEXT)
STAGE_FN_HOOK2(ovs_vport_send, H_VPORT_SEND)
STAGE_FN_HOOK1(__dev_queue_xmit, H_DEV_QUEUE)
STAGE_FN_HOOK1(dev_queue_xmit, H_DEV_QUEUE)
STAGE_FN_HOOK1(__netif_receive_skb, H_NETIF_RCV)
STAGE_FN_HOOK_PSKB1(netdev_frame_hook, H_FRAME_HOOK)
STAGE_FN_HOOK1(icmp_rcv, H_ICMP_RCV)

/* Tracepoint fallbacks (see the hook plan in src/lib.rs). */
SEC("tp_btf/net_dev_queue")
int BPF_PROG(tp_dev_queue_phy, struct sk_buff *skb)
{
	return track(ctx, skb, H_DEV_QUEUE, DEV_PHY, STAGE_PARSE_AUTO | STAGE_BTF);
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(tp_dev_queue_internal, struct sk_buff *skb)
{
	return track(ctx, skb, H_INTERNAL, DEV_NOT_PHY, STAGE_PARSE_AUTO | STAGE_BTF);
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_netif_receive_skb, struct sk_buff *skb)
{
	return track(ctx, skb, H_NETIF_RCV, DEV_PHY, STAGE_PARSE_AUTO | STAGE_BTF);
}

SEC("tp_btf/ovs_dp_upcall")
int BPF_PROG(tp_ovs_dp_upcall, void *dp, struct sk_buff *skb)
{
	return track(ctx, skb, H_UPCALL, DEV_ANY, STAGE_PARSE_DATA_ETH | STAGE_BTF);
}

SEC("tp_btf/ovs_do_execute_action")
int BPF_PROG(tp_ovs_output, void *dp, struct sk_buff *skb, void *key, const struct nlattr *a)
{
	__u16 type = ovs_action_type(a);
	if (type != OVS_ACTION_ATTR_OUTPUT_)
		return 0;
	return track(ctx, skb, H_VPORT_SEND, DEV_ANY, STAGE_PARSE_DATA_ETH | STAGE_BTF);
}

SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(tp_app_read, struct sk_buff *skb)
{
	return track(ctx, skb, H_ICMP_RCV, DEV_ANY, STAGE_PARSE_AUTO | STAGE_BTF);
}
