/* SPDX-License-Identifier: GPL-2.0 */
/* Conntrack state of an skb or an nf_conn, read with CO-RE (mirror of the
 * records: shared/src/conntrack.rs): skb->_nfct split into nf_conn and ctinfo,
 * ct->status, the zone {id, flags, dir} (when the kernel has zones / zone
 * directions), the 128-bit label from the conntrack extension area (its index
 * resolved from the running kernel's enum nf_ct_ext_id), and OVS's
 * struct ovs_conntrack_info (module BTF of openvswitch.ko). */
#pragma once
#include "common.h"

#define NFCT_INFOMASK 7UL
#define NFCT_PTRMASK (~NFCT_INFOMASK)

/* Mirror: CtSnap in shared/src/conntrack.rs. Error codes: 0 read; -1 not read;
 * status_err -2 read fail, -3 masked pointer NULL, -4 _nfct == 0,
 * -5 ct->status read fail; zone_err -2 read fail, -3 kernel without zones;
 * dir_err -2 read fail, -3 zone directions not configured;
 * label_err 1 no labels extension on this conntrack, -2 read fail. */
struct ct_snap {
	__u64 nfct;      /* skb->_nfct as read; for an nf_conn argument: the pointer */
	__u64 ct;        /* nf_conn pointer (nfct & ~7), 0 = none */
	__u64 status;    /* ct->status */
	__u8 ctinfo;     /* nfct & 7 */
	__s8 status_err;
	__s8 zone_err;
	__s8 dir_err;
	__u16 zone_id;
	__u8 zone_flags;
	__u8 zone_dir;
	__s8 label_err;
	__u8 has_nfct;   /* 1: taken from skb->_nfct (ctinfo valid), 2: from an nf_conn argument */
	__u8 pad[6];
	__u8 label[16];
};
_Static_assert(sizeof(struct ct_snap) == 56, "ct_snap layout changed: update conntrack.rs");

/* Mirror: OvsCtSnap. err: 0 read, -1 not an OVS point, -2 read fail,
 * -3 no openvswitch BTF (struct ovs_conntrack_info unknown). */
struct ovs_ct_snap {
	__u64 ct;        /* info->ct (the conntrack template of the ct() action) */
	__u16 zone_id;
	__u8 zone_flags;
	__u8 zone_dir;
	__u8 commit;
	__s8 err;
	__s8 dir_err;
	__u8 key_valid;  /* the flow key below was read */
	__u8 key_ct_state;
	__u8 pad;
	__u16 key_ct_zone;
	__u32 pad2;
};
_Static_assert(sizeof(struct ovs_ct_snap) == 24, "ovs_ct_snap layout changed: update conntrack.rs");

/* OVS's per-ct()-action info (net/openvswitch/conntrack.c); relocated
 * against the module's BTF, only the fields read here. */
struct ovs_conntrack_info___ct {
	struct nf_conntrack_zone zone;
	struct nf_conn *ct;
	__u8 commit : 1;
} __attribute__((preserve_access_index));

/* Older kernels without zone directions. */
struct nf_conntrack_zone___nodir {
	__u16 id;
} __attribute__((preserve_access_index));

static __always_inline void ct_snap_init(struct ct_snap *s)
{
	s->status_err = -1;
	s->zone_err = -1;
	s->dir_err = -1;
	s->label_err = -1;
}

static __always_inline void ct_read_label(struct nf_conn *ct, struct ct_snap *s)
{
	struct nf_ct_ext *ext = BPF_CORE_READ(ct, ext);
	__u8 off = 0;
	__u32 idx;

	s->label_err = 1;
	if (!ext || !bpf_core_enum_value_exists(enum nf_ct_ext_id, NF_CT_EXT_LABELS))
		return;
	idx = bpf_core_enum_value(enum nf_ct_ext_id, NF_CT_EXT_LABELS);
	if (idx >= 32)
		return;
	if (bpf_probe_read_kernel(&off, 1, (void *)ext + bpf_core_field_offset(ext->offset) + idx))
		return;
	if (!off)
		return;
	if (bpf_probe_read_kernel(s->label, 16, (void *)ext + off)) {
		s->label_err = -2;
		return;
	}
	s->label_err = 0;
}

