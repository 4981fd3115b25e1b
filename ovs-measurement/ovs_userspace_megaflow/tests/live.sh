# Live tests of ovs_userspace_megaflow: megaflows vswitchd installs on a
# kernel-datapath bridge with two namespace ports (VM kernels).
source "$ROOT/ovs-measurement/testlib-ovs.sh"
MAIN_TESTS="ovs_userspace_megaflow_icmp ovs_userspace_megaflow_two_outputs ovs_userspace_megaflow_ct_recirc"

# One ping after a purge: one upcall and one flow put for the request, and the
# flow put's megaflow is exactly what ovs-dpctl dump-flows shows for it.
test_ovs_userspace_megaflow_icmp() {
    need root cmd:ping
    ovs_ready
    local mac1 mac2
    mac1=$(ns_mac "$NS1" "$VETH1") mac2=$(ns_mac "$NS2" "$VETH2")
    tool_start ovs_userspace_megaflow --ip-src "$IP1" --ip-proto 1
    ovs_purge
    in1 ping -c 1 -W 2 "$IP2" >/dev/null || fail "ping failed"
    sleep 1
    local dp
    dp=$(ovs_flow_lines "in_port($DP1),eth(src=$mac1,dst=$mac2),eth_type(0x0800)")
    tool_stop 1
    [[ $(count '^=== UPCALL EVENT \(filtered\) ===$') -eq 1 ]] || { show "$TOOL_OUT"; fail "want exactly one upcall event"; }
    [[ $(count '^=== FLOW CMD NEW EVENT \(filtered\) ===$') -eq 1 ]] || { show "$TOOL_OUT"; fail "want exactly one flow event"; }
    assert_grep "^SKB IP: $IP1 -> $IP2 \(ICMP\)$"
    assert_grep "^SKB Eth: $mac1 -> $mac2, type=0x0800$"
    assert_grep "^Key IP: $IP1 $IP2 \(ICMP\)$"
    assert_grep "^Key: recirc_id=0, in_port=$DP1, mark=0x0$"
    assert_grep "^Key Eth: $mac1 -> $mac2, type=0x0800$"
    assert_grep "^Mask Eth: ff:ff:ff:ff:ff:ff -> ff:ff:ff:ff:ff:ff$"
    assert_grep "^Actions: output:$DP2$"
    assert_grep "^Netlink: has_key=yes, has_mask=yes, has_actions=yes$"
    if [[ -e /sys/kernel/btf/openvswitch ]]; then
        assert_grep "^Upcall: cmd=MISS, in_port=$DP1, recirc_id=0$"
    fi
    local mf
    mf=$(megaflow_of "$TOOL_OUT" "in_port($DP1)")
    [[ -n $dp && "$mf" == "$dp" ]] || { ovs-dpctl dump-flows; fail "megaflow '$mf' != dump-flows '$dp'"; }
    assert_grep "^Mask: recirc_id\(0xffffffff\),in_port\(0xffffffff\),eth\(src=ff:ff:ff:ff:ff:ff,dst=ff:ff:ff:ff:ff:ff\),eth_type\(0xffff\),ipv4\(src=0.0.0.0,dst=0.0.0.0,proto=0,tos=0,ttl=0,frag=0xff\)"
    assert_grep "^   Filtered upcalls: 1$"
    assert_grep "^   Filtered flows: 1$"
    note "Megaflow: $mf"
}

# A flow with two outputs: both actions, in order; the nw_dst rule makes the
# IPv4 destination part of the megaflow, and the MACs are wildcarded (OVS still
# prints the empty `eth()`: the flow is for Ethernet frames).
test_ovs_userspace_megaflow_two_outputs() {
    need root cmd:ping cmd:jq cmd:ovs-ofctl
    ovs_ready
    ovs_third_port
    ovs-ofctl add-flow "$BR" "priority=100,ip,nw_dst=$IP2,actions=output:$PORT2,output:$PORT3"
    tool_start ovs_userspace_megaflow --json --ip-dst "$IP2" --ip-proto 1
    ovs_purge
    in1 ping -c 1 -W 2 "$IP2" >/dev/null || fail "ping failed"
    sleep 1
    local dp
    dp=$(ovs_flow_lines "in_port($DP1)" | grep -F "ipv4(dst=$IP2")
    tool_stop 1
    assert_json_ge 1 ".type == \"flow_new\" and (.actions | length) == 2 and .actions[0].type == \"output\" and .actions[0].port == $DP2 and .actions[1].port == $DP3"
    local mf
    mf=$(jq -r 'select(.type == "flow_new") | .megaflow' "$TOOL_OUT" | head -1)
    [[ -n $dp && "$mf" == "$dp" ]] || { ovs-dpctl dump-flows; fail "megaflow '$mf' != dump-flows '$dp'"; }
    [[ $mf == *"ipv4(dst=$IP2,frag=no)"* && $mf == *"actions:$DP2,$DP3" ]] || fail "megaflow $mf"
    assert_json_ge 1 ".type == \"flow_new\" and (.mask_text | contains(\"ipv4(src=0.0.0.0,dst=255.255.255.255,\"))"
    note "Megaflow: $mf"
}

