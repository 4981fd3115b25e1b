# Test helpers of the system-network latency tools (icmp_rtt_latency,
# icmp_rx_latency, icmp_tx_latency, tcp_latency), sourced by their tests/live.sh
# after scripts/lib/testlib.sh.
#
# lat_topo [IP1 IP2]: "this host" has its IP $IP1 on an internal device $INT
# in front of the uplink $PHY; the uplink is a veth whose peer $VETH2 is the
# remote, netns $NS2 with $IP2:
#   OVS (VM kernels, openvswitch.ko): root netns [$INT = OVS internal port] -- OVS bridge $BR -- $PHY ~~ $VETH2 [NS2]
#   otherwise (host kernel):          netns $NS1 [$INT = Linux bridge, $PHY enslaved] ~~ $VETH2 [NS2]
# $TOPO is "ovs" or "bridge"; LAT_TOPO=bridge forces the Linux bridge. Run
# commands on "this host" with `on_local CMD`. (The OVS internal port stays in
# the VM's root netns: moved into a netns, ovs-vswitchd loses it and its
# upcalls are lost.)
lat_topo() {
    IP1=${1:-10.96.0.1} IP2=${2:-10.96.0.2}
    local id=$$$RANDOM
    id=${id: -5}
    NS1=ll1-$id NS2=ll2-$id PHY=lp-$id VETH2=lr-$id INT=li-$id
    ip netns add "$NS1" && defer ip netns del "$NS1"
    ip netns add "$NS2" && defer ip netns del "$NS2"
    if [[ ${LAT_TOPO:-auto} != bridge ]] && command -v ovs-vsctl >/dev/null &&
        { [[ -d /sys/module/openvswitch ]] || modprobe openvswitch 2>/dev/null; }; then
        TOPO=ovs BR=lb-$id
        ovs_up
        ovs-vsctl add-br "$BR" -- set bridge "$BR" datapath_type=system || fail "cannot add OVS bridge"
        defer ovs-vsctl --if-exists del-br "$BR"
        ip link add "$PHY" type veth peer name "$VETH2" netns "$NS2" || fail "cannot create veth pair"
        defer ip link del "$PHY"
        ovs-vsctl add-port "$BR" "$PHY" -- add-port "$BR" "$INT" -- set interface "$INT" type=internal ||
            fail "cannot add OVS ports"
        ip link set "$BR" up
        ip link set "$PHY" up
        on_local() { "$@"; }
    else
        TOPO=bridge
        ip link add "$PHY" netns "$NS1" type veth peer name "$VETH2" netns "$NS2" || fail "cannot create veth pair"
        ip -n "$NS1" link add "$INT" type bridge || fail "cannot create a bridge"
        ip -n "$NS1" link set "$PHY" master "$INT"
        ip -n "$NS1" link set "$PHY" up
        on_local() { ip netns exec "$NS1" "$@"; }
    fi
    on_local ip addr add "$IP1/24" dev "$INT"
    ip -n "$NS2" addr add "$IP2/24" dev "$VETH2"
    ip -n "$NS1" link set lo up
    ip -n "$NS2" link set lo up
    on_local ip link set "$INT" up
    ip -n "$NS2" link set "$VETH2" up
    # Neighbours resolved (and a bridge's learning / OVS's first flows done)
    # before the tool starts, so the measured packets are not the first.
    local i
    for ((i = 0; i < 30; i++)); do on_local ping -c 1 -W 1 "$IP2" >/dev/null 2>&1 && break; done
    if [[ $i -ge 30 ]]; then
        [[ $TOPO == ovs ]] && { ovs-vsctl show; ovs-dpctl show; tail -5 /var/log/openvswitch/ovs-vswitchd.log; } 2>&1 | sed 's/^/  | /'
        fail "$IP2 does not answer within 30 s"
    fi
    ip netns exec "$NS2" ping -c 1 -W 2 "$IP1" >/dev/null 2>&1 || true
    note "topology: $TOPO, local $IP1 on $INT, uplink $PHY, remote $IP2"
}

# ping_ident FILE: the ICMP id `ping -v` printed.
ping_ident() { grep -oE 'ident=[0-9]+' "$1" | head -1 | cut -d= -f2; }

# start_hook_mode: the hook mode of the JSON start record in $TOOL_OUT.
start_record() { jq -c 'select(.type == "start")' "$TOOL_OUT" | head -1; }
# stage_available ID: whether the start record says stage ID has a hook.
stage_available() { [[ $(start_record | jq -r ".stages[] | select(.id == $1) | .available") == true ]]; }

# stage_hook ID: what marks stage ID on this kernel (function or tracepoint label).
stage_hook() { start_record | jq -r ".stages[] | select(.id == $1) | .hook"; }
# internal_tp ID: stage ID (the internal port) is marked by net_dev_queue on a
# non-NIC device, which the Linux bridge of the host topology also passes.
internal_tp() { [[ $(stage_hook "$1") == "net_dev_queue, internal port" ]]; }

# assert_sums JQ_RECORDS: in every record, segments are >= 0 and
# sum(segments) + extra (jq expression, e.g. inter_path_us) == total (+-1 us).
assert_sums() {
    local sel=$1 extra=$2 total=$3 bad
    bad=$(jq -c "select($sel) | select(
        ([.segments_us[] | select(. == null or . < 0)] | length) > 0
        or ((([.segments_us[]] | add // 0) + ($extra) - ($total)) | fabs) > 1)" "$TOOL_OUT" | head -3)
    [[ -z $bad ]] || { show "$TOOL_OUT"; fail "segments negative or not adding up to the total: $bad"; }
}
