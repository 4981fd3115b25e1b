# Live tests of ovs-clone-execute-summary: an OVS bridge on the kernel
# datapath with two namespace ports (VM kernels; the host has no openvswitch).
source "$ROOT/ovs-measurement/testlib-ovs.sh"

# Main real-event tests (the 5.10 and 6.12 legs of the matrix run only these).
MAIN_TESTS="ovs_clone_execute_summary_iperf ovs_clone_execute_summary_text ovs_clone_execute_summary_tracepoint"

# The spec's flows (table 2 needs an ip match for ct()): ct() forces a
# recirculation (A); in the recirculated pass clone(ct(zone=2,table=3)) runs a
# second ct() and recirculation (B). vswitchd does not emit a datapath clone
# for a clone() that is the last action (nothing after it can see the
# changes), so the datapath flows are ct(zone=1),recirc(A) /
# ct(commit,zone=1),ct(zone=2),recirc(B) / output: recirc B is called with
# recirc A's clone_execute frame below it: depth 2 (measured on 6.1).
ovs_clone_flows() {
    ovs-ofctl del-flows "$BR"
    ovs-ofctl add-flow "$BR" "table=0,priority=0,actions=NORMAL"
    ovs-ofctl add-flow "$BR" "table=0,priority=10,ip,actions=ct(table=1,zone=1)"
    ovs-ofctl add-flow "$BR" "table=1,ip,ct_state=+trk+new,actions=ct(commit,zone=1),resubmit(,2)"
    ovs-ofctl add-flow "$BR" "table=1,ip,ct_state=+trk+est,actions=resubmit(,2)"
    ovs-ofctl add-flow "$BR" "table=2,ip,actions=clone(ct(zone=2,table=3))"
    ovs-ofctl add-flow "$BR" "table=3,actions=NORMAL"
}

tracked() {
    if [[ -e /sys/kernel/btf/openvswitch ]]; then echo '((.ct_state_flags // []) | index("TRACKED")) != null'; else echo '.ct_state == null'; fi
}

# iperf3 through the ct/clone flows: per-event JSON, a --summary table and an
# ICMP-only instance at the same time.
test_ovs_clone_execute_summary_iperf() {
    need root cmd:iperf3 cmd:jq cmd:ovs-ofctl
    ovs_ready
    ovs_clone_flows
    in2 iperf3 -s -1 -D -p 5201 >/dev/null 2>&1
    tool_start ovs-clone-execute-summary --json --protocol tcp
    local ev=$TOOL_OUT ev_pid=$TOOL_PID
    tool_start ovs-clone-execute-summary --json --summary --interval 1 --protocol tcp --dst-port 5201
    local sum=$TOOL_OUT sum_err=$TOOL_ERR sum_pid=$TOOL_PID t0=$EPOCHREALTIME
    tool_start ovs-clone-execute-summary --protocol icmp
    local icmp=$TOOL_OUT
    in1 iperf3 -c "$IP2" -p 5201 -t 2 -b 2M >"$T/iperf" 2>&1 || { cat "$T/iperf"; fail "iperf3 failed"; }
    tool_stop 1
    local t1=$EPOCHREALTIME
    TOOL_PID=$sum_pid; tool_stop 0
    TOOL_PID=$ev_pid; tool_stop 0
    # recirc B, called below recirc A: depth 2, its own recirc id, tracked.
    assert_json_ge 5 ".saddr == \"$IP1\" and .dport == 5201 and .depth == 2 and .recirc_id != 0 and $(tracked) and .last != null and .clone_flow_key == true" "$ev"
    assert_json_ge 5 ".saddr == \"$IP2\" and .sport == 5201 and .depth == 2 and .recirc_id != 0" "$ev"
    assert_json_none '.depth < 2' "$ev"
    assert_json_ge 1 '.type == "summary" and .scope == "interval" and .final == false and .interval_s == 1 and ([.rows[] | select(.dport == 5201 and .depth == 2 and .recirc_id != 0 and .count > 0)] | length) > 0' "$sum"
    assert_json_none '.type == "summary" and ([.rows[] | select(.dport != 5201)] | length) > 0' "$sum"
    # At exit: the last interval with the time it really covers (since the
    # last table printed; empty intervals print none), then the whole run
    # (since attach), whose total is every reported call.
    local fin run
    fin=$(jq -c 'select(.type == "summary" and .final and .scope == "interval")' "$sum")
    run=$(jq -c 'select(.type == "summary" and .final and .scope == "run")' "$sum")
    [[ $(grep -c . <<<"$fin") -eq 1 && $(grep -c . <<<"$run") -eq 1 ]] || { show "$sum"; fail "want one final interval and one run object"; }
    jq -e --argjson run "$run" '.interval_s > 0 and .interval_s < ($run | .interval_s) and .total == ([.rows[].count] | add // 0)' <<<"$fin" >/dev/null || fail "final interval: $fin"
    # the run lasted from attach to Ctrl-C as the shell measured it
    jq -e --arg d "$(bc <<<"$t1 - $t0")" '(.interval_s - ($d | tonumber)) | fabs < 1' <<<"$run" >/dev/null || fail "run interval_s vs $(bc <<<"$t1 - $t0") s measured: $run"
    local sum_total run_total
    sum_total=$(jq -s '[.[] | select(.type == "summary" and .scope == "interval") | .total] | add' "$sum")
    run_total=$(jq '.total' <<<"$run")
    [[ $run_total -eq $sum_total && $run_total -ge 10 ]] || fail "run total $run_total, intervals add up to $sum_total"
    jq -e --arg ip "$IP1" '.interval_s >= 2 and ([.rows[] | select(.saddr == $ip and .dport == 5201 and .depth == 2 and .recirc_id != 0) | .count] | add) >= 5 and .total == ([.rows[].count] | add)' <<<"$run" >/dev/null || fail "run object: $run"
    grep -q "^Summary: $run_total nested clone_execute calls reported" "$sum_err" || { cat "$sum_err"; fail "stderr total differs from the run table's $run_total"; }
    assert_no_grep "^=== OpenVSwitch clone_execute Call" "$icmp"
    note "$run_total calls summarized (run object: $(jq -c '{interval_s, total}' <<<"$run"), last interval: $(jq -c '{interval_s, total}' <<<"$fin")); $(jcount '.depth == 2' "$ev") events at depth 2"
}

