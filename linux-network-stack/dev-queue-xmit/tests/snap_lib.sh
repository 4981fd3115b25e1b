# Helpers of the skb-snapshot ports' live tests (sourced by their tests/live.sh).

# snap_pair: netns pair with an iperf3 server in NS2 (stopped at the end).
snap_pair() {
    need root cmd:iperf3 cmd:jq
    netns_pair "$@"
    in2 iperf3 -s -D -I "$T/iperf3.pid" >/dev/null 2>&1 || fail "cannot start iperf3 -s"
    defer "kill \$(cat $T/iperf3.pid)"
    local i
    for ((i = 0; i < 30; i++)); do [[ -s $T/iperf3.pid ]] && break; sleep 0.1; done
    sleep 0.3
}

# tcp_load SECS [ARGS]: TCP iperf3 from NS1 to NS2.
tcp_load() { local s=$1; shift; in1 iperf3 -c "$IP2" -t "$s" "$@" >"$T/iperf3.out" 2>&1 || { cat "$T/iperf3.out"; fail "iperf3 failed"; }; }

# The hooks this run used: kprobe or tracepoint mode.
snap_mode() { if grep -q '^notice: tracepoint mode' "$TOOL_ERR"; then echo tracepoint; else echo kprobe; fi; }

# A GSO TCP skb of a 1500-MTU link: TCPV4, gso_size = MSS 1448, longer than the MTU.
GSO_TCP='(.gso_type_names | index("TCPV4") != null) and .gso_size == 1448 and .len > 1500'

# overlay vxlan|geneve [MTU]: a tunnel between the pair's namespaces, tnl1 in
# NS1 (10.98.0.1) and tnl2 in NS2 (10.98.0.2); $TPORT is its UDP port.
# TDF="df set" sets DF on the outer header.
overlay() {
    local type=$1 mtu=${2:-}
    case $type in
        vxlan) TPORT=4789
            in1 ip link add tnl1 type vxlan id 10 remote "$IP2" local "$IP1" dstport 4789 ${TDF:-} || skip "no vxlan devices"
            in2 ip link add tnl2 type vxlan id 10 remote "$IP1" local "$IP2" dstport 4789 ${TDF:-} ;;
        geneve) TPORT=6081
            in1 ip link add tnl1 type geneve id 10 remote "$IP2" dstport 6081 ${TDF:-} 2>/dev/null ||
                { modprobe geneve 2>/dev/null; in1 ip link add tnl1 type geneve id 10 remote "$IP2" dstport 6081 ${TDF:-}; } ||
                skip "no geneve devices"
            in2 ip link add tnl2 type geneve id 10 remote "$IP1" dstport 6081 ${TDF:-} ;;
    esac
    if [[ -n $mtu ]]; then
        in1 ip link set tnl1 mtu "$mtu"
        in2 ip link set tnl2 mtu "$mtu"
    fi
    in1 ip addr add 10.98.0.1/24 dev tnl1
    in2 ip addr add 10.98.0.2/24 dev tnl2
    in1 ip link set tnl1 up
    in2 ip link set tnl2 up
    in1 ping -c 1 -W 2 10.98.0.2 >/dev/null 2>&1 || true
}

# The tunnel this kernel has: geneve (the originals' case) or vxlan.
overlay_type() {
    if [[ -d /sys/module/geneve ]] || modprobe geneve 2>/dev/null; then echo geneve; else echo vxlan; fi
}
