// SPDX-License-Identifier: GPL-2.0
/* ovs-upcall-execute: time from a datapath miss (ovs_dp_upcall, cmd MISS) to
 * the moment ovs-vswitchd hands the same packet back for execution
 * (ovs_flow_key_extract_userspace, called by OVS_PACKET_CMD_EXECUTE).
 *
 * Both ends parse the packet from skb->data (the datapath keeps it at the
 * Ethernet header; an executed packet has no header offsets yet) and build
 * the same key: ICMP (src, dst, type, id, seq), TCP (5-tuple, seq), UDP
 * (5-tuple, IP id). Pending upcalls live in an LRU hash, so upcalls that never
 * come back (vswitchd overloaded, "lost") cannot fill it. With --split, a
 * uretprobe on libc recvmsg in ovs-vswitchd notes when a handler thread read
 * the upcall (stripped vswitchd: no symbols needed). */
#define EVENT_MAX_SIZE 256
#include "common.h"
#include "skb.h"
#include "ovs.h"

struct up_key {
	__u32 saddr; /* network order */
	__u32 daddr;
	__u16 sport; /* TCP/UDP ports; ICMP: echo id in sport */
	__u16 dport;
	__u32 seq;   /* TCP seq, UDP IP id, ICMP echo seq */
	__u8 proto;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 pad;
};

struct up_val {
	__u64 ts;
	__u64 ts_recv;
	__s32 stack;
	__u32 portid;
	__u32 in_port;
	__u32 tid;
	char comm[16];
	char dev[16];
	__u8 cmd;
	__u8 has_cmd;
	__u8 has_key;
	__u8 pad[5];
};

/* Mirror: UpEvent in src/lib.rs. */
struct up_event {
	__u64 ts_upcall;
	__u64 ts_exec;
	__u64 ts_recv;
	__s32 up_stack;
	__s32 exec_stack;
	__u32 portid;
	__u32 in_port;
	__u32 up_tid;
	__u32 exec_tid;
	char up_comm[16];
	char exec_comm[16];
	char dev[16];
	struct up_key key;
	__u8 cmd;
	__u8 has_cmd;
	__u8 has_key;
	__u8 end_hook; /* 1 key_extract_userspace, 2 do_execute_action */
};

const volatile __u32 F_SADDR = 0; /* network order, 0 any */
const volatile __u32 F_DADDR = 0;
const volatile __u8 F_PROTO = 1;  /* 0 all, 1 icmp, 6 tcp, 17 udp */
const volatile bool want_stack = true;
const volatile __u32 vswitchd_tgid = 0;
const volatile __u16 packet_family = 0; /* genl id of ovs_packet */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct up_key);
	__type(value, struct up_val);
} pending SEC(".maps");

/* [0] upcalls matched, [1] non-MISS upcalls skipped, [2] completed, [3] handler reads (split) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

DECLARE_STACK_MAP(stacks, 4096);

static __always_inline void count(__u32 i)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &i);
	if (n)
		*n += 1;
}

/* Fill the key from a parsed packet; false if it is not one we time. */
static __always_inline bool key_of(struct pkt_meta *m, unsigned char *l4, struct up_key *k)
{
	if (m->family != 4)
		return false;
	if (F_PROTO && m->l4proto != F_PROTO)
		return false;
	if (m->l4proto != IPPROTO_ICMP && m->l4proto != IPPROTO_TCP && m->l4proto != IPPROTO_UDP)
		return false;
	__builtin_memcpy(&k->saddr, m->saddr, 4);
	__builtin_memcpy(&k->daddr, m->daddr, 4);
	if (F_SADDR && k->saddr != F_SADDR)
		return false;
	if (F_DADDR && k->daddr != F_DADDR)
		return false;
	k->proto = m->l4proto;
	if (m->l4proto == IPPROTO_ICMP) {
		k->icmp_type = m->icmp_type;
		k->icmp_code = m->icmp_code;
		k->sport = m->icmp_id;
		k->seq = m->icmp_seq;
	} else {
		k->sport = m->sport;
		k->dport = m->dport;
		if (m->l4proto == IPPROTO_TCP) {
			__be32 seq = 0;
			bpf_probe_read_kernel(&seq, sizeof(seq), l4 + 4);
			k->seq = bpf_ntohl(seq);
		} else {
			k->seq = m->ip_id;
		}
	}
	return true;
}

