# Tests of the test harness itself: fixtures other tests build on.

# attach_matrix (minutes under TCG) runs on the host and in the 6.1 guest, whose
# BTF is as old as it matters here (tracepoint arguments before 6.3).
MAIN_TESTS="harness_ovs_fixture harness_need_reports_reason"

# The OVS fixture: a kernel-datapath bridge passes traffic and gets megaflows.
test_harness_ovs_fixture() {
    need root cmd:ping
    ovs_bridge_pair
    wait_ping "$NS1" "$IP2"
    in1 ping -c 3 -i 0.2 -W 2 "$IP2" >"$T/ping.out" || { cat "$T/ping.out"; fail "no ping across the OVS bridge"; }
    ovs-dpctl dump-flows >"$T/flows" 2>&1
    grep -q 'in_port' "$T/flows" || { cat "$T/flows"; fail "ovs-dpctl dump-flows shows no flows after a ping"; }
    grep -q 'eth_type(0x0800)' "$T/flows" || { cat "$T/flows"; fail "no IPv4 megaflow"; }
}

# Feature gating reports a reason instead of passing silently.
test_harness_need_reports_reason() {
    out=$(bash -c "source '$ROOT/scripts/lib/testlib.sh'; need module:no_such_module_xyz" 2>&1)
    rc=$?
    [[ $rc -eq 77 && $out == "SKIP: kernel has no no_such_module_xyz module" ]] || fail "need: rc $rc, out '$out'"
}

# Every network tool attaches in every mode it offers (--mode, --attach) on this
# kernel, or says in one line that the kernel lacks it. The conformance check
# starts the default mode only; on 5.10 and 6.1 a tracepoint-mode object was
# once refused whole by the verifier (scripts/attach-matrix).
test_attach_matrix() {
    need root
    BIN_DIR=$BIN_DIR timeout 1200 "$ROOT/scripts/attach-matrix" >"$T/am.out" 2>&1
    local rc=$?
    grep -E '^FAIL' "$T/am.out"
    note "$(grep -c '^OK' "$T/am.out") tool/mode pairs attached, $(grep -c '^N/A' "$T/am.out") not available on this kernel"
    [[ $rc -eq 0 ]] || { tail -5 "$T/am.out"; fail "attach-matrix exit $rc"; }
}
