# Live tests of ovs-upcall-execute: a kernel-datapath OVS bridge with two
# namespace ports (VM kernels; the host has no openvswitch module).
source "$ROOT/ovs-measurement/testlib-ovs.sh"

# Five first pings of a flow: five Echo Request upcalls (and the replies, which
# miss too), seq 1, from port 1, each timed 0 < t < 1 s. Then the same flow
# again while its megaflow is installed: no upcall, no event.
# On the other kernels of the matrix (MAIN_ONLY=1) only these run.
MAIN_TESTS="ovs_upcall_execute_icmp ovs_upcall_execute_split ovs_upcall_execute_tracepoint_tcp"
test_ovs_upcall_execute_icmp() {
    need root cmd:ping cmd:jq
    ovs_ready
    tool_start ovs-upcall-execute --json --src-ip "$IP1"
    local i
    for i in 1 2 3 4 5; do
        ovs_purge
        in1 ping -c 1 -W 2 "$IP2" >/dev/null || fail "ping $i failed"
    done
    sleep 1
    local n5
    n5=$(jcount '.icmp_type == 8')
    in1 ping -c 3 -i 0.2 -W 2 "$IP2" >/dev/null
    tool_stop 1
    assert_json_ge 5 ".saddr == \"$IP1\" and .daddr == \"$IP2\" and .icmp_type == 8 and .icmp_seq == 1 and .latency_ns > 0 and .latency_ns < 1000000000"
    [[ $(jcount '.icmp_type == 8') -eq 5 ]] || { show "$TOOL_OUT"; fail "want exactly 5 Echo Request events"; }
    [[ $n5 -eq 5 ]] || fail "$n5 events before the installed-flow pings, want 5"
    assert_json_ge 5 ".icmp_type == 8 and .dev == \"$PORT1\" and .ts_execute_ns > .ts_upcall_ns"
    if [[ -e /sys/kernel/btf/openvswitch ]]; then
        assert_json_ge 5 ".icmp_type == 8 and .in_port == $DP1 and (.upcall_portid > 0)"
    else
        assert_json_ge 5 '.icmp_type == 8 and .in_port == null'
        note "no openvswitch module BTF: in_port/portid are null"
    fi
    # Five distinct pings (ids differ), each matched with its own execution.
    [[ $(jq -r 'select(.icmp_type == 8) | .icmp_id' "$TOOL_OUT" | sort -u | grep -c .) -eq 5 ]] || fail "echo ids not distinct"
    assert_json_ge 1 '.type == "summary" and .count >= 5 and .p50_ns > 0 and (.hist_us | length) > 0'
    note "$(jq -r 'select(.type == "summary") | "count \(.count), p50 \(.p50_ns/1e6) ms, max \(.max_ns/1e6) ms"' "$TOOL_OUT")"
}

# Text output, stacks, and a vswitchd stopped for 0.4 s after the upcall: it waits >= 300 ms.
test_ovs_upcall_execute_stopped_vswitchd() {
    need root cmd:ping
    ovs_ready
    local pid
    pid=$(cat /run/openvswitch/ovs-vswitchd.pid 2>/dev/null || pidof ovs-vswitchd)
    [[ -n $pid ]] || fail "no ovs-vswitchd pid"
    tool_start ovs-upcall-execute --src-ip "$IP1" --dst-ip "$IP2"
    ovs_purge
    defer "kill -CONT $pid"
    local m0
    m0=$(ovs_missed)
    kill -STOP "$pid"
    in1 ping -c 1 -W 5 "$IP2" >"$T/ping" 2>&1 &
    local ping=$! i
    # The kernel counts the miss when it queues the upcall (vswitchd is stopped).
    for ((i = 0; i < 50; i++)); do [[ $(ovs_missed) -gt $m0 ]] && break; sleep 0.1; done
    sleep 0.4
    kill -CONT "$pid"
    wait "$ping" || { cat "$T/ping"; fail "ping through a resumed vswitchd failed"; }
    tool_stop 1
    assert_grep "^  Src IP: $IP1, Dst IP: $IP2\$"
    assert_grep "^  IP Proto: 1, ICMP Type: Echo Request\$"
    assert_grep "^  ICMP ID: [0-9]+, ICMP Seq: 1\$"
    assert_grep "^  ovs_dp_upcall kernel stack:"
    assert_grep "^    ovs_dp_upcall\+0x"
    assert_grep "^  ovs_flow_key_extract_userspace kernel stack:"
    assert_grep "^    ovs_packet_cmd_execute\+0x"
    local ms
    ms=$(grep -oE 'OVS Upcall Processing Time: [0-9.]+' "$TOOL_OUT" | head -1 | awk '{print $NF}')
    [[ -n $ms ]] || { show "$TOOL_OUT"; fail "no processing time"; }
    awk -v m="$ms" 'BEGIN {exit !(m >= 300)}' || fail "latency $ms ms with vswitchd stopped 0.4 s, want >= 300"
    note "stopped vswitchd: $ms ms"
    assert_grep "^Count: 1$"
    assert_grep "^Latency histogram:"
}

