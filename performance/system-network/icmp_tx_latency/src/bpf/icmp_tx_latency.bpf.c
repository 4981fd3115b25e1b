// SPDX-License-Identifier: GPL-2.0
/* icmp_tx_latency: one outgoing ICMP echo request (--src-ip -> --dst-ip),
 * keyed by (src, dst, ICMP id, seq), from the IP layer to the physical NIC
 * through up to 7 stages. One fentry and one kprobe program per function,
 * tracepoint fallbacks; user space loads what its hook plan chose. */
#define EVENT_MAX_SIZE 512
#define STAGE_STACK_ENTRIES 4096
#include "stages.h"

/* Hook ids = stage ids. */
enum {
	S_IP_SEND,
	S_INTERNAL,
	S_DP_PROCESS,
	S_UPCALL,
	S_EXEC,
	S_VPORT_SEND,
	S_DEV_XMIT,
};

enum { DEV_ANY, DEV_PHY, DEV_NOT_PHY };

const volatile __u32 SRC_IP = 0; /* network order */
const volatile __u32 DST_IP = 0;
const volatile struct stage_dev PHY[2] = {};

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
	if (!stage_parse_ipv4_proto(skb, &p, how, IPPROTO_ICMP) || p.proto != IPPROTO_ICMP || !p.has_l4)
		return 0;
	if (p.saddr != SRC_IP || p.daddr != DST_IP || p.icmp_type != 8)
		return 0;
	k.saddr = SRC_IP;
	k.daddr = DST_IP;
	k.proto = IPPROTO_ICMP;
	k.sport = p.icmp_id;
	k.seq = p.icmp_seq;
	return stage_hit(ctx, &k, stage, skb, &p);
}

static __always_inline int on_skb(void *ctx, struct sk_buff *skb, __u32 stage)
{
	return track(ctx, skb, stage, stage == S_DEV_XMIT ? DEV_PHY : DEV_ANY, STAGE_PARSE_AUTO);
}

STAGE_FN_HOOK3(ip_output, S_IP_SEND)
STAGE_FN_HOOK1(internal_dev_xmit, S_INTERNAL)
STAGE_FN_HOOK1(ovs_dp_process_packet, S_DP_PROCESS)
STAGE_FN_HOOK2(ovs_dp_upcall, S_UPCALL)
STAGE_FN_HOOK2(ovs_execute_actions, S_EXEC)
STAGE_FN_HOOK2(ovs_vport_send, S_VPORT_SEND)
STAGE_FN_HOOK1(__dev_queue_xmit, S_DEV_XMIT)
STAGE_FN_HOOK1(dev_queue_xmit, S_DEV_XMIT)

SEC("tp_btf/net_dev_queue")
int BPF_PROG(tp_dev_queue_phy, struct sk_buff *skb)
{
	return track(ctx, skb, S_DEV_XMIT, DEV_PHY, STAGE_PARSE_AUTO | STAGE_BTF);
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(tp_dev_queue_internal, struct sk_buff *skb)
{
	return track(ctx, skb, S_INTERNAL, DEV_NOT_PHY, STAGE_PARSE_AUTO | STAGE_BTF);
}

SEC("tp_btf/ovs_dp_upcall")
int BPF_PROG(tp_ovs_dp_upcall, void *dp, struct sk_buff *skb)
{
	return track(ctx, skb, S_UPCALL, DEV_ANY, STAGE_PARSE_DATA_ETH | STAGE_BTF);
}

/* Once per action: the first one stands for ovs_execute_actions (the first
 * timestamp wins), an OUTPUT action for ovs_vport_send. */
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
