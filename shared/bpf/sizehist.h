/* SPDX-License-Identifier: GPL-2.0 */
/* Packet-size histogram counters (netqtop / iface_netstat buckets): bytes,
 * packets and six size buckets [0,64) [64,512) [512,2K) [2K,16K) [16K,64K)
 * [64K,inf). Meant as the value of a per-CPU map (plain adds, no atomics);
 * user space sums the CPUs with shared::percpu and decodes the 8 u64 words
 * with shared::sizehist::SizeHist::from_words. */
#pragma once
#include "common.h"

#define SIZE_HIST_BUCKETS 6

/* Mirror: shared/src/sizehist.rs (SizeHist::from_words). */
struct size_hist {
	__u64 bytes;
	__u64 pkts;
	__u64 bucket[SIZE_HIST_BUCKETS];
};
_Static_assert(sizeof(struct size_hist) == 64, "size_hist layout changed: update sizehist.rs");

static __always_inline __u32 size_hist_bucket(__u64 len)
{
	if (len < 64)
		return 0;
	if (len < 512)
		return 1;
	if (len < 2048)
		return 2;
	if (len < 16384)
		return 3;
	if (len < 65536)
		return 4;
	return 5;
}

static __always_inline void size_hist_add(struct size_hist *h, __u64 len)
{
	__u32 b = size_hist_bucket(len);

	h->bytes += len;
	h->pkts += 1;
	if (b < SIZE_HIST_BUCKETS)
		h->bucket[b] += 1;
}
