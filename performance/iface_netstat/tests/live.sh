# Live tests of iface_netstat: a 4-queue veth pair between two namespaces with
# IPv6 off and static neighbours (so the only packets are the ones a test
# sends), the tool running inside NS1 (it compares the device by name and
# netns, and counts queues in this netns's sysfs).

# Run on every kernel of the matrix even when time is short (MAIN_ONLY=1).
MAIN_TESTS="iface_netstat_sizes iface_netstat_attach_tracepoint"

# qpair [QUEUES]: $NS1/$NS2, $VETH1 (NS1, $IP1) <-> $VETH2 (NS2, $IP2), MTU
# 65000, IPv6 disabled, permanent neighbour entries. $BIN_DIR is switched to a
# wrapper that runs iface_netstat inside $NS1 (exec keeps the pid, so
# tool_start/tool_stop work unchanged).
qpair() {
    local q=${1:-4} id=$$$RANDOM
    id=${id: -6}
    NS1=in1-$id NS2=in2-$id VETH1=iv1-$id VETH2=iv2-$id IP1=10.99.7.1 IP2=10.99.7.2
    local mac1=02:00:0a:63:07:01 mac2=02:00:0a:63:07:02 ns
    for ns in "$NS1" "$NS2"; do
        ip netns add "$ns" || fail "cannot create netns"
        defer ip netns del "$ns"
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    ip link add "$VETH1" address $mac1 numtxqueues "$q" numrxqueues "$q" netns "$NS1" type veth \
        peer name "$VETH2" address $mac2 numtxqueues "$q" numrxqueues "$q" netns "$NS2" ||
        fail "cannot create a $q-queue veth pair"
    ip -n "$NS1" link set "$VETH1" mtu 65000
    ip -n "$NS2" link set "$VETH2" mtu 65000
    ip -n "$NS1" addr add "$IP1/24" dev "$VETH1"
    ip -n "$NS2" addr add "$IP2/24" dev "$VETH2"
    ip -n "$NS1" neigh add "$IP2" lladdr $mac2 dev "$VETH1" nud permanent
    ip -n "$NS2" neigh add "$IP1" lladdr $mac1 dev "$VETH2" nud permanent
    ip -n "$NS1" link set "$VETH1" up
    ip -n "$NS2" link set "$VETH2" up
    ip -n "$NS1" link set lo up
    ip -n "$NS2" link set lo up
    wait_ping "$NS1" "$IP2" 10
    REAL_BIN=$BIN_DIR
    BIN_DIR=$T/bin
    mkdir -p "$BIN_DIR"
    printf '#!/bin/sh\nexec ip netns exec %s %s/iface_netstat "$@"\n' "$NS1" "$REAL_BIN" >"$BIN_DIR/iface_netstat"
    chmod +x "$BIN_DIR/iface_netstat"
}

# jsum EXPR [FILE]: EXPR summed over every JSON report.
jsum() { jq -s "map($1) | add // 0" "${2:-$TOOL_OUT}"; }

# assert_eq WHAT GOT WANT
assert_eq() { [[ $2 == "$3" ]] || { show "$TOOL_OUT"; fail "$1: got $2, want $3"; }; }
# assert_between WHAT GOT LO HI
assert_between() {
    [[ $2 -ge $3 && $2 -le $4 ]] || { show "$TOOL_OUT"; fail "$1: got $2, want $3..$4"; }
}

