# Live tests of vm_pair_gap, multi_port_gap and multi_vm_pair_multi_port_gap:
# UDP streams between network-namespace "VMs" on a bridge (see
# performance/vm-network/testlib.sh), with deliberate pauses.

MAIN_TESTS="vm_pair_gap_stream multi_port_gap_pause multi_vm_pair_multi_port_gap_pairs"

source "$ROOT/performance/vm-network/testlib.sh"

test_vm_pair_gap_stream() {
    need root cmd:python3 cmd:jq
    vm_taps vnet48 vnet45   # ns1 sends (10.9.0.1), ns2 receives (10.9.0.2)
    tool_start vm_pair_gap --json
    local all=$TOOL_OUT all_pid=$TOOL_PID
    tool_start vm_pair_gap --json --threshold-us 150000
    local thr=$TOOL_OUT
    # 11 packets of one 4-tuple, 100 ms apart, 500 ms after the 6th.
    udp_send "${VMNS[1]}" 10.9.0.2 5000:62109:11:0.1:6:0.5
    # Not for this tool: another port, and the opposite direction.
    udp_send "${VMNS[1]}" 10.9.0.2 5001:62110:3:0.05
    udp_send "${VMNS[2]}" 10.9.0.1 5002:62109:3:0.05
    tool_stop
    TOOL_PID=$all_pid
    tool_stop 0
    local f=".src == \"10.9.0.1\" and .sport == 5000 and .dst == \"10.9.0.2\" and .dport == 62109"
    for side in rcv snd; do
        dev=$([[ $side == rcv ]] && echo vnet48 || echo vnet45)
        [[ $(jcount ".side == \"$side\" and .dev == \"$dev\" and $f" "$all") -eq 10 ]] ||
            { show "$all"; fail "want 10 $side gaps on $dev"; }
        [[ $(jcount ".side == \"$side\" and $f and .gap_us >= 50000 and .gap_us < 400000" "$all") -eq 9 ]] ||
            { show "$all"; fail "want 9 $side gaps of ~100 ms"; }
        [[ $(jcount ".side == \"$side\" and $f and .gap_us >= 500000" "$all") -eq 1 ]] || fail "want one $side gap >= 500 ms"
        [[ $(jcount ".type == \"gap\" and .side == \"$side\"" "$thr") -eq 1 ]] || { show "$thr"; fail "threshold: want exactly one $side gap"; }
        assert_json_ge 1 ".side == \"$side\" and .dev == \"$dev\" and $f and .gap_us >= 500000" "$thr"
        assert_json_ge 1 ".type == \"summary\" and .dev == \"$dev\" and .side == \"$side\" and .packets == 11 and .gaps == 10 and .over_threshold == 1 and .max_gap_us >= 500000" "$thr"
    done
    assert_json_none '.dport == 62110 or .src == "10.9.0.2"' "$all"
    note "gaps: $(jq -c 'select(.type == "gap" and .side == "rcv") | .gap_us' "$all" | tr '\n' ' ')"
}

test_vm_pair_gap_text() {
    need root cmd:python3
    vm_taps vnet48 vnet45
    tool_start vm_pair_gap --threshold-us 150000
    udp_send "${VMNS[1]}" 10.9.0.2 5000:62109:4:0.05:2:0.3
    tool_stop
    assert_grep '^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}  RCV GAP  vnet48  10\.9\.0\.1:5000 -> 10\.9\.0\.2:62109  gap=[0-9]{6} us$'
    assert_grep '^[0-9:.]+  SND GAP  vnet45  10\.9\.0\.1:5000 -> 10\.9\.0\.2:62109  gap=[0-9]{6} us$'
    [[ $(count 'GAP') -eq 2 ]] || { show "$TOOL_OUT"; fail "want 2 lines"; }
    assert_grep '^Summary vnet48 RCV: packets 4, gaps 3, max gap [0-9]+ us, gaps over threshold 1'
    assert_grep '^Gap threshold: > 150000 us' "$TOOL_OUT"
}

