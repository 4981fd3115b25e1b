// SPDX-License-Identifier: GPL-2.0
/* ovs_userspace_megaflow_kernel_parse: as ovs_userspace_megaflow, but the flow
 * put is decoded here instead of copied: ovs_flow_cmd_new(skb, info) finds
 * the attributes already parsed by the genl core in info->attrs[] (indexed by
 * type); the nested KEY and MASK lists are walked (up to 32 attributes each)
 * into fixed slots, the ACTIONS list into a count and the first 8 types with
 * their first 32-bit argument. Filters run here, for upcalls and flows;
 * counters of everything seen are kept for the summary. */
#define EVENT_MAX_SIZE 512
#include "common.h"
#include "skb.h"
#include "ovs.h"

#define EV_UPCALL 1
#define EV_FLOW 3
#define MAX_ATTRS 32
#define MAX_ACTS 8

/* Mirror: UpEvent in ovs_userspace_megaflow (same record). */
struct up_event {
	__u8 type;
	__u8 cmd;
	__u8 has_info;
	__u8 key_valid;
	__u32 tgid;
	__u32 tid;
	__u32 portid;
	__u32 in_port;
	__u32 mark;
	__u16 mru;
	__u8 parsed;
	__u8 match;
	__u32 recirc_id;
	__u64 ts_ns;
	char comm[16];
	struct pkt_meta pkt;
};

/* Mirror: KeyBlob in src/lib.rs. */
struct key_blob {
	__u64 present; /* bit t set: attribute type t was in the list */
	__u32 recirc_id;
	__u32 skb_mark;
	__u32 in_port;
	__u32 priority;
	__u32 dp_hash;
	__u32 ct_state;
	__u32 ct_mark;
	__u16 ct_zone;
	__u16 eth_type;  /* network order, as in the attribute */
	__u16 tcp_flags; /* network order */
	__u16 pad;
	__u8 eth[12];
	__u8 ipv4[12];
	__u8 ipv6[40];
	__u8 l4[4];
	__u8 icmp[2];
	__u8 pad2[2];
	__u8 arp[24];
};

/* Mirror: FlowEvent in src/lib.rs. */
struct flow_event {
	__u8 type;
	__u8 has_key;
	__u8 has_mask;
	__u8 has_actions;
	__u32 tgid;
	__u32 tid;
	__u32 portid;
	__s32 dp_ifindex;
	__u32 n_actions;
	__u16 act_type[MAX_ACTS];
	__u32 act_arg[MAX_ACTS];
	__u64 ts_ns;
	char comm[16];
	struct key_blob key;
	struct key_blob mask;
	__u8 ufid[16];
	__u8 has_ufid;
	__u8 match;
	__u8 pad[6];
};

/* Filters (all optional, AND-ed), and whether non-matching events go out (--debug). */
const volatile bool f_eth_src = false, f_eth_dst = false, f_eth_type = false, f_ip_src = false,
		    f_ip_dst = false, f_ip_proto = false, f_sport = false, f_dport = false;
const volatile __u8 F_ETH_SRC[6] = {}, F_ETH_DST[6] = {};
const volatile __u16 F_ETH_TYPE = 0, F_SPORT = 0, F_DPORT = 0; /* host order */
const volatile __u32 F_IP_SRC = 0, F_IP_DST = 0;              /* network order */
const volatile __u8 F_IP_PROTO = 0;
const volatile bool emit_all = false;

/* [0] upcalls [1] matching upcalls [2] flow puts [3] matching flow puts */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_event);
} flow_buf SEC(".maps");

static __always_inline void count(__u32 i)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &i);
	if (n)
		*n += 1;
}

