# Live tests of trace-offloading-segment: TCP and ping over a Geneve (VM
# kernels) or VXLAN (6.18 host) overlay between two namespaces.

source "$(dirname "${BASH_SOURCE[0]}")/../../dev-queue-xmit/tests/snap_lib.sh"

# auto mode takes kprobes where the kernel has them.
kprobe_mode() { [[ -d /sys/bus/event_source/devices/kprobe ]]; }

test_trace_offloading_segment_overlay() {
    snap_pair
    overlay "$(overlay_type)"
    local devs=(--dev "$VETH1")
    # Kprobe mode: iptunnel_xmit runs on the tunnel device, before the outer headers.
    kprobe_mode && devs=()
    tool_start trace-offloading-segment --json --port "$TPORT" "${devs[@]}" --no-stack
    in1 iperf3 -c 10.98.0.2 -t 1 >"$T/iperf3.out" 2>&1 || { cat "$T/iperf3.out"; fail "iperf3 over the overlay failed"; }
    in1 ping -c 2 -i 0.2 10.98.0.2 >/dev/null
    tool_stop
    assert_all_json
    note "tunnel $(overlay_type) port $TPORT, mode $(snap_mode)"
    local tunnel_gso='.encapsulation == 1 and (.gso_type_names | index("TCPV4") != null) and ([.gso_type_names[] | select(startswith("UDP_TUNNEL"))] | length > 0) and .gso_size > 0'
    case $(snap_mode) in
        tracepoint)
            # Tunnelled TCP: outer UDP to the tunnel port, encapsulation set, a UDP tunnel GSO type.
            assert_json_ge 1 ".proto == \"udp\" and .dport == $TPORT and $tunnel_gso"
            # The pings: tunnelled, no GSO.
            assert_json_ge 1 ".proto == \"udp\" and .dport == $TPORT and .gso_size == 0 and .len < 200"
            assert_json_none ".dport != $TPORT" ;;
        kprobe)
            # At iptunnel_xmit the headers shown are the inner ones.
            assert_json_ge 1 ".func == \"iptunnel_xmit\" and .saddr == \"10.98.0.1\" and .proto == \"tcp\" and $tunnel_gso"
            assert_json_ge 1 '.func == "iptunnel_xmit" and .proto == "icmp" and .gso_size == 0' ;;
    esac
}