# Known packets of known sizes; TX frames at net_dev_start_xmit carry the
# 14-byte Ethernet header, RX packets at netif_receive_skb do not:
#   ping -s 8     x5  -> TX  50 B [0,64)      RX    36 B [0,64)
#   ping -s 56    x10 -> TX  98 B [64,512)    RX    84 B [64,512)
#   ping -s 1000  x20 -> TX 1042 B [512,2K)   RX  1028 B [512,2K)
#   ping -s 3000  x5  -> TX 3042 B [2K,16K)   RX  3028 B [2K,16K)
#   ping -s 20000 x3  -> TX 20042 B [16K,64K) RX 20028 B [16K,64K)
# The echo replies come back the other way with the same sizes: NS1's veth
# transmits the requests and receives the replies.
sizes_test() {
    netns_needs
    qpair 4
    tool_start iface_netstat --json -n "$VETH1" -i 0.5 "$@"
    in1 ping -q -c 5 -s 8 -i 0.02 -W 1 "$IP2" >/dev/null
    in1 ping -q -c 10 -s 56 -i 0.02 -W 1 "$IP2" >/dev/null
    in1 ping -q -c 20 -s 1000 -i 0.02 -W 1 "$IP2" >/dev/null
    in1 ping -q -c 5 -s 3000 -i 0.02 -W 1 "$IP2" >/dev/null
    in1 ping -q -c 3 -s 20000 -i 0.02 -W 1 "$IP2" >/dev/null
    tool_stop 0.6
    assert_all_json
    assert_json_ge 1 ".iface == \"$VETH1\" and (.tx | length) == 4 and (.rx | length) == 4"
    local d
    for d in tx rx; do
        # ARP/ND could only add to the small buckets (there are none here: static
        # neighbours, IPv6 off), so allow a few extras there only.
        assert_between "$d [0,64)" "$(jsum ".${d}_total.b0_64")" 5 8
        assert_between "$d [64,512)" "$(jsum ".${d}_total.b64_512")" 10 13
        assert_eq "$d [512,2K)" "$(jsum ".${d}_total.b512_2k")" 20
        assert_eq "$d [2K,16K)" "$(jsum ".${d}_total.b2k_16k")" 5
        assert_eq "$d [16K,64K)" "$(jsum ".${d}_total.b16k_64k")" 3
        assert_eq "$d [64K,inf)" "$(jsum ".${d}_total.b64k_plus")" 0
        # Per-queue rows add up to the total: every queue id is within sysfs's count.
        assert_eq "$d queue rows" "$(jsum "[.${d}[].pkts] | add")" "$(jsum ".${d}_total.pkts")"
        assert_eq "$d other queues" "$(jsum ".${d}_total.other_queue_pkts")" 0
    done
    local tx_big=$((20 * 1042 + 5 * 3042 + 3 * 20042)) rx_big=$((20 * 1028 + 5 * 3028 + 3 * 20028))
    assert_between "tx bytes" "$(jsum .tx_total.bytes)" $((tx_big + 5 * 50 + 10 * 98)) $((tx_big + 5 * 50 + 10 * 98 + 6 * 100))
    assert_between "rx bytes" "$(jsum .rx_total.bytes)" $((rx_big + 5 * 36 + 10 * 84)) $((rx_big + 5 * 36 + 10 * 84 + 6 * 100))
    assert_grep "^Summary: [0-9]+ reports; TX 4[3-9] packets" "$TOOL_ERR"
    note "$(grep '^Attached' "$TOOL_ERR")"
}

netns_needs() { need root cmd:ping cmd:jq; }

test_iface_netstat_sizes() { sizes_test; }
test_iface_netstat_attach_tracepoint() {
    need tracepoint:net/net_dev_start_xmit tracepoint:net/netif_receive_skb
    sizes_test --attach tracepoint
    grep -q "tx via tracepoint:net/net_dev_start_xmit, rx via tracepoint:net/netif_receive_skb" "$TOOL_ERR" ||
        { cat "$TOOL_ERR"; fail "not attached via the classic tracepoints"; }
}

