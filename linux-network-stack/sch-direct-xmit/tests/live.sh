# Live tests of sch-direct-xmit: GSO skbs through an HTB qdisc.

source "$(dirname "${BASH_SOURCE[0]}")/../../dev-queue-xmit/tests/snap_lib.sh"

test_sch_direct_xmit_htb() {
    snap_pair
    need cmd:tc
    in1 tc qdisc add dev "$VETH1" root handle 1: htb default 1 || skip "no htb qdisc"
    in1 tc class add dev "$VETH1" parent 1: classid 1:1 htb rate 10gbit
    tool_start sch-direct-xmit --json --match gso --dev "$VETH1"
    tcp_load 2
    tool_stop
    case $(snap_mode) in
        tracepoint)
            assert_json_ge 1 ".func == \"qdisc_enqueue\" and .qdisc.kind == \"htb\" and .qdisc.handle == \"0x10000\" and $GSO_TCP"
            assert_json_ge 1 '.func == "qdisc_dequeue" and .qdisc.kind == "htb"'
            grep -q 'not traced (no tracepoint): tcf_classify' "$TOOL_ERR" || fail "no notice of the skipped hooks" ;;
        kprobe)
            assert_json_ge 1 ".func == \"htb_enqueue\" and $GSO_TCP"
            assert_json_ge 1 '.func == "sch_direct_xmit"' ;;
    esac
}
