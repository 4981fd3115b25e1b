# Live tests of icmp_tx_latency: real pings leaving "this host" through a Linux
# bridge (host kernel, tracepoints) or an OVS internal port and bridge (VM
# kernels, kprobes). Topology: performance/system-network/testlib.sh.
source "$ROOT/performance/system-network/testlib.sh"
MAIN_TESTS="icmp_tx_latency_pings icmp_tx_latency_concurrent"

tx_checks() {
    local n=$1
    assert_all_json
    [[ $(jcount '.type == "tx"') -eq $n ]] || { show "$TOOL_OUT"; fail "expected $n tx records, got $(jcount '.type == "tx"')"; }
    assert_json_ge "$n" ".type == \"tx\" and .src == \"$IP1\" and .dst == \"$IP2\" and .stages_ns.\"6\" != null"
    # segments >= 0 adding up to the total, which stays under 50 ms (TCG VMs
    # included; an upcall to ovs-vswitchd is the slowest path)
    assert_sums '.type == "tx" and .total_us != null' '0' '.total_us'
    assert_json_none '.type == "tx" and .total_us != null and .total_us >= 50000'
    local must=() s
    [[ $TOPO == ovs ]] && must=(0 1 2 4 5) || must=(0)
    [[ $TOPO == bridge ]] && internal_tp 1 && must+=(1)
    for s in "${must[@]}"; do
        stage_available "$s" || continue
        assert_json_ge "$n" ".type == \"tx\" and .stages_ns.\"$s\" != null"
    done
    for s in 0 1 2 3 4 5 6; do
        stage_available "$s" && continue
        assert_json_none ".type == \"tx\" and .stages_ns.\"$s\" != null"
    done
    note "hook mode $(start_record | jq -r .hook_mode); stages seen: $(jq -r 'select(.type == "tx") | .stages_ns | keys | join(",")' "$TOOL_OUT" | sort -u | tr '\n' ' ')"
}

test_icmp_tx_latency_pings() {
    need root cmd:ping cmd:jq
    lat_topo
    tool_start icmp_tx_latency --src-ip "$IP1" --dst-ip "$IP2" --phy-iface1 "$PHY" --phy-iface2 "$PHY" --json --summary
    on_local ping -v -c 5 -i 0.2 -W 2 "$IP2" >"$T/ping.out" 2>&1 || { cat "$T/ping.out"; fail "ping failed"; }
    tool_stop 1
    tx_checks 5
    local ident seqs
    ident=$(ping_ident "$T/ping.out")
    assert_json_ge 5 ".type == \"tx\" and .id == $ident and .start.comm == \"ping\""
    seqs=$(jq -r 'select(.type == "tx") | .seq' "$TOOL_OUT" | sort -n | tr '\n' ' ')
    [[ $seqs == "1 2 3 4 5 " ]] || fail "seqs are '$seqs'"
    assert_json_ge 1 '.type == "summary" and .records == 5 and ([.segments.total.hist_us[].count] | add) == 5'
}

# Two pings at once: ids keep them apart (the original keyed on seq only and
# reported at most 5).
test_icmp_tx_latency_concurrent() {
    need root cmd:ping cmd:jq
    LAT_TOPO=bridge lat_topo
    tool_start icmp_tx_latency --src-ip "$IP1" --dst-ip "$IP2" --phy-iface1 "$PHY" --json --disable-kernel-stacks
    on_local ping -c 5 -i 0.2 -W 2 "$IP2" >/dev/null &
    local bg=$!
    on_local ping -c 5 -i 0.2 -W 2 "$IP2" >/dev/null
    wait "$bg"
    tool_stop 1
    tx_checks 10
    local ids
    ids=$(jq -r 'select(.type == "tx") | .id' "$TOOL_OUT" | sort -u | grep -c .)
    [[ $ids -eq 2 ]] || fail "want 2 distinct ICMP ids, got $ids"
}

test_icmp_tx_latency_text() {
    need root cmd:ping
    LAT_TOPO=bridge lat_topo
    tool_start icmp_tx_latency --src-ip "$IP1" --dst-ip "$IP2" --phy-iface1 "$PHY" --summary --interval 1
    on_local ping -v -c 3 -i 0.3 -W 2 "$IP2" >"$T/ping.out" 2>&1
    sleep 1
    tool_stop 1
    local ident
    ident=$(ping_ident "$T/ping.out")
    assert_grep "^Target physical interface 1: $PHY \(ifindex: [0-9]+"
    assert_count_ge 3 '^--- [0-9-]+ [0-9:.]+ ---$'
    assert_count_ge 1 "^SESSION: $IP1 -> $IP2 Seq=3$"
    assert_count_ge 3 "^  Request: $IP1 -> $IP2 \(ID: $ident, Type: 8\)$"
    assert_count_ge 3 "^  TX Start Context: PID=[0-9]+ +COMM=ping +IF=$INT$"
    assert_count_ge 3 '^  Latencies TX \(us\): \[[0-9]->[0-9]\]: +[0-9]+\.[0-9]{3}.* \| Total\[[0-9]->6\]: +[0-9]+\.[0-9]{3}$'
    assert_count_ge 3 '^  Kernel Stack Traces:$'
    assert_grep '^--- Latency histograms \(us\), [0-9]+ request\(s\) since the last ---$'
    assert_grep '^=== Summary: 3 request\(s\) ===$'
}

# Packets that leave through another interface are not reported.
test_icmp_tx_latency_other_nic() {
    need root cmd:ping cmd:jq
    LAT_TOPO=bridge lat_topo
    ip -n "$NS1" link add "o$PHY" type veth peer name "q$PHY" || fail "cannot add a veth pair"
    tool_start icmp_tx_latency --src-ip "$IP1" --dst-ip "$IP2" --phy-iface1 "o$PHY" --json
    on_local ping -c 3 -i 0.2 -W 2 "$IP2" >/dev/null
    tool_stop 1
    assert_json_none '.type == "tx"'
}

test_icmp_tx_latency_threshold() {
    need root cmd:ping cmd:jq
    LAT_TOPO=bridge lat_topo
    tool_start icmp_tx_latency --src-ip "$IP1" --dst-ip "$IP2" --phy-iface1 "$PHY" --json --latency-ms 1000
    on_local ping -c 3 -i 0.2 -W 2 "$IP2" >/dev/null
    tool_stop 1
    assert_json_none '.type == "tx"'
    grep -q '^Summary: 0 requests reported, 3 below threshold' "$TOOL_ERR" || { cat "$TOOL_ERR"; fail "summary does not count 3 below threshold"; }
}

test_icmp_tx_latency_bad_input() {
    need root
    local ok=(--src-ip 10.96.9.1 --dst-ip 10.96.9.2 --phy-iface1 lo)
    expect_exit 2 icmp_tx_latency --src-ip 10.96.9.1 --dst-ip 10.96.9.2
    expect_exit 2 icmp_tx_latency --src-ip 10.96.9.300 --dst-ip 10.96.9.2 --phy-iface1 lo
    grep -q -- '--src-ip' <<<"$LAST_ERROR" || fail "message does not name --src-ip"
    expect_exit 2 icmp_tx_latency "${ok[@]}" --phy-iface2 nosuch0
    [[ $LAST_ERROR == "error: interface 'nosuch0' not found" ]] || fail "message: $LAST_ERROR"
    expect_exit 2 icmp_tx_latency "${ok[@]}" --latency-ms -2
    expect_exit 2 icmp_tx_latency --src-ip 10.96.9.1 --dst-ip 10.96.9.1 --phy-iface1 lo
}
