// SPDX-License-Identifier: GPL-2.0
/* validate-xmit-skb: the skb snapshot hooks (shared/bpf/snaphooks.h); the preset in
 * src/main.rs picks which ones load. */
#include "snaphooks.h"