# Text output with -t: ping -s 1000 every 10 ms. One table per direction, one
# row per sysfs queue, avg 1.02K on TX, only [512, 2K) filled, and
# BPS = PPS x 1042, PPS at most the 100/s sent.
test_iface_netstat_throughput() {
    netns_needs
    qpair 4
    tool_start iface_netstat -n "$VETH1" -i 1 -t
    in1 ping -q -c 250 -s 1000 -i 0.01 -W 1 "$IP2" >/dev/null
    tool_stop 0
    local rows
    rows=$(ip netns exec "$NS1" sh -c "ls -d /sys/class/net/$VETH1/queues/tx-*" | wc -l)
    assert_eq "sysfs tx queues" "$rows" 4
    assert_grep '^ QueueID    avg_size   \[0, 64\)    \[64, 512\)  \[512, 2K\)  \[2K, 16K\)  \[16K, 64K\) BPS        PPS'
    assert_grep '^-{95}$'
    # Each report: TX, 4 queue rows, Total, blank, RX, 4 rows, Total.
    local reports
    reports=$(count '^TX$')
    [[ $reports -ge 2 ]] || { show "$TOOL_OUT"; fail "want >= 2 reports, got $reports"; }
    assert_eq "queue rows" "$(count '^ [0-3] ')" $((reports * 8))
    assert_no_grep '^ [4-9] '
    # The TX Total line of the busiest report: " Total avg b0 b64 b512 b2k b16k BPS PPS".
    local line
    line=$(awk '/^TX$/ {tx=1} /^RX$/ {tx=0} tx && /^ Total/' "$TOOL_OUT" |
        awk 'function v(s) { if (s ~ /K$/) return s * 1024; if (s ~ /M$/) return s * 1048576; return s + 0 }
             { p = v($9); if (p > best) { best = p; l = $0 } } END { print l }')
    note "busiest TX total: $line"
    read -r _ avg b0 b64 b512 b2k b16k bps pps <<<"$line"
    assert_eq "TX avg_size" "$avg" "1.02K"
    assert_eq "TX small/large buckets" "$b0 $b64 $b2k $b16k" "0 0 0 0"
    awk -v b="$bps" -v p="$pps" -v n="$b512" 'function v(s) { if (s ~ /K$/) return s * 1024; if (s ~ /M$/) return s * 1048576; return s + 0 }
        BEGIN { B = v(b); P = v(p); N = v(n)
                ok = P >= 20 && P <= 110 && B / P > 1030 && B / P < 1055 && N / P > 0.9 && N / P < 1.1
                exit !ok }' ||
        { show "$TOOL_OUT"; fail "inconsistent rates: [512, 2K)=$b512 BPS=$bps PPS=$pps (want PPS 20..110, BPS/PPS ~1042)"; }
}

# An idle interface still gets one zero row per queue in each report.
test_iface_netstat_idle() {
    netns_needs
    qpair 4
    tool_start iface_netstat -n "$VETH1" -i 0.3
    sleep 1
    tool_stop 0
    local reports
    reports=$(count '^TX$')
    [[ $reports -ge 2 ]] || { show "$TOOL_OUT"; fail "want >= 2 reports, got $reports"; }
    assert_eq "zero queue rows" "$(count '^ [0-3]          0          0          0          0          0          0 *$')" $((reports * 8))
    assert_eq "zero totals" "$(count '^ Total      0          0          0          0          0          0 *$')" $((reports * 2))
    assert_grep '^-{77}$'
}

# TCP with TSO on the veth: the TX side sees GSO skbs of 16K-64K.
test_iface_netstat_tso() {
    need root cmd:iperf3 cmd:jq cmd:ping
    qpair 2
    in2 iperf3 -s -1 -B "$IP2" -p 5299 >/dev/null 2>&1 &
    defer "kill $!"
    local i
    for ((i = 0; i < 50; i++)); do in2 ss -ltn 2>/dev/null | grep -q ":5299 " && break; sleep 0.1; done
    tool_start iface_netstat --json -n "$VETH1" -i 0.5
    in1 timeout 20 iperf3 -c "$IP2" -p 5299 -t 1 >/dev/null 2>&1 || fail "iperf3 client failed"
    tool_stop 0.6
    local big
    big=$(jsum .tx_total.b16k_64k)
    [[ $big -ge 1 ]] || { show "$TOOL_OUT"; fail "no TSO-sized TX packets"; }
    note "TX [16K,64K): $big, TX [64K,inf): $(jsum .tx_total.b64k_plus), RX pkts $(jsum .rx_total.pkts)"
}

test_iface_netstat_bad_input() {
    need root
    expect_exit 2 iface_netstat
    grep -q -- '--name' <<<"$LAST_ERROR" || fail "message does not name --name: $LAST_ERROR"
    expect_exit 2 iface_netstat -i 1
    expect_exit 2 iface_netstat --name a234567890123456
    grep -q -- '--name' <<<"$LAST_ERROR" || fail "message does not name --name: $LAST_ERROR"
    expect_exit 2 iface_netstat --name doesnotexist0
    grep -q -- 'doesnotexist0' <<<"$LAST_ERROR" || fail "message does not name the interface: $LAST_ERROR"
    expect_exit 2 iface_netstat -n lo --interval 0
    grep -q -- '--interval' <<<"$LAST_ERROR" || fail "message does not name --interval: $LAST_ERROR"
    expect_exit 2 iface_netstat -n lo --interval -1
    expect_exit 2 iface_netstat -n lo -i abc
    expect_exit 2 iface_netstat -n lo --duration 0
    # The original's hidden --ebpf: nothing to print, exit 0.
    local out rc
    out=$("$BIN_DIR/iface_netstat" --ebpf 2>&1); rc=$?
    [[ $rc -eq 0 && -z $out ]] || fail "--ebpf: exit $rc, output '$out'"
    # An interface of another netns: exit 2, and the message says where it is.
    qpair 1
    BIN_DIR=$REAL_BIN expect_exit 2 iface_netstat -n "$VETH1"
    grep -q -- "netns $NS1" <<<"$LAST_ERROR" || fail "message does not name the netns: $LAST_ERROR"
    # More than 1024 queues: exit 2 (the original printed a message and exited 0).
    ip -n "$NS1" link add qbig numtxqueues 1100 numrxqueues 1100 type veth peer name qbig2 ||
        skip "cannot create a 1100-queue veth"
    expect_exit 2 iface_netstat -n qbig
    grep -q -- "1024" <<<"$LAST_ERROR" || fail "message does not give the limit: $LAST_ERROR"
}

# The device is matched by name and network namespace: the tool in NS1 watching
# "lo" counts NS1's loopback only, not the one of NS2.
test_iface_netstat_netns_scope() {
    netns_needs
    qpair 1
    tool_start iface_netstat --json -n lo -i 0.5
    in2 ping -q -c 10 -s 1000 -i 0.02 -W 1 127.0.0.1 >/dev/null
    in1 ping -q -c 3 -s 1000 -i 0.02 -W 1 127.0.0.1 >/dev/null
    tool_stop 0.6
    # NS1's 3 requests and 3 replies all leave and enter through its lo.
    assert_eq "lo TX [512,2K)" "$(jsum .tx_total.b512_2k)" 6
    assert_eq "lo RX [512,2K)" "$(jsum .rx_total.b512_2k)" 6
}
