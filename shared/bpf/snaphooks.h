/* SPDX-License-Identifier: GPL-2.0 */
/* The hooks of the linux-network-stack bpftrace ports (dev-queue-xmit,
 * sch-direct-xmit, validate-xmit-skb, tracepoint-qdisc-dequeue, intel-in,
 * trace-offloading-segment, trace-vlanvm-udp-workload, vpc-vm-udp-datapath):
 * one program per kernel function (kprobe mode) and per stable tracepoint
 * (tracepoint mode), each taking the skbsnap.h snapshot plus what the hook
 * adds (a features / GSO-mask argument, the qdisc, the xmit rc, the drop
 * reason, the ICMP type). A tool's .bpf.c is this include; its preset
 * (shared/src/snaphooks.rs) picks the hooks, so only those load.
 * Mirror: SnapX in shared/src/snaphooks.rs; the ids are HOOKS there. */
#pragma once
#ifndef EVENT_MAX_SIZE
#define EVENT_MAX_SIZE 320
#endif
#ifndef EVENTS_RINGBUF_BYTES
#define EVENTS_RINGBUF_BYTES (4 * 1024 * 1024) /* GSO floods: a line-rate TCP stream */
#endif
#include "skbsnap.h"

struct snap_x {
	struct skb_snap s;
	__u64 extra;         /* features / gso mask argument, qdisc handle, rc, free location */
	__u64 extra2;        /* qdisc parent, xmit len, drop reason, ICMP type << 8 | code */
	char qdisc_kind[16];
};
_Static_assert(sizeof(struct snap_x) == 280, "snap_x layout changed: update snaphooks.rs");

static __always_inline int snap_x_emit_(void *ctx, struct sk_buff *skb, __u32 hook, struct net_device *dev,
					struct sock *sk, bool ring, struct Qdisc *q, __u64 extra, __u64 extra2,
					bool direct)
{
	struct snap_x *e;

	if (!skb)
		return 0;
	e = snap_scratch(sizeof(*e));
	if (!e || !snap_fill(ctx, skb, hook, dev, sk, ring, &e->s, direct))
		return 0;
	e->extra = extra;
	e->extra2 = extra2;
	if (q) {
		e->extra = BPF_CORE_READ(q, handle);
		e->extra2 = BPF_CORE_READ(q, parent);
		bpf_probe_read_kernel_str(e->qdisc_kind, sizeof(e->qdisc_kind), BPF_CORE_READ(q, ops, id));
	}
	snap_send(ctx, e, sizeof(*e));
	return 0;
}

/* Kprobes: skb and dev are plain addresses, read through helpers. */
#define snap_x_emit(...) snap_x_emit_(__VA_ARGS__, false)
/* tp_btf: BTF pointers, read directly (RD in common.h). */
#define snap_x_emit_btf(...) snap_x_emit_(__VA_ARGS__, true)

