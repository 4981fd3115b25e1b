/* SPDX-License-Identifier: GPL-2.0 */
/* Used by tun_ring_monitor, tun-vhost, tun-abnormal-gso-type (skbsnap --tun-ring). */
/* The tun/tap device's private state as the running kernel lays it out:
 * struct tun_struct sits at netdev_priv(dev) = dev + ALIGN(sizeof(struct
 * net_device), NETDEV_ALIGN); each queue is a struct tun_file whose ptr_ring
 * tx_ring holds the skbs waiting for the reader (vhost-net or QEMU). Every
 * size and offset comes from BTF through CO-RE: vmlinux when tun is built in,
 * the tun module's BTF (/sys/kernel/btf/tun) otherwise. No struct is copied
 * here. Kernels without module BTF (5.10): tun_ring_readable() is false. */
#pragma once
#include "common.h"

#define NETDEV_ALIGN_ 32

struct tun_ring {
	__u64 tun;
	__u64 tfile;
	__u64 qptr;       /* ring->queue[producer]: non-NULL = full */
	__s32 size;
	__s32 producer;
	__s32 consumer_head;
	__s32 consumer_tail;
	__u32 numqueues;
	__u16 queue;
	__u16 queue_index;
	__u8 ok;
	__u8 full;
	__u8 pad[6];
};

static __always_inline bool tun_ring_readable(void)
{
	return bpf_core_type_exists(struct tun_struct) && bpf_core_type_exists(struct tun_file);
}

/* Fill r for the queue skb is sent on; r->ok = 0 when it cannot be read. */
static __always_inline void tun_read_ring(struct net_device *dev, struct sk_buff *skb, struct tun_ring *r)
{
	struct tun_struct *tun;
	struct tun_file *tf = NULL;
	void **queue = NULL;
	__u64 priv_off;
	__u16 q;

	if (!tun_ring_readable() || !dev)
		return;
	priv_off = (bpf_core_type_size(struct net_device) + NETDEV_ALIGN_ - 1) & ~(NETDEV_ALIGN_ - 1);
	tun = (struct tun_struct *)((void *)dev + priv_off);
	q = BPF_CORE_READ(skb, queue_mapping);
	r->queue = q;
	r->tun = (__u64)tun;
	r->numqueues = BPF_CORE_READ(tun, numqueues);
	if (q >= r->numqueues || q >= 256)
		return;
	bpf_probe_read_kernel(&tf, sizeof(tf), (void *)tun + bpf_core_field_offset(struct tun_struct, tfiles) + q * sizeof(void *));
	if (!tf)
		return;
	r->tfile = (__u64)tf;
	r->queue_index = BPF_CORE_READ(tf, queue_index);
	r->size = BPF_CORE_READ(tf, tx_ring.size);
	r->producer = BPF_CORE_READ(tf, tx_ring.producer);
	r->consumer_head = BPF_CORE_READ(tf, tx_ring.consumer_head);
	r->consumer_tail = BPF_CORE_READ(tf, tx_ring.consumer_tail);
	queue = BPF_CORE_READ(tf, tx_ring.queue);
	if (queue && r->producer >= 0 && r->producer < r->size)
		bpf_probe_read_kernel(&r->qptr, sizeof(r->qptr), queue + r->producer);
	r->full = r->qptr != 0;
	r->ok = 1;
}
