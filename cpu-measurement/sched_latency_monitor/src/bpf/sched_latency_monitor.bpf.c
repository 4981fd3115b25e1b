// SPDX-License-Identifier: GPL-2.0
/* sched_latency_monitor: `perf sched latency` semantics, natively. For threads
 * of the target processes (targets[tgid], filled by user space every window):
 * a wake-up of a sleeping thread starts a wait, switch-in ends it (DELAY event);
 * switch-out ends a run slice (RUN event) and starts a wait if the thread was
 * preempted (still runnable) or a sleep otherwise. */
#define EVENT_MAX_SIZE 64
#define EVENTS_RINGBUF_BYTES (8 * 1024 * 1024)
#include "sched.h"

#define ST_RUNNING 1
#define ST_WAITING 2
#define ST_SLEEPING 3

#define EV_RUN 1
#define EV_DELAY 2

/* Mirror: ThreadState in src/lib.rs. */
struct tstate {
	__u64 ts; /* RUNNING: on CPU since; WAITING: runnable since */
	__u32 state;
	__u32 tgid;
	char comm[16];
};

/* Mirror: SlEvent in src/lib.rs. */
struct sl_event {
	__u8 type;
	__u8 pad[3];
	__u32 tid;
	__u32 tgid;
	__u32 cpu;
	__u64 start;
	__u64 end;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct tstate);
} st SEC(".maps");

static __always_inline bool is_target(__u32 tgid)
{
	return tgid && bpf_map_lookup_elem(&targets, &tgid);
}

static __always_inline void emit(void *ctx, __u8 type, __u32 tid, __u32 tgid, __u64 start,
				 __u64 end, const char *comm)
{
	struct sl_event *e = event_reserve(sizeof(*e));
	if (!e)
		return;
	e->type = type;
	e->tid = tid;
	e->tgid = tgid;
	e->cpu = bpf_get_smp_processor_id();
	e->start = start;
	e->end = end;
	__builtin_memcpy(e->comm, comm, 16);
	event_submit(ctx, e, sizeof(*e));
}

static __always_inline int on_switch(void *ctx, const struct sched_sw *s)
{
	__u64 now = bpf_ktime_get_ns();
	struct tstate n = {}, *t;
	__u32 tid;

	if (s->prev_pid && is_target(s->prev_tgid)) {
		tid = s->prev_pid;
		t = bpf_map_lookup_elem(&st, &tid);
		if (t && t->state == ST_RUNNING)
			emit(ctx, EV_RUN, tid, s->prev_tgid, t->ts, now, s->prev_comm);
		n.ts = now;
		n.state = (s->preempt || s->prev_state == 0) ? ST_WAITING : ST_SLEEPING;
		n.tgid = s->prev_tgid;
		__builtin_memcpy(n.comm, s->prev_comm, 16);
		bpf_map_update_elem(&st, &tid, &n, BPF_ANY);
	}
	if (s->next_pid && is_target(s->next_tgid)) {
		tid = s->next_pid;
		t = bpf_map_lookup_elem(&st, &tid);
		if (t && t->state == ST_WAITING)
			emit(ctx, EV_DELAY, tid, s->next_tgid, t->ts, now, s->next_comm);
		n.ts = now;
		n.state = ST_RUNNING;
		n.tgid = s->next_tgid;
		__builtin_memcpy(n.comm, s->next_comm, 16);
		bpf_map_update_elem(&st, &tid, &n, BPF_ANY);
	}
	return 0;
}

static __always_inline int on_wakeup(void *ctx, __u32 pid, __u32 tgid)
{
	struct tstate *t;

	if (!is_target(tgid))
		return 0;
	t = bpf_map_lookup_elem(&st, &pid);
	/* perf ignores a wake-up of a thread that is not sleeping */
	if (t && t->state == ST_SLEEPING) {
		t->ts = bpf_ktime_get_ns();
		t->state = ST_WAITING;
	}
	return 0;
}

SCHED_SWITCH_PROGRAMS(on_switch)
SCHED_WAKEUP_PROGRAMS(on_wakeup)
