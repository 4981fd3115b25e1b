# Live tests of vm_latency. The "VM" is scripts/lib/tapguest.c on a tap
# (reads/writes frames, answers ARP/ping, sends UDP on SIGHUP, or serves the
# tap through /dev/vhost-net), bridged with a veth ("physical NIC") whose peer
# is a netns (the "wire"). Linux bridge: the OVS stages are N/A, segment [0->6].

MAIN_TESTS="vm_latency_tx_udp vm_latency_rx_icmp vm_latency_vhost"

source "$ROOT/scripts/lib/tapguest.sh"

# assert_vm_sums: every record's segments are >= 0 and add up to total_us (+-0.01).
assert_vm_sums() {
    local bad
    bad=$(jq -c 'select(.type == "vm_latency") | select(
        ([.segments_us[] | select(. == null or . < 0)] | length) > 0
        or ((([.segments_us[]] | add) - .total_us) | fabs) > 0.01 or .total_us <= 0)' "$TOOL_OUT" | head -3)
    [[ -z $bad ]] || { show "$TOOL_OUT"; fail "segments negative or not adding up to the total: $bad"; }
}

test_vm_latency_tx_udp() {
    need root cmd:jq
    tap_topo vnet0 -u "$REMOTE_IP:62109:5000:20:20"
    tool_start vm_latency --vm-interface vnet0 --phy-interface "$PHY" --direction tx --protocol udp --dst-port 62109 --json
    guest_udp_burst
    sleep 1.2
    tool_stop
    local f='.type == "vm_latency" and .direction == "tx" and .proto == "UDP" and .src == "10.8.0.5" and .sport == 5000 and .dst == "10.8.0.9" and .dport == 62109'
    [[ $(jcount "$f") -eq 20 ]] || { show "$TOOL_OUT"; fail "want 20 tx records"; }
    # Under TCG emulation (VMTEST_GUEST) one packet can take a few ms.
    local max_us=5000
    [[ ${VMTEST_GUEST:-0} == 1 ]] && max_us=50000
    [[ $(jcount "$f and .stages.VNET_RX > 0 and .stages.PHY_QUEUE > 0 and .stages.PHY_XMIT > 0 and .total_us < $max_us and .vm_if == \"vnet0\" and .first.comm == \"tapguest\"") -eq 20 ]] ||
        { show "$TOOL_OUT"; fail "stages VNET_RX, PHY_QUEUE, PHY_XMIT, total < $((max_us / 1000)) ms, first comm tapguest"; }
    [[ $(jq -r "select($f) | .ip_id" "$TOOL_OUT" | sort -u | wc -l) -eq 20 ]] || fail "20 distinct IP ids"
    assert_vm_sums
    assert_json_ge 1 '.type == "start" and .direction == "tx" and ([.stages[] | select(.id == 0 or .id == 6 or .id == 7) | .available] | all)'
    assert_json_ge 1 '.type == "summary" and .started == 20 and .completed == 20 and .incomplete == 0'
    note "tx totals (us): $(jq -r "select($f) | .total_us" "$TOOL_OUT" | head -5 | tr '\n' ' ')..."
}