# Text output: recirc B with two clone_execute frames on its stack; a
# --min-depth 3 instance at the same time reports nothing.
test_ovs_clone_execute_summary_text() {
    need root cmd:ping cmd:ovs-ofctl
    ovs_ready
    ovs_clone_flows
    tool_start ovs-clone-execute-summary --min-depth 3 --src "$IP1"
    local deep=$TOOL_OUT deep_pid=$TOOL_PID
    tool_start ovs-clone-execute-summary --summary --interval 1 --src "$IP1" --protocol icmp
    local sum=$TOOL_OUT sum_pid=$TOOL_PID
    tool_start ovs-clone-execute-summary --src "$IP1" --protocol icmp
    local ev=$TOOL_OUT
    # The first packets take upcalls (one per recirculation stage) before every
    # stage has its megaflow; under emulation that can be two of them.
    in1 ping -c 7 -i 0.3 -W 2 "$IP2" >/dev/null || fail "ping through the ct flows failed"
    tool_stop 1
    assert_count_ge 3 "^clone_execute call count in stack: 2$"
    assert_count_ge 3 "^Source IP: $IP1 +Destination IP: $IP2 +Protocol: ICMP$"
    assert_count_ge 3 "^  recirc_id: 0x[0-9a-f]*[1-9a-f][0-9a-f]* +last: True +clone_flow_key: True$"
    assert_count_ge 3 "^ICMP Type: 8 +Code: 0$"
    assert_count_ge 3 "^Device: $PORT1$"
    [[ $(grep -c '^  clone_execute+0x' "$TOOL_OUT") -ge 6 ]] || { show "$TOOL_OUT"; fail "want two clone_execute frames per event"; }
    if [[ -e /sys/kernel/btf/openvswitch ]]; then
        assert_count_ge 3 "^  ct_state: 0x[0-9a-f]+ \(.*TRACKED.*\)$"
    fi
    TOOL_PID=$deep_pid TOOL_OUT=$deep
    tool_stop 0
    assert_no_grep "^=== OpenVSwitch clone_execute Call" "$deep"
    TOOL_PID=$sum_pid TOOL_OUT=$sum
    tool_stop 0
    # --summary text: tables per second while the pings run, at exit the
    # last interval (its real length) and the whole run with every call.
    local n
    n=$(grep -c "^=== OpenVSwitch clone_execute Call" "$ev")
    assert_grep "^--- [0-9:]+ clone_execute calls, last 1 s ---$" "$sum"
    assert_grep "^--- [0-9:]+ clone_execute calls, last [0-9]+\.[0-9] s ---$" "$sum"
    assert_grep "^--- [0-9:]+ clone_execute calls, whole run, [0-9]+\.[0-9] s ---$" "$sum"
    sed -n '/whole run/,$p' "$sum" >"$T/run-table"
    assert_grep "^$IP1 +$IP2 +ICMP +0 +0 +0x[0-9a-f]*[1-9a-f][0-9a-f]* +[^ ]+ +2 +[0-9]+$" "$T/run-table"
    # the run's total is every call the per-event instance printed, and the intervals' sum
    assert_grep "^Total: $n$" "$T/run-table"
    [[ $(grep '^Total: ' "$sum" | head -n -1 | awk '{s += $2} END {print s}') -eq $n && $n -ge 3 ]] || { show "$sum"; fail "interval totals do not add up to $n"; }
    note "datapath: $(ovs-dpctl dump-flows | grep -c recirc) flows with recirc; $(ovs-dpctl dump-flows | grep -o 'actions:.*' | sort -u | tr '\n' ' ')"
}

