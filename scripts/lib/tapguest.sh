# A "VM" without QEMU for the vm-network and virtio-network live tests (sourced
# after testlib.sh): a tap device held open by scripts/lib/tapguest.c (the
# guest: reads and writes frames on the tap fd, or serves it through
# /dev/vhost-net with -V), bridged with a veth whose peer is in a network
# namespace (the "remote" side / uplink):
#
#   netns $RNS [eth0 10.8.0.9] ~~ $PHY --[bridge $TBR]-- $TAP ~ tapguest (10.8.0.5, 02:00:00:00:00:05)
#
# tap_topo TAPNAME [TAPGUEST-OPTIONS...]: sets TAP PHY TBR RNS RMAC GUEST_PID.
# guest_stop_reading / guest_resume_reading: SIGUSR1 / SIGUSR2 to the guest;
# guest_udp_burst: SIGHUP, the guest sends its -u datagrams.
# TAP_HOST_NS=NS puts the host side (tap, bridge, $PHY) into netns NS;
# TAP_PHY_NAME names $PHY; GUEST_IP / REMOTE_IP may be set before.
GUEST_IP=${GUEST_IP:-10.8.0.5} GUEST_MAC=02:00:00:00:00:05 REMOTE_IP=${REMOTE_IP:-10.8.0.9}

# hx CMD...: run CMD on the host side (this netns or $TAP_HOST_NS).
hx() { if [[ -n ${TAP_HOST_NS:-} ]]; then ip netns exec "$TAP_HOST_NS" "$@"; else "$@"; fi; }

tapguest_build() {
    [[ -x $T/tapguest ]] && return 0
    need cmd:gcc
    gcc -O2 -o "$T/tapguest" "$ROOT/scripts/lib/tapguest.c" 2>"$T/gcc.err" || { cat "$T/gcc.err"; fail "cannot build tapguest"; }
}

# guest_start TAPNAME [OPTIONS...]: start the guest (or restart it), wait for "ready".
guest_start() {
    local name=$1 i
    shift
    tapguest_build
    local pre=()
    [[ -n ${TAP_HOST_NS:-} ]] && pre=(ip netns exec "$TAP_HOST_NS")
    # ip netns exec execs the helper: $! is the helper itself (signals reach it)
    "${pre[@]}" "$T/tapguest" -i "$name" -a "$GUEST_IP" -m "$GUEST_MAC" -t 120 "$@" >"$T/guest.out" 2>"$T/guest.err" &
    GUEST_PID=$!
    defer "kill $GUEST_PID"
    for ((i = 0; i < 100; i++)); do
        grep -q '^ready' "$T/guest.out" 2>/dev/null && return 0
        if ! kill -0 "$GUEST_PID" 2>/dev/null; then
            wait "$GUEST_PID"
            [[ $? -eq 77 ]] && skip "$(cat "$T/guest.err")"
            cat "$T/guest.err"; fail "tapguest exited"
        fi
        sleep 0.1
    done
    fail "tapguest did not attach within 10 s"
}

tap_topo() {
    local name=$1 id=$$$RANDOM
    shift
    id=${id: -5}
    TAP=$name PHY=${TAP_PHY_NAME:-tph$id} TBR=tbr$id RNS=trn$id
    if [[ -n ${TAP_HOST_NS:-} ]]; then
        ip netns add "$TAP_HOST_NS" && defer ip netns del "$TAP_HOST_NS"
        hx ip link set lo up
    fi
    hx ip link del "$TAP" 2>/dev/null
    guest_start "$TAP" "$@"
    hx ip link add "$TBR" type bridge || fail "cannot create a bridge"
    defer hx ip link del "$TBR"
    ip netns add "$RNS" && defer ip netns del "$RNS"
    hx ip link add "$PHY" type veth peer name eth0 netns "$RNS" || fail "cannot create veth"
    defer hx ip link del "$PHY"
    local d
    for d in "$TBR" "$PHY" "$TAP"; do hx sysctl -qw "net.ipv6.conf.$d.disable_ipv6=1"; done
    ip netns exec "$RNS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    hx ip link set "$PHY" master "$TBR"
    hx ip link set "$TAP" master "$TBR"
    hx ip link set "$TBR" up
    hx ip link set "$PHY" up
    hx ip link set "$TAP" up
    ip -n "$RNS" addr add "$REMOTE_IP/24" dev eth0
    ip -n "$RNS" link set eth0 address 02:00:00:00:00:09
    ip -n "$RNS" link set lo up
    ip -n "$RNS" link set eth0 up
    RMAC=$(ip -n "$RNS" -br link show eth0 | awk '{print $3}')
}

guest_stop_reading() { kill -USR1 "$GUEST_PID"; sleep 0.1; }
guest_udp_burst() { kill -HUP "$GUEST_PID"; }
guest_resume_reading() { kill -USR2 "$GUEST_PID"; sleep 0.1; }

# guest2_start TAPNAME IP MAC [OPTIONS...]: a second guest on the same bridge
# ($GUEST2_PID); its tap joins $TBR.
guest2_start() {
    local name=$1 ip=$2 mac=$3 i
    shift 3
    local pre=()
    [[ -n ${TAP_HOST_NS:-} ]] && pre=(ip netns exec "$TAP_HOST_NS")
    "${pre[@]}" "$T/tapguest" -i "$name" -a "$ip" -m "$mac" -t 120 "$@" >"$T/guest2.out" 2>"$T/guest2.err" &
    GUEST2_PID=$!
    defer "kill $GUEST2_PID"
    for ((i = 0; i < 100; i++)); do
        grep -q '^ready' "$T/guest2.out" 2>/dev/null && break
        kill -0 "$GUEST2_PID" 2>/dev/null || { cat "$T/guest2.err"; fail "second tapguest exited"; }
        sleep 0.1
    done
    hx sysctl -qw "net.ipv6.conf.$name.disable_ipv6=1"
    hx ip link set "$name" master "$TBR"
    hx ip link set "$name" up
}

# tun_btf: the tun/tap private structs are readable through BTF (tun built in,
# or the tun module with its own BTF; 5.10 has no module BTF). Call after a tap exists.
tun_btf() { [[ -e /sys/kernel/btf/tun || ! -e /sys/module/tun/initstate ]]; }
need_tun_btf() { tun_btf || skip "the tun module has no BTF on this kernel: ring state is N/A"; }