static __always_inline bool skb_key(struct sk_buff *skb, struct up_key *k, struct pkt_meta *m)
{
	if (!skb || !parse_skb_data(skb, m))
		return false;
	return key_of(m, BPF_CORE_READ(skb, data) + m->trans_off, k);
}

static __always_inline int on_upcall(void *ctx, struct sk_buff *skb, const struct sw_flow_key *fk,
				     const struct dp_upcall_info *info)
{
	struct pkt_meta m = {};
	struct up_key k = {};
	struct up_val v = {};
	struct ovs_key_info ki = {};

	if (info && bpf_core_type_exists(struct dp_upcall_info)) {
		v.has_cmd = 1;
		v.cmd = BPF_CORE_READ(info, cmd);
		v.portid = BPF_CORE_READ(info, portid);
		/* ACTION upcalls (controller, sFlow) never come back for execution. */
		if (v.cmd != OVS_PACKET_CMD_MISS) {
			count(1);
			return 0;
		}
	}
	if (!skb_key(skb, &k, &m))
		return 0;
	ovs_read_key(fk, &ki);
	v.has_key = ki.valid;
	v.in_port = ki.in_port;
	v.ts = bpf_ktime_get_ns();
	v.tid = (__u32)bpf_get_current_pid_tgid();
	bpf_get_current_comm(v.comm, sizeof(v.comm));
	__builtin_memcpy(v.dev, m.ifname, sizeof(v.dev));
	v.stack = want_stack ? get_stack_id(ctx, &stacks, 0) : -1;
	bpf_map_update_elem(&pending, &k, &v, BPF_ANY);
	count(0);
	return 0;
}

static __always_inline int on_execute(void *ctx, struct sk_buff *skb, __u8 hook)
{
	struct pkt_meta m = {};
	struct up_key k = {};
	struct up_val *v;
	struct up_event *e;

	if (!skb_key(skb, &k, &m))
		return 0;
	v = bpf_map_lookup_elem(&pending, &k);
	if (!v)
		return 0;
	e = event_reserve(sizeof(*e));
	if (e) {
		e->ts_exec = bpf_ktime_get_ns();
		e->ts_upcall = v->ts;
		e->ts_recv = v->ts_recv;
		e->up_stack = v->stack;
		e->exec_stack = want_stack ? get_stack_id(ctx, &stacks, 0) : -1;
		e->portid = v->portid;
		e->in_port = v->in_port;
		e->up_tid = v->tid;
		e->exec_tid = (__u32)bpf_get_current_pid_tgid();
		__builtin_memcpy(e->up_comm, v->comm, sizeof(e->up_comm));
		bpf_get_current_comm(e->exec_comm, sizeof(e->exec_comm));
		__builtin_memcpy(e->dev, v->dev, sizeof(e->dev));
		e->key = k;
		e->cmd = v->cmd;
		e->has_cmd = v->has_cmd;
		e->has_key = v->has_key;
		e->end_hook = hook;
		event_submit(ctx, e, sizeof(*e));
	}
	bpf_map_delete_elem(&pending, &k);
	count(2);
	return 0;
}

/* ---- start: the upcall ---- */
OVS_DP_UPCALL_PROGS(on_upcall)

/* ---- end: the packet comes back (OVS_PACKET_CMD_EXECUTE) ---- */
SEC("fentry/ovs_flow_key_extract_userspace")
int BPF_PROG(fentry_key_extract_userspace, void *net, const struct nlattr *attr, struct sk_buff *skb)
{
	return on_execute(ctx, skb, 1);
}

SEC("kprobe/ovs_flow_key_extract_userspace")
int BPF_KPROBE(kprobe_key_extract_userspace, void *net, const struct nlattr *attr, struct sk_buff *skb)
{
	return on_execute(ctx, skb, 1);
}

SEC("tp_btf/ovs_do_execute_action")
int BPF_PROG(tp_btf_ovs_do_execute_action, void *dp, struct sk_buff *skb, struct sw_flow_key *key,
	     const struct nlattr *a, int rem)
{
	return on_execute(ctx, skb, 2);
}