# Without kprobes the openvswitch tracepoint sees the same nesting at the
# action that makes the call (recirc B: one frame below + the call itself).
test_ovs_clone_execute_summary_tracepoint() {
    need root cmd:ping cmd:jq cmd:ovs-ofctl tracepoint:openvswitch/ovs_do_execute_action
    ovs_ready
    ovs_clone_flows
    tool_start ovs-clone-execute-summary --json --attach tp_btf --src "$IP1"
    grep -q 'clone_execute via tp_btf:ovs_do_execute_action' "$TOOL_ERR" || { cat "$TOOL_ERR"; fail "not attached via the tracepoint"; }
    in1 ping -c 7 -i 0.3 -W 2 "$IP2" >/dev/null || fail "ping failed"
    tool_stop 1
    assert_json_ge 3 '.action == "recirc" and .depth == 2 and .recirc_id != 0 and .last == null and .clone_flow_key == null'
    assert_json_none '.depth < 2'
    assert_json_ge 3 "$(tracked) and .icmp_type == 8"
}

# A plain NORMAL bridge: no recirculation, no clone, nothing reported.
test_ovs_clone_execute_summary_normal_none() {
    need root cmd:ping
    ovs_ready
    tool_start ovs-clone-execute-summary --summary --interval 1
    in1 ping -c 5 -i 0.2 -W 2 "$IP2" >/dev/null || fail "ping failed"
    tool_stop 1
    assert_no_grep "^=== OpenVSwitch"
    # at exit: the last interval with the time it covers, then the whole run
    assert_grep "^--- [0-9:]+ clone_execute calls, last [0-9]+\.[0-9] s ---$"
    assert_grep "^--- [0-9:]+ clone_execute calls, whole run, [0-9]+\.[0-9] s ---$"
    [[ $(grep -c "^Total: 0$" "$TOOL_OUT") -eq 2 ]] || { show "$TOOL_OUT"; fail "want Total: 0 for the last interval and the run"; }
    # no table before: the last interval is the whole run (>= the ping's 1 s)
    local last whole
    last=$(grep -oP '^--- [0-9:]+ clone_execute calls, last \K[0-9.]+' "$TOOL_OUT")
    whole=$(grep -oP '^--- [0-9:]+ clone_execute calls, whole run, \K[0-9.]+' "$TOOL_OUT")
    [[ $last == "$whole" ]] && (( $(bc <<<"$whole >= 1") )) || { show "$TOOL_OUT"; fail "last $last s, whole run $whole s"; }
    assert_grep "^Summary: 0 nested clone_execute calls reported" "$TOOL_ERR"
}

test_ovs_clone_execute_summary_bad_input() {
    need root
    expect_exit 2 ovs-clone-execute-summary --src x; grep -q -- '--src' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 ovs-clone-execute-summary --src-port -1
    expect_exit 2 ovs-clone-execute-summary --min-depth 0; grep -q -- '--min-depth' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 ovs-clone-execute-summary --protocol icmp --src-port 1
    expect_exit 2 ovs-clone-execute-summary --summary --interval 0
}

test_ovs_clone_execute_summary_no_datapath() {
    need root
    need_no_ovs
    expect_exit 1 ovs-clone-execute-summary
    [[ $LAST_ERROR == "error: openvswitch kernel datapath not loaded" ]] || fail "message: $LAST_ERROR"
}
