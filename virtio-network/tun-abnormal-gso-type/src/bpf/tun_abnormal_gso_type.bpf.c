// SPDX-License-Identifier: GPL-2.0
/* tun-abnormal-gso-type: where on the host path (OVS -> qdisc -> tun -> vhost)
 * does a VM-bound skb get a bad GSO state? Snapshots (shared/bpf/skbsnap.h)
 * at the original's hooks; in tracepoint mode at their stable stand-ins. */
#define EVENT_MAX_SIZE 256
#include "skbsnap.h"

enum {
	H_TUN_NET_XMIT,
	H_SCH_DIRECT_XMIT,
	H_DEV_QUEUE_XMIT,
	H_NETDEV_FRAME_HOOK,
	H_QUEUE_GSO_PACKETS,
	H_QUEUE_USERSPACE_PACKET,
	H_VALIDATE_XMIT_SKB_LIST,
	H_VALIDATE_XMIT_SKB,
	H_SKB_SEGMENT,
};

const volatile bool TUN_RING = false;

#define FN1(fn, hook)                                                          \
	SEC("fentry/" #fn)                                                     \
	int BPF_PROG(fentry_##fn, struct sk_buff *skb)                        \
	{ return snap_skb(ctx, skb, hook, NULL, false, true); }                      \
	SEC("kprobe/" #fn)                                                     \
	int BPF_KPROBE(kprobe_##fn, struct sk_buff *skb)                      \
	{ return snap_skb(ctx, skb, hook, NULL, false, false); }

#define FN2(fn, hook)                                                          \
	SEC("fentry/" #fn)                                                     \
	int BPF_PROG(fentry_##fn, void *a0, struct sk_buff *skb)              \
	{ return snap_skb(ctx, skb, hook, NULL, false, true); }                      \
	SEC("kprobe/" #fn)                                                     \
	int BPF_KPROBE(kprobe_##fn, void *a0, struct sk_buff *skb)            \
	{ return snap_skb(ctx, skb, hook, NULL, false, false); }

SEC("fentry/tun_net_xmit")
int BPF_PROG(fentry_tun_net_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return snap_skb(ctx, skb, H_TUN_NET_XMIT, dev, TUN_RING, true);
}

SEC("kprobe/tun_net_xmit")
int BPF_KPROBE(kprobe_tun_net_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return snap_skb(ctx, skb, H_TUN_NET_XMIT, dev, TUN_RING, false);
}

FN1(sch_direct_xmit, H_SCH_DIRECT_XMIT)
FN1(__dev_queue_xmit, H_DEV_QUEUE_XMIT)
FN2(queue_gso_packets, H_QUEUE_GSO_PACKETS)
FN2(queue_userspace_packet, H_QUEUE_USERSPACE_PACKET)
FN1(validate_xmit_skb_list, H_VALIDATE_XMIT_SKB_LIST)
FN1(validate_xmit_skb, H_VALIDATE_XMIT_SKB)

/* netdev_frame_hook(struct sk_buff **pskb) */
SEC("fentry/netdev_frame_hook")
int fentry_netdev_frame_hook(__u64 *ctx)
{
	struct sk_buff *skb = NULL;
	__u64 pskb = 0;
	if (bpf_get_func_arg(ctx, 0, &pskb) || !pskb)
		return 0;
	bpf_probe_read_kernel(&skb, sizeof(skb), (void *)pskb);
	return snap_skb(ctx, skb, H_NETDEV_FRAME_HOOK, NULL, false, false);
}

SEC("kprobe/netdev_frame_hook")
int BPF_KPROBE(kprobe_netdev_frame_hook, struct sk_buff **pskb)
{
	struct sk_buff *skb = NULL;
	bpf_probe_read_kernel(&skb, sizeof(skb), pskb);
	return snap_skb(ctx, skb, H_NETDEV_FRAME_HOOK, NULL, false, false);
}

SEC("kretprobe/skb_segment")
int BPF_KRETPROBE(kret_skb_segment, struct sk_buff *segs)
{
	if ((unsigned long)segs >= (unsigned long)-4095)
		return 0;
	return snap_skb(ctx, segs, H_SKB_SEGMENT, NULL, false, false);
}

/* ---- tracepoint mode ---- */

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tp_tun_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return snap_skb(ctx, skb, H_TUN_NET_XMIT, dev, true, true);
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_netif_receive_skb, struct sk_buff *skb)
{
	return snap_skb(ctx, skb, H_NETDEV_FRAME_HOOK, NULL, false, true);
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(tp_net_dev_queue, struct sk_buff *skb)
{
	return snap_skb(ctx, skb, H_DEV_QUEUE_XMIT, NULL, false, true);
}

SEC("tp_btf/ovs_dp_upcall")
int BPF_PROG(tp_ovs_dp_upcall, void *dp, struct sk_buff *skb)
{
	return snap_skb(ctx, skb, H_QUEUE_USERSPACE_PACKET, NULL, false, true);
}
