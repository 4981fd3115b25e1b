# Live tests of icmp_rtt_latency: real pings between two namespaces through a
# Linux bridge (host kernel, tracepoints) or an OVS bridge (VM kernels,
# kprobes). Topology: performance/system-network/testlib.sh (lat_topo).
source "$ROOT/performance/system-network/testlib.sh"
MAIN_TESTS="icmp_rtt_latency_outgoing icmp_rtt_latency_incoming icmp_rtt_latency_netem"

# Every record: the ping's id, seq 1..N, segments >= 0 adding up to the RTT,
# and the stages this kernel and topology must show.
rtt_checks() {
    local n=$1 ident=$2 dir=$3
    assert_all_json
    local recs
    recs=$(jcount '.type == "rtt"')
    [[ $recs -eq $n ]] || { show "$TOOL_OUT"; fail "expected $n rtt records, got $recs"; }
    assert_json_ge "$n" ".type == \"rtt\" and .id == $ident and .direction == \"$dir\""
    local seqs
    seqs=$(jq -r 'select(.type == "rtt") | .seq' "$TOOL_OUT" | sort -n | tr '\n' ' ')
    [[ $seqs == "$(seq -s ' ' 1 "$n") " ]] || fail "seqs are '$seqs', want 1..$n"
    assert_sums '.type == "rtt"' '.inter_path_us' '.rtt_us'
    # The stages every kernel has (the NIC and the end points), plus what the
    # topology passes through where this kernel can hook it.
    local must=(6 7 13) s
    [[ $dir == incoming ]] && must=(0 13)
    if [[ $TOPO == ovs ]]; then
        [[ $dir == outgoing ]] && must+=(0 1 2 5 8 9 12) || must+=(1 2 5 6 7 8 9 12)
    else
        [[ $dir == outgoing ]] && must+=(0) || must+=(6 7)
        [[ $dir == outgoing ]] && internal_tp 1 && must+=(1)
        [[ $dir == incoming ]] && internal_tp 8 && must+=(8)
    fi
    for s in "${must[@]}"; do
        stage_available "$s" || continue
        assert_json_ge "$n" ".type == \"rtt\" and .stages[$s] != null"
    done
    # A stage without a hook is null in every record (never a number).
    for s in $(seq 0 13); do
        stage_available "$s" && continue
        assert_json_none ".type == \"rtt\" and .stages[$s] != null"
    done
    note "hook mode $(start_record | jq -r .hook_mode); stages seen: $(jq -r 'select(.type == "rtt") | [.stages[] | select(. != null) | .id] | map(tostring) | join(",")' "$TOOL_OUT" | sort -u | tr '\n' ' ')"
}

test_icmp_rtt_latency_outgoing() {
    need root cmd:ping cmd:jq
    lat_topo
    tool_start icmp_rtt_latency --src-ip "$IP1" --dst-ip "$IP2" --phy-iface1 "$PHY" --json --summary
    # an empty flow table: the first request and reply go up to ovs-vswitchd
    [[ $TOPO == ovs ]] && ovs-appctl revalidator/purge
    on_local ping -v -c 5 -i 0.2 -W 2 "$IP2" >"$T/ping.out" 2>&1 || { cat "$T/ping.out"; fail "ping failed"; }
    tool_stop 1
    local ident
    ident=$(ping_ident "$T/ping.out")
    rtt_checks 5 "$ident" outgoing
    if [[ $TOPO == ovs ]] && stage_available 3; then
        assert_json_ge 1 '.type == "rtt" and .seq == 1 and .upcall_p1 == true and .stages[3] != null'
        assert_json_none '.type == "rtt" and .seq > 2 and (.upcall_p1 or .upcall_p2)'
    fi
    assert_json_ge 5 '.type == "rtt" and .path1.comm == "ping" and .path1.icmp_type == 8 and .path2.icmp_type == 0'
    # ping's time ends at the reply's kernel receive timestamp: the tool's time
    # from the first stage to the reply reaching the NIC (stage 7) is inside it,
    # give or take the tool's own overhead (the end stage may be later: in
    # tracepoint mode it is the ping socket's read).
    local i t d
    for i in 1 2 3 4 5; do
        t=$(grep -oE "icmp_seq=$i .*time=[0-9.]+" "$T/ping.out" | grep -oE '[0-9.]+$')
        d=$(jq -r "select(.type == \"rtt\" and .seq == $i) | ((.stages[7].ts_ns - ([.stages[] | select(. != null)][0].ts_ns)) / 1000)" "$TOOL_OUT")
        awk -v r="$d" -v p="$t" 'BEGIN { exit !(r > 0 && r <= p * 1000 * 1.2 + 50) }' ||
            fail "seq $i: tool's request-to-reply-at-NIC $d us vs ping $t ms"
    done
    # The summary's histograms count every round trip.
    assert_json_ge 1 '.type == "summary" and .records == 5 and ([.segments.total.hist_us[].count] | add) == 5'
    assert_json_ge 1 '.type == "summary" and ([.segments.inter_path.hist_us[].count] | add) == 5'
    assert_grep '"type":"start"'
    grep -q '^hook mode: ' "$TOOL_ERR" || fail "no hook mode line on stderr"
}

