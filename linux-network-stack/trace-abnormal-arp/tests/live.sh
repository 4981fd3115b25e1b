# Live tests of trace-abnormal-arp: arping between two namespaces.
# On the other kernels of the matrix (MAIN_ONLY=1) only these run.
MAIN_TESTS="trace_abnormal_arp_requests"

test_trace_abnormal_arp_requests() {
    need root cmd:arping cmd:jq
    netns_pair
    local mac1
    mac1=$(in1 cat "/sys/class/net/$VETH1/address")
    tool_start trace-abnormal-arp --json --dev "$VETH2" --spa "$IP1"
    local req=$TOOL_OUT pid=$TOOL_PID
    tool_start trace-abnormal-arp --json --dev "$VETH2" --spa "$IP2"
    local rep=$TOOL_OUT pid2=$TOOL_PID
    tool_start trace-abnormal-arp --json --dev "$VETH2" --spa 10.99.0.77
    local none=$TOOL_OUT
    in1 arping -c 3 -i "$VETH1" -S "$IP1" "$IP2" >/dev/null 2>&1 || true
    tool_stop
    TOOL_PID=$pid2 TOOL_OUT=$rep
    tool_stop 0
    TOOL_PID=$pid TOOL_OUT=$req
    tool_stop 0
    # The requests arrive on VETH2 with NS1's sender MAC; the replies leave VETH2.
    assert_json_ge 3 ".dir == \"rx\" and .op == 1 and .op_name == \"Request\" and .sha == \"$mac1\" and .spa == \"$IP1\" and .tpa == \"$IP2\" and .dev == \"$VETH2\"" "$req"
    assert_json_none '.dir == "tx"' "$req"
    assert_json_ge 3 ".dir == \"tx\" and .op == 2 and .op_name == \"Reply\" and .spa == \"$IP2\" and .tha == \"$mac1\" and .eth_dst == \"$mac1\"" "$rep"
    assert_json_none '.dir != null' "$none"
    # The exit table counts arping's packets (and the kernel's replies) per process.
    assert_json_ge 1 "[.rows[]? | select(.dev == \"$VETH2\" and .packets >= 3)] | length > 0" "$req"
}

test_trace_abnormal_arp_text() {
    need root cmd:arping
    netns_pair
    tool_start trace-abnormal-arp --dev "$VETH2" --op request
    in1 arping -c 2 -i "$VETH1" "$IP2" >/dev/null 2>&1 || true
    tool_stop
    assert_grep "^[0-9:]{8} rx dev=$VETH2 pkt_type=[0-9]+ op=1\(Request\) sha=([0-9a-f]{2}:){5}[0-9a-f]{2} spa=$IP1 tha=\S+ tpa=$IP2 eth_src=\S+ eth_dst=ff:ff:ff:ff:ff:ff comm=\S+ pid=[0-9]+$"
    assert_no_grep 'op=2\(Reply\)'
    assert_grep '^  \S+\+0x[0-9a-f]+'
    assert_grep '^Packet count by process and interface:$'
    assert_grep "^comm +dev +packets$"
}

test_trace_abnormal_arp_bad_input() {
    need root
    expect_exit 2 trace-abnormal-arp; grep -q -- '--dev' <<<"$LAST_ERROR" || fail "$LAST_ERROR"
    expect_exit 2 trace-abnormal-arp --dev lo --spa 1.2.3.4.5
    expect_exit 2 trace-abnormal-arp --dev lo --op maybe
}
