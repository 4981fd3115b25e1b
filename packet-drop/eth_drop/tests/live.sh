# Live tests of eth_drop: real drops of ARP, IPv4, IPv6 and VLAN-tagged frames
# between two network namespaces (helpers: scripts/lib/testlib.sh).

# Run on every kernel of the matrix even when time is short (MAIN_ONLY=1).
MAIN_TESTS="eth_drop_arp eth_drop_ipv6 eth_drop_vlan_tagged_frames eth_drop_attach_tracepoint eth_drop_attach_fentry eth_drop_attach_kprobe"

# The reason the running kernel reports for a drop, or N/A where it has none.
eth_drop_reason() {
    if grep -q 'field:.* reason;' "$(tracefs)/events/skb/kfree_skb/format" 2>/dev/null; then echo "$1"; else echo "N/A"; fi
}

# ICMP echo requests from ns1 dropped by iptables in ns2.
eth_drop_icmp_setup() {
    netns_pair
    in2 iptables -A INPUT -p icmp -j DROP || skip "iptables cannot add rules here"
}

test_eth_drop_arp() {
    need root cmd:nft cmd:arping
    netns_pair
    in2 nft add table arp t || skip "nft has no arp family here"
    in2 nft add chain arp t in '{type filter hook input priority 0;}'
    in2 nft add rule arp t in drop
    tool_start eth_drop --type arp --interface "$VETH2"
    in1 arping -q -c 3 -W 0.2 -i "$VETH1" "$IP2" || true
    tool_stop
    assert_count_ge 3 "^ARP PACKET$"
    assert_count_ge 3 "^  Operation: +Request$"
    assert_count_ge 3 "^  Sender IP: +$IP1$"
    assert_count_ge 3 "^  Target IP: +$IP2$"
    assert_count_ge 3 "^  EtherType: +0x0806$"
    assert_count_ge 3 "^Interface: $VETH2$"
    assert_count_ge 3 "^Reason: $(eth_drop_reason NETFILTER_DROP) "
    assert_count_ge 3 "^Stack trace:$"
    assert_grep "^  nf_hook_slow\+0x"
    assert_no_grep "IPv4 PACKET|IPv6 PACKET|OTHER PROTOCOL"
    assert_grep "^Protocol filter: arp \(0x0806\)$"
    assert_grep "^Stopping packet drop monitoring\.\.\.$"
    assert_grep "^Summary: [0-9]+ drops reported" "$TOOL_ERR"
}

test_eth_drop_ipv6() {
    need root cmd:nft cmd:ping
    netns_pair
    in1 ip addr add fd97::1/64 dev "$VETH1" nodad
    in2 ip addr add fd97::2/64 dev "$VETH2" nodad
    in2 nft add table ip6 t || skip "nft has no ip6 family here"
    in2 nft add chain ip6 t in '{type filter hook input priority 0;}'
    in2 nft add rule ip6 t in icmpv6 type echo-request drop
    tool_start eth_drop --type ipv6 --interface "$VETH2"
    in1 ping -6 -c 3 -i 0.2 -W 1 fd97::2 >/dev/null
    tool_stop
    assert_count_ge 3 "^IPv6 PACKET$"
    assert_count_ge 3 "^  Next Header: 58$"
    assert_count_ge 3 "^  Source IP: +fd97::1$"
    assert_count_ge 3 "^  Dest IP: +fd97::2$"
    assert_count_ge 3 "^  EtherType: +0x86dd$"
    assert_count_ge 3 "^Reason: $(eth_drop_reason NETFILTER_DROP) "
    assert_no_grep "IPv4 PACKET|ARP PACKET"
}

# VLAN 100 through an 802.1Q device in ns1; ns2 has no VLAN device and drops
# the tagged frames at the netdev ingress hook, where the skb still carries the
# (accelerated) tag. Later drops of unknown-VLAN frames happen after the stack
# cleared the tag.
test_eth_drop_vlan() {
    need root cmd:nft cmd:ping module:8021q
    netns_pair
    in1 ip link add link "$VETH1" name v1.100 type vlan id 100 || skip "cannot create VLAN devices"
    in1 ip addr add 10.99.100.1/24 dev v1.100
    in1 ip link set v1.100 up
    in1 ip neigh replace 10.99.100.2 lladdr "$(in2 cat "/sys/class/net/$VETH2/address")" dev v1.100
    in2 nft add table netdev t || skip "nft has no netdev family here"
    in2 nft add chain netdev t in "{type filter hook ingress device $VETH2 priority 0;}"
    in2 nft add rule netdev t in vlan id 100 drop
    tool_start eth_drop --interface "$VETH2"
    local hit=$TOOL_OUT hit_pid=$TOOL_PID
    tool_start eth_drop --vlan-id 200
    local miss=$TOOL_OUT
    in1 ping -c 3 -i 0.2 -W 1 10.99.100.2 >/dev/null
    tool_stop
    TOOL_PID=$hit_pid TOOL_OUT=$hit
    tool_stop 0
    assert_count_ge 3 "^VLAN ID: 100, Priority: 0, Inner Protocol: 0x0800$" "$hit"
    assert_count_ge 3 "^\[VLAN 100\] IPv4 PACKET$" "$hit"
    assert_count_ge 3 "^  Source IP: +10\.99\.100\.1$" "$hit"
    assert_count_ge 3 "^Reason: $(eth_drop_reason NETFILTER_DROP) " "$hit"
    assert_no_grep "^VLAN ID: |PACKET$" "$miss"
}

