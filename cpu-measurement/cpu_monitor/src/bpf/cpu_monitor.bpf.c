// SPDX-License-Identifier: GPL-2.0
/* cpu_monitor: per-(cpu, thread) on-CPU time from sched_switch on the monitored
 * CPUs (cumulative, never reset: user space diffs snapshots), and with
 * profiling on, software-clock samples of the target CPUs counted per
 * (cpu, thread, kernel stack, user stack). */
#include "sched.h"

#define MAX_CPUS 1024

const volatile __u8 monitored[MAX_CPUS] = {};

/* Mirror: Cur in src/lib.rs. */
struct cur {
	__u32 tid;
	__u32 tgid;
	__u64 since;
	char comm[16];
};

struct acc_key {
	__u32 cpu;
	__u32 tid;
};

/* Mirror: AccVal. */
struct acc_val {
	__u64 ns;
	__u32 tgid;
	__u32 pad;
	char comm[16];
};

/* Mirror: SampleKey. */
struct sample_key {
	__u32 cpu;
	__u32 tgid;
	__u32 tid;
	__s32 kstack_id;
	__s32 ustack_id;
	__u32 pad;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cur);
} current_task SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct acc_key);
	__type(value, struct acc_val);
} acc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sample_key);
	__type(value, __u64);
} samples SEC(".maps");

DECLARE_STACK_MAP(stacks, 16384);

static __always_inline bool is_monitored(__u32 cpu)
{
	return cpu < MAX_CPUS && monitored[cpu & (MAX_CPUS - 1)];
}

static __always_inline int on_switch(void *ctx, const struct sched_sw *s)
{
	__u32 cpu = bpf_get_smp_processor_id(), zero = 0;
	__u64 now = bpf_ktime_get_ns();
	struct cur *c;

	if (!is_monitored(cpu))
		return 0;
	c = bpf_map_lookup_elem(&current_task, &zero);
	if (!c)
		return 0;
	if (c->since && s->prev_pid) {
		struct acc_key k = { .cpu = cpu, .tid = s->prev_pid };
		struct acc_val *v = bpf_map_lookup_elem(&acc, &k);
		__u64 d = now - c->since;
		if (v) {
			__sync_fetch_and_add(&v->ns, d);
		} else {
			struct acc_val nv = { .ns = d, .tgid = s->prev_tgid };
			__builtin_memcpy(nv.comm, s->prev_comm, 16);
			bpf_map_update_elem(&acc, &k, &nv, BPF_NOEXIST);
		}
	}
	c->tid = s->next_pid;
	c->tgid = s->next_tgid;
	c->since = now;
	__builtin_memcpy(c->comm, s->next_comm, 16);
	return 0;
}

SCHED_SWITCH_PROGRAMS(on_switch)

SEC("perf_event")
int cpu_sample(struct bpf_perf_event_data *ctx)
{
	struct sample_key k = {};
	__u64 id = bpf_get_current_pid_tgid(), one = 1, *n;

	k.cpu = bpf_get_smp_processor_id();
	k.tid = (__u32)id;
	k.tgid = id >> 32;
	bpf_get_current_comm(k.comm, sizeof(k.comm));
	k.kstack_id = get_stack_id(ctx, &stacks, 0);
	k.ustack_id = k.tid ? get_stack_id(ctx, &stacks, BPF_F_USER_STACK) : -14;
	n = bpf_map_lookup_elem(&samples, &k);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return 0;
	}
	if (bpf_map_update_elem(&samples, &k, &one, BPF_NOEXIST)) {
		n = bpf_map_lookup_elem(&samples, &k);
		if (n)
			__sync_fetch_and_add(n, 1);
	}
	return 0;
}
