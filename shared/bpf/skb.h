/* SPDX-License-Identifier: GPL-2.0 */
/* One parser for every tool that looks at an sk_buff: L2 (802.1Q/802.1ad, the
 * skb's accelerated tag), IPv4/IPv6/ARP, TCP/UDP/ICMP; and the packet filter that
 * user space writes into .rodata before load. All reads are CO-RE. */
#pragma once
#include "common.h"

/* Mirror: shared/src/filter.rs (RawPktFilter). Keep both in step. */
struct pkt_filter {
	__u8 saddr[16];     /* IPv4 in the first 4 bytes (network order) */
	__u8 daddr[16];
	__u8 family;        /* 0 any, 4, 6: set when an address filter is given */
	__u8 l4proto;       /* 0 any */
	__u16 sport;        /* host order, 0 any */
	__u16 dport;
	__u16 ethertype;    /* inner ethertype, host order; 0 any */
	__u16 vlan;         /* 0 any */
	__u8 has_saddr;
	__u8 has_daddr;
	__u8 ports_need_l4; /* a port filter excludes packets without ports */
	__u8 ethertype_other; /* match only "other" ethertypes (eth_drop --type other) */
	__u8 ipv4_only;     /* ignore everything but IPv4 */
	__u8 pad[1];
	__u32 ifindex;      /* 0 any */
	char ifname[16];    /* "" any; compared by name, works across netns */
};
_Static_assert(sizeof(struct pkt_filter) == 68, "pkt_filter layout changed: update filter.rs");

/* Mirror: shared/src/pkt.rs (PktMeta). */
struct pkt_meta {
	__u8 eth_src[6];
	__u8 eth_dst[6];
	__u16 eth_type;     /* ethertype in the frame (outer), host order */
	__u16 l3_proto;     /* ethertype after VLAN tags, host order */
	__u16 vlan_id;
	__u8 vlan_prio;
	__u8 has_vlan;      /* 1 in-frame tag, 2 accelerated tag in skb */
	__u8 has_mac;
	__u8 family;        /* 4, 6, or 0 */
	__u8 l4proto;
	__u8 ttl;
	__u8 tos;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 tcp_flags;
	__u16 ip_id;        /* host order */
	__u16 ip_len;       /* tot_len (v4) or payload_len (v6), host order */
	__u16 frag_off;     /* host order, flags included */
	__u16 sport;        /* host order */
	__u16 dport;
	__u16 icmp_id;
	__u16 icmp_seq;
	__u16 mac_off;
	__u16 net_off;
	__u16 trans_off;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 ifindex;
	__u32 len;
	__u32 data_len;
	char ifname[16];
	__u8 l2_payload[32]; /* first bytes after L2 (ARP, other ethertypes); with
	                      * l2 parsing and no MAC header yet: from network_header */
};
_Static_assert(sizeof(struct pkt_meta) == 140, "pkt_meta layout changed: update pkt.rs");

struct sk_buff___pre62 {
	__u8 vlan_present : 1;
} __attribute__((preserve_access_index));

struct vlan_hdr_ {
	__be16 tci;
	__be16 proto;
};

static __always_inline bool skb_accel_vlan(struct sk_buff *skb, __u16 *tci, bool direct)
{
	*tci = RD(direct, skb, vlan_tci);
	if (bpf_core_field_exists(((struct sk_buff___pre62 *)skb)->vlan_present)) {
		if (direct)
			return BPF_CORE_READ_BITFIELD((struct sk_buff___pre62 *)skb, vlan_present);
		return BPF_CORE_READ_BITFIELD_PROBED((struct sk_buff___pre62 *)skb, vlan_present);
	}
	return RD(direct, skb, vlan_proto) != 0;
}

static __always_inline void parse_l4(unsigned char *l4, struct pkt_meta *m)
{
	if (m->l4proto == IPPROTO_TCP || m->l4proto == IPPROTO_UDP) {
		__be16 ports[2];
		if (!bpf_probe_read_kernel(ports, sizeof(ports), l4)) {
			m->sport = bpf_ntohs(ports[0]);
			m->dport = bpf_ntohs(ports[1]);
		}
		if (m->l4proto == IPPROTO_TCP)
			bpf_probe_read_kernel(&m->tcp_flags, 1, l4 + 13);
	} else if (m->l4proto == IPPROTO_ICMP || m->l4proto == IPPROTO_ICMPV6_) {
		struct icmphdr ic;
		if (!bpf_probe_read_kernel(&ic, sizeof(ic), l4)) {
			m->icmp_type = ic.type;
			m->icmp_code = ic.code;
			m->icmp_id = bpf_ntohs(ic.un.echo.id);
			m->icmp_seq = bpf_ntohs(ic.un.echo.sequence);
		}
	}
}

/* Fill m from skb. Returns false if nothing useful could be read. `l2` asks for
 * the Ethernet header (and in-frame VLAN tags) when the skb has one; `direct`:
 * skb is a BTF pointer (RD in common.h): use parse_skb_btf in tp_btf, fentry
 * and netfilter programs, parse_skb elsewhere. */
