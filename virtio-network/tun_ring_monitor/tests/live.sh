# Live tests of tun_ring_monitor: a tap held open by scripts/lib/tapguest.c
# (the "guest"), bridged to a veth into a namespace that sends UDP to the
# guest. The guest stops reading -> the tap's ptr_ring fills -> tun drops.

MAIN_TESTS="tun_ring_monitor_full_ring tun_ring_monitor_vhost"

source "$ROOT/scripts/lib/tapguest.sh"

# send_udp COUNT SPORT [DPORT]: UDP datagrams from the remote netns to the guest.
send_udp() {
    ip netns exec "$RNS" python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('', $2))
for i in range($1):
    s.sendto(b'x' * 32, ('$GUEST_IP', ${3:-9}))
"
}

ring_setup() {
    tap_topo vnet12 "$@"
    ip link set vnet12 txqueuelen 64
    ip -n "$RNS" neigh replace "$GUEST_IP" lladdr "$GUEST_MAC" dev eth0
}

drops_known() { [[ $(jq -r 'select(.type == "summary" and .dev == "vnet12") | .full_ring_drops' "$TOOL_OUT" | head -1) != null ]]; }

test_tun_ring_monitor_full_ring() {
    need root cmd:python3 cmd:jq
    ring_setup -n    # the guest does not read
    need_tun_btf
    tool_start tun_ring_monitor -d vnet12 --json
    send_udp 100 5000
    sleep 0.3
    guest_resume_reading
    sleep 0.3
    send_udp 20 5001
    tool_stop
    local full
    full=$(jcount '.type == "tun_xmit" and .sport == 5000')
    [[ $full -ge 30 ]] || { show "$TOOL_OUT"; fail "want >= 30 ring-full records, got $full"; }
    [[ $(jcount '.type == "tun_xmit" and .sport == 5000 and .ring.full == true and .ring.size == 64 and .dev == "vnet12" and .dst == "10.8.0.5" and .dport == 9 and .proto == "UDP"') -eq $full ]] ||
        { show "$TOOL_OUT"; fail "every record: full, size 64, dev vnet12, the packet's 5-tuple"; }
    [[ $(jq -r 'select(.type == "tun_xmit" and .sport == 5000) | .ring.producer' "$TOOL_OUT" | sort -u | wc -l) -eq 1 ]] || fail "producer moved while full"
    # The guest reads again: no more full ring.
    assert_json_none '.type == "tun_xmit" and .sport == 5001'
    assert_json_ge 1 ".type == \"summary\" and .dev == \"vnet12\" and .queue == 0 and .ring_full >= $full and .max_util_pct == 100"
    if drops_known; then
        assert_json_ge 1 ".type == \"summary\" and .dev == \"vnet12\" and (.full_ring_drops - .ring_full | fabs) <= 2"
    fi
    note "$full ring-full records, summary: $(jq -c 'select(.type == "summary" and .dev == "vnet12")' "$TOOL_OUT")"
}

test_tun_ring_monitor_all_and_filters() {
    need root cmd:python3 cmd:jq
    ring_setup -n
    need_tun_btf
    tool_start tun_ring_monitor -d vnet12 --json --all --src-port 5000 --protocol udp
    local all=$TOOL_OUT all_pid=$TOOL_PID
    # AND semantics: the source matches, the port does not -> nothing.
    tool_start tun_ring_monitor -d vnet12 --json --src-ip "$REMOTE_IP" --dst-port 10
    send_udp 100 5000
    tool_stop
    local none=$TOOL_OUT
    TOOL_PID=$all_pid
    tool_stop 0
    [[ $(jcount '.type == "tun_xmit"' "$all") -eq 100 ]] || { show "$all"; fail "--all: want 100 records"; }
    # Not full: used grows by one per packet (other frames may have been queued
    # before: the start is not always 0) and util_pct = used*100/64; then full.
    local bad
    bad=$(jq -s -c '[.[] | select(.type == "tun_xmit")] as $r | [range(1; $r | length) as $i
        | select(($r[$i].ring.full | not) and (($r[$i].ring.used != $r[$i-1].ring.used + 1)
                 or ($r[$i].ring.util_pct != (($r[$i].ring.used * 100 / 64) | floor))))] | length' "$all")
    [[ $bad -eq 0 ]] || { show "$all"; fail "--all: used/util_pct not growing by one packet ($bad)"; }
    [[ $(jcount '.type == "tun_xmit" and .ring.full == true and .ring.util_pct == 100' "$all") -ge 30 ]] || fail "no full records"
    [[ $(jq -r 'select(.type == "tun_xmit") | .ring.full' "$all" | tail -30 | sort -u) == true ]] || fail "the last 30 are not full"
    note "util_pct: $(jq -r 'select(.type == "tun_xmit") | .ring.util_pct' "$all" | head -8 | tr '\n' ' ')..."
    assert_json_none '.type == "tun_xmit"' "$none"
}

