# Live tests of ovs_userspace_megaflow_kernel_parse: the flow key decoded in
# BPF must print what ovs-dpctl dump-flows shows (VM kernels with OVS).
source "$ROOT/ovs-measurement/testlib-ovs.sh"

# One ping after a purge, filtered in the kernel on ns1's MAC (given in upper
# case): the upcall and the flow put; in_port, both MACs (all six bytes of the
# destination: the original overwrote its first two with in_port), the
# Ethernet mask and the whole megaflow equal the datapath's flow.
# On the other kernels of the matrix (MAIN_ONLY=1) only these run.
MAIN_TESTS="ovs_userspace_megaflow_kernel_parse_icmp"
test_ovs_userspace_megaflow_kernel_parse_icmp() {
    need root cmd:ping
    ovs_ready
    local mac1 mac2
    mac1=$(ns_mac "$NS1" "$VETH1") mac2=$(ns_mac "$NS2" "$VETH2")
    tool_start ovs_userspace_megaflow_kernel_parse --eth-src "${mac1^^}" --ip-proto 1
    ovs_purge
    in1 ping -c 1 -W 2 "$IP2" >/dev/null || fail "ping failed"
    sleep 1
    local dp
    dp=$(ovs_flow_lines "in_port($DP1),eth(src=$mac1,dst=$mac2),eth_type(0x0800)")
    tool_stop 1
    [[ $(count '^=== UPCALL EVENT \(filtered\) ===$') -eq 1 ]] || { show "$TOOL_OUT"; fail "want exactly one upcall event"; }
    [[ $(count '^=== FLOW CMD NEW EVENT \(filtered\) ===$') -eq 1 ]] || { show "$TOOL_OUT"; fail "want exactly one flow event"; }
    assert_grep "^SKB IP: $IP1 -> $IP2 \(ICMP\)$"
    assert_grep "^DP: ifindex=[0-9]+, Netlink PortID: [0-9]+$"
    assert_grep "^Key: recirc_id=0, in_port=$DP1, mark=0x0$"
    assert_grep "^Eth: $mac1 -> $mac2, type=0x0800$"
    assert_grep "^Key IP: $IP1 $IP2 \(ICMP\)$"
    assert_grep "^Mask Eth: ff:ff:ff:ff:ff:ff -> ff:ff:ff:ff:ff:ff$"
    assert_no_grep "^Warning: Mask parse may be wrong"
    assert_grep "^Actions: output:$DP2$"
    assert_grep "^Netlink: has_key=yes, has_mask=yes$"
    local mf
    mf=$(megaflow_of "$TOOL_OUT" "in_port($DP1)")
    [[ -n $dp && "$mf" == "$dp" ]] || { ovs-dpctl dump-flows; fail "megaflow '$mf' != dump-flows '$dp'"; }
    assert_grep "^   Filtered upcalls: 1$"
    assert_grep "^   Filtered flows: 1$"
    note "Megaflow: $mf"
}

# JSON, and statistics: the kernel counts what it filtered out; the filtered
# numbers equal the events printed.
test_ovs_userspace_megaflow_kernel_parse_stats() {
    need root cmd:ping cmd:jq
    ovs_ready
    tool_start ovs_userspace_megaflow_kernel_parse --json --ip-src "$IP1"
    ovs_purge
    in1 ping -c 2 -i 0.3 -W 2 "$IP2" >/dev/null || fail "ping failed"
    sleep 1
    tool_stop 1
    local up fl
    up=$(jcount '.type == "upcall"') fl=$(jcount '.type == "flow_new"')
    [[ $up -ge 1 && $fl -ge 1 ]] || { show "$TOOL_OUT"; fail "upcalls $up, flows $fl"; }
    assert_json_ge 1 ".type == \"summary\" and .filtered_upcalls == $up and .filtered_flows == $fl and .total_upcalls >= $up and .total_flows > $fl"
    assert_json_ge 1 ".type == \"flow_new\" and .key.ipv4_src == \"$IP1\" and .key.in_port == $DP1 and .source == \"bpf\" and (.actions[0].port == $DP2)"
    assert_json_none ".type == \"flow_new\" and .key.ipv4_src != \"$IP1\""
}

test_ovs_userspace_megaflow_kernel_parse_bad_input() {
    need root
    expect_exit 2 ovs_userspace_megaflow_kernel_parse --eth-src zz:54:00:aa:bb:01
    expect_exit 2 ovs_userspace_megaflow_kernel_parse --eth-type foo
    expect_exit 2 ovs_userspace_megaflow_kernel_parse --ip-src 1.2.3
    expect_exit 2 ovs_userspace_megaflow_kernel_parse --l4-src-port 70000
}

test_ovs_userspace_megaflow_kernel_parse_no_datapath() {
    need root
    need_no_ovs
    expect_exit 1 ovs_userspace_megaflow_kernel_parse
    [[ $LAST_ERROR == "error: openvswitch kernel datapath not loaded" ]] || fail "message: $LAST_ERROR"
}