test_vm_latency_rx_icmp() {
    need root cmd:jq cmd:ping
    tap_topo vnet0
    tool_start vm_latency --vm-interface vnet0 --phy-interface "$PHY" --direction rx --protocol icmp --json
    local main=$TOOL_OUT main_pid=$TOOL_PID
    tool_start vm_latency --vm-interface vnet0 --phy-interface "$PHY" --direction rx --protocol icmp --json --latency-ms 1000
    local slow=$TOOL_OUT slow_pid=$TOOL_PID
    ip netns exec "$RNS" ping -c 5 -i 0.2 -W 2 "$GUEST_IP" >"$T/ping.out" || { cat "$T/ping.out"; fail "the guest does not answer"; }
    # The guest stops reading, the tap's ring is 8 long: the 9th and later requests are dropped.
    ip -n "$RNS" neigh replace "$GUEST_IP" lladdr "$GUEST_MAC" dev eth0
    hx ip link set vnet0 txqueuelen 8
    guest_stop_reading
    ip netns exec "$RNS" ping -c 14 -i 0.05 -W 0.1 "$GUEST_IP" >/dev/null
    TOOL_PID=$slow_pid TOOL_OUT=$slow
    tool_stop
    TOOL_PID=$main_pid TOOL_OUT=$main
    tool_stop 0
    local f='.type == "vm_latency" and .direction == "rx" and .proto == "ICMP" and .icmp_type == 8 and .src == "10.8.0.9" and .dst == "10.8.0.5"'
    [[ $(jcount "$f and .dropped == null and .stages.PHY_RX > 0 and .stages.VNET_XMIT > 0 and .stages.VNET_CONSUMED > 0 and .last.comm == \"tapguest\"") -ge 5 ]] ||
        { show "$TOOL_OUT"; fail "want 5 records ending at VNET_CONSUMED, taken by tapguest"; }
    [[ $(jcount "$f and .dropped == null and .icmp_seq >= 1 and .icmp_seq <= 5") -eq 5 ]] || fail "seq 1..5"
    assert_vm_sums
    local dropped
    dropped=$(jcount "$f and .dropped != null and .stages.VNET_DROPPED > 0")
    [[ $dropped -ge 3 ]] || { show "$TOOL_OUT"; fail "want >= 3 records dropped at the tap, got $dropped"; }
    if grep -q 'field:.* reason;' "$(tracefs)/events/skb/kfree_skb/format" 2>/dev/null; then
        [[ $(jcount "$f and .dropped == \"FULL_RING\"") -eq $dropped ]] || { show "$TOOL_OUT"; fail "drops are FULL_RING"; }
    fi
    assert_json_none '.type == "vm_latency"' "$slow"
    note "rx: $(jq -c "select($f and .dropped == null) | .segments_us" "$TOOL_OUT" | head -1), $dropped dropped"
}

# The README's command, verbatim, in a netns where the VM's tap is vnet0 and the NIC eth0.
test_vm_latency_readme_example() {
    need root cmd:ping
    local id=$$$RANDOM
    TAP_HOST_NS=vmh${id: -5} TAP_PHY_NAME=eth0 GUEST_IP=192.168.1.10 REMOTE_IP=192.168.1.20
    tap_topo vnet0 -u 192.168.1.20:62109:5000:3:20
    mkdir -p "$T/nsbin"
    printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$TAP_HOST_NS" "$BIN_DIR/vm_latency" >"$T/nsbin/vm_latency"
    chmod +x "$T/nsbin/vm_latency"
    BIN_DIR=$T/nsbin tool_start vm_latency --src-ip 192.168.1.10 --dst-ip 192.168.1.20 --vm-interface vnet0 --phy-interface eth0 --direction tx
    guest_udp_burst
    ip netns exec "$RNS" ping -c 2 -i 0.2 -W 2 192.168.1.10 >/dev/null || fail "the guest does not answer"
    sleep 0.3
    tool_stop
    assert_grep '^=== VM Network Latency Tracer ===$'
    assert_grep '^VM interface: vnet0 \(ifindex [0-9]+\)$'
    assert_grep '^Physical interfaces: eth0 \(ifindex [0-9]+\)$'
    assert_count_ge 3 '^Flow: 192\.168\.1\.10 -> 192\.168\.1\.20 \(UDP\)$'
    assert_count_ge 2 '^Flow: 192\.168\.1\.10 -> 192\.168\.1\.20 \(ICMP\)$'
    assert_count_ge 5 '^=== VM Network Latency Trace: [0-9-]+ [0-9:.]+ \(TX: VM -> wire\) ===$'
    assert_count_ge 5 '^VM Interface: vnet0 -> Physical Interface: eth0$'
    assert_count_ge 5 '^  \[0->6\] VNET_RX -> PHY_QUEUE +: +[0-9]+\.[0-9]{3} us$'
    assert_count_ge 5 '^  \[6->7\] PHY_QUEUE -> PHY_XMIT +: +[0-9]+\.[0-9]{3} us$'
    assert_count_ge 5 '^  Total TX Latency: +[0-9]+\.[0-9]{3} us$'
    assert_grep '^Summary: packets started [0-9]+, completed [0-9]+'
    assert_no_grep '192\.168\.1\.20 -> 192\.168\.1\.10'
}

