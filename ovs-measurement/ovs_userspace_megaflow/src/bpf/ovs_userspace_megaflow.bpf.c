// SPDX-License-Identifier: GPL-2.0
/* ovs_userspace_megaflow: upcalls (the packet that missed) and the flow puts
 * ovs-vswitchd answers with (OVS_FLOW_CMD_NEW: key, mask, actions), copied
 * whole for user space to decode.
 *
 * Flow puts: in the kernel, ovs_flow_cmd_new(skb, info) runs in the sending
 * handler thread; the message is copied from info->nlhdr for nlmsg_len bytes
 * (not skb->len: a batched sendmsg puts several messages in one skb). Where
 * the kernel cannot be probed there, a uprobe on libc's sendmsg in
 * ovs-vswitchd copies the same message from the sender's iovecs (Debian's
 * vswitchd is stripped: no symbols or USDT are needed). */
#define EVENT_MAX_SIZE 256
#define EVENTS_RINGBUF_BYTES (4 * 1024 * 1024)
#include "common.h"
#include "skb.h"
#include "ovs.h"

#define MSG_MAX 8192
#define EV_UPCALL 1
#define EV_FLOW 2
#define OVS_FLOW_CMD_NEW 1

/* Mirror: UpEvent in src/lib.rs. */
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
	__u8 pad;
	__u32 recirc_id;
	__u64 ts_ns;
	char comm[16];
	struct pkt_meta pkt;
};

/* Mirror: FlowHdr in src/lib.rs; `data` follows. */
struct flow_event {
	__u8 type;
	__u8 source; /* 1 kernel (ovs_flow_cmd_new), 2 sendmsg in vswitchd */
	__u16 pad;
	__u32 tgid;
	__u32 tid;
	__u32 portid;
	__u32 skb_len;
	__u32 msg_len;
	__u32 copied;
	__u32 pad2;
	__u64 ts_ns;
	char comm[16];
	__u8 data[MSG_MAX];
};

const volatile __u32 vswitchd_tgid = 0;
const volatile __u16 flow_family = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_event);
} flow_buf SEC(".maps");

static __always_inline int on_upcall(void *ctx, struct sk_buff *skb, const struct sw_flow_key *key,
				     const struct dp_upcall_info *info)
{
	struct up_event *e;
	struct ovs_key_info ki = {};
	__u64 id;

	if (!skb)
		return 0;
	e = event_reserve(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->type = EV_UPCALL;
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
	e->parsed = parse_skb_data(skb, &e->pkt) ? 0 : 1;
	event_submit(ctx, e, sizeof(*e));
	return 0;
}

OVS_DP_UPCALL_PROGS(on_upcall)

static __always_inline struct flow_event *flow_start(__u8 source)
{
	__u32 zero = 0;
	struct flow_event *e = bpf_map_lookup_elem(&flow_buf, &zero);
	__u64 id;

	if (!e)
		return NULL;
	e->type = EV_FLOW;
	e->source = source;
	e->ts_ns = bpf_ktime_get_ns();
	id = bpf_get_current_pid_tgid();
	e->tgid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

static __always_inline void flow_emit(void *ctx, struct flow_event *e)
{
	/* 64-bit: 32-bit copies get zero-extended into new registers and the
	 * 6.1 verifier loses the bound on the way. */
	__u64 n = e->copied;
	__u64 size;

	if (n > MSG_MAX)
		n = MSG_MAX;
	/* The compiler would prove the bound and drop the check below, which the
	 * verifier needs on the register that becomes the length. */
	asm volatile("" : "+r"(n));
	if (n > MSG_MAX)
		return;
	size = offsetof(struct flow_event, data) + n;
	if (use_perfbuf) {
		if (bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, e, size))
			count_lost_event();
	} else if (bpf_ringbuf_output(&events, e, size, 0)) {
		count_lost_event();
	}
}

static __always_inline int on_flow_new(void *ctx, struct sk_buff *skb, struct genl_info *info)
{
	struct flow_event *e;
	const struct nlmsghdr *nlh;
	__u32 len;

	if (!info)
		return 0;
	e = flow_start(1);
	if (!e)
		return 0;
	nlh = BPF_CORE_READ(info, nlhdr);
	e->portid = BPF_CORE_READ(info, snd_portid);
	e->skb_len = skb ? BPF_CORE_READ(skb, len) : 0;
	len = BPF_CORE_READ(nlh, nlmsg_len);
	e->msg_len = len;
	if (len > MSG_MAX)
		len = MSG_MAX;
	e->copied = 0;
	if (bpf_probe_read_kernel(e->data, len, nlh) == 0)
		e->copied = len;
	flow_emit(ctx, e);
	return 0;
}

SEC("fentry/ovs_flow_cmd_new")
int BPF_PROG(fentry_ovs_flow_cmd_new, struct sk_buff *skb, struct genl_info *info)
{
	return on_flow_new(ctx, skb, info);
}

SEC("kprobe/ovs_flow_cmd_new")
int BPF_KPROBE(kprobe_ovs_flow_cmd_new, struct sk_buff *skb, struct genl_info *info)
{
	return on_flow_new(ctx, skb, info);
}

/* sendmsg(fd, msg, flags) in ovs-vswitchd: one netlink message per iovec
 * (nl_sock_transact_multiple); copy the OVS_FLOW_CMD_NEW ones. */
#define MAX_IOV 8
SEC("uprobe")
int BPF_KPROBE(uprobe_sendmsg, int fd, const struct user_msghdr *msg)
{
	struct user_msghdr mh;
	__u64 id = bpf_get_current_pid_tgid();

	if ((id >> 32) != vswitchd_tgid)
		return 0;
	if (bpf_probe_read_user(&mh, sizeof(mh), msg))
		return 0;
	for (int i = 0; i < MAX_IOV; i++) {
		struct iovec iov;
		struct nlmsghdr nlh;
		__u8 cmd = 0;
		struct flow_event *e;
		__u64 len;

		if (i >= mh.msg_iovlen)
			break;
		if (bpf_probe_read_user(&iov, sizeof(iov), &mh.msg_iov[i]))
			break;
		if (iov.iov_len < 20 || bpf_probe_read_user(&nlh, sizeof(nlh), iov.iov_base))
			continue;
		bpf_probe_read_user(&cmd, 1, iov.iov_base + 16);
		if (nlh.nlmsg_type != flow_family || cmd != OVS_FLOW_CMD_NEW)
			continue;
		e = flow_start(2);
		if (!e)
			return 0;
		e->portid = nlh.nlmsg_pid;
		e->skb_len = iov.iov_len;
		e->msg_len = nlh.nlmsg_len;
		len = nlh.nlmsg_len;
		if (len > iov.iov_len)
			len = iov.iov_len;
		if (len > MSG_MAX)
			len = MSG_MAX;
		/* 6.1: keep the bound on the register passed as the size (the
		 * compiler would otherwise reuse an unbounded copy). */
		asm volatile("" : "+r"(len));
		if (len > MSG_MAX)
			continue;
		e->copied = 0;
		if (bpf_probe_read_user(e->data, len, iov.iov_base) == 0)
			e->copied = len;
		flow_emit(ctx, e);
	}
	return 0;
}