/* ---- --split: a handler thread of ovs-vswitchd reads the upcall ----
 * recvmsg(fd, msg, flags) in libc; on return the first iovec holds the
 * OVS_PACKET_CMD_MISS message: nlmsghdr, genlmsghdr, ovs_header, then
 * attributes with OVS_PACKET_ATTR_PACKET (1) last. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} recv_args SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(uprobe_recvmsg, int fd, struct user_msghdr *msg)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 p = (__u64)msg;
	if ((id >> 32) != vswitchd_tgid)
		return 0;
	bpf_map_update_elem(&recv_args, (__u32 *)&id, &p, BPF_ANY);
	return 0;
}

#define OVS_PACKET_ATTR_PACKET 1
#define MAX_RECV_ATTRS 12

SEC("uretprobe")
int BPF_KRETPROBE(uretprobe_recvmsg, long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	__u64 *pmsg = bpf_map_lookup_elem(&recv_args, &tid);
	struct user_msghdr msg;
	struct iovec iov;
	struct nlmsghdr nlh;
	__u8 cmd = 0;
	__u32 off = 24, end;
	unsigned char *base;

	if (!pmsg)
		return 0;
	bpf_map_delete_elem(&recv_args, &tid);
	if (ret < 24)
		return 0;
	if (bpf_probe_read_user(&msg, sizeof(msg), (void *)*pmsg))
		return 0;
	if (bpf_probe_read_user(&iov, sizeof(iov), msg.msg_iov))
		return 0;
	base = iov.iov_base;
	if (bpf_probe_read_user(&nlh, sizeof(nlh), base))
		return 0;
	bpf_probe_read_user(&cmd, 1, base + 16);
	if (nlh.nlmsg_type != packet_family || cmd != OVS_PACKET_CMD_MISS)
		return 0;
	end = nlh.nlmsg_len;
	if (end > ret)
		end = ret;
	if (end > iov.iov_len)
		end = iov.iov_len;
	for (int i = 0; i < MAX_RECV_ATTRS; i++) {
		struct nlattr a;
		if (off + 4 > end)
			return 0;
		if (bpf_probe_read_user(&a, sizeof(a), base + off))
			return 0;
		if (a.nla_len < 4)
			return 0;
		if ((a.nla_type & OVS_NLA_TYPE_MASK) == OVS_PACKET_ATTR_PACKET) {
			/* The frame: Ethernet, one optional VLAN tag, IPv4, L4. */
			unsigned char *p = base + off + 4;
			struct pkt_meta m = {};
			struct up_key k = {};
			struct up_val *v;
			__be16 proto;
			__u32 l3 = 14;
			struct iphdr ip;
			unsigned char *l4;

			if (bpf_probe_read_user(&proto, 2, p + 12))
				return 0;
			if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
				bpf_probe_read_user(&proto, 2, p + 16);
				l3 = 18;
			}
			if (proto != bpf_htons(ETH_P_IP))
				return 0;
			if (bpf_probe_read_user(&ip, sizeof(ip), p + l3))
				return 0;
			m.family = 4;
			m.l4proto = ip.protocol;
			m.ip_id = bpf_ntohs(ip.id);
			__builtin_memcpy(m.saddr, &ip.saddr, 4);
			__builtin_memcpy(m.daddr, &ip.daddr, 4);
			l4 = p + l3 + ip.ihl * 4;
			if (ip.protocol == IPPROTO_ICMP) {
				struct icmphdr ic;
				if (bpf_probe_read_user(&ic, sizeof(ic), l4))
					return 0;
				m.icmp_type = ic.type;
				m.icmp_code = ic.code;
				m.icmp_id = bpf_ntohs(ic.un.echo.id);
				m.icmp_seq = bpf_ntohs(ic.un.echo.sequence);
			} else if (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) {
				__be16 ports[2];
				if (bpf_probe_read_user(ports, sizeof(ports), l4))
					return 0;
				m.sport = bpf_ntohs(ports[0]);
				m.dport = bpf_ntohs(ports[1]);
			}
			if (!key_of(&m, 0, &k))
				return 0;
			if (k.proto == IPPROTO_TCP) {
				__be32 seq = 0;
				bpf_probe_read_user(&seq, sizeof(seq), l4 + 4);
				k.seq = bpf_ntohl(seq);
			}
			v = bpf_map_lookup_elem(&pending, &k);
			if (v && !v->ts_recv) {
				v->ts_recv = bpf_ktime_get_ns();
				count(3);
			}
			return 0;
		}
		off += (a.nla_len + 3) & ~3U;
	}
	return 0;
}
