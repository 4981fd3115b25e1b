/* SPDX-License-Identifier: GPL-2.0 */
/* log2 histograms in a per-CPU array of HIST_SLOTS u64: bucket 0 for v == 0,
 * else 1 + floor(log2 v) (bpftrace's hist()); slot HIST_SUM_SLOT holds the
 * sum of the values. User side: shared::hist::Log2Hist (merge + printers). */
#pragma once
#include "common.h"

#define HIST_BUCKETS 64
#define HIST_SUM_SLOT 64
#define HIST_SLOTS 65

#define DECLARE_HIST_MAP(name)                                                 \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                       \
		__uint(max_entries, HIST_SLOTS);                               \
		__type(key, __u32);                                            \
		__type(value, __u64);                                          \
	} name SEC(".maps")

static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 r = 0, shift;

	if (v == 0)
		return 0;
	shift = (v > 0xFFFFFFFFULL) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	r += 1;
	return r > HIST_BUCKETS - 1 ? HIST_BUCKETS - 1 : r;
}

static __always_inline void hist_add(void *map, __u64 v)
{
	__u32 b = log2_bucket(v), s = HIST_SUM_SLOT;
	__u64 *c = bpf_map_lookup_elem(map, &b);
	if (c)
		*c += 1;
	c = bpf_map_lookup_elem(map, &s);
	if (c)
		*c += v;
}
