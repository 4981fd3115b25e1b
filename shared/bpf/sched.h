/* SPDX-License-Identifier: GPL-2.0 */
/* Scheduler hooks with the attach fallback chain tp_btf -> raw_tp -> tracepoint
 * (Rust side: shared::sched::{SCHED_SWITCH, SCHED_WAKEUP, SCHED_WAKEUP_NEW}).
 *
 * A tool writes its handlers and then instantiates the programs:
 *
 *   static __always_inline int on_switch(void *ctx, const struct sched_sw *s) {...}
 *   static __always_inline int on_wakeup(void *ctx, __u32 pid, __u32 tgid) {...}
 *   SCHED_SWITCH_PROGRAMS(on_switch)
 *   SCHED_WAKEUP_PROGRAMS(on_wakeup)
 *
 * Every program runs in the context of the task being switched out (prev), so
 * bpf_get_stackid(ctx, ...) there captures prev's stacks. Only the programs the
 * hook plan chose are loaded. */
#pragma once
#include "common.h"

#define PF_KTHREAD_ 0x00200000
#define TASK_REPORT_MAX_ 0x100

struct sched_sw {
	__u32 prev_pid;
	__u32 prev_tgid;
	__u32 next_pid;
	__u32 next_tgid;   /* 0 when unknown (classic tracepoint, task never seen) */
	__u64 prev_state;  /* task state at switch-out (0 = TASK_RUNNING) */
	__u32 prev_flags;  /* task->flags (PF_KTHREAD...) */
	__u8 preempt;      /* prev was preempted: still runnable */
	__u8 pad[3];
	char prev_comm[16];
	char next_comm[16];
};

/* Task state, CO-RE: `__state` since 5.14, `state` before. */
struct task_struct___old {
	long state;
} __attribute__((preserve_access_index));

static __always_inline __u64 task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___old *)t, state);
}

/* tid -> tgid of tasks seen, for the classic tracepoint (which names the
 * switched-in and the woken task by pid only). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} sched_tgid_cache SEC(".maps");

static __always_inline void sched_fill_btf(struct sched_sw *s, bool preempt,
					   struct task_struct *prev,
					   struct task_struct *next, __u64 state)
{
	s->prev_pid = BPF_CORE_READ(prev, pid);
	s->prev_tgid = BPF_CORE_READ(prev, tgid);
	s->next_pid = BPF_CORE_READ(next, pid);
	s->next_tgid = BPF_CORE_READ(next, tgid);
	s->prev_state = preempt ? 0 : state;
	s->prev_flags = BPF_CORE_READ(prev, flags);
	s->preempt = preempt;
	BPF_CORE_READ_STR_INTO(&s->prev_comm, prev, comm);
	BPF_CORE_READ_STR_INTO(&s->next_comm, next, comm);
}

static __always_inline void sched_fill_tp(struct sched_sw *s,
					  struct trace_event_raw_sched_switch *a)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_struct *cur = (struct task_struct *)bpf_get_current_task();
	__u32 next = a->next_pid, *tg;
	long st = a->prev_state;

	s->prev_pid = (__u32)id;
	s->prev_tgid = id >> 32;
	s->next_pid = next;
	tg = bpf_map_lookup_elem(&sched_tgid_cache, &next);
	s->next_tgid = next == 0 ? 0 : (tg ? *tg : 0);
	s->preempt = (st & TASK_REPORT_MAX_) != 0;
	s->prev_state = s->preempt ? 0 : (st & (TASK_REPORT_MAX_ - 1));
	s->prev_flags = BPF_CORE_READ(cur, flags);
	bpf_probe_read_kernel(&s->prev_comm, 16, a->prev_comm);
	bpf_probe_read_kernel(&s->next_comm, 16, a->next_comm);
	if (s->prev_pid)
		bpf_map_update_elem(&sched_tgid_cache, &s->prev_pid, &s->prev_tgid, BPF_ANY);
}

#define SCHED_SWITCH_PROGRAMS(handler)                                               \
	SEC("tp_btf/sched_switch")                                                   \
	int BPF_PROG(sched_switch_btf, bool preempt, struct task_struct *prev,        \
		     struct task_struct *next, unsigned int prev_state)               \
	{                                                                            \
		struct sched_sw s = {};                                              \
		sched_fill_btf(&s, preempt, prev, next, prev_state);                 \
		return handler(ctx, &s);                                             \
	}                                                                            \
	SEC("raw_tp/sched_switch")                                                   \
	int BPF_PROG(sched_switch_raw, bool preempt, struct task_struct *prev,        \
		     struct task_struct *next)                                        \
	{                                                                            \
		struct sched_sw s = {};                                              \
		sched_fill_btf(&s, preempt, prev, next, task_state(prev));           \
		return handler(ctx, &s);                                             \
	}                                                                            \
	SEC("tracepoint/sched/sched_switch")                                         \
	int sched_switch_tp(struct trace_event_raw_sched_switch *a)                  \
	{                                                                            \
		struct sched_sw s = {};                                              \
		sched_fill_tp(&s, a);                                                \
		return handler(a, &s);                                               \
	}

static __always_inline __u32 sched_tgid_of(__u32 pid)
{
	__u32 *tg = bpf_map_lookup_elem(&sched_tgid_cache, &pid);
	return tg ? *tg : 0;
}

#define SCHED_WAKEUP_PROGRAMS(handler)                                               \
	SEC("tp_btf/sched_wakeup")                                                   \
	int BPF_PROG(sched_wakeup_btf, struct task_struct *p)                         \
	{                                                                            \
		return handler(ctx, BPF_CORE_READ(p, pid), BPF_CORE_READ(p, tgid));   \
	}                                                                            \
	SEC("raw_tp/sched_wakeup")                                                   \
	int BPF_PROG(sched_wakeup_raw, struct task_struct *p)                         \
	{                                                                            \
		return handler(ctx, BPF_CORE_READ(p, pid), BPF_CORE_READ(p, tgid));   \
	}                                                                            \
	SEC("tracepoint/sched/sched_wakeup")                                         \
	int sched_wakeup_tp(struct trace_event_raw_sched_wakeup_template *a)         \
	{                                                                            \
		__u32 pid = a->pid;                                                  \
		return handler(a, pid, sched_tgid_of(pid));                          \
	}                                                                            \
	SEC("tp_btf/sched_wakeup_new")                                               \
	int BPF_PROG(sched_wakeup_new_btf, struct task_struct *p)                     \
	{                                                                            \
		return handler(ctx, BPF_CORE_READ(p, pid), BPF_CORE_READ(p, tgid));   \
	}                                                                            \
	SEC("raw_tp/sched_wakeup_new")                                               \
	int BPF_PROG(sched_wakeup_new_raw, struct task_struct *p)                     \
	{                                                                            \
		return handler(ctx, BPF_CORE_READ(p, pid), BPF_CORE_READ(p, tgid));   \
	}                                                                            \
	SEC("tracepoint/sched/sched_wakeup_new")                                     \
	int sched_wakeup_new_tp(struct trace_event_raw_sched_wakeup_template *a)     \
	{                                                                            \
		__u32 pid = a->pid;                                                  \
		return handler(a, pid, sched_tgid_of(pid));                          \
	}
