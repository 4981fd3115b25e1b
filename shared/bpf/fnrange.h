/* Address ranges of one kernel function and its compiler-split parts
 * (name.cold, name.isra.0, ...), filled in before load by
 * shared::bpf::set_function_ranges from /proc/kallsyms: for asking whether a
 * location (a kfree_skb caller, a stack frame) lies inside that function. */
#ifndef SHARED_FNRANGE_H
#define SHARED_FNRANGE_H

#define FN_RANGES_MAX 4

/* PREFIX_LO / PREFIX_HI rodata arrays and `static bool checker(__u64 addr)`. */
#define DECLARE_FN_RANGES(PREFIX, checker)                                     \
	const volatile __u64 PREFIX##_LO[FN_RANGES_MAX] = {};                  \
	const volatile __u64 PREFIX##_HI[FN_RANGES_MAX] = {};                  \
	static __always_inline bool checker(__u64 addr)                        \
	{                                                                      \
		_Pragma("unroll") for (int i = 0; i < FN_RANGES_MAX; i++) if (    \
			PREFIX##_LO[i] && addr >= PREFIX##_LO[i] &&            \
			addr < PREFIX##_HI[i]) return true;                    \
		return false;                                                  \
	}

#endif
