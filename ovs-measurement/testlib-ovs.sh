# Helpers of the ovs-measurement live tests (sourced by their tests/live.sh,
# after scripts/lib/testlib.sh). The fixture itself is testlib's
# ovs_up / ovs_bridge_pair / wait_ping.

# ovs_dp_port NAME: the datapath port number of port NAME (ovs-dpctl show).
ovs_dp_port() {
    ovs-dpctl show 2>/dev/null | awk -v p="$1" '$1 == "port" && $3 == p {sub(":", "", $2); print $2}'
}

# ovs_purge: delete every datapath flow and vswitchd's cached ukeys, so the
# next packet of any flow is an upcall again (dpctl/del-flows leaves the ukeys,
# and vswitchd then executes without installing a flow).
ovs_purge() { ovs-appctl revalidator/purge >/dev/null; }

# ovs_lost: the datapath's "lost" upcall counter.
ovs_lost() { ovs-dpctl show 2>/dev/null | sed -nE 's/.*lost:([0-9]+).*/\1/p' | head -1; }

# ovs_missed: the datapath's "missed" counter (upcalls queued by the kernel).
ovs_missed() { ovs-dpctl show 2>/dev/null | sed -nE 's/.*missed:([0-9]+).*/\1/p' | head -1; }

# ovs_ready: a bridge pair that forwards, with ARP resolved, and no flows.
# OVS 3.1 in a 1-vCPU guest sometimes starts with 0 handler threads in
# per-CPU upcall dispatch ("Overriding n-handler-threads to 0" in its log):
# then every upcall is lost and nothing forwards. Restart vswitchd once then.
ovs_ready() {
    ovs_bridge_pair "$@"
    local i ok=0
    for ((i = 0; i < 8; i++)); do
        in1 ping -c 1 -W 1 "$IP2" >/dev/null 2>&1 && { ok=1; break; }
    done
    if [[ $ok == 0 && $(ovs_lost) -gt 0 ]]; then
        note "vswitchd loses every upcall (lost: $(ovs_lost)); restarting it"
        ovs-appctl -t ovs-vswitchd exit >/dev/null 2>&1
        /usr/share/openvswitch/scripts/ovs-ctl --no-ovsdb-server start --system-id=random >"$T/ovs-restart.log" 2>&1 ||
            { cat "$T/ovs-restart.log"; fail "cannot restart ovs-vswitchd"; }
    fi
    wait_ping "$NS1" "$IP2"
    in2 ping -c 1 -W 2 "$IP1" >/dev/null 2>&1 || true
    DP1=$(ovs_dp_port "$PORT1") DP2=$(ovs_dp_port "$PORT2")
    [[ -n $DP1 && -n $DP2 ]] || { ovs-dpctl show; fail "no datapath port numbers for $PORT1/$PORT2"; }
    ovs_purge
}

# ovs_flow_line MATCH: the `ovs-dpctl dump-flows` lines containing MATCH,
# without the statistics (what the megaflow tools print as "Megaflow:").
ovs_flow_lines() {
    ovs-dpctl dump-flows 2>/dev/null | grep -F -- "$1" | sed -E 's/, packets:[0-9]+, bytes:[0-9]+, used:[^,]+(, flags:[^,]+)?, actions:/, actions:/'
}

# need_ovs_datapath_absent: for the tests of the "no datapath" exit.
need_no_ovs() {
    [[ ! -d /sys/module/openvswitch && ! -e /sys/kernel/btf/openvswitch ]] ||
        skip "the openvswitch datapath is loaded here (this test is for kernels without it)"
    # A kernel that can load the module would: only test where it cannot.
    modprobe -n openvswitch 2>/dev/null && skip "openvswitch can be loaded on this kernel"
    true
}

# ns_mac NS DEV: the MAC address of DEV in namespace NS.
ns_mac() { ip -n "$1" -o link show "$2" | grep -o 'link/ether [0-9a-f:]*' | awk '{print $2}'; }

# ovs_third_port: a third port $PORT3 on $BR (veth, peer left in the root
# namespace, both up), for flows with several outputs.
ovs_third_port() {
    PORT3=op3-${BR#obr-}
    ip link add "$PORT3" type veth peer name "${PORT3}p"
    defer ip link del "$PORT3"
    ip link set "$PORT3" up
    ip link set "${PORT3}p" up
    ovs-vsctl add-port "$BR" "$PORT3"
    DP3=$(ovs_dp_port "$PORT3")
    [[ -n $DP3 ]] || fail "no datapath port for $PORT3"
}

# megaflow_of FILE MATCH: the "Megaflow: " value of the first text event whose
# Megaflow contains MATCH.
megaflow_of() { sed -n 's/^Megaflow: //p' "$1" | grep -F -- "$2" | head -1; }