# Two ports at 20 ms; one 300 ms pause on 62109 only: exactly that gap, on both sides.
test_multi_port_gap_pause() {
    need root cmd:python3 cmd:jq
    vm_taps vnet48 vnet45
    tool_start multi_port_gap --json --ports 62109 61968 --threshold 200
    local thr=$TOOL_OUT thr_pid=$TOOL_PID
    tool_start multi_port_gap --json --ports 62109 61968 --threshold 0
    udp_send "${VMNS[1]}" 10.9.0.2 5000:62109:15:0.02:7:0.3 5001:61968:15:0.02
    tool_stop
    local zero=$TOOL_OUT
    TOOL_PID=$thr_pid
    tool_stop 0
    [[ $(jcount '.type == "gap"' "$thr") -eq 2 ]] || { show "$thr"; fail "want exactly 2 gaps over 200 ms"; }
    assert_json_ge 1 '.side == "rcv" and .dev == "vnet48" and .dport == 62109 and .gap_us >= 300000 and .threshold_ms == 200' "$thr"
    assert_json_ge 1 '.side == "snd" and .dev == "vnet45" and .dport == 62109 and .gap_us >= 300000' "$thr"
    assert_json_none '.type == "gap" and .dport == 61968' "$thr"
    # --threshold 0: a record per packet after the first, per port and side.
    for p in 62109 61968; do
        for side in rcv snd; do
            [[ $(jcount ".type == \"gap\" and .dport == $p and .side == \"$side\"" "$zero") -eq 14 ]] ||
                { show "$zero"; fail "threshold 0: want 14 $side gaps on port $p"; }
        done
    done
}

test_multi_port_gap_text() {
    need root cmd:python3
    vm_taps vnet48 vnet45
    tool_start multi_port_gap --threshold 200
    udp_send "${VMNS[1]}" 10.9.0.2 5000:62109:4:0.02:2:0.3
    tool_stop
    assert_grep '^[0-9:.]+  RECV gap>200ms  vnet48  port=62109 10\.9\.0\.1:5000 -> 10\.9\.0\.2:62109  gap=[0-9]{6} us$'
    assert_grep '^[0-9:.]+  SEND gap>200ms  vnet45  port=62109 10\.9\.0\.1:5000 -> 10\.9\.0\.2:62109  gap=[0-9]{6} us$'
    assert_grep '^Tracking UDP ports: \[62108, 61969, 61967, 62109, 61970, 61968\]$'
    assert_grep '^Gap threshold = 200 ms$'
}

# §10: two pairs; --send-dev are the receiving VMs' taps (SEND), --recv-dev the senders' (RECV).
test_multi_vm_pair_multi_port_gap_pairs() {
    need root cmd:python3 cmd:jq
    vm_taps vnet45 vnet48 vnet36 vnet42   # pair 1: 10.9.0.1 -> .2, pair 2: .3 -> .4
    tool_start multi_vm_pair_multi_port_gap --json --send-dev vnet48,vnet42 --recv-dev "vnet45 vnet36" --ports 62109 --threshold 200
    udp_send "${VMNS[1]}" 10.9.0.2 5000:62109:20:0.02:10:0.4 &
    local p1=$!
    udp_send "${VMNS[3]}" 10.9.0.4 5000:62109:20:0.02
    wait $p1
    tool_stop
    [[ $(jcount '.type == "gap"') -eq 2 ]] || { show "$TOOL_OUT"; fail "want exactly 2 gaps"; }
    assert_json_ge 1 '.side == "rcv" and .dev == "vnet45" and .src == "10.9.0.1" and .gap_us >= 400000'
    assert_json_ge 1 '.side == "snd" and .dev == "vnet48" and .dst == "10.9.0.2" and .gap_us >= 400000'
    assert_json_ge 1 '.type == "summary" and .dev == "vnet36" and .side == "rcv" and .packets == 20 and .over_threshold == 0'
    assert_json_ge 1 '.type == "summary" and .dev == "vnet42" and .side == "snd" and .packets == 20 and .over_threshold == 0'
}

test_vm_pair_gap_bad_input() {
    need root
    vm_taps vnet48 vnet45
    expect_exit 2 vm_pair_gap --port 0
    expect_exit 2 vm_pair_gap --port 70000
    expect_exit 2 vm_pair_gap --send-dev nosuch0
    grep -q "interface 'nosuch0' not found" <<<"$LAST_ERROR" || fail "message: $LAST_ERROR"
    expect_exit 2 vm_pair_gap --threshold-us -5
    expect_exit 2 multi_port_gap --threshold -1
    expect_exit 2 multi_port_gap --ports 62109 99999
    expect_exit 2 multi_vm_pair_multi_port_gap
    expect_exit 2 multi_vm_pair_multi_port_gap --send-dev vnet48,nosuch0
    expect_exit 2 multi_vm_pair_multi_port_gap --recv-dev a234567890123456
}