# The same without the 8021q module: arping writes tagged frames itself. Tag
# 100 is dropped at ns2's ingress (the tag has moved into the skb), tag 101 at
# ns1's egress (the tag is still in the frame).
test_eth_drop_vlan_tagged_frames() {
    need root cmd:nft cmd:arping
    netns_pair
    in2 nft add table netdev t || skip "nft has no netdev family here"
    in2 nft add chain netdev t in "{type filter hook ingress device $VETH2 priority 0;}"
    in2 nft add rule netdev t in vlan id 100 drop
    local egress=1
    in1 nft add table netdev t &&
        in1 nft add chain netdev t out "{type filter hook egress device $VETH1 priority 0;}" 2>/dev/null &&
        in1 nft add rule netdev t out vlan id 101 drop || egress=0
    tool_start eth_drop --json --vlan-id 100 --type arp
    local v100=$TOOL_OUT v100_pid=$TOOL_PID
    tool_start eth_drop --json --vlan-id 101
    local v101=$TOOL_OUT v101_pid=$TOOL_PID
    tool_start eth_drop --json --vlan-id 200
    local v200=$TOOL_OUT
    in1 arping -q -c 3 -W 0.2 -V 100 -S "$IP1" -i "$VETH1" "$IP2" || true
    for _ in 1 2; do in1 arping -q -c 1 -V 101 -S "$IP1" -i "$VETH1" "$IP2" 2>/dev/null || true; done
    tool_stop
    TOOL_PID=$v101_pid TOOL_OUT=$v101
    tool_stop 0
    TOOL_PID=$v100_pid TOOL_OUT=$v100
    tool_stop 0
    assert_all_json "$v100"
    assert_json_ge 3 ".vlan.id == 100 and .vlan.accel and .vlan.inner == \"0x0806\" and .l3 == \"arp\" and .arp.op_name == \"Request\" and .arp.sip == \"$IP1\" and .arp.tip == \"$IP2\" and .ifname == \"$VETH2\"" "$v100"
    assert_json_none ".vlan.id != 100" "$v100"
    if [[ $egress == 1 ]]; then
        assert_json_ge 2 ".vlan.id == 101 and (.vlan.accel | not) and .eth.type == \"0x8100\" and .arp.sip == \"$IP1\" and .ifname == \"$VETH1\"" "$v101"
    else
        note "no netdev egress hook on this kernel: in-frame tag case not checked"
    fi
    assert_json_none "true" "$v200"
}

test_eth_drop_type_other() {
    need root cmd:iptables cmd:ping
    eth_drop_icmp_setup
    tool_start eth_drop --type other --interface "$VETH2"
    local other=$TOOL_OUT other_pid=$TOOL_PID
    tool_start eth_drop --type ipv4 --interface "$VETH2"
    local ipv4=$TOOL_OUT
    in1 ping -c 3 -i 0.2 -W 1 "$IP2" >/dev/null
    tool_stop
    TOOL_PID=$other_pid TOOL_OUT=$other
    tool_stop 0
    # The same drops are there for --type ipv4 ...
    assert_count_ge 3 "^IPv4 PACKET$" "$ipv4"
    assert_count_ge 3 "^  Source IP: +$IP1$" "$ipv4"
    # ... and not for --type other.
    assert_no_grep "IPv4 PACKET" "$other"
    assert_grep "^Protocol filter: other \(0xffff\)$" "$other"
}

test_eth_drop_interface_lo() {
    need root cmd:iptables cmd:ping
    eth_drop_icmp_setup
    tool_start eth_drop --interface lo --src "$IP1"
    local lo=$TOOL_OUT lo_pid=$TOOL_PID
    tool_start eth_drop --interface "$VETH2" --src "$IP1"
    local veth=$TOOL_OUT
    in1 ping -c 3 -i 0.2 -W 1 "$IP2" >/dev/null
    tool_stop
    TOOL_PID=$lo_pid TOOL_OUT=$lo
    tool_stop 0
    assert_count_ge 3 "^Interface: $VETH2$" "$veth"
    assert_no_grep "PACKET|^Interface:" "$lo"
    assert_grep "^Interface filter: lo$" "$lo"
}

