# Live tests of icmp_rx_latency: real pings entering "this host" through a Linux
# bridge (host kernel, tracepoints) or an OVS bridge and internal port (VM
# kernels, kprobes). Topology: performance/system-network/testlib.sh.
source "$ROOT/performance/system-network/testlib.sh"
MAIN_TESTS="icmp_rx_latency_requests icmp_rx_latency_replies"

rx_checks() {
    local n=$1 type=$2 src=$3 dst=$4
    assert_all_json
    [[ $(jcount '.type == "rx"') -eq $n ]] || { show "$TOOL_OUT"; fail "expected $n rx records, got $(jcount '.type == "rx"')"; }
    assert_json_ge "$n" ".type == \"rx\" and .icmp_type == $type and .src == \"$src\" and .dst == \"$dst\" and .stages_ns.\"0\" != null and .stages_ns.\"6\" != null and .first.ifname == \"$PHY\""
    local seqs
    seqs=$(jq -r 'select(.type == "rx") | .seq' "$TOOL_OUT" | sort -n | tr '\n' ' ')
    [[ $seqs == "$(seq -s ' ' 1 "$n") " ]] || fail "seqs are '$seqs', want 1..$n"
    assert_sums '.type == "rx"' '0' '.total_us'
    assert_json_none '.type == "rx" and (.total_us == null or .total_us >= 50000)'
    local s
    if [[ $TOPO == ovs ]]; then
        for s in 1 2 4 5; do
            stage_available "$s" || continue
            assert_json_ge "$n" ".type == \"rx\" and .stages_ns.\"$s\" != null"
        done
    fi
    for s in 0 1 2 3 4 5 6; do
        stage_available "$s" && continue
        assert_json_none ".type == \"rx\" and .stages_ns.\"$s\" != null"
    done
    note "hook mode $(start_record | jq -r .hook_mode); stages seen: $(jq -r 'select(.type == "rx") | .stages_ns | keys | join(",")' "$TOOL_OUT" | sort -u | tr '\n' ' ')"
}

# The remote pings this host: echo requests (type 8). With an empty OVS flow
# table the first one goes up to ovs-vswitchd (upcall), the others do not.
test_icmp_rx_latency_requests() {
    need root cmd:ping cmd:jq
    lat_topo
    tool_start icmp_rx_latency --phy-iface1 "$PHY" --phy-iface2 "$PHY" --src-ip "$IP2" --dst-ip "$IP1" \
        --tracepoint-end-at-reply --json --summary
    [[ $TOPO == ovs ]] && ovs-appctl revalidator/purge
    in2 ping -v -c 5 -i 0.2 -W 2 "$IP1" >"$T/ping.out" 2>&1 || { cat "$T/ping.out"; fail "ping failed"; }
    tool_stop 1
    rx_checks 5 8 "$IP2" "$IP1"
    assert_json_ge 5 ".type == \"rx\" and .id == $(ping_ident "$T/ping.out")"
    if [[ $TOPO == ovs ]] && stage_available 3; then
        assert_json_ge 1 '.type == "rx" and .seq == 1 and .upcall == true and .stages_ns."3" != null'
        assert_json_none '.type == "rx" and .seq > 2 and .upcall == true'
    fi
    assert_json_ge 1 '.type == "summary" and .records == 5 and ([.segments.total.hist_us[].count] | add) == 5'
}

# This host pings the remote: the echo replies (type 0) are the incoming packets.
test_icmp_rx_latency_replies() {
    need root cmd:ping cmd:jq
    lat_topo
    tool_start icmp_rx_latency --phy-iface1 "$PHY" --src-ip "$IP2" --dst-ip "$IP1" --json
    on_local ping -v -c 5 -i 0.2 -W 2 "$IP2" >"$T/ping.out" 2>&1 || { cat "$T/ping.out"; fail "ping failed"; }
    tool_stop 1
    rx_checks 5 0 "$IP2" "$IP1"
    assert_json_ge 5 ".type == \"rx\" and .id == $(ping_ident "$T/ping.out")"
}

test_icmp_rx_latency_text() {
    need root cmd:ping
    LAT_TOPO=bridge lat_topo
    tool_start icmp_rx_latency --phy-iface1 "$PHY" --phy-iface2 "$PHY" --summary --interval 1
    on_local ping -v -c 3 -i 0.3 -W 2 "$IP2" >"$T/ping.out" 2>&1
    sleep 1
    tool_stop 1
    local ident
    ident=$(ping_ident "$T/ping.out")
    assert_grep "^Target physical interface 1: $PHY \(ifindex: [0-9]+"
    assert_grep '^Warning: The two specified interfaces have the same index$'
    assert_count_ge 3 '^--- [0-9-]+ [0-9:.]+ ---$'
    assert_count_ge 1 "^PKT: $IP2 -> $IP1 Proto=ICMP ICMP Type=0 ID=$ident Seq=3$"
    assert_count_ge 3 "^  Initial Context: PID=[0-9]+ +COMM=.+ IF=$PHY$"
    assert_count_ge 3 '^  Latencies \(us\): \[0->[0-9]\]: +[0-9]+\.[0-9]{3}.* \| Total\[0->6\]: +[0-9]+\.[0-9]{3}$'
    assert_count_ge 3 '^    Stage 0 \(NETIF_RECV\): Stack ID [0-9]+$'
    assert_grep '^--- Latency histograms \(us\), [0-9]+ packet\(s\) since the last ---$'
    assert_grep '^=== Summary: 3 packet\(s\) ===$'
}

# Packets entering through another interface are not reported.
test_icmp_rx_latency_other_nic() {
    need root cmd:ping cmd:jq
    LAT_TOPO=bridge lat_topo
    ip -n "$NS1" link add "o$PHY" type veth peer name "q$PHY" || fail "cannot add a veth pair"
    tool_start icmp_rx_latency --phy-iface1 "o$PHY" --json --tracepoint-end-at-reply
    on_local ping -c 3 -i 0.2 -W 2 "$IP2" >/dev/null
    in2 ping -c 3 -i 0.2 -W 2 "$IP1" >/dev/null
    tool_stop 1
    assert_json_none '.type == "rx"'
}

test_icmp_rx_latency_threshold() {
    need root cmd:ping cmd:jq
    LAT_TOPO=bridge lat_topo
    tool_start icmp_rx_latency --phy-iface1 "$PHY" --json --latency-ms 1000
    on_local ping -c 3 -i 0.2 -W 2 "$IP2" >/dev/null
    tool_stop 1
    assert_json_none '.type == "rx"'
    grep -q '^Summary: 0 packets reported, 3 below threshold' "$TOOL_ERR" || { cat "$TOOL_ERR"; fail "summary does not count 3 below threshold"; }
}

test_icmp_rx_latency_bad_input() {
    need root
    expect_exit 2 icmp_rx_latency --src-ip 10.0.0.1
    expect_exit 2 icmp_rx_latency --phy-iface1 lo --src-ip 10.0.0.256
    grep -q -- '--src-ip' <<<"$LAST_ERROR" || fail "message does not name --src-ip"
    expect_exit 2 icmp_rx_latency --phy-iface1 nosuch0
    [[ $LAST_ERROR == "error: interface 'nosuch0' not found" ]] || fail "message: $LAST_ERROR"
    expect_exit 2 icmp_rx_latency --phy-iface1 lo --latency-ms -0.5
    expect_exit 2 icmp_rx_latency --phy-iface1 lo --interval -1
}
