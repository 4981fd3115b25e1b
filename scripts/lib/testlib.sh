#!/usr/bin/env bash
# Sourced by every tool's tests/live.sh (through scripts/test-live). A test is a
# function named test_<name>; the runner calls each one in its own subshell with
# a fresh $T folder. Exit 0 = passed, 77 = skipped (reason on the last "SKIP:"
# line), anything else = failed. Cleanup registered with `defer` always runs.

set -u
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BIN_DIR=${BIN_DIR:-$ROOT/dist}
ATTACH_TIMEOUT=${ATTACH_TIMEOUT:-30}
export PATH=$PATH:/usr/sbin:/sbin

# ---- outcome ---------------------------------------------------------------
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
note() { echo "  - $*"; }

_deferred=()
defer() { _deferred+=("$*"); }
run_deferred() {
    local i
    for ((i = ${#_deferred[@]} - 1; i >= 0; i--)); do eval "${_deferred[$i]}" >/dev/null 2>&1 || true; done
    _deferred=()
}

# ---- what the running kernel offers (a test declares what it needs) -------
tracefs() {
    if [[ ! -d /sys/kernel/tracing/events ]]; then
        mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
    fi
    echo /sys/kernel/tracing
}

# need FEATURE...: skip the test (with the reason) unless every feature is there.
#   root | cmd:NAME | kprobe | fentry | module:NAME | module_btf:NAME |
#   tracepoint:CAT/NAME | tp_field:CAT/NAME:FIELD | drop_reasons
need() {
    local f
    for f in "$@"; do
        case $f in
            root) [[ $(id -u) -eq 0 ]] || skip "needs root" ;;
            cmd:*) command -v "${f#cmd:}" >/dev/null 2>&1 || skip "command ${f#cmd:} not installed" ;;
            kprobe) [[ -d /sys/bus/event_source/devices/kprobe ]] || skip "kernel has no kprobes" ;;
            fentry)
                "$BIN_DIR/drop" --attach fentry --explain 2>/dev/null | grep -q '^Result: would attach' ||
                    skip "kernel cannot run fentry programs" ;;
            module:*)
                local m=${f#module:}
                [[ -d /sys/module/$m ]] || modprobe "$m" 2>/dev/null || skip "kernel has no $m module" ;;
            module_btf:*) [[ -e /sys/kernel/btf/${f#module_btf:} ]] || skip "no BTF for module ${f#module_btf:}" ;;
            tracepoint:*) [[ -d $(tracefs)/events/${f#tracepoint:} ]] || skip "no tracepoint ${f#tracepoint:}" ;;
            tp_field:*)
                local rest=${f#tp_field:}
                grep -q "field:.* ${rest##*:};" "$(tracefs)/events/${rest%:*}/format" 2>/dev/null ||
                    skip "tracepoint ${rest%:*} has no field ${rest##*:}" ;;
            drop_reasons)
                grep -q 'field:.* reason;' "$(tracefs)/events/skb/kfree_skb/format" 2>/dev/null ||
                    skip "kernel has no drop reasons (skb:kfree_skb without reason)" ;;
            *) fail "need: unknown feature $f" ;;
        esac
    done
}

kernel_series() { uname -r | grep -oE '^[0-9]+\.[0-9]+'; }

# ---- topology ----------------------------------------------------------------
# netns_pair [IP1 IP2]: namespaces $NS1/$NS2 joined by veth $VETH1 (in NS1) and
# $VETH2 (in NS2), addresses $IP1/24 and $IP2/24, removed when the test ends.
netns_pair() {
    IP1=${1:-10.99.0.1} IP2=${2:-10.99.0.2}
    local id=$$$RANDOM
    id=${id: -6}
    NS1=lt1-$id NS2=lt2-$id VETH1=lv1-$id VETH2=lv2-$id
    ip netns add "$NS1" && defer ip netns del "$NS1"
    ip netns add "$NS2" && defer ip netns del "$NS2"
    ip link add "$VETH1" netns "$NS1" type veth peer name "$VETH2" netns "$NS2" || fail "cannot create veth pair"
    ip -n "$NS1" addr add "$IP1/24" dev "$VETH1"
    ip -n "$NS2" addr add "$IP2/24" dev "$VETH2"
    ip -n "$NS1" link set lo up
    ip -n "$NS2" link set lo up
    ip -n "$NS1" link set "$VETH1" up
    ip -n "$NS2" link set "$VETH2" up
    # Let the neighbour entries settle so drops are not ARP-related.
    ip netns exec "$NS1" ping -c 1 -W 2 "$IP2" >/dev/null 2>&1 || true
}

in1() { ip netns exec "$NS1" "$@"; }
in2() { ip netns exec "$NS2" "$@"; }

# ---- running a tool ------------------------------------------------------------
# tool_start NAME ARGS...: start $BIN_DIR/NAME in the background, output in
# $T/NAME.out and $T/NAME.err; returns once it announced "Attached".
tool_start() {
    local name=$1
    shift
    _tool_n=$(( ${_tool_n:-0} + 1 ))
    TOOL=$name TOOL_OUT=$T/$name.$_tool_n.out TOOL_ERR=$T/$name.$_tool_n.err
    [[ -x $BIN_DIR/$name ]] || fail "no binary $BIN_DIR/$name (build with scripts/build)"
    set -m
    "$BIN_DIR/$name" "$@" >"$TOOL_OUT" 2>"$TOOL_ERR" &
    TOOL_PID=$!
    set +m
    defer "kill -KILL $TOOL_PID"
    local i
    for ((i = 0; i < ATTACH_TIMEOUT * 10; i++)); do
        grep -q '^Attached' "$TOOL_ERR" 2>/dev/null && return 0
        kill -0 "$TOOL_PID" 2>/dev/null || { cat "$TOOL_ERR"; fail "$name exited before attaching"; }
        sleep 0.1
    done
    fail "$name did not attach within ${ATTACH_TIMEOUT}s"
}

# tool_stop: Ctrl-C, wait up to 10 s; $TOOL_RC is its exit status.
tool_stop() {
    sleep "${1:-0.5}"  # let the last events drain
    kill -INT "$TOOL_PID" 2>/dev/null
    local i
    for ((i = 0; i < 100; i++)); do kill -0 "$TOOL_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$TOOL_PID" 2>/dev/null && { kill -KILL "$TOOL_PID"; fail "$TOOL did not exit within 10 s of Ctrl-C"; }
    wait "$TOOL_PID"
    TOOL_RC=$?
    [[ $TOOL_RC -eq 0 ]] || { cat "$TOOL_ERR"; fail "$TOOL exited with $TOOL_RC after Ctrl-C"; }
}

# ---- assertions --------------------------------------------------------------
show() { echo "--- ${1}:"; head -c 4000 "$1"; echo "---"; }
assert_grep() { grep -qE -- "$1" "${2:-$TOOL_OUT}" || { show "${2:-$TOOL_OUT}"; fail "expected /$1/ in $(basename "${2:-$TOOL_OUT}")"; }; }
assert_no_grep() { ! grep -qE -- "$1" "${2:-$TOOL_OUT}" || { show "${2:-$TOOL_OUT}"; fail "unexpected /$1/ in $(basename "${2:-$TOOL_OUT}")"; }; }
count() { grep -cE -- "$1" "${2:-$TOOL_OUT}"; }
assert_count_ge() {
    local n
    n=$(count "$2" "${3:-$TOOL_OUT}")
    [[ $n -ge $1 ]] || { show "${3:-$TOOL_OUT}"; fail "expected >= $1 lines /$2/, got $n"; }
}
# jcount FILTER [FILE]: number of JSON lines for which the jq FILTER is true.
jcount() { jq -c "select($1)" "${2:-$TOOL_OUT}" 2>/dev/null | grep -c .; }
assert_json_ge() {
    local n
    n=$(jcount "$2" "${3:-$TOOL_OUT}")
    [[ $n -ge $1 ]] || { show "${3:-$TOOL_OUT}"; fail "expected >= $1 JSON events with $2, got $n"; }
}
assert_json_none() {
    local n
    n=$(jcount "$1" "${2:-$TOOL_OUT}")
    [[ $n -eq 0 ]] || { show "${2:-$TOOL_OUT}"; fail "expected no JSON events with $1, got $n"; }
}
assert_all_json() {
    jq -e . "${1:-$TOOL_OUT}" >/dev/null 2>&1 || { show "${1:-$TOOL_OUT}"; fail "output is not JSON lines"; }
}

# bpf_prog_count: loaded BPF programs (to prove nothing is left behind).
bpf_prog_count() { bpftool prog show 2>/dev/null | grep -c '^[0-9]*:'; }

# expect_usage_error ARGS...: the tool exits 2 with one "error:" line naming
# what was wrong, loads nothing.
expect_exit() {
    local want=$1 name=$2
    shift 2
    local before out rc
    before=$(bpf_prog_count)
    out=$("$BIN_DIR/$name" "$@" 2>&1)
    rc=$?
    [[ $rc -eq $want ]] || fail "$name $*: exit $rc, want $want ($out)"
    grep -q panicked <<<"$out" && fail "$name $*: panicked"
    [[ $(grep -c . <<<"$out") -eq 1 ]] || fail "$name $*: want one line, got: $out"
    grep -q '^error: ' <<<"$out" || fail "$name $*: message does not start with 'error: ': $out"
    [[ $(bpf_prog_count) -eq $before ]] || fail "$name $*: left BPF programs loaded"
    LAST_ERROR=$out
}

# ---- Open vSwitch (kernel datapath; VM kernels only) ---------------------------
# ovs_up: make sure ovsdb-server and ovs-vswitchd run (start them if this test
# is the first to need them; they are stopped again when the test ends).
ovs_up() {
    need module:openvswitch cmd:ovs-vsctl
    ovs-vsctl --timeout=3 show >/dev/null 2>&1 && return 0
    local ctl=/usr/share/openvswitch/scripts/ovs-ctl
    [[ -x $ctl ]] || skip "Open vSwitch is not installed"
    $ctl start --system-id=random >"$T/ovs-ctl.log" 2>&1 || { cat "$T/ovs-ctl.log"; fail "ovs-ctl start failed"; }
    defer "$ctl stop"
    local i
    for ((i = 0; i < 100; i++)); do ovs-vsctl --timeout=3 show >/dev/null 2>&1 && return 0; sleep 0.2; done
    fail "ovs-vsctl does not answer"
}

# ovs_bridge_pair [IP1 IP2]: an OVS bridge $BR on the kernel datapath with two
# ports $PORT1/$PORT2, veth peers in namespaces $NS1/$NS2 ($VETH1/$VETH2, $IP1/$IP2).
ovs_bridge_pair() {
    ovs_up
    IP1=${1:-10.97.0.1} IP2=${2:-10.97.0.2}
    local id=$$$RANDOM
    id=${id: -5}
    NS1=lo1-$id NS2=lo2-$id VETH1=ov1-$id VETH2=ov2-$id PORT1=op1-$id PORT2=op2-$id BR=obr-$id
    ovs-vsctl add-br "$BR" -- set bridge "$BR" datapath_type=system || fail "cannot add OVS bridge"
    defer ovs-vsctl --if-exists del-br "$BR"
    ip netns add "$NS1" && defer ip netns del "$NS1"
    ip netns add "$NS2" && defer ip netns del "$NS2"
    ip link add "$PORT1" type veth peer name "$VETH1" netns "$NS1"
    ip link add "$PORT2" type veth peer name "$VETH2" netns "$NS2"
    defer ip link del "$PORT1"
    defer ip link del "$PORT2"
    ip link set "$PORT1" up
    ip link set "$PORT2" up
    ovs-vsctl add-port "$BR" "$PORT1" -- add-port "$BR" "$PORT2"
    ip link set "$BR" up
    ip -n "$NS1" addr add "$IP1/24" dev "$VETH1"
    ip -n "$NS2" addr add "$IP2/24" dev "$VETH2"
    ip -n "$NS1" link set lo up
    ip -n "$NS2" link set lo up
    ip -n "$NS1" link set "$VETH1" up
    ip -n "$NS2" link set "$VETH2" up
}

# wait_ping NS IP [SECS]: ping from netns NS until IP answers (a new OVS bridge
# under emulation can take seconds for its first upcalls and ARP).
wait_ping() {
    local ns=$1 ip=$2 secs=${3:-20} i
    for ((i = 0; i < secs; i++)); do
        ip netns exec "$ns" ping -c 1 -W 1 "$ip" >/dev/null 2>&1 && return 0
    done
    fail "$ip does not answer from $ns within ${secs}s"
}
