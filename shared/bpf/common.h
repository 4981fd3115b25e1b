/* SPDX-License-Identifier: GPL-2.0 */
/* Included first by every tool's .bpf.c: kernel types, libbpf helpers, and the
 * event channel to user space (ring buffer, or perf buffer on kernels without one). */
#pragma once
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#ifndef EVENT_MAX_SIZE
#define EVENT_MAX_SIZE 512
#endif
#ifndef EVENTS_RINGBUF_BYTES
#define EVENTS_RINGBUF_BYTES (512 * 1024)
#endif

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_ARP 0x0806
#define ETH_P_RARP 0x8035
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_ICMPV6_ 58

/* p->f. `direct` (a constant at every call site, so the other branch is
 * compiled out): p is a BTF pointer (a tp_btf, fentry or netfilter program's
 * argument, or a pointer read from one), which the JIT reads with a plain
 * fault-safe load. Otherwise (kprobes, classic tracepoints) through
 * bpf_probe_read_kernel, a helper call: ~45 ns each on the test host against
 * ~1 ns (scripts/bench --profile), which is most of what a hook costs on
 * packets a filter rejects. */
#define RD(direct, p, f) ((direct) ? (p)->f : BPF_CORE_READ(p, f))

/* dev->name into a 16-byte buffer (zeroed by the caller), as
 * bpf_probe_read_kernel_str would. */
static __always_inline void read_dev_name(struct net_device *dev, char *out, bool direct)
{
	if (!direct) {
		bpf_probe_read_kernel_str(out, 16, dev->name);
		return;
	}
#pragma unroll
	for (int i = 0; i < 15; i++) {
		out[i] = dev->name[i];
		if (!out[i])
			break;
	}
}

/* The type of an OVS action (openvswitch:ovs_do_execute_action's nlattr),
 * 0 without one: 6.12's module BTF marks the argument nullable, and the
 * verifier refuses the program unless it is checked first. */
static __always_inline __u16 ovs_action_type(const struct nlattr *a)
{
	return a ? BPF_CORE_READ(a, nla_type) & 0x3fff : 0;
}

/* User space flips this (and the map type of `events`) before load when the
 * kernel has no BPF ring buffer; the verifier then drops the dead branch. */
const volatile bool use_perfbuf = false;

/* Set by tools that drain the ring buffer on a timer (Drain::flush every tick):
 * no reader wake-up per event. A reader woken for every event perturbs the
 * scheduling that sched tools measure (each wake-up preempts the traced task,
 * which makes another event). */
const volatile bool events_no_wakeup = false;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_RINGBUF_BYTES);
} events SEC(".maps");

/* Staging area for the perf buffer path, which cannot reserve in place. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[EVENT_MAX_SIZE]);
} event_heap SEC(".maps");

/* Events the kernel side could not hand over (buffer full); printed at exit. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_events SEC(".maps");

static __always_inline void count_lost_event(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost_events, &zero);
	if (n)
		*n += 1;
}

static __always_inline void *event_reserve(__u32 size)
{
	__u32 zero = 0;
	void *e;

	if (size > EVENT_MAX_SIZE)
		return NULL;
	if (use_perfbuf)
		e = bpf_map_lookup_elem(&event_heap, &zero);
	else
		e = bpf_ringbuf_reserve(&events, size, 0);
	if (!e)
		count_lost_event();
	return e;
}

static __always_inline void event_submit(void *ctx, void *e, __u32 size)
{
	if (use_perfbuf) {
		if (bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, e, size))
			count_lost_event();
	} else {
		bpf_ringbuf_submit(e, events_no_wakeup ? BPF_RB_NO_WAKEUP : 0);
	}
}

/* Kernel and user stack ids: one map per tool, ids resolved in user space. */
#define DECLARE_STACK_MAP(name, entries)                                       \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_STACK_TRACE);                        \
		__uint(max_entries, entries);                                  \
		__uint(key_size, sizeof(__u32));                               \
		__uint(value_size, 127 * sizeof(__u64));                       \
	} name SEC(".maps")

static __always_inline __s32 get_stack_id(void *ctx, void *map, __u64 flags)
{
	__s32 id = bpf_get_stackid(ctx, map, flags | BPF_F_FAST_STACK_CMP);
	if (id == -17 /* EEXIST: hash bucket taken by another stack */)
		id = bpf_get_stackid(ctx, map, flags | BPF_F_REUSE_STACKID);
	return id;
}

char LICENSE[] SEC("license") = "GPL";