test_eth_drop_no_stack_trace() {
    need root cmd:iptables cmd:ping
    eth_drop_icmp_setup
    tool_start eth_drop --no-stack-trace --src "$IP1" --l4-protocol icmp
    in1 ping -c 3 -i 0.2 -W 1 "$IP2" >/dev/null
    tool_stop
    assert_count_ge 3 "^IPv4 PACKET$"
    assert_count_ge 3 "^  Protocol: +1$"
    assert_count_ge 3 "^Reason: $(eth_drop_reason NETFILTER_DROP) "
    assert_no_grep "^Stack trace:$"
    assert_grep "^Stack trace: OFF$"
}

test_eth_drop_verbose() {
    need root cmd:iptables cmd:ping
    eth_drop_icmp_setup
    tool_start eth_drop --verbose --src "$IP1"
    in1 ping -c 3 -i 0.2 -W 1 -s 56 "$IP2" >/dev/null
    tool_stop
    # 56 bytes of ping payload: 84-byte IPv4 packet, 98 bytes with the Ethernet header.
    assert_count_ge 3 "^  SKB Length: [0-9]+ bytes, Data Length: [0-9]+ bytes$"
    assert_count_ge 3 "^  MAC Header Offset: [0-9]+, Network Header Offset: [0-9]+, Transport Header Offset: [0-9]+$"
    assert_count_ge 3 "^  Length: +84$"
    assert_grep "^Verbose mode: ON$"
}

test_eth_drop_json() {
    need root cmd:iptables cmd:ping cmd:jq
    eth_drop_icmp_setup
    tool_start eth_drop --json --src "$IP1" --type ipv4
    in1 ping -c 3 -i 0.2 -W 1 "$IP2" >/dev/null
    tool_stop
    assert_all_json
    local keys='has("ts") and has("ts_ns") and has("time") and has("pid") and has("comm") and has("ifname") and has("reason") and has("location") and has("eth") and has("vlan") and has("l3") and has("skb") and has("kstack")'
    assert_json_ge 3 "$keys and .l3 == \"ipv4\" and .ipv4.saddr == \"$IP1\" and .ipv4.daddr == \"$IP2\" and .ipv4.protocol == 1 and .ipv4.icmp_type == 8 and .ipv4.len == 84 and .eth.type == \"0x0800\" and .vlan == null and .ifname == \"$VETH2\" and .skb.len > 0 and (.kstack | length) > 0 and .reason == \"$(eth_drop_reason NETFILTER_DROP)\""
    assert_json_none ".l3 != \"ipv4\""
    # Banners stay off stdout.
    assert_no_grep "Enhanced Ethernet"
    assert_grep "^Enhanced Ethernet Packet Drop Monitor$" "$TOOL_ERR"
}

test_eth_drop_bad_input() {
    need root
    local a
    for a in "--type foo" "--type 0xZZ" "--type 0x10000" "--vlan-id 5000" "--vlan-id 0" \
        "--interface abcdefghijklmnop" "--interface nosuchif0x" "--src 10.0.0.256" "--dst foo" \
        "--src fe80::1" "--src-port 70000" "--dst-port -1" "--l4-protocol sctp" "--duration -1"; do
        # shellcheck disable=SC2086
        expect_exit 2 eth_drop $a
        grep -q -- "${a%% *}" <<<"$LAST_ERROR" || fail "eth_drop $a: message does not name ${a%% *}: $LAST_ERROR"
    done
}

# The same ARP drop through every way the kernel offers (attach fallbacks):
# each forced mode must load, attach and report it, with a reason where it has one.
eth_drop_forced_attach() {
    local mode=$1
    netns_pair
    in2 nft add table arp t || skip "nft has no arp family here"
    in2 nft add chain arp t in '{type filter hook input priority 0;}'
    in2 nft add rule arp t in drop
    tool_start eth_drop --json --attach "$mode" --type arp --interface "$VETH2"
    in1 arping -q -c 3 -W 0.2 -i "$VETH1" "$IP2" || true
    tool_stop 1
    grep -q "via $mode:" "$TOOL_ERR" || { cat "$TOOL_ERR"; fail "not attached via $mode"; }
    assert_json_ge 3 ".l3 == \"arp\" and .arp.sip == \"$IP1\" and .arp.op_name == \"Request\" and .ifname == \"$VETH2\" and .reason == \"$(eth_drop_reason NETFILTER_DROP)\" and (.location | type) == \"string\""
    note "$(grep '^Attached' "$TOOL_ERR")"
}
test_eth_drop_attach_tracepoint() { need root cmd:nft cmd:arping tracepoint:skb/kfree_skb; eth_drop_forced_attach tracepoint; }
test_eth_drop_attach_fentry() { need root cmd:nft cmd:arping fentry; eth_drop_forced_attach fentry; }
test_eth_drop_attach_kprobe() { need root cmd:nft cmd:arping kprobe; eth_drop_forced_attach kprobe; }
