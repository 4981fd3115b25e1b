# Live tests of tracepoint-qdisc-dequeue: the short line of the tracepoints.

source "$(dirname "${BASH_SOURCE[0]}")/../../dev-queue-xmit/tests/snap_lib.sh"

test_tracepoint_qdisc_dequeue_lines() {
    snap_pair
    need cmd:tc
    in1 tc qdisc add dev "$VETH1" root handle 1: htb default 1 || skip "no htb qdisc"
    in1 tc class add dev "$VETH1" parent 1: classid 1:1 htb rate 10gbit
    tool_start tracepoint-qdisc-dequeue --match gso --dev "$VETH1" --max-events 200
    tcp_load 1
    tool_stop 0.5
    assert_grep '^qdisc_dequeue unexpected gso type:0x01, gso size: 1448, skb_len: [0-9]{4,}, data_len: [0-9]+$'
    assert_grep '^net_dev_queue unexpected gso type:0x01, gso size: [0-9]+, skb_len: [0-9]+, data_len: [0-9]+$'
    assert_grep "^device: $VETH1$"
    assert_grep '^qdisc: kind=htb handle=0x[0-9a-f]+ parent=0x[0-9a-f]+$'
    assert_grep '^kstack:$'
}

test_tracepoint_qdisc_dequeue_sockets() {
    need kprobe
    snap_pair
    # --match all: at __tcp_transmit_skb's entry a first transmission has no
    # gso_type yet (the kernel sets it inside), so "gso" would see only retransmits.
    tool_start tracepoint-qdisc-dequeue --json --match all --mode kprobe --dev "$VETH1" --no-stack
    tcp_load 1
    tool_stop
    # Socket-level hooks give the socket (dport in host order).
    assert_json_ge 1 ".func == \"__tcp_transmit_skb\" and .sock.dport == 5201 and .sock.daddr == \"$IP2\""
}
