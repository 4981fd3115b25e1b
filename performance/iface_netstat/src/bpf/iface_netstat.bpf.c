// SPDX-License-Identifier: GPL-2.0
/* iface_netstat: per-queue TX/RX packet counts, bytes and size buckets of one
 * interface. TX at net:net_dev_start_xmit, RX at net:netif_receive_skb, each
 * through tp_btf or the classic tracepoint (user space loads one of each, see
 * HOOKS in src/main.rs). Counters live in per-CPU arrays indexed by queue and
 * are only ever added to; user space reads them every interval and reports the
 * difference (shared::percpu::PerCpuCounters). */
#include "common.h"
#include "skb.h"
#include "sizehist.h"

/* The interface, compared by name up to its NUL (set before load). */
const volatile char IFNAME[16] = {};
/* Network namespace (inode of /proc/self/ns/net) the interface lives in: a
 * device of the same name in another namespace is not counted. 0 = any. */
const volatile __u32 NETNS_INO = 0;
/* Queue counts from sysfs; queue ids at or above go to the last slot (only in
 * the totals). User space sizes the maps to count + 1. */
const volatile __u32 TX_QUEUES = 1;
const volatile __u32 RX_QUEUES = 1;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1025);
	__type(key, __u32);
	__type(value, struct size_hist);
} tx_q SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1025);
	__type(key, __u32);
	__type(value, struct size_hist);
} rx_q SEC(".maps");

/* `direct`: BTF pointers (tp_btf), read with plain loads (RD in common.h). */
static __always_inline bool is_our_dev(struct net_device *dev, bool direct)
{
	char name[16] = {};

	if (!dev)
		return false;
	read_dev_name(dev, name, direct);
	if (!ifname_eq(name, IFNAME))
		return false;
	if (NETNS_INO) {
		struct net *net = RD(direct, dev, nd_net.net);
		if (!net || RD(direct, net, ns.inum) != NETNS_INO)
			return false;
	}
	return true;
}

static __always_inline int count(void *map, struct sk_buff *skb, bool rx, bool direct)
{
	struct size_hist *h;
	__u32 q, nq;

	if (!skb || !is_our_dev(RD(direct, skb, dev), direct))
		return 0;
	q = RD(direct, skb, queue_mapping);
	if (rx) {
		/* skb_record_rx_queue() stores queue + 1; 0 = not recorded. */
		nq = RX_QUEUES;
		q = q ? q - 1 : 0;
	} else {
		nq = TX_QUEUES;
	}
	if (q >= nq)
		q = nq;
	h = bpf_map_lookup_elem(map, &q);
	if (h)
		size_hist_add(h, RD(direct, skb, len));
	return 0;
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tp_btf_start_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return count(&tx_q, skb, false, true);
}

SEC("tracepoint/net/net_dev_start_xmit")
int tp_start_xmit(struct trace_event_raw_net_dev_start_xmit *args)
{
	return count(&tx_q, (struct sk_buff *)BPF_CORE_READ(args, skbaddr), false, false);
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_btf_receive_skb, struct sk_buff *skb)
{
	return count(&rx_q, skb, true, true);
}

SEC("tracepoint/net/netif_receive_skb")
int tp_receive_skb(struct trace_event_raw_net_dev_template *args)
{
	return count(&rx_q, (struct sk_buff *)BPF_CORE_READ(args, skbaddr), true, false);
}
