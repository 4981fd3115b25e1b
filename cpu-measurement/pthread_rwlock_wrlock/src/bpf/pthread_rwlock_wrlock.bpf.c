// SPDX-License-Identifier: GPL-2.0
/* pthread_rwlock_wrlock: time from entry to return of the probed function
 * (uprobe + uretprobe on the library user space resolved), in microseconds,
 * into a log2 histogram. */
#include "common.h"
#include "hist.h"

const volatile __u32 target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} begin SEC(".maps");

DECLARE_HIST_MAP(lat);

SEC("uprobe")
int BPF_UPROBE(wrlock_enter)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns();
	__u32 tid = (__u32)id;

	if (target_tgid && (id >> 32) != target_tgid)
		return 0;
	bpf_map_update_elem(&begin, &tid, &now, BPF_ANY);
	return 0;
}

SEC("uretprobe")
int BPF_URETPROBE(wrlock_exit)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *b = bpf_map_lookup_elem(&begin, &tid);

	if (!b)
		return 0;
	hist_add(&lat, (bpf_ktime_get_ns() - *b) / 1000);
	bpf_map_delete_elem(&begin, &tid);
	return 0;
}
