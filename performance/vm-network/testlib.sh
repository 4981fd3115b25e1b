# Test helpers of the vm-network tools (sourced by their tests/live.sh after
# scripts/lib/testlib.sh). A "VM" is a network namespace joined to the host by
# a veth pair whose host end is named like a tap (vnetN) and enslaved to a
# Linux bridge: the host sees the VM's frames in netif_receive_skb on that
# device and transmits to it through dev_hard_start_xmit, as with a real tap.
# (Tools that need a real tap — tun_net_xmit, the ptr_ring — use tapguest.)

# vm_taps NAME...: bridge $VMBR in this netns; per NAME (i = 1, 2, ...) a netns
# ${VMNS[i]} with eth0 = ${VMIP[i]} (10.9.0.i/24), MAC ${VMMAC[i]}.
vm_taps() {
    local id=$$$RANDOM i=0 name ns
    id=${id: -5}
    VMBR=vmbr$id
    VMNS=() VMIP=() VMMAC=()
    ip link add "$VMBR" type bridge || fail "cannot create a bridge"
    defer ip link del "$VMBR"
    sysctl -qw "net.ipv6.conf.$VMBR.disable_ipv6=1"
    ip link set "$VMBR" up
    for name in "$@"; do
        i=$((i + 1))
        ns=vmn$i-$id
        ip link del "$name" 2>/dev/null
        ip netns add "$ns" && defer ip netns del "$ns"
        ip link add "$name" type veth peer name eth0 netns "$ns" || fail "cannot create $name"
        defer ip link del "$name"
        sysctl -qw "net.ipv6.conf.$name.disable_ipv6=1"
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        ip link set "$name" master "$VMBR"
        ip link set "$name" up
        ip -n "$ns" addr add "10.9.0.$i/24" dev eth0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
        VMNS[$i]=$ns VMIP[$i]=10.9.0.$i
        VMMAC[$i]=$(ip -n "$ns" -br link show eth0 | awk '{print $3}')
    done
    # Bridge learning and ARP done before a tool starts.
    for ((i = 2; i <= $#; i++)); do wait_ping "${VMNS[1]}" "${VMIP[$i]}" 10; done
}

# udp_send NS DST SPEC...: UDP datagrams from netns NS to DST, one thread per
# SPEC "sport:dport:count:interval_s[:pause_after:pause_s]" (a pause of
# pause_s after packet number pause_after). Bounded by the counts.
udp_send() {
    local ns=$1 dst=$2
    shift 2
    ip netns exec "$ns" python3 - "$dst" "$@" <<'PY'
import socket, sys, threading, time
dst = sys.argv[1]
def stream(spec):
    f = spec.split(":")
    sport, dport, count, ival = int(f[0]), int(f[1]), int(f[2]), float(f[3])
    pause_after = int(f[4]) if len(f) > 4 else -1
    pause = float(f[5]) if len(f) > 5 else 0.0
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", sport))
    for i in range(1, count + 1):
        try:
            s.sendto(b"x" * 32, (dst, dport))
        except OSError:
            pass  # ICMP port unreachable from an earlier datagram
        if i == count:
            break
        time.sleep(pause if i == pause_after else ival)
ts = [threading.Thread(target=stream, args=(a,)) for a in sys.argv[2:]]
[t.start() for t in ts]
[t.join() for t in ts]
PY
}
