// SPDX-License-Identifier: GPL-2.0
/* pthread_rwlock_wrlock-stack: count calls of the probed function per
 * (thread name, process, user stack). Entry uprobe only, frame-pointer
 * unwinding; user space symbolizes the stacks at the end. */
#include "common.h"

const volatile __u32 target_tgid = 0;

/* Mirror: CountKey in src/lib.rs. */
struct count_key {
	char comm[16];
	__u32 tgid;
	__s32 ustack_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct count_key);
	__type(value, __u64);
} counts SEC(".maps");

DECLARE_STACK_MAP(stacks, 16384);

SEC("uprobe")
int BPF_UPROBE(wrlock_stack)
{
	struct count_key k = {};
	__u64 one = 1, *n;

	k.tgid = bpf_get_current_pid_tgid() >> 32;
	if (target_tgid && k.tgid != target_tgid)
		return 0;
	bpf_get_current_comm(k.comm, sizeof(k.comm));
	k.ustack_id = get_stack_id(ctx, &stacks, BPF_F_USER_STACK);
	n = bpf_map_lookup_elem(&counts, &k);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return 0;
	}
	if (bpf_map_update_elem(&counts, &k, &one, BPF_NOEXIST)) {
		/* another CPU created it meanwhile */
		n = bpf_map_lookup_elem(&counts, &k);
		if (n)
			__sync_fetch_and_add(n, 1);
	}
	return 0;
}
