# Live tests of validate-xmit-skb: GSO skbs before the device (qdisc_dequeue /
# validate_xmit_skb) and what the driver gets (net_dev_start_xmit), with the
# device's TSO (and GSO) switched off so the stack segments in software.

source "$(dirname "${BASH_SOURCE[0]}")/../../dev-queue-xmit/tests/snap_lib.sh"

# A queue on the sender's veth (veth has none: no dequeue otherwise). HTB: a
# pfifo would let most skbs bypass enqueue/dequeue (TCQ_F_CAN_BYPASS).
snap_qdisc() {
    need cmd:tc cmd:ethtool
    in1 tc qdisc add dev "$VETH1" root handle 1: htb default 1 || skip "no htb qdisc"
    in1 tc class add dev "$VETH1" parent 1: classid 1:1 htb rate 10gbit
}

test_validate_xmit_skb_compare() {
    snap_pair
    snap_qdisc
    in1 ethtool -K "$VETH1" tso off >/dev/null 2>&1 || skip "cannot switch TSO off"
    tool_start validate-xmit-skb --json --compare --dev "$VETH1" --proto tcp
    tcp_load 2
    tool_stop
    assert_all_json
    # TCP still builds GSO skbs; without TSO the stack cuts them before the driver.
    assert_json_ge 1 ".compare == \"segmented\" and .dev == \"$VETH1\" and .gso_size == 1448 and .segments >= 2 and .len > 1500"
    assert_json_none '.compare == "gso_changed"'
}

test_validate_xmit_skb_no_gso_at_driver() {
    snap_pair
    snap_qdisc
    in1 ethtool -K "$VETH1" tso off gso off >/dev/null 2>&1 || skip "cannot switch TSO/GSO off"
    tool_start validate-xmit-skb --json --mode tracepoint --match all --proto tcp --dev "$VETH1" --no-stack
    tcp_load 2
    tool_stop
    assert_json_ge 1 ".func == \"qdisc_dequeue\" and $GSO_TCP and .qdisc.kind == \"htb\""
    assert_json_ge 1 '.func == "net_dev_start_xmit" and .len <= 1514'
    assert_json_none '.func == "net_dev_start_xmit" and (.gso_size != 0 or .len > 1514)'
}

test_validate_xmit_skb_kprobe() {
    need kprobe
    snap_pair
    tool_start validate-xmit-skb --json --mode kprobe --match gso --dev "$VETH1"
    tcp_load 2
    tool_stop
    assert_json_ge 1 ".func == \"validate_xmit_skb\" and $GSO_TCP and (.kstack | length) > 0"
}
