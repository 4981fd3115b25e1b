# Live tests of intel-in: received GRO skbs (veth with GRO/NAPI on).

source "$(dirname "${BASH_SOURCE[0]}")/../../dev-queue-xmit/tests/snap_lib.sh"

test_intel_in_gro() {
    snap_pair
    need cmd:ethtool
    # veth builds GRO skbs only with NAPI, which GRO on enables (>= 5.13).
    local kv; kv=$(uname -r | awk -F'[.-]' '{print $1 * 1000 + $2}')
    [[ $kv -ge 5013 ]] || skip "veth aggregates (NAPI GRO) without XDP only from 5.13"
    in2 ethtool -K "$VETH2" gro on >/dev/null 2>&1 || skip "cannot switch GRO on"
    in1 ethtool -K "$VETH1" tso off gso off >/dev/null 2>&1
    tool_start intel-in --json --match gso --dev "$VETH2" --no-stack
    tcp_load 2
    tool_stop
    assert_json_ge 1 "(.gso_type_names | index(\"TCPV4\") != null) and .gso_size == 1448 and .len > 1500 and .dev == \"$VETH2\" and .daddr == \"$IP2\""
    case $(snap_mode) in
        tracepoint) assert_json_ge 1 '.func == "netif_receive_skb"' ;;
        kprobe) assert_json_ge 1 '.func == "__netif_receive_skb_core"' ;;
    esac
    # No GRO skb is an anomaly.
    assert_json_none '.gso_size != 0 and .gso_type == 0'
}