test_tun_ring_monitor_reader_drains() {
    need root cmd:python3 cmd:jq
    ring_setup
    hx ip link set vnet12 txqueuelen 1000   # a burst of 100 fits while the reader wakes up
    ip -n "$RNS" neigh del "$GUEST_IP" dev eth0
    ip netns exec "$RNS" ping -c 2 -W 2 "$GUEST_IP" >/dev/null || fail "the guest does not answer ping"
    tool_start tun_ring_monitor -d vnet12 --json
    send_udp 100 5000
    tool_stop
    assert_json_none '.type == "tun_xmit"'
    assert_json_ge 1 '.type == "summary" and .dev == "vnet12" and .xmit >= 100 and .ring_full == 0'
}

test_tun_ring_monitor_text() {
    need root cmd:python3
    ring_setup -n
    need_tun_btf
    tool_start tun_ring_monitor -d vnet12
    send_udp 80 5000
    tool_stop
    assert_grep '^TUN RING FULL DETECTED!$'
    assert_grep '^Device: vnet12$'
    assert_grep '^  Source: 10\.8\.0\.9:5000$'
    assert_grep '^  Destination: 10\.8\.0\.5:9$'
    assert_grep '^  Size: 64$'
    assert_grep '^  Status: FULL \(queue\[producer\] != NULL\)$'
    assert_grep '^Summary vnet12 queue 0: xmit events [0-9]+, ring full seen at xmit [1-9][0-9]*, '
    # one block per second per queue: 16 full events in < 1 s print one block
    [[ $(count '^TUN RING FULL DETECTED!$') -le 2 ]] || fail "rate limit"
    assert_grep '^Device filter: vnet12$'
}

test_tun_ring_monitor_bad_input() {
    need root
    expect_exit 2 tun_ring_monitor --protocol icmp
    expect_exit 2 tun_ring_monitor --src-port 0
    expect_exit 2 tun_ring_monitor --src-port 70000
    expect_exit 2 tun_ring_monitor --src-ip 10.1.1
    expect_exit 2 tun_ring_monitor -d lo
    grep -q "not a tun/tap device" <<<"$LAST_ERROR" || fail "message: $LAST_ERROR"
    expect_exit 2 tun_ring_monitor -d nosuch0
}

# The tap served by /dev/vhost-net (VM kernels): vhost's worker drains the ring
# into the guest's RX buffers; the guest stops reposting them -> the ring fills.
test_tun_ring_monitor_vhost() {
    need root cmd:python3 cmd:jq
    [[ -e /dev/vhost-net ]] || modprobe vhost_net 2>/dev/null
    [[ -e /dev/vhost-net ]] || skip "no /dev/vhost-net (vhost_net) on this kernel"
    ring_setup -V
    need_tun_btf
    ip -n "$RNS" neigh del "$GUEST_IP" dev eth0
    ip netns exec "$RNS" ping -c 2 -W 2 "$GUEST_IP" >/dev/null || fail "the vhost guest does not answer ping"
    tool_start tun_ring_monitor -d vnet12 --json
    local before=$TOOL_OUT
    send_udp 50 4999
    guest_stop_reading
    send_udp 150 5000
    tool_stop
    assert_json_none '.type == "tun_xmit" and .sport == 4999'
    # 150 datagrams into a 64-slot ring the guest no longer drains: most find it
    # full, but under emulation the sender races the vhost worker (11 seen on 6.12).
    assert_json_ge 5 '.type == "tun_xmit" and .sport == 5000 and .ring.full == true and .ring.size == 64'
    note "hooks: $(grep '^Attached' "$TOOL_ERR")"
    note "summary: $(jq -c 'select(.type == "summary" and .dev == "vnet12")' "$TOOL_OUT")"
}
