/* SPDX-License-Identifier: GPL-2.0 */
/* Open vSwitch kernel datapath (openvswitch.ko) for the ovs-measurement tools:
 * minimal CO-RE views of the module's types and the uapi numbers they use.
 *
 * The module's types are not in vmlinux.h (the host kernel has no OVS). The
 * structs below name only the fields the tools read; libbpf relocates every
 * access against the module's BTF (/sys/kernel/btf/openvswitch) at load time,
 * so the real layout of the running kernel is used, never a copied one.
 * Kernels without module BTF (5.10): guard reads with ovs_key_readable(). */
#pragma once
#include "common.h"
#include "skb.h"

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
struct sw_flow_key {
	struct {
		u32 priority;
		u32 skb_mark;
		u16 in_port;
	} __attribute__((packed)) phy;
	u32 ovs_flow_hash;
	u32 recirc_id;
	struct {
		u8 src[6];
		u8 dst[6];
		__be16 type;
	} eth;
	u8 ct_state;
	u8 ct_orig_proto;
	u16 ct_zone;
};

struct dp_upcall_info {
	u32 portid;
	u8 cmd;
	u16 mru;
};
#pragma clang attribute pop

/* enum ovs_action_attr (uapi, stable) */
#define OVS_ACTION_ATTR_OUTPUT 1
#define OVS_ACTION_ATTR_USERSPACE 2
#define OVS_ACTION_ATTR_SAMPLE 6
#define OVS_ACTION_ATTR_RECIRC 7
#define OVS_ACTION_ATTR_CT 12
#define OVS_ACTION_ATTR_CLONE 20
#define OVS_ACTION_ATTR_CHECK_PKT_LEN 21
/* enum ovs_packet_cmd */
#define OVS_PACKET_CMD_MISS 1
#define OVS_PACKET_CMD_ACTION 2
#define OVS_NLA_TYPE_MASK 0x3fff

/* Can the module's struct sw_flow_key be read (module BTF present)? */
static __always_inline bool ovs_key_readable(void)
{
	return bpf_core_type_exists(struct sw_flow_key);
}

struct ovs_key_info {
	__u32 recirc_id;
	__u32 in_port;
	__u32 skb_mark;
	__u8 ct_state;
	__u8 valid; /* 0: kernel without module BTF, fields unknown */
	__u16 ct_zone;
};

static __always_inline void ovs_read_key(const struct sw_flow_key *key, struct ovs_key_info *k)
{
	if (!key || !ovs_key_readable())
		return;
	k->recirc_id = BPF_CORE_READ(key, recirc_id);
	k->in_port = BPF_CORE_READ(key, phy.in_port);
	k->skb_mark = BPF_CORE_READ(key, phy.skb_mark);
	k->ct_state = BPF_CORE_READ(key, ct_state);
	k->ct_zone = BPF_CORE_READ(key, ct_zone);
	k->valid = 1;
}

/* Parse a packet whose skb->data starts at the Ethernet header (the datapath
 * keeps it there; packets userspace sends back for execution have no header
 * offsets set yet): Ethernet, up to two VLAN tags, IPv4/IPv6, TCP/UDP/ICMP. */
static __always_inline bool parse_skb_data(struct sk_buff *skb, struct pkt_meta *m)
{
	unsigned char *data = BPF_CORE_READ(skb, data);
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	struct ethhdr eth;
	__u16 off = sizeof(eth);

	m->len = BPF_CORE_READ(skb, len);
	m->data_len = BPF_CORE_READ(skb, data_len);
	if (dev) {
		m->ifindex = BPF_CORE_READ(dev, ifindex);
		bpf_probe_read_kernel_str(m->ifname, sizeof(m->ifname), dev->name);
	}
	if (bpf_probe_read_kernel(&eth, sizeof(eth), data))
		return false;
	m->has_mac = 1;
	__builtin_memcpy(m->eth_src, eth.h_source, 6);
	__builtin_memcpy(m->eth_dst, eth.h_dest, 6);
	m->eth_type = bpf_ntohs(eth.h_proto);
	m->l3_proto = m->eth_type;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct vlan_hdr_ vh;
		if (m->l3_proto != ETH_P_8021Q && m->l3_proto != ETH_P_8021AD)
			break;
		if (bpf_probe_read_kernel(&vh, sizeof(vh), data + off))
			break;
		if (i == 0) {
			__u16 t = bpf_ntohs(vh.tci);
			m->has_vlan = 1;
			m->vlan_id = t & 0x0fff;
			m->vlan_prio = t >> 13;
		}
		m->l3_proto = bpf_ntohs(vh.proto);
		off += sizeof(vh);
	}
	m->net_off = off;
	if (m->l3_proto == ETH_P_IP) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), data + off) || ip.version != 4)
			return true;
		m->family = 4;
		m->l4proto = ip.protocol;
		m->ttl = ip.ttl;
		m->tos = ip.tos;
		m->ip_id = bpf_ntohs(ip.id);
		m->ip_len = bpf_ntohs(ip.tot_len);
		m->frag_off = bpf_ntohs(ip.frag_off);
		__builtin_memcpy(m->saddr, &ip.saddr, 4);
		__builtin_memcpy(m->daddr, &ip.daddr, 4);
		m->trans_off = off + ip.ihl * 4;
		if (!(m->frag_off & 0x1fff))
			parse_l4(data + off + ip.ihl * 4, m);
	} else if (m->l3_proto == ETH_P_IPV6) {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), data + off))
			return true;
		m->family = 6;
		m->l4proto = ip6.nexthdr;
		m->ttl = ip6.hop_limit;
		m->ip_len = bpf_ntohs(ip6.payload_len);
		__builtin_memcpy(m->saddr, &ip6.saddr, 16);
		__builtin_memcpy(m->daddr, &ip6.daddr, 16);
		m->trans_off = off + sizeof(ip6);
		parse_l4(data + off + sizeof(ip6), m);
	} else {
		bpf_probe_read_kernel(m->l2_payload, sizeof(m->l2_payload), data + off);
	}
	return true;
}

/* The three ways onto ovs_dp_upcall(dp, skb, key, upcall_info): the
 * tracepoint (tp_btf), fentry and kprobe, each calling
 * handler(ctx, skb, key, info). User space loads the one its hook table
 * picks (shared::hooks) and leaves the others unloaded. */
#define OVS_DP_UPCALL_PROGS(handler)                                                         \
	SEC("tp_btf/ovs_dp_upcall")                                                          \
	int BPF_PROG(tp_btf_ovs_dp_upcall, void *dp, struct sk_buff *skb,                    \
		     const struct sw_flow_key *key, const struct dp_upcall_info *info)       \
	{                                                                                    \
		return handler(ctx, skb, key, info);                                         \
	}                                                                                    \
	SEC("fentry/ovs_dp_upcall")                                                          \
	int BPF_PROG(fentry_ovs_dp_upcall, void *dp, struct sk_buff *skb,                    \
		     const struct sw_flow_key *key, const struct dp_upcall_info *info)       \
	{                                                                                    \
		return handler(ctx, skb, key, info);                                         \
	}                                                                                    \
	SEC("kprobe/ovs_dp_upcall")                                                          \
	int BPF_KPROBE(kprobe_ovs_dp_upcall, void *dp, struct sk_buff *skb,                  \
		       const struct sw_flow_key *key, const struct dp_upcall_info *info)     \
	{                                                                                    \
		return handler(ctx, skb, key, info);                                         \
	}