# ct(): the flow put carries ct(zone=1),recirc(N); the recirculated packet
# misses again and a second megaflow with recirc_id=N is installed.
# --correlate pairs each put with its upcall.
test_ovs_userspace_megaflow_ct_recirc() {
    need root cmd:ping cmd:jq cmd:ovs-ofctl
    ovs_ready
    ovs-ofctl del-flows "$BR"
    ovs-ofctl add-flow "$BR" "table=0,priority=0,actions=NORMAL"
    ovs-ofctl add-flow "$BR" "table=0,priority=10,ip,actions=ct(zone=1,table=1)"
    ovs-ofctl add-flow "$BR" "table=1,ip,actions=NORMAL"
    tool_start ovs_userspace_megaflow --json --correlate --ip-src "$IP1" --ip-proto 1
    ovs_purge
    in1 ping -c 1 -W 2 "$IP2" >/dev/null || fail "ping failed"
    sleep 1
    tool_stop 1
    local n
    n=$(jq -r 'select(.type == "flow_new" and .key.recirc_id == 0) | .actions[] | select(.type == "recirc") | .recirc_id' "$TOOL_OUT" | head -1)
    [[ -n $n && $n != 0 ]] || { show "$TOOL_OUT"; fail "no recirc action in the recirc_id 0 flow put"; }
    assert_json_ge 1 ".type == \"flow_new\" and .key.recirc_id == 0 and .actions[0].type == \"ct\" and .actions[0].zone == 1 and .actions[1].type == \"recirc\""
    assert_json_ge 1 ".type == \"flow_new\" and .key.recirc_id == $n and .key.ipv4_src == \"$IP1\" and (.actions[0].type == \"output\")"
    assert_json_ge 1 ".type == \"flow_new\" and .key.recirc_id == 0 and (.megaflow | contains(\"actions:ct(zone=1),recirc(\"))"
    assert_json_ge 2 '.type == "flow_new" and .upcall_latency_ns != null and .upcall_latency_ns > 0'
    note "recirc id $n; $(jq -r 'select(.type == "flow_new") | .megaflow' "$TOOL_OUT" | tr '\n' ' ')"
}

# --eth-src in upper case matches; the statistics equal the printed events.
test_ovs_userspace_megaflow_eth_src_stats() {
    need root cmd:ping
    ovs_ready
    local mac1
    mac1=$(ns_mac "$NS1" "$VETH1")
    tool_start ovs_userspace_megaflow --eth-src "${mac1^^}"
    ovs_purge
    in1 ping -c 2 -i 0.3 -W 2 "$IP2" >/dev/null || fail "ping failed"
    sleep 1
    tool_stop 1
    local up fl
    up=$(count '^=== UPCALL EVENT \(filtered\) ===$') fl=$(count '^=== FLOW CMD NEW EVENT \(filtered\) ===$')
    [[ $up -ge 1 && $fl -ge 1 ]] || { show "$TOOL_OUT"; fail "upcalls $up, flows $fl"; }
    assert_grep "^  Ethernet Source: $mac1$"
    assert_grep "^   Filtered upcalls: $up$"
    assert_grep "^   Filtered flows: $fl$"
    [[ $(grep '^SKB Eth: ' "$TOOL_OUT" | grep -vc "^SKB Eth: $mac1 ") -eq 0 ]] || fail "an upcall event with another eth src"
    [[ $(grep -c "^Key Eth: $mac1 -> " "$TOOL_OUT") -eq $fl ]] || fail "a flow event with another eth src"
}

# Without the kernel hook (here forced with --attach tp_btf, which refuses
# fentry/kprobe) flow puts are read from ovs-vswitchd's sendmsg in libc.
test_ovs_userspace_megaflow_sendmsg() {
    need root cmd:ping tracepoint:openvswitch/ovs_dp_upcall
    ovs_ready
    local mac1
    mac1=$(ns_mac "$NS1" "$VETH1")
    tool_start ovs_userspace_megaflow --attach tp_btf --ip-src "$IP1" --ip-proto 1
    grep -q 'ovs_flow_cmd_new via uprobe:.*sendmsg' "$TOOL_ERR" || { cat "$TOOL_ERR"; fail "flow puts not read from sendmsg"; }
    ovs_purge
    in1 ping -c 1 -W 2 "$IP2" >/dev/null || fail "ping failed"
    sleep 1
    local dp
    dp=$(ovs_flow_lines "in_port($DP1),eth(src=$mac1" | grep -F 'eth_type(0x0800)')
    tool_stop 1
    local mf
    mf=$(megaflow_of "$TOOL_OUT" "in_port($DP1)")
    [[ -n $dp && "$mf" == "$dp" ]] || { ovs-dpctl dump-flows; show "$TOOL_OUT"; fail "megaflow '$mf' != dump-flows '$dp'"; }
    assert_grep "^Attached to ovs-vswitchd sendmsg \(flow puts\)$"
}

test_ovs_userspace_megaflow_bad_input() {
    need root
    expect_exit 2 ovs_userspace_megaflow --eth-src zz:54:00:aa:bb:01; grep -q -- '--eth-src' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 ovs_userspace_megaflow --eth-type foo
    expect_exit 2 ovs_userspace_megaflow --eth-type 0x1ffff
    expect_exit 2 ovs_userspace_megaflow --ip-src 1.2.3
    expect_exit 2 ovs_userspace_megaflow --l4-src-port 70000
    expect_exit 2 ovs_userspace_megaflow --ip-proto 300
}

test_ovs_userspace_megaflow_no_datapath() {
    need root
    need_no_ovs
    expect_exit 1 ovs_userspace_megaflow
    [[ $LAST_ERROR == "error: openvswitch kernel datapath not loaded" ]] || fail "message: $LAST_ERROR"
}