test_icmp_rtt_latency_incoming() {
    need root cmd:ping cmd:jq
    lat_topo
    tool_start icmp_rtt_latency --src-ip "$IP2" --dst-ip "$IP1" --phy-iface1 "$PHY" --direction incoming --json
    in2 ping -v -c 5 -i 0.2 -W 2 "$IP1" >"$T/ping.out" 2>&1 || { cat "$T/ping.out"; fail "ping failed"; }
    tool_stop 1
    rtt_checks 5 "$(ping_ident "$T/ping.out")" incoming
}

# Text output: the original's block layout, N/A stages named once at start.
test_icmp_rtt_latency_text() {
    need root cmd:ping
    LAT_TOPO=bridge lat_topo
    tool_start icmp_rtt_latency --src-ip "$IP1" --dst-ip "$IP2" --phy-iface1 "$PHY" --summary --interval 1
    on_local ping -v -c 3 -i 0.3 -W 2 "$IP2" >"$T/ping.out" 2>&1
    sleep 1
    tool_stop 1
    local ident
    ident=$(ping_ident "$T/ping.out")
    assert_grep '^=== ICMP Round-Trip Latency Tracer ===$'
    assert_grep '^Trace Direction: OUTGOING$'
    assert_count_ge 3 '^=== ICMP RTT Trace: [0-9-]+ [0-9:.]+ \(Outgoing \(Local -> Remote\)\) ===$'
    assert_count_ge 1 "^Session: $IP1 \($IP1\) -> $IP2 \($IP2\) \(ID: $ident, Seq: 3\)$"
    assert_count_ge 3 "^Path 1 \(Request: TX to $IP2\) +: PID=[0-9]+ +COMM=ping +IF=$INT +ICMP_Type=8$"
    assert_count_ge 3 "^  \[ 6->7 \]|^  \[ 7->13\] "
    assert_count_ge 3 '^Total RTT \(Path1 Start to Path2 End\): +[0-9]+\.[0-9]{3} us$'
    assert_count_ge 3 '^Inter-Path Latency \(P1 end -> P2 start\): +[0-9]+\.[0-9]{3} us$'
    assert_count_ge 3 '^Kernel Stack Traces \(Path1: 0-6, Path2: 7-13\):$'
    assert_grep '^--- Latency histograms \(us\), [0-9]+ round trip\(s\) since the last ---$'
    assert_grep '^=== Summary: 3 round trip\(s\) ===$'
    assert_grep '^Total RTT \(Path1 Start to Path2 End\) +3 '
    # Stages without a hook (no kprobes and no OVS: the host): named once,
    # with the reason, never given a number.
    if [[ ! -d /sys/bus/event_source/devices/kprobe && ! -d /sys/module/openvswitch ]]; then
        assert_count_ge 1 '^Stage 2 \(P1:S2_OVS_DP_PROC \(ovs_dp_process_packet\)\): N/A \(no hook on this kernel\)$'
        assert_no_grep '^  Stage  2 \('
    fi
}

