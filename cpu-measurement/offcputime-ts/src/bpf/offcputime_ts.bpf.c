// SPDX-License-Identifier: GPL-2.0
/* offcputime-ts: off-CPU time per (thread, user stack, kernel stack) on
 * sched_switch (libbpf-tools offcputime design; the original used a kprobe on
 * finish_task_switch). At switch-out prev's stacks are captured in its own
 * context and stored with the time; at switch-in the blocked time is added to
 * counts[key]. */
#define EVENT_MAX_SIZE 64
#define EVENTS_RINGBUF_BYTES (64 * 1024)
#include "sched.h"

const volatile bool filter_tgid = false;
const volatile bool filter_tid = false;
const volatile bool user_threads_only = false;
const volatile bool kernel_threads_only = false;
const volatile bool user_stacks_only = false;
const volatile bool kernel_stacks_only = false;
const volatile bool filter_state = false;
const volatile __u64 state_mask = 0;
const volatile __u64 min_us = 1;
const volatile __u64 max_us = (__u64)-1;

/* Mirror: StartVal / CountKey / WarnEvent in src/lib.rs. */
struct start_val {
	__u64 ts;
	__u32 tgid;
	__s32 ustack_id;
	__s32 kstack_id;
	__u32 pad;
	char comm[16];
};

struct count_key {
	__u32 tid;
	__u32 tgid;
	__s32 ustack_id;
	__s32 kstack_id;
	char comm[16];
};

struct warn_event {
	__u32 pid;
	__u32 tgid;
	__u64 off_ts;
	__u64 on_ts;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} allowed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct start_val);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct count_key);
	__type(value, __u64);
} counts SEC(".maps");

DECLARE_STACK_MAP(stacks, 16384);

static __always_inline bool allowed_prev(const struct sched_sw *s)
{
	__u32 id;

	if (s->prev_pid == 0)
		return false;
	if (filter_tgid) {
		id = s->prev_tgid;
		if (!bpf_map_lookup_elem(&allowed, &id))
			return false;
	}
	if (filter_tid) {
		id = s->prev_pid;
		if (!bpf_map_lookup_elem(&allowed, &id))
			return false;
	}
	if (user_threads_only && (s->prev_flags & PF_KTHREAD_))
		return false;
	if (kernel_threads_only && !(s->prev_flags & PF_KTHREAD_))
		return false;
	if (filter_state) {
		if (state_mask == 0) {
			if (s->prev_state != 0)
				return false;
		} else if (!(s->prev_state & state_mask)) {
			return false;
		}
	}
	return true;
}

static __always_inline int on_switch(void *ctx, const struct sched_sw *s)
{
	__u64 now = bpf_ktime_get_ns(), delta, *n;
	struct start_val sv = {}, *st;
	struct count_key k = {};
	__u32 next = s->next_pid;

	if (allowed_prev(s)) {
		sv.ts = now;
		sv.tgid = s->prev_tgid;
		sv.ustack_id = kernel_stacks_only ? -1 : get_stack_id(ctx, &stacks, BPF_F_USER_STACK);
		sv.kstack_id = user_stacks_only ? -1 : get_stack_id(ctx, &stacks, 0);
		__builtin_memcpy(sv.comm, s->prev_comm, 16);
		bpf_map_update_elem(&start, &s->prev_pid, &sv, BPF_ANY);
	}
	if (next == 0)
		return 0;
	st = bpf_map_lookup_elem(&start, &next);
	if (!st)
		return 0;
	if (now < st->ts) {
		struct warn_event *e = event_reserve(sizeof(*e));
		if (e) {
			e->pid = next;
			e->tgid = st->tgid;
			e->off_ts = st->ts;
			e->on_ts = now;
			event_submit(ctx, e, sizeof(*e));
		}
		bpf_map_delete_elem(&start, &next);
		return 0;
	}
	delta = (now - st->ts) / 1000;
	k.tid = next;
	k.tgid = st->tgid;
	k.ustack_id = st->ustack_id;
	k.kstack_id = st->kstack_id;
	__builtin_memcpy(k.comm, st->comm, 16);
	bpf_map_delete_elem(&start, &next);
	if (delta < min_us || delta > max_us)
		return 0;
	n = bpf_map_lookup_elem(&counts, &k);
	if (n) {
		__sync_fetch_and_add(n, delta);
		return 0;
	}
	if (bpf_map_update_elem(&counts, &k, &delta, BPF_NOEXIST)) {
		n = bpf_map_lookup_elem(&counts, &k);
		if (n)
			__sync_fetch_and_add(n, delta);
	}
	return 0;
}

SCHED_SWITCH_PROGRAMS(on_switch)