# The tap served by /dev/vhost-net (VM kernels): tx frames come from vhost's
# worker (comm vhost-<pid>), rx packets are taken off the ring by it.
test_vm_latency_vhost() {
    need root cmd:jq cmd:ping
    [[ -e /dev/vhost-net ]] || modprobe vhost_net 2>/dev/null
    [[ -e /dev/vhost-net ]] || skip "no /dev/vhost-net (vhost_net) on this kernel"
    tap_topo vnet0 -V -u "$REMOTE_IP:62109:5000:10:20"
    tool_start vm_latency --vm-interface vnet0 --phy-interface "$PHY" --direction tx --protocol udp --json
    local tx=$TOOL_OUT tx_pid=$TOOL_PID
    tool_start vm_latency --vm-interface vnet0 --phy-interface "$PHY" --direction rx --protocol icmp --json
    ip netns exec "$RNS" ping -c 5 -i 0.2 -W 2 "$GUEST_IP" >"$T/ping.out" || { cat "$T/ping.out"; fail "the vhost guest does not answer"; }
    guest_udp_burst
    sleep 1
    tool_stop
    local rx=$TOOL_OUT
    TOOL_PID=$tx_pid TOOL_OUT=$tx
    tool_stop 0
    [[ $(jcount '.type == "vm_latency" and .sport == 5000 and (.first.comm | startswith("vhost-")) and .stages.PHY_XMIT > 0' "$tx") -eq 10 ]] ||
        { show "$tx"; fail "tx: want 10 records whose first stage ran in the vhost worker"; }
    [[ $(jcount '.type == "vm_latency" and .icmp_type == 8 and .stages.VNET_CONSUMED > 0 and (.last.comm | startswith("vhost-"))' "$rx") -eq 5 ]] ||
        { show "$rx"; fail "rx: want 5 records consumed by the vhost worker"; }
    TOOL_OUT=$rx assert_vm_sums
    TOOL_OUT=$tx assert_vm_sums
    note "hooks: $(grep '^Attached' "${rx%.out}.err")"
}

test_vm_latency_bad_input() {
    need root
    local id=$$$RANDOM
    id=${id: -5}
    ip link add vlv$id type veth peer name vlp$id || fail "veth"
    defer ip link del vlv$id
    expect_exit 2 vm_latency --vm-interface vlv$id --phy-interface vlp$id
    expect_exit 2 vm_latency --vm-interface vlv$id --phy-interface vlp$id,lo,vlv$id --direction tx
    expect_exit 2 vm_latency --vm-interface vlv$id --phy-interface vlp$id --direction rx
    grep -q 'not a tun/tap' <<<"$LAST_ERROR" || fail "message: $LAST_ERROR"
    expect_exit 2 vm_latency --vm-interface nosuch0 --phy-interface vlp$id --direction tx
    expect_exit 2 vm_latency --vm-interface vlv$id --phy-interface vlp$id --direction tx --src-ip 300.1.1.1
    expect_exit 2 vm_latency --vm-interface vlv$id --phy-interface vlp$id --direction tx --dst-port 70000
    expect_exit 2 vm_latency --vm-interface vlv$id --phy-interface vlp$id --direction tx --latency-ms -1
    expect_exit 2 vm_latency --vm-interface vlv$id --phy-interface vlp$id --direction sideways
}
