/* SPDX-License-Identifier: GPL-2.0 */
/* Five-tuple flow rules of the conntrack/OVS family (mirror: shared/src/flowrules.rs):
 * up to MAX_FLOW_RULES IPv4 rules in .rodata, OR'ed; a rule matches a packet in
 * the forward or the reverse direction; ports only count for TCP/UDP packets. */
#pragma once
#include "common.h"

#define MAX_FLOW_RULES 10

struct flow5_rule {
	__be32 saddr;   /* 0 any */
	__be32 daddr;   /* 0 any */
	__u16 sport;    /* host order, 0 any */
	__u16 dport;
	__u8 proto;     /* 0 any */
	__u8 pad[3];
};
_Static_assert(sizeof(struct flow5_rule) == 16, "flow_rule layout changed: update flowrules.rs");

const volatile struct flow5_rule filter_rules[MAX_FLOW_RULES] = {};
const volatile __u32 num_filters = 0;

static __always_inline bool flow_rule_match(const volatile struct flow5_rule *r, __be32 s, __be32 d,
					    __u8 p, __u16 sp, __u16 dp)
{
	bool ports = p == IPPROTO_TCP || p == IPPROTO_UDP;
	bool fwd, rev;

	if (r->proto && r->proto != p)
		return false;
	fwd = (!r->saddr || r->saddr == s) && (!r->daddr || r->daddr == d) &&
	      (!ports || ((!r->sport || r->sport == sp) && (!r->dport || r->dport == dp)));
	rev = (!r->saddr || r->saddr == d) && (!r->daddr || r->daddr == s) &&
	      (!ports || ((!r->sport || r->sport == dp) && (!r->dport || r->dport == sp)));
	return fwd || rev;
}

/* No rules: everything matches. */
static __always_inline bool flow_rules_match(__be32 s, __be32 d, __u8 p, __u16 sp, __u16 dp)
{
	__u32 n = num_filters;

	if (!n)
		return true;
	for (int i = 0; i < MAX_FLOW_RULES; i++) {
		if (i >= n)
			break;
		if (flow_rule_match(&filter_rules[i], s, d, p, sp, dp))
			return true;
	}
	return false;
}
