# Live tests of trace-vlanvm-udp-workload: a UDP load with DF over an overlay
# whose MTU equals the underlay's, so the tunnel answers with ICMP frag-needed.

source "$(dirname "${BASH_SOURCE[0]}")/../../dev-queue-xmit/tests/snap_lib.sh"

test_trace_vlanvm_udp_workload_frag_needed() {
    snap_pair
    # Outer DF set: a full-size inner datagram does not fit the underlay.
    TDF="df set" overlay "$(overlay_type)" 1500
    tool_start trace-vlanvm-udp-workload --json --dev tnl1 --dev "$VETH1" --no-stack
    in1 iperf3 -c 10.98.0.2 -u -b 5M -l 1472 -t 1 >"$T/iperf3.out" 2>&1
    in1 iperf3 -c 10.98.0.2 -u -b 5M -l 1000 -t 1 >>"$T/iperf3.out" 2>&1
    tool_stop
    assert_all_json
    note "tunnel $(overlay_type), mode $(snap_mode)"
    # The 1550-byte outer packet (1500 + tunnel header) is answered with frag-needed.
    case $(snap_mode) in
        tracepoint)
            if [[ -d $(tracefs)/events/icmp/icmp_send ]]; then
                assert_json_ge 1 ".func == \"icmp_send\" and .icmp_type == 3 and .icmp_code == 4 and .len == 1550 and .proto == \"udp\" and .dport == $TPORT"
            fi
            assert_json_ge 1 ".func == \"kfree_skb\" and .len == 1550 and .dport == $TPORT and .reason != null"
            assert_json_ge 1 '.func == "net_dev_start_xmit" and .dev == "tnl1" and .proto == "udp" and .len == 1042' ;;
        kprobe)
            assert_json_ge 1 ".func == \"__icmp_send\" and .len == 1550 and .dport == $TPORT"
            assert_json_ge 1 '.func == "validate_xmit_skb" and .proto == "udp"' ;;
    esac
    assert_json_ge 1 ".type == \"summary\" and ([.hooks[] | select(.dev == \"$VETH1\" and .events > 0)] | length > 0) and ([.hooks[] | select(.dev == \"tnl1\" and .events > 0)] | length > 0)"
}

test_trace_vlanvm_udp_workload_needs_dev() {
    need root
    expect_exit 2 trace-vlanvm-udp-workload; grep -q -- '--dev' <<<"$LAST_ERROR" || fail "$LAST_ERROR"
    expect_exit 2 trace-vlanvm-udp-workload --dev lo --port 70000
}
