# Live tests of dev-queue-xmit and of the skb snapshot engine every port shares
# (shared/src/snaphooks.rs, shared/bpf/skbsnap.h): TCP with TSO/GSO between two
# namespaces.

source "$(dirname "${BASH_SOURCE[0]}")/snap_lib.sh"
# On the other kernels of the matrix (MAIN_ONLY=1) only these run.
MAIN_TESTS="dev_queue_xmit_gso dev_queue_xmit_dhcp"

test_dev_queue_xmit_gso() {
    snap_pair
    tool_start dev-queue-xmit --json --match gso --dev "$VETH1"
    tcp_load 2
    tool_stop
    assert_all_json
    assert_json_ge 1 "$GSO_TCP and .dev == \"$VETH1\" and .saddr == \"$IP1\" and .dport == 5201"
    assert_json_none ".dev != \"$VETH1\""
    note "mode $(snap_mode)"
    case $(snap_mode) in
        tracepoint) assert_json_ge 1 '.func == "net_dev_queue" and (.kstack | length) > 0' ;;
        kprobe) assert_json_ge 1 '.func == "__dev_queue_xmit" and (.kstack | length) > 0' ;;
    esac
}

test_dev_queue_xmit_anomaly_none() {
    snap_pair
    tool_start dev-queue-xmit --json --dev "$VETH1"
    local anomaly=$TOOL_OUT pid=$TOOL_PID
    tool_start dev-queue-xmit --json --match all --dev lo
    local lo=$TOOL_OUT
    tcp_load 2
    tool_stop
    TOOL_PID=$pid TOOL_OUT=$anomaly
    tool_stop 0
    # Normal TSO traffic is no anomaly; nothing of it on lo.
    [[ ! -s $anomaly ]] || { show "$anomaly"; fail "gso-anomaly reported normal traffic"; }
    assert_json_none ".saddr == \"$IP1\" or .daddr == \"$IP1\"" "$lo"
}

test_dev_queue_xmit_max_events() {
    snap_pair
    tool_start dev-queue-xmit --match all --dev "$VETH1" --max-events 5
    tcp_load 1
    local i
    for ((i = 0; i < 50; i++)); do kill -0 "$TOOL_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$TOOL_PID" 2>/dev/null && fail "still running after 5 events"
    wait "$TOOL_PID" || fail "exit status $?"
    [[ $(count '^(net_dev_queue|qdisc_dequeue|sch_direct_xmit|__dev_queue_xmit) probe$') -eq 5 ]] ||
        { show "$TOOL_OUT"; fail "expected 5 blocks"; }
    assert_grep '^skb: dev=\S+ features=0x[0-9a-f]+ ignore_df=[01] len=[0-9]+ data_len=[0-9]+ cloned=[01] nh=[0-9]+ th=[0-9]+ encap=[01]$'
    assert_grep '^dev features: features=0x[0-9a-f]+ hw=0x[0-9a-f]+ wanted=0x[0-9a-f]+ hw_enc=0x[0-9a-f]+ gso_partial=0x[0-9a-f]+$'
    assert_grep "^tcp: $IP1:[0-9]+ => $IP2:5201   MAC src: ([0-9a-f]{2}:){5}[0-9a-f]{2} MAC dst: "
    assert_grep '^kstack:$'
    grep -q 'Summary: 5 events reported' "$TOOL_ERR" || fail "summary: $(tail -1 "$TOOL_ERR")"
}

test_dev_queue_xmit_dhcp() {
    need root cmd:nc cmd:jq
    netns_pair
    tool_start dev-queue-xmit --json --match all --proto udp --dev "$VETH1"
    local plain=$TOOL_OUT pid=$TOOL_PID
    tool_start dev-queue-xmit --json --match all --proto udp --dev "$VETH1" --include-dhcp
    local dhcp=$TOOL_OUT
    for p in 67 68; do echo x | in1 nc -u -w0 -p "$p" "$IP2" 9 2>/dev/null; done
    echo x | in1 nc -u -w0 -p 5000 "$IP2" 9
    tool_stop
    TOOL_PID=$pid TOOL_OUT=$plain
    tool_stop 0
    assert_json_ge 1 '.sport == 5000 and .dport == 9' "$plain"
    assert_json_none '.sport == 67 or .sport == 68' "$plain"
    assert_json_ge 1 '.sport == 68 and .dport == 9' "$dhcp"
}

test_dev_queue_xmit_bad_input() {
    need root
    expect_exit 2 dev-queue-xmit --src 10.0.0.300; grep -q -- '--src' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 dev-queue-xmit --dport 70000
    expect_exit 2 dev-queue-xmit --dev abcdefghijklmnopq; grep -q -- '--dev' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 dev-queue-xmit --match weird
    expect_exit 2 dev-queue-xmit --mode magic
    expect_exit 2 dev-queue-xmit --compare
    expect_exit 2 dev-queue-xmit --port 4789
}