static __always_inline bool parse_skb_body(struct sk_buff *skb, struct pkt_meta *m, bool l2, bool direct)
{
	unsigned char *head = RD(direct, skb, head);
	__u16 mac = RD(direct, skb, mac_header);
	__u16 net = RD(direct, skb, network_header);
	__u16 proto = bpf_ntohs(RD(direct, skb, protocol));
	struct net_device *dev = RD(direct, skb, dev);
	__u16 tci;

	m->len = RD(direct, skb, len);
	m->data_len = RD(direct, skb, data_len);
	m->mac_off = mac;
	m->net_off = net;
	m->trans_off = RD(direct, skb, transport_header);
	if (dev) {
		m->ifindex = RD(direct, dev, ifindex);
		read_dev_name(dev, m->ifname, direct);
	}
	m->l3_proto = proto;
	m->eth_type = proto;
	if (skb_accel_vlan(skb, &tci, direct)) {
		m->has_vlan = 2;
		m->vlan_id = tci & 0x0fff;
		m->vlan_prio = tci >> 13;
	}

	if (l2 && mac != (__u16)~0U && (!net || net == (__u16)~0U || mac < net)) {
		struct ethhdr eth;
		if (!bpf_probe_read_kernel(&eth, sizeof(eth), head + mac)) {
			__u16 off = mac + sizeof(eth);
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
				if (bpf_probe_read_kernel(&vh, sizeof(vh), head + off))
					break;
				if (i == 0) { /* the outer tag names the VLAN */
					__u16 t = bpf_ntohs(vh.tci);
					m->has_vlan = 1;
					m->vlan_id = t & 0x0fff;
					m->vlan_prio = t >> 13;
				}
				m->l3_proto = bpf_ntohs(vh.proto);
				off += sizeof(vh);
			}
			/* In-frame tags shift the L3 header past what network_header says
			 * only when the stack has not set it yet. */
			if (!net || net == (__u16)~0U || net < off)
				net = off;
			m->net_off = net;
			bpf_probe_read_kernel(m->l2_payload, sizeof(m->l2_payload), head + off);
		}
	}
	if (!net || net == (__u16)~0U)
		return m->has_mac;
	/* e.g. ARP dropped on output before the device set the MAC header */
	if (l2 && !m->has_mac)
		bpf_probe_read_kernel(m->l2_payload, sizeof(m->l2_payload), head + net);

	if (m->l3_proto == ETH_P_IP) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + net))
			return m->has_mac;
		if (ip.version != 4)
			return m->has_mac;
		m->family = 4;
		m->l4proto = ip.protocol;
		m->ttl = ip.ttl;
		m->tos = ip.tos;
		m->ip_id = bpf_ntohs(ip.id);
		m->ip_len = bpf_ntohs(ip.tot_len);
		m->frag_off = bpf_ntohs(ip.frag_off);
		__builtin_memcpy(m->saddr, &ip.saddr, 4);
		__builtin_memcpy(m->daddr, &ip.daddr, 4);
		/* Only the first fragment carries the L4 header. */
		if (!(m->frag_off & 0x1fff))
			parse_l4(head + net + ip.ihl * 4, m);
		m->trans_off = net + ip.ihl * 4;
	} else if (m->l3_proto == ETH_P_IPV6) {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + net))
			return m->has_mac;
		m->family = 6;
		m->l4proto = ip6.nexthdr;
		m->ttl = ip6.hop_limit;
		m->ip_len = bpf_ntohs(ip6.payload_len);
		__builtin_memcpy(m->saddr, &ip6.saddr, 16);
		__builtin_memcpy(m->daddr, &ip6.daddr, 16);
		parse_l4(head + net + sizeof(ip6), m);
		m->trans_off = net + sizeof(ip6);
	}
	return true;
}

/* The NULL check comes before any read (nullable tracepoint arguments). */
static __always_inline bool parse_skb_(struct sk_buff *skb, struct pkt_meta *m, bool l2, bool direct)
{
	return skb && parse_skb_body(skb, m, l2, direct);
}

#define parse_skb(skb, m, l2) parse_skb_(skb, m, l2, false)
#define parse_skb_btf(skb, m, l2) parse_skb_(skb, m, l2, true)

static __always_inline bool addr_eq(const __u8 *a, const volatile __u8 *b, int n)
{
	for (int i = 0; i < n; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static __always_inline bool ifname_eq(const char *a, const volatile char *b)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (a[i] != b[i])
			return false;
		if (!a[i])
			return true;
	}
	return true;
}

/* The packet filter. IP and port conditions only restrict packets of the
 * matching family, except where the filter says ports need an L4 header. */
static __always_inline bool filter_match(const volatile struct pkt_filter *f, const struct pkt_meta *m)
{
	if (f->ipv4_only && m->family != 4)
		return false;
	if (f->ifindex && f->ifindex != m->ifindex)
		return false;
	if (f->ifname[0] && !ifname_eq(m->ifname, f->ifname))
		return false;
	if (f->vlan && (!m->has_vlan || f->vlan != m->vlan_id))
		return false;
	if (f->ethertype_other) {
		switch (m->l3_proto) {
		case ETH_P_IP: case ETH_P_IPV6: case ETH_P_ARP: case ETH_P_RARP:
		case 0x88CC: case 0x8808:
			return false;
		}
	} else if (f->ethertype && f->ethertype != m->l3_proto) {
		return false;
	}
	if (f->family && m->family && f->family != m->family)
		return false;
	if (m->family == 4) {
		if (f->has_saddr && !addr_eq(m->saddr, f->saddr, 4))
			return false;
		if (f->has_daddr && !addr_eq(m->daddr, f->daddr, 4))
			return false;
	} else if (m->family == 6) {
		if (f->has_saddr && !addr_eq(m->saddr, f->saddr, 16))
			return false;
		if (f->has_daddr && !addr_eq(m->daddr, f->daddr, 16))
			return false;
	}
	if (m->family) {
		if (f->l4proto && f->l4proto != m->l4proto)
			return false;
		if (f->sport || f->dport) {
			bool has_ports = m->l4proto == IPPROTO_TCP || m->l4proto == IPPROTO_UDP;
			if (!has_ports) {
				if (f->ports_need_l4)
					return false;
			} else {
				if (f->sport && f->sport != m->sport)
					return false;
				if (f->dport && f->dport != m->dport)
					return false;
			}
		}
	}
	return true;
}
