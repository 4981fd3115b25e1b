# Live tests of tcp_latency: real TCP connections (nc) between "this host" and
# a remote netns through a Linux bridge (host kernel, tracepoints) or an OVS
# internal port and bridge (VM kernels, kprobes).
# Topology: performance/system-network/testlib.sh.
source "$ROOT/performance/system-network/testlib.sh"
MAIN_TESTS="tcp_latency_outgoing tcp_latency_incoming"

# listen NS_CMD PORT: an nc that accepts connection after connection.
listen() {
    "$1" nc -lk "$2" >/dev/null 2>&1 &
    local pid=$!
    defer "kill $pid"
    sleep 0.3
}

seg_checks() {
    local sport_match=$1
    assert_all_json
    # every completed segment: both end stages, segments >= 0 adding up to a
    # total under 50 ms (TCG VMs included)
    assert_json_none ".type == \"segment\" and (.stages_ns.\"6\" == null or .total_us == null)"
    assert_sums '.type == "segment"' '0' '.total_us'
    assert_json_none '.type == "segment" and (.total_us <= 0 or .total_us >= 50000)'
    assert_json_none ".type == \"segment\" and (.sport != $sport_match and .dport != $sport_match)"
    local s
    for s in 0 1 2 3 4 5 6; do
        stage_available "$s" && continue
        assert_json_none ".type == \"segment\" and .stages_ns.\"$s\" != null"
    done
    if stage_available 0; then assert_json_none '.type == "segment" and .stages_ns."0" == null'; fi
    note "hook mode $(start_record | jq -r .hook_mode); $(jcount '.type == "segment"') segments, stages seen: $(jq -r 'select(.type == "segment") | .stages_ns | keys | join(",")' "$TOOL_OUT" | sort -u | tr '\n' ' ')"
}

# Outgoing: this host connects to a listener in the remote netns, three times.
test_tcp_latency_outgoing() {
    need root cmd:nc cmd:jq
    lat_topo
    listen in2 5201
    listen in2 5202
    tool_start tcp_latency --src-ip "$IP1" --dst-ip "$IP2" --dst-port 5201 --phy-iface1 "$PHY" --json --quiet-stages --summary
    local i
    for i in 1 2 3; do echo hi | on_local nc -q1 "$IP2" 5201; done
    # another port: not reported
    echo hi | on_local nc -q1 "$IP2" 5202
    tool_stop 1
    seg_checks 5201
    assert_json_ge 3 ".type == \"segment\" and .src == \"$IP1\" and .dst == \"$IP2\" and .dport == 5201 and (.flags | contains(\"S\"))"
    assert_json_ge 3 ".type == \"segment\" and .dport == 5201 and (.flags | contains(\"P\")) and .len == 3"
    assert_json_none '.type == "segment" and (.sport == 5202 or .dport == 5202)'
    assert_json_none '.type == "stage"'
    assert_json_ge 1 '.type == "summary" and .records >= 6'
}

# Incoming: the remote connects to a listener on this host.
test_tcp_latency_incoming() {
    need root cmd:nc cmd:jq
    lat_topo
    listen on_local 5201
    tool_start tcp_latency --src-ip "$IP1" --dst-ip "$IP2" --src-port 5201 --phy-iface1 "$PHY" --direction incoming --json --quiet-stages
    local i
    for i in 1 2 3; do echo hello | in2 nc -q1 "$IP1" 5201; done
    tool_stop 1
    seg_checks 5201
    assert_json_ge 3 ".type == \"segment\" and .src == \"$IP2\" and .dst == \"$IP1\" and .dport == 5201 and .len == 6 and (.flags | contains(\"P\"))"
    # with a hook at tcp_v4_rcv the handshake's SYN completes too
    if [[ $(start_record | jq -r '.stages[6].hook') == tcp_v4_rcv ]]; then
        assert_json_ge 3 '.type == "segment" and .dport == 5201 and (.flags | contains("S"))'
    fi
}

# Per-stage lines and the completion block of the original, plus histograms.
test_tcp_latency_text() {
    need root cmd:nc
    LAT_TOPO=bridge lat_topo
    listen in2 5201
    tool_start tcp_latency --src-ip "$IP1" --dst-ip "$IP2" --dst-port 5201 --phy-iface1 "$PHY" --summary --interval 1
    echo hi | on_local nc -q1 "$IP2" 5201
    sleep 1
    tool_stop 1
    assert_grep '^=== TCP Latency Tracer ===$'
    assert_grep "^Source IP: $IP1 \(0x[0-9a-f]{8}\)$"
    assert_grep '^Direction: outgoing'
    assert_count_ge 1 "^\[[0-9:.]+\] Stage 6 \(DEV_QUEUE/TCP_RCV\): $IP1:[0-9]+ -> $IP2:5201 \(SEQ:[0-9]+ ACK:[0-9]+ FLAGS:S\) PID:[0-9]+ COMM:.* IF:$PHY$"
    assert_count_ge 1 "^\[[0-9:.]+\] Stage 6 \(DEV_QUEUE/TCP_RCV\): $IP1:[0-9]+ -> $IP2:5201 \(SEQ:[0-9]+ ACK:[0-9]+ FLAGS:PA\)"
    assert_count_ge 2 '^  ==> COMPLETE FLOW LATENCY: [0-9]+\.[0-9]{3} us$'
    assert_count_ge 2 '^      Stage [0-9]->6: [0-9]+\.[0-9]{3} us$'
    assert_grep '^--- Latency histograms \(us\), [0-9]+ segment\(s\) since the last ---$'
    assert_grep '^=== Summary: [0-9]+ segment\(s\) ===$'
}

test_tcp_latency_bad_input() {
    need root
    local ok=(--src-ip 10.96.9.1 --dst-ip 10.96.9.2 --phy-iface1 lo)
    expect_exit 2 tcp_latency "${ok[@]}" --src-port 70000
    grep -q -- '--src-port' <<<"$LAST_ERROR" || fail "message does not name --src-port"
    expect_exit 2 tcp_latency "${ok[@]}" --dst-port -5
    expect_exit 2 tcp_latency --src-ip 10.96.9.1 --dst-ip 10.96.9.2
    expect_exit 2 tcp_latency --src-ip 1.2.3 --dst-ip 10.96.9.2 --phy-iface1 lo
    expect_exit 2 tcp_latency "${ok[@]}" --direction sideways
    expect_exit 2 tcp_latency --src-ip 10.96.9.1 --dst-ip 10.96.9.2 --phy-iface1 nosuch0
    expect_exit 2 tcp_latency --src-ip 10.96.9.1 --dst-ip 10.96.9.1 --phy-iface1 lo
}