/* kprobe on FUNC whose argument ARG (1-based) is the skb. */
#define SNAPX_KPROBE(FUNC, ID, ARG)                                                    \
	SEC("kprobe/" #FUNC)                                                           \
	int kp_##FUNC(struct pt_regs *ctx)                                             \
	{                                                                              \
		return snap_x_emit(ctx, (struct sk_buff *)PT_REGS_PARM##ARG(ctx), ID, NULL,      \
				   NULL, false, NULL, 0, 0);                           \
	}
/* ... and argument XARG is worth printing (netdev_features_t, GSO mask). */
#define SNAPX_KPROBE_X(FUNC, ID, ARG, XARG)                                            \
	SEC("kprobe/" #FUNC)                                                           \
	int kp_##FUNC(struct pt_regs *ctx)                                             \
	{                                                                              \
		return snap_x_emit(ctx, (struct sk_buff *)PT_REGS_PARM##ARG(ctx), ID, NULL,      \
				   NULL, false, NULL, (__u64)PT_REGS_PARM##XARG(ctx), 0); \
	}
/* ... socket-level functions (sk, skb, ...). */
#define SNAPX_KPROBE_SK(FUNC, ID)                                                      \
	SEC("kprobe/" #FUNC)                                                           \
	int kp_##FUNC(struct pt_regs *ctx)                                             \
	{                                                                              \
		return snap_x_emit(ctx, (struct sk_buff *)PT_REGS_PARM2(ctx), ID, NULL,          \
				   (struct sock *)PT_REGS_PARM1(ctx), false, NULL, 0, 0); \
	}

SNAPX_KPROBE(sch_direct_xmit, 1, 1)
SNAPX_KPROBE(__dev_queue_xmit, 2, 1)
SNAPX_KPROBE(validate_xmit_skb, 3, 1)
SNAPX_KPROBE(validate_xmit_skb_list, 4, 1)
SNAPX_KPROBE(htb_enqueue, 5, 1)
SNAPX_KPROBE(fq_codel_enqueue, 6, 1)
SNAPX_KPROBE(tcf_classify, 7, 1)
SNAPX_KPROBE(tcf_action_exec, 8, 1)
SNAPX_KPROBE(cls_cgroup_classify, 9, 1)
SNAPX_KPROBE(tun_net_xmit, 10, 1)
SNAPX_KPROBE_SK(__ip_queue_xmit, 11)
SNAPX_KPROBE_SK(__tcp_transmit_skb, 12)
SNAPX_KPROBE_SK(tcp_add_backlog, 13)
SNAPX_KPROBE_SK(tcp_v4_do_rcv, 14)
SNAPX_KPROBE(iptunnel_xmit, 16, 3)
SNAPX_KPROBE_X(skb_udp_tunnel_segment, 17, 1, 2)
SNAPX_KPROBE(__kfree_skb, 18, 1)
SNAPX_KPROBE_X(iptunnel_handle_offloads, 19, 1, 2)
SNAPX_KPROBE(udp_tunnel_xmit_skb, 20, 3)
SNAPX_KPROBE_X(skb_mac_gso_segment, 21, 1, 2)
SNAPX_KPROBE_X(tcp_gso_segment, 22, 1, 2)
SNAPX_KPROBE_X(__skb_gso_segment, 23, 1, 2)
SNAPX_KPROBE_X(__udp_gso_segment, 24, 1, 2)
SNAPX_KPROBE_X(skb_segment_list, 25, 1, 2)
SNAPX_KPROBE_X(skb_segment, 26, 1, 2)
SNAPX_KPROBE(__ip_finish_output, 27, 3)
SNAPX_KPROBE(ip_finish_output_gso, 28, 3)
SNAPX_KPROBE(__icmp_send, 29, 1)
SNAPX_KPROBE(ip_fragment, 30, 3)
SNAPX_KPROBE(mlx5e_xmit, 31, 1)
SNAPX_KPROBE(internal_dev_xmit, 32, 1)
SNAPX_KPROBE(netif_skb_features, 33, 1)

/* __netif_receive_skb_core(struct sk_buff **pskb, ...) */
SEC("kprobe/__netif_receive_skb_core")
int kp___netif_receive_skb_core(struct pt_regs *ctx)
{
	struct sk_buff *skb = NULL;
	bpf_probe_read_kernel(&skb, sizeof(skb), (void *)PT_REGS_PARM1(ctx));
	return snap_x_emit(ctx, skb, 15, NULL, NULL, false, NULL, 0, 0);
}

/* ---- tracepoint mode (tp_btf) ---- */
SEC("tp_btf/net_dev_queue")
int BPF_PROG(tp_net_dev_queue, struct sk_buff *skb)
{
	return snap_x_emit_btf(ctx, skb, 50, NULL, NULL, false, NULL, 0, 0);
}

SEC("tp_btf/qdisc_dequeue")
int BPF_PROG(tp_qdisc_dequeue, struct Qdisc *q, const struct netdev_queue *txq, int packets,
	     struct sk_buff *skb)
{
	return snap_x_emit_btf(ctx, skb, 51, NULL, NULL, false, q, 0, 0); /* skb NULL: empty dequeue */
}

SEC("tp_btf/qdisc_enqueue")
int BPF_PROG(tp_qdisc_enqueue, struct Qdisc *q, const struct netdev_queue *txq, struct sk_buff *skb)
{
	return snap_x_emit_btf(ctx, skb, 52, NULL, NULL, false, q, 0, 0);
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tp_net_dev_start_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return snap_x_emit_btf(ctx, skb, 53, dev, NULL, false, NULL, 0, 0);
}

/* net_dev_start_xmit on tun/tap devices only (user space fills snap_tun_devs). */
SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tp_net_dev_start_xmit_tun, struct sk_buff *skb, struct net_device *dev)
{
	return snap_x_emit_btf(ctx, skb, 10, dev, NULL, true, NULL, 0, 0);
}

/* After the driver returned: the skb may be gone (its fields then are stale);
 * the device and the length come from the tracepoint. */
SEC("tp_btf/net_dev_xmit")
int BPF_PROG(tp_net_dev_xmit, struct sk_buff *skb, int rc, struct net_device *dev, unsigned int len)
{
	return snap_x_emit_btf(ctx, skb, 54, dev, NULL, false, NULL, (__u64)(__s64)rc, len);
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_netif_receive_skb, struct sk_buff *skb)
{
	return snap_x_emit_btf(ctx, skb, 55, NULL, NULL, false, NULL, 0, 0);
}

SEC("tp_btf/netif_receive_skb_entry")
int BPF_PROG(tp_netif_receive_skb_entry, struct sk_buff *skb)
{
	return snap_x_emit_btf(ctx, skb, 56, NULL, NULL, false, NULL, 0, 0);
}

SEC("tp_btf/napi_gro_receive_entry")
int BPF_PROG(tp_napi_gro_receive_entry, struct sk_buff *skb)
{
	return snap_x_emit_btf(ctx, skb, 57, NULL, NULL, false, NULL, 0, 0);
}

SEC("tp_btf/ovs_dp_upcall")
int BPF_PROG(tp_ovs_dp_upcall, void *dp, struct sk_buff *skb)
{
	return snap_x_emit_btf(ctx, skb, 58, NULL, NULL, false, NULL, 0, 0);
}

SEC("tp_btf/ovs_do_execute_action")
int BPF_PROG(tp_ovs_do_execute_action, void *dp, struct sk_buff *skb, void *key, const struct nlattr *a)
{
	return snap_x_emit_btf(ctx, skb, 59, NULL, NULL, false, NULL, ovs_action_type(a), 0);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	return snap_x_emit_btf(ctx, skb, 60, NULL, NULL, false, NULL, (__u64)location, reason);
}

SEC("tp_btf/consume_skb")
int BPF_PROG(tp_consume_skb, struct sk_buff *skb)
{
	__u64 location = 0;

	/* consume_skb has a location argument since 6.3; on older kernels the
	 * verifier rejects reading it (the check is a constant after CO-RE). */
	if (bpf_core_field_exists(struct trace_event_raw_consume_skb, location))
		location = ctx[1];
	return snap_x_emit_btf(ctx, skb, 61, NULL, NULL, false, NULL, location, 0);
}

SEC("tp_btf/icmp_send")
int BPF_PROG(tp_icmp_send, struct sk_buff *skb, int type, int code)
{
	return snap_x_emit_btf(ctx, skb, 62, NULL, NULL, false, NULL, 0, ((__u64)type << 8) | (code & 0xff));
}