# Without kprobe/fentry the end is the first datapath action of the returned
# packet (ovs_do_execute_action tracepoint); also TCP keyed by the SYN's sequence.
test_ovs_upcall_execute_tracepoint_tcp() {
    need root cmd:nc cmd:jq tracepoint:openvswitch/ovs_do_execute_action
    ovs_ready
    tool_start ovs-upcall-execute --json --attach tp_btf --protocol tcp --dst-ip "$IP2"
    grep -q 'execute via tp_btf:ovs_do_execute_action' "$TOOL_ERR" || { cat "$TOOL_ERR"; fail "not attached via the tracepoint"; }
    in2 timeout 5 nc -l -p 5201 >/dev/null 2>&1 &
    sleep 0.5
    ovs_purge
    echo hi | in1 timeout 3 nc -w 1 "$IP2" 5201 || true
    tool_stop 1
    assert_json_ge 1 ".saddr == \"$IP1\" and .dport == 5201 and .sport > 0 and .tcp_seq > 0 and .end_hook == \"ovs_do_execute_action\" and .latency_ns > 0"
    assert_json_none '.proto == 1'
}

# --split: the upcall read by a handler thread (libc recvmsg in vswitchd)
# divides the time; the two parts add up to the total.
test_ovs_upcall_execute_split() {
    need root cmd:ping cmd:jq
    ovs_ready
    tool_start ovs-upcall-execute --json --split --stack false --src-ip "$IP1"
    grep -q 'handler_recv via uprobe:.*recvmsg' "$TOOL_ERR" || { cat "$TOOL_ERR"; fail "no recvmsg uprobe"; }
    local i
    for i in 1 2 3; do ovs_purge; in1 ping -c 1 -W 2 "$IP2" >/dev/null; done
    tool_stop 1
    assert_json_ge 3 '.icmp_type == 8 and .split != null and .split.queue_ns > 0 and .split.handler_ns > 0 and (.split.queue_ns + .split.handler_ns == .latency_ns)'
    assert_json_ge 1 '.type == "summary" and .handler_reads >= 3'
}

# A filter that matches nothing: no events, count 0.
test_ovs_upcall_execute_filter_none() {
    need root cmd:ping
    ovs_ready
    tool_start ovs-upcall-execute --src-ip 10.0.0.9
    in1 ping -c 2 -i 0.3 -W 2 "$IP2" >/dev/null
    tool_stop 1
    assert_no_grep "^Time: "
    assert_grep "^Count: 0$"
    assert_grep "^Filters: SRC_IP=10.0.0.9, DST_IP=None, PROTOCOL=icmp$"
}

test_ovs_upcall_execute_bad_input() {
    need root
    expect_exit 2 ovs-upcall-execute --src-ip 10.0.0; grep -q -- '--src-ip' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 ovs-upcall-execute --protocol sctp; grep -q -- '--protocol' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 ovs-upcall-execute --stack maybe
    expect_exit 2 ovs-upcall-execute --dst-ip 1.2.3.4.5
}

# Kernels without the datapath: one clear line, exit 1.
test_ovs_upcall_execute_no_datapath() {
    need root
    need_no_ovs
    expect_exit 1 ovs-upcall-execute
    [[ $LAST_ERROR == "error: openvswitch kernel datapath not loaded" ]] || fail "message: $LAST_ERROR"
}