static __always_inline bool mac_eq(const __u8 *a, const volatile __u8 *b)
{
#pragma unroll
	for (int i = 0; i < 6; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

/* The filter on (eth src/dst, eth type, IPv4 src/dst/proto, ports); `has_*`
 * say whether the event carries the field (a missing field never matches). */
static __always_inline bool match(const __u8 *src, const __u8 *dst, bool has_eth, __u16 type,
				  bool has_ip, __u32 saddr, __u32 daddr, __u8 proto, bool has_ports,
				  __u16 sport, __u16 dport)
{
	if (f_eth_src && (!has_eth || !mac_eq(src, F_ETH_SRC)))
		return false;
	if (f_eth_dst && (!has_eth || !mac_eq(dst, F_ETH_DST)))
		return false;
	if (f_eth_type && (!has_eth || type != F_ETH_TYPE))
		return false;
	if (f_ip_src && (!has_ip || saddr != F_IP_SRC))
		return false;
	if (f_ip_dst && (!has_ip || daddr != F_IP_DST))
		return false;
	if (f_ip_proto && (!has_ip || proto != F_IP_PROTO))
		return false;
	if (f_sport && (!has_ports || sport != F_SPORT))
		return false;
	if (f_dport && (!has_ports || dport != F_DPORT))
		return false;
	return true;
}

static __always_inline int on_upcall(void *ctx, struct sk_buff *skb, const struct sw_flow_key *key,
				     const struct dp_upcall_info *info)
{
	struct up_event *e;
	struct ovs_key_info ki = {};
	struct pkt_meta m = {};
	__u32 sa = 0, da = 0;
	__u64 id;
	bool ok;

	if (!skb)
		return 0;
	count(0);
	bool parsed = parse_skb_data(skb, &m);
	__builtin_memcpy(&sa, m.saddr, 4);
	__builtin_memcpy(&da, m.daddr, 4);
	ok = match(m.eth_src, m.eth_dst, m.has_mac, m.l3_proto, m.family == 4, sa, da, m.l4proto,
		   m.family && (m.l4proto == IPPROTO_TCP || m.l4proto == IPPROTO_UDP), m.sport, m.dport);
	if (ok)
		count(1);
	if (!ok && !emit_all)
		return 0;
	e = event_reserve(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->type = EV_UPCALL;
	e->match = ok;
	e->ts_ns = bpf_ktime_get_ns();
	id = bpf_get_current_pid_tgid();
	e->tgid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (info && bpf_core_type_exists(struct dp_upcall_info)) {
		e->has_info = 1;
		e->cmd = BPF_CORE_READ(info, cmd);
		e->portid = BPF_CORE_READ(info, portid);
		e->mru = BPF_CORE_READ(info, mru);
	}
	ovs_read_key(key, &ki);
	e->key_valid = ki.valid;
	e->in_port = ki.in_port;
	e->recirc_id = ki.recirc_id;
	e->mark = BPF_CORE_READ(skb, mark);
	e->parsed = parsed ? 0 : 1;
	__builtin_memcpy(&e->pkt, &m, sizeof(m));
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

OVS_DP_UPCALL_PROGS(on_upcall)

/* Copy attribute payload `d` of length `dl` into `dst` if it has `want` bytes. */
#define TAKE(dst, want)                                                        \
	do {                                                                   \
		if (dl >= (want))                                              \
			bpf_probe_read_kernel((dst), (want), d);               \
	} while (0)

static __always_inline void walk_key(const struct nlattr *nla, struct key_blob *k)
{
	__u32 off = 0, end;
	const __u8 *p;

	if (!nla)
		return;
	end = BPF_CORE_READ(nla, nla_len);
	if (end < 4)
		return;
	end -= 4;
	p = (const __u8 *)nla + 4;
	for (int i = 0; i < MAX_ATTRS; i++) {
		struct nlattr a;
		const __u8 *d;
		__u32 dl;
		__u16 t;

		if (off + 4 > end || off > 0xffff)
			break;
		if (bpf_probe_read_kernel(&a, sizeof(a), p + off))
			break;
		if (a.nla_len < 4)
			break;
		t = a.nla_type & OVS_NLA_TYPE_MASK;
		d = p + off + 4;
		dl = a.nla_len - 4;
		if (t < 64)
			k->present |= 1ULL << t;
		switch (t) {
		case 2: TAKE(&k->priority, 4); break;
		case 3: TAKE(&k->in_port, 4); break;
		case 4: TAKE(k->eth, 12); break;
		case 6: TAKE(&k->eth_type, 2); break;
		case 7: TAKE(k->ipv4, 12); break;
		case 8: TAKE(k->ipv6, 40); break;
		case 9:
		case 10:
		case 17: TAKE(k->l4, 4); break;
		case 11:
		case 12: TAKE(k->icmp, 2); break;
		case 13: TAKE(k->arp, 24); break;
		case 15: TAKE(&k->skb_mark, 4); break;
		case 18: TAKE(&k->tcp_flags, 2); break;
		case 19: TAKE(&k->dp_hash, 4); break;
		case 20: TAKE(&k->recirc_id, 4); break;
		case 22: TAKE(&k->ct_state, 4); break;
		case 23: TAKE(&k->ct_zone, 2); break;
		case 24: TAKE(&k->ct_mark, 4); break;
		}
		off += (a.nla_len + 3) & ~3U;
	}
}

static __always_inline void walk_actions(const struct nlattr *nla, struct flow_event *e)
{
	__u32 off = 0, end;
	const __u8 *p;

	if (!nla)
		return;
	end = BPF_CORE_READ(nla, nla_len);
	if (end < 4)
		return;
	end -= 4;
	p = (const __u8 *)nla + 4;
	for (int i = 0; i < MAX_ATTRS; i++) {
		struct nlattr a;

		if (off + 4 > end || off > 0xffff)
			break;
		if (bpf_probe_read_kernel(&a, sizeof(a), p + off))
			break;
		if (a.nla_len < 4)
			break;
		if (i < MAX_ACTS) {
			e->act_type[i] = a.nla_type & OVS_NLA_TYPE_MASK;
			if (a.nla_len >= 8)
				bpf_probe_read_kernel(&e->act_arg[i], 4, p + off + 4);
		}
		e->n_actions++;
		off += (a.nla_len + 3) & ~3U;
	}
}

#define OVS_FLOW_ATTR_KEY 1
#define OVS_FLOW_ATTR_ACTIONS 2
#define OVS_FLOW_ATTR_MASK 7
#define OVS_FLOW_ATTR_UFID 9

static __always_inline int on_flow_new(void *ctx, struct genl_info *info)
{
	__u32 zero = 0;
	struct flow_event *e = bpf_map_lookup_elem(&flow_buf, &zero);
	struct nlattr **attrs;
	const struct nlattr *ka = NULL, *ma = NULL, *aa = NULL, *ua = NULL;
	const struct nlmsghdr *nlh;
	__u64 id;
	bool ok;

	if (!e || !info)
		return 0;
	count(2);
	__builtin_memset(e, 0, sizeof(*e));
	e->type = EV_FLOW;
	e->ts_ns = bpf_ktime_get_ns();
	id = bpf_get_current_pid_tgid();
	e->tgid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->portid = BPF_CORE_READ(info, snd_portid);
	nlh = BPF_CORE_READ(info, nlhdr);
	/* struct ovs_header { int dp_ifindex; } right after nlmsghdr + genlmsghdr */
	bpf_probe_read_kernel(&e->dp_ifindex, 4, (const __u8 *)nlh + 20);
	attrs = BPF_CORE_READ(info, attrs);
	if (attrs) {
		bpf_probe_read_kernel(&ka, sizeof(ka), &attrs[OVS_FLOW_ATTR_KEY]);
		bpf_probe_read_kernel(&aa, sizeof(aa), &attrs[OVS_FLOW_ATTR_ACTIONS]);
		bpf_probe_read_kernel(&ma, sizeof(ma), &attrs[OVS_FLOW_ATTR_MASK]);
		bpf_probe_read_kernel(&ua, sizeof(ua), &attrs[OVS_FLOW_ATTR_UFID]);
	}
	e->has_key = ka != NULL;
	e->has_mask = ma != NULL;
	e->has_actions = aa != NULL;
	walk_key(ka, &e->key);
	walk_key(ma, &e->mask);
	walk_actions(aa, e);
	if (ua && BPF_CORE_READ(ua, nla_len) >= 20) {
		bpf_probe_read_kernel(e->ufid, 16, (const __u8 *)ua + 4);
		e->has_ufid = 1;
	}
	struct key_blob *k = &e->key;
	__u32 sa = 0, da = 0;
	__builtin_memcpy(&sa, k->ipv4, 4);
	__builtin_memcpy(&da, k->ipv4 + 4, 4);
	bool has_ports = k->present & ((1ULL << 9) | (1ULL << 10) | (1ULL << 17));
	ok = match(k->eth, k->eth + 6, k->present & (1ULL << 4), bpf_ntohs(k->eth_type),
		   k->present & (1ULL << 7), sa, da, k->ipv4[8], has_ports,
		   ((__u16)k->l4[0] << 8) | k->l4[1], ((__u16)k->l4[2] << 8) | k->l4[3]);
	if (ok)
		count(3);
	if (!ok && !emit_all)
		return 0;
	e->match = ok;
	if (use_perfbuf) {
		if (bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, e, sizeof(*e)))
			count_lost_event();
	} else if (bpf_ringbuf_output(&events, e, sizeof(*e), 0)) {
		count_lost_event();
	}
	return 0;
}

SEC("fentry/ovs_flow_cmd_new")
int BPF_PROG(fentry_ovs_flow_cmd_new, struct sk_buff *skb, struct genl_info *info)
{
	return on_flow_new(ctx, info);
}

SEC("kprobe/ovs_flow_cmd_new")
int BPF_KPROBE(kprobe_ovs_flow_cmd_new, struct sk_buff *skb, struct genl_info *info)
{
	return on_flow_new(ctx, info);
}