test_icmp_rtt_latency_threshold() {
    need root cmd:ping cmd:jq
    LAT_TOPO=bridge lat_topo
    tool_start icmp_rtt_latency --src-ip "$IP1" --dst-ip "$IP2" --phy-iface1 "$PHY" --json --latency-ms 1000
    on_local ping -c 3 -i 0.2 -W 2 "$IP2" >/dev/null
    tool_stop 1
    assert_json_none '.type == "rtt"'
    grep -q '^Summary: 0 round trips reported, 3 below threshold' "$TOOL_ERR" || { cat "$TOOL_ERR"; fail "summary does not count 3 below threshold"; }
}

# netem on the uplink delays the request after it left the host (stage 6):
# only the inter-path segment grows, by the 20 ms.
test_icmp_rtt_latency_netem() {
    need root cmd:ping cmd:jq cmd:tc module:sch_netem
    lat_topo
    tool_start icmp_rtt_latency --src-ip "$IP1" --dst-ip "$IP2" --phy-iface1 "$PHY" --json --disable-kernel-stacks
    on_local ping -c 5 -i 0.2 -W 2 "$IP2" >/dev/null
    on_local tc qdisc add dev "$PHY" root netem delay 20ms || fail "cannot add netem"
    on_local ping -c 5 -i 0.2 -W 2 "$IP2" >/dev/null
    tool_stop 1
    [[ $(jcount '.type == "rtt"') -eq 10 ]] || { show "$TOOL_OUT"; fail "want 10 records"; }
    assert_sums '.type == "rtt"' '.inter_path_us' '.rtt_us'
    # per-segment averages of seq 1-5 (no netem) and 6-10 (netem)
    jq -s '[.[] | select(.type == "rtt")] as $r |
        def avg(f): (map(f) | add / length);
        ($r | map(select(.seq <= 5))) as $a | ($r | map(select(.seq > 5))) as $b |
        {inter: (($b | avg(.inter_path_us)) - ($a | avg(.inter_path_us))),
         segs: [($a[0].segments_us | keys[]) as $k | {k: $k, d: (($b | avg(.segments_us[$k])) - ($a | avg(.segments_us[$k])))}]}' \
        "$TOOL_OUT" >"$T/diff.json"
    note "growth: $(jq -c . "$T/diff.json")"
    jq -e '.inter >= 16000 and .inter <= 24000' "$T/diff.json" >/dev/null || fail "inter-path grew by $(jq .inter "$T/diff.json") us, want 20000 +-20%"
    jq -e '[.segs[] | select(.d > 2000)] | length == 0' "$T/diff.json" >/dev/null || fail "a stage segment grew too: $(jq -c .segs "$T/diff.json")"
}

test_icmp_rtt_latency_bad_input() {
    need root
    local ok=(--src-ip 10.96.9.1 --dst-ip 10.96.9.2 --phy-iface1 lo)
    expect_exit 2 icmp_rtt_latency --src-ip 300.1.1.1 --dst-ip 10.96.9.2 --phy-iface1 lo
    grep -q -- '--src-ip' <<<"$LAST_ERROR" || fail "message does not name --src-ip"
    expect_exit 2 icmp_rtt_latency --src-ip 10.96.9.1 --dst-ip 10.96.9.2
    expect_exit 2 icmp_rtt_latency --src-ip 10.96.9.1 --dst-ip 10.96.9.2 --phy-iface1 nosuch0
    [[ $LAST_ERROR == "error: interface 'nosuch0' not found" ]] || fail "message: $LAST_ERROR"
    expect_exit 2 icmp_rtt_latency "${ok[@]}" --direction sideways
    expect_exit 2 icmp_rtt_latency "${ok[@]}" --latency-ms -1
    expect_exit 2 icmp_rtt_latency "${ok[@]}" --latency-ms nan
    expect_exit 2 icmp_rtt_latency --src-ip 10.96.9.1 --dst-ip 10.96.9.1 --phy-iface1 lo
    grep -q 'source and destination must differ' <<<"$LAST_ERROR" || fail "message: $LAST_ERROR"
    expect_exit 2 icmp_rtt_latency "${ok[@]}" --interval 0
    expect_exit 2 icmp_rtt_latency "${ok[@]}" --phy-iface2 a234567890123456
}