/* Status, zone and label of an nf_conn. */
static __always_inline void ct_read_conn(struct nf_conn *ct, struct ct_snap *s, bool label)
{
	unsigned long status = 0;

	s->ct = (__u64)ct;
	/* No BTF for nf_conn (nf_conntrack a module on a kernel without module
	 * BTF, 5.10): the reads below are dropped by the verifier. */
	if (!bpf_core_type_exists(struct nf_conn)) {
		s->status_err = -2;
		s->zone_err = -2;
		s->dir_err = -2;
		return;
	}
	if (bpf_core_read(&status, sizeof(status), &ct->status)) {
		s->status_err = -5;
	} else {
		s->status = status;
		s->status_err = 0;
	}
	if (bpf_core_field_exists(ct->zone)) {
		if (bpf_core_read(&s->zone_id, sizeof(s->zone_id), &ct->zone.id)) {
			s->zone_err = -2;
		} else {
			s->zone_err = 0;
			s->zone_flags = BPF_CORE_READ(ct, zone.flags);
		}
		if (bpf_core_field_exists(ct->zone.dir)) {
			if (bpf_core_read(&s->zone_dir, 1, &ct->zone.dir))
				s->dir_err = -2;
			else
				s->dir_err = 0;
		} else {
			s->dir_err = -3;
		}
	} else {
		s->zone_err = -3;
		s->dir_err = -3;
	}
	if (label)
		ct_read_label(ct, s);
}

/* skb->_nfct split into nf_conn + ctinfo, and that nf_conn. */
static __always_inline void ct_read_skb(struct sk_buff *skb, struct ct_snap *s, bool label)
{
	__u64 nfct = BPF_CORE_READ(skb, _nfct);
	struct nf_conn *ct;

	ct_snap_init(s);
	s->has_nfct = 1;
	s->nfct = nfct;
	s->ctinfo = nfct & NFCT_INFOMASK;
	if (!nfct) {
		s->status_err = -4;
		return;
	}
	ct = (struct nf_conn *)(nfct & NFCT_PTRMASK);
	if (!ct) {
		s->status_err = -3;
		return;
	}
	ct_read_conn(ct, s, label);
}

/* An nf_conn passed as a function argument (tcp_packet). */
static __always_inline void ct_read_arg(struct nf_conn *ct, struct ct_snap *s, bool label)
{
	ct_snap_init(s);
	s->has_nfct = 2;
	s->nfct = (__u64)ct;
	if (!ct) {
		s->status_err = -3;
		return;
	}
	ct_read_conn(ct, s, label);
}

/* OVS's ovs_conntrack_info of a ct() action. */
static __always_inline void ovs_read_ct_info(const void *info_ptr, struct ovs_ct_snap *o)
{
	const struct ovs_conntrack_info___ct *info = info_ptr;

	o->dir_err = -1;
	if (!bpf_core_type_exists(struct ovs_conntrack_info___ct)) {
		o->err = -3;
		return;
	}
	if (!info) {
		o->err = -2;
		return;
	}
	if (bpf_core_read(&o->zone_id, sizeof(o->zone_id), &info->zone.id)) {
		o->err = -2;
		return;
	}
	o->zone_flags = BPF_CORE_READ(info, zone.flags);
	if (bpf_core_field_exists(info->zone.dir)) {
		o->zone_dir = BPF_CORE_READ(info, zone.dir);
		o->dir_err = 0;
	} else {
		o->dir_err = -3;
	}
	o->ct = (__u64)BPF_CORE_READ(info, ct);
	o->commit = BPF_CORE_READ_BITFIELD_PROBED(info, commit);
	o->err = 0;
}
