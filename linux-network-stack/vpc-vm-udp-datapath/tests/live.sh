# Live tests of vpc-vm-udp-datapath: UDP over an overlay, ICMP skipped.

source "$(dirname "${BASH_SOURCE[0]}")/../../dev-queue-xmit/tests/snap_lib.sh"

test_vpc_vm_udp_datapath_udp() {
    snap_pair
    overlay "$(overlay_type)"
    tool_start vpc-vm-udp-datapath --dev tnl1 --dev "$VETH1" --no-stack
    in1 iperf3 -c 10.98.0.2 -u -b 10M -l 1000 -t 1 >"$T/iperf3.out" 2>&1
    in1 ping -c 2 -i 0.2 10.98.0.2 >/dev/null
    tool_stop
    assert_grep '^udp: 10\.98\.0\.1:[0-9]+ => 10\.98\.0\.2:5201   MAC src: '
    assert_grep "^udp: $IP1:[0-9]+ => $IP2:$TPORT "
    assert_no_grep '^icmp: '
    assert_grep '^Per-hook counters:$'
    assert_grep "^[a-z_]+ +$VETH1 +[1-9][0-9]* +[0-9]+$"
    assert_grep '^[a-z_]+ +tnl1 +[1-9][0-9]* +[0-9]+$'
}
