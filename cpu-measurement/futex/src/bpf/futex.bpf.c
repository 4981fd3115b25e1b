// SPDX-License-Identifier: GPL-2.0
/* futex: duration of every futex() system call, as a log2 histogram in the
 * unit user space chose. Exits without a matching entry (the thread was
 * already inside futex() when tracing started) are skipped. */
#include "common.h"
#include "hist.h"

const volatile __u32 target_tgid = 0;
const volatile __u64 unit_div = 1000000;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} ts SEC(".maps");

DECLARE_HIST_MAP(lat);

SEC("tracepoint/syscalls/sys_enter_futex")
int futex_enter(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns();
	__u32 tid = (__u32)id;

	if (target_tgid && (id >> 32) != target_tgid)
		return 0;
	bpf_map_update_elem(&ts, &tid, &now, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_futex")
int futex_exit(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *start = bpf_map_lookup_elem(&ts, &tid);

	if (!start)
		return 0;
	hist_add(&lat, (bpf_ktime_get_ns() - *start) / unit_div);
	bpf_map_delete_elem(&ts, &tid);
	return 0;
}
