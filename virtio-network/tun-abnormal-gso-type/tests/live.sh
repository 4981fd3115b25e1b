# Live tests of tun-abnormal-gso-type: two tapguest "VMs" on one bridge; guest
# A sends TCP segments as one GSO frame (virtio_net_hdr TCPV4, gso_size 1448:
# a guest with TSO), guest B's tap has TSO offloads, so the host hands it the
# GSO skb whole: the skbs are GSO at the tap's receive and at tun_net_xmit.

MAIN_TESTS="tun_abnormal_gso_type_gso_path"

source "$ROOT/scripts/lib/tapguest.sh"

gso_setup() {
    tap_topo vtapa -O -g 4000 -u 10.8.0.6:5201:40000:6:100 -P 02:00:00:00:00:06
    guest2_start vtapb 10.8.0.6 02:00:00:00:00:06 -O
    hx ip link set vtapb txqueuelen 500   # the tun ring is resized to it
}

test_tun_abnormal_gso_type_gso_path() {
    need root cmd:jq
    gso_setup
    tool_start tun-abnormal-gso-type --json --match gso --dev vtapa --dev vtapb --tun-ring --proto tcp
    local gso=$TOOL_OUT gso_pid=$TOOL_PID
    tool_start tun-abnormal-gso-type --json --dev vtapa --dev vtapb
    local anomaly=$TOOL_OUT
    guest_udp_burst
    sleep 1
    tool_stop
    TOOL_PID=$gso_pid TOOL_OUT=$gso
    tool_stop 0
    # At tun_net_xmit (or its tracepoint) towards B: GSO TCPV4, MSS 1448, longer than the MTU, with B's ring.
    local f='(.func | startswith("tun_net_xmit")) and .dev == "vtapb" and (.gso_type_names | index("TCPV4")) and .gso_size == 1448 and .len > 1500 and .saddr == "10.8.0.5" and .dport == 5201'
    [[ $(jcount "$f") -ge 6 ]] || { show "$gso"; fail "want 6 GSO snapshots at tun_net_xmit on vtapb"; }
    if tun_btf; then
        [[ $(jcount "$f and .ring.size == 500 and .ring.queue == 0") -ge 6 ]] || fail "ring size = txqueuelen 500"
        [[ $(jq -r "select($f) | .ring.producer" "$gso" | sort -un | wc -l) -ge 2 ]] || fail "producer does not advance"
    else
        note "no tun BTF here: ring N/A"
    fi
    # DODGY: tun marks a guest's GSO as untrusted (seen at every hook of the path).
    assert_json_ge 6 '(.gso_type_names | index("DODGY")) and .gso_size == 1448 and .saddr == "10.8.0.5"' "$gso"
    # No false positives on normal GSO traffic.
    assert_json_none '.func' "$anomaly"
    note "$(jq -c "select($f) | {func, len, gso_size, gso_segs, gso_type_names, ring}" "$gso" | head -1)"
}

test_tun_abnormal_gso_type_text_and_limits() {
    need root
    gso_setup
    tool_start tun-abnormal-gso-type --match gso --dev vtapb --tun-ring --max-events 2
    guest_udp_burst
    local i
    for ((i = 0; i < 50; i++)); do kill -0 "$TOOL_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$TOOL_PID" 2>/dev/null && fail "--max-events 2 did not stop the tool"
    wait "$TOOL_PID"; [[ $? -eq 0 ]] || fail "exit status after --max-events"
    [[ $(count ' probe$') -eq 2 ]] || { show "$TOOL_OUT"; fail "want 2 blocks"; }
    assert_grep '^     inner_nh=[0-9]+ inner_th=[0-9]+ gso_size=1448 gso_segs=[0-9]+ gso_type=0x[0-9a-f]+ \[TCPV4'
    assert_grep '^tcp: 10\.8\.0\.5:40000 => 10\.8\.0\.6:5201   MAC src: 02:00:00:00:00:05 MAC dst: 02:00:00:00:00:06$'
    # The ring line at tun_net_xmit (other hooks come first in kprobe mode: no --max-events).
    if tun_btf; then
        tool_start tun-abnormal-gso-type --match gso --dev vtapb --tun-ring --no-stack
        guest_udp_burst
        sleep 1
        tool_stop
        assert_grep '^tun ring: queue=0 size=500 producer=[0-9]+ '
    fi
    # --dev lo while the traffic runs on the taps: nothing.
    tool_start tun-abnormal-gso-type --match gso --dev lo
    guest_udp_burst
    sleep 0.8
    tool_stop
    assert_no_grep ' probe$'
}

test_tun_abnormal_gso_type_bad_input() {
    need root
    expect_exit 2 tun-abnormal-gso-type --src 1.2.3
    expect_exit 2 tun-abnormal-gso-type --sport 70000
    expect_exit 2 tun-abnormal-gso-type --dev a234567890123456
    expect_exit 2 tun-abnormal-gso-type --match weird
    expect_exit 2 tun-abnormal-gso-type --mode sometimes
    expect_exit 2 tun-abnormal-gso-type --max-events 0
}
