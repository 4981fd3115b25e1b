# Live tests of tun-vhost: a tap held by scripts/lib/tapguest.c, UDP from a
# netns through a bridge into the tap; the guest does not read (the ring
# fills: full=yes), or reads (never full).

MAIN_TESTS="tun_vhost_ring_fills"

source "$ROOT/scripts/lib/tapguest.sh"

flood() {   # flood COUNT SPORT: UDP datagrams to the guest
    ip netns exec "$RNS" python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('', $2))
for i in range($1):
    s.sendto(b'x' * 32, ('$GUEST_IP', 9))
"
}

test_tun_vhost_ring_fills() {
    need root cmd:python3 cmd:jq
    tap_topo vnet11 -n
    need_tun_btf
    hx ip link set vnet11 txqueuelen 500
    ip -n "$RNS" neigh replace "$GUEST_IP" lladdr "$GUEST_MAC" dev eth0
    tool_start tun-vhost --dev vnet11 --json
    flood 600 5000
    tool_stop
    local n
    n=$(jcount '.type == "tun_xmit" and .dev == "vnet11" and .ring_size == 500')
    [[ $n -ge 600 ]] || { show "$TOOL_OUT"; fail "want >= 600 lines with ring_size 500, got $n"; }
    # used grows until the ring is full, then every skb finds it full
    assert_json_ge 1 '.type == "tun_xmit" and .used == 499 and .full == false'
    assert_json_ge 99 '.type == "tun_xmit" and .full == true and .used == 500'
    [[ $(jq -r 'select(.type == "tun_xmit" and .full == true) | .producer' "$TOOL_OUT" | sort -u | wc -l) -eq 1 ]] || fail "producer moved while full"
    assert_json_ge 1 '.type == "summary" and .dev == "vnet11" and .full_hits >= 99'
}

test_tun_vhost_full_only_drains() {
    need root cmd:python3 cmd:jq
    tap_topo vnet11
    hx ip link set vnet11 txqueuelen 500
    ip netns exec "$RNS" ping -c 1 -W 2 "$GUEST_IP" >/dev/null || fail "the guest does not answer"
    tool_start tun-vhost --dev vnet11 --full-only
    flood 300 5000
    tool_stop
    assert_no_grep 'full=yes'
    assert_no_grep 'dev=vnet11 queue'
    assert_grep '^Summary vnet11 queue=0: events=[0-9]+ full_hits=0 '
}

test_tun_vhost_text_interval() {
    need root cmd:python3
    tap_topo vnet11 -n
    need_tun_btf
    hx ip link set vnet11 txqueuelen 64
    ip -n "$RNS" neigh replace "$GUEST_IP" lladdr "$GUEST_MAC" dev eth0
    tool_start tun-vhost --dev vnet11 --stack
    flood 70 5000
    tool_stop
    assert_grep '^[0-9]{2}:[0-9]{2}:[0-9]{2} dev=vnet11 queue=0 ring_size=64 producer=[0-9]+ consumer_head=0 consumer_tail=0 used=63 full=no$'
    assert_grep 'dev=vnet11 queue=0 ring_size=64 .* used=64 full=yes$'
    assert_grep '^    [a-z_]+\+0x'
    tool_start tun-vhost --dev vnet11 --interval 1
    flood 20 5001
    sleep 1.3
    tool_stop
    assert_grep '^Interval vnet11 queue=0: events=[0-9]+ full_hits=[0-9]+ max_used=100% '
    assert_no_grep 'ring_size='
}

test_tun_vhost_bad_input() {
    need root
    expect_exit 2 tun-vhost
    expect_exit 2 tun-vhost --dev lo
    local id=$$$RANDOM
    ip tuntap add dev tvb${id: -5} mode tap 2>/dev/null || skip "cannot create a tap"
    defer ip link del tvb${id: -5}
    expect_exit 2 tun-vhost --dev tvb${id: -5} --interval 0
    "$BIN_DIR/tun-vhost" --dev nosuch0 --duration 1 2>&1 | grep -q 'warning: device nosuch0 is not in this network namespace' ||
        fail "a device of another netns is a warning"
}
