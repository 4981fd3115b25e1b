# Live tests of offcputime-ts. Workloads: workloads/sleeper.c (naps of a known
# length inside nap_here(), which makes the nanosleep system call itself so the
# frame-pointer unwinder starts there) and workloads/mutexfight.c.
source "$ROOT/cpu-measurement/workloads/lib.sh"

# sum_tid FILE TID: total_us of every JSON entry of thread TID.
# On the other kernels of the matrix (MAIN_ONLY=1) only these run.
MAIN_TESTS="offcputime_ts_nap_200ms offcputime_ts_attach_fallbacks offcputime_ts_stack_modes"
sum_tid() { jq -s "[.[] | select(.tid == $2) | .total_us] | add // 0" "$1"; }

# One 200 ms nap in nap_here: one entry for that thread, ~200 ms, stack names it.
nap_once() {
    build_workload sleeper
    start_gated SL sleeper -w -n 1 -t 200
    tool_start offcputime-ts --json -p "$SL_PID" "$@"
    release SL
    wait_line "$SL_OUT" '^naps 1$' 10
    tool_stop 0.3
    release SL
    assert_all_json
    local total
    total=$(jq -s "[.[] | select(.tid == $SL_PID and ([.user_stack[]?.func] | index(\"nap_here\")) != null) | .total_us] | add // 0" "$TOOL_OUT")
    local slept
    slept=$(awk '/^slept_us/ {print $2}' "$SL_OUT")
    note "$(grep -o 'via [a-z_]*:[a-z_/]*' "$TOOL_ERR"): nap_here off-CPU $total us; the program slept $slept us"
    # ~200 ms (+-20 %), and exactly what the program measured around its nap
    # (that includes the wait for a CPU after the wake-up, which a loaded host
    # can stretch beyond 20 %).
    [[ $total -ge 160000 ]] || { show "$TOOL_OUT"; fail "nap_here total $total us < 160000"; }
    [[ $total -le 240000 || $slept -gt 240000 ]] || { show "$TOOL_OUT"; fail "nap_here total $total us > 240000"; }
    awk -v t="$total" -v s="$slept" 'BEGIN {exit !(t >= s * 0.95 - 2000 && t <= s * 1.02 + 2000)}' ||
        { show "$TOOL_OUT"; fail "nap_here total $total us, program measured $slept us"; }
    assert_json_ge 1 "[.kernel_stack[]?.func | select(test(\"nanosleep\"))] | length > 0"
    assert_json_ge 1 '.type == "interval_end" and .lost_stacks == 0'
}

test_offcputime_ts_nap_200ms() {
    need root cmd:jq
    nap_once
}

test_offcputime_ts_attach_fallbacks() {
    need root cmd:jq
    local m
    for m in raw_tp tracepoint; do
        ( nap_once --attach "$m"; grep -q "via $m:" "$TOOL_ERR" || fail "not attached via $m" ) || fail "--attach $m"
    done
}

test_offcputime_ts_folded() {
    need root
    build_workload sleeper
    "$T/sleeper" -n 40 >/dev/null &
    local pid=$!
    defer "kill -KILL $pid"
    sleep 0.2
    local start=$SECONDS
    "$BIN_DIR/offcputime-ts" -p "$pid" -f 2 >"$T/f.out" 2>"$T/f.err" || { cat "$T/f.err"; fail "exit $?"; }
    # Under TCG emulation (VMTEST_GUEST) attaching alone can take seconds.
    local limit=5
    [[ ${VMTEST_GUEST:-0} == 1 ]] && limit=20
    [[ $((SECONDS - start)) -le $limit ]] || fail "took $((SECONDS - start)) s for 2"
    [[ -s $T/f.out ]] || fail "no output"
    ! grep -q '^Tracing' "$T/f.out" || fail "header printed in folded mode"
    # Every line is "frame;frame;... count" with no empty frame.
    local bad
    bad=$(grep -cvE '^[^; ][^;]*(;[^;]+)* [0-9]+$' "$T/f.out")
    [[ $bad -eq 0 ]] || { show "$T/f.out"; fail "$bad lines are not folded stacks"; }
    grep -E '^sleeper;' "$T/f.out" | grep 'nap_here' | grep -q 'nanosleep' || { show "$T/f.out"; fail "no sleeper;...nap_here...nanosleep line"; }
    local sum
    sum=$(grep '^sleeper;' "$T/f.out" | awk '{s += $NF} END {print s + 0}')
    note "sleeper off-CPU over 2 s: $sum us"
    # Under TCG emulation (VMTEST_GUEST) attach and detach take long enough
    # for naps that end while the tool is stopping to be counted too.
    local max=2200000
    [[ ${VMTEST_GUEST:-0} == 1 ]] && max=3200000
    [[ $sum -ge 1700000 && $sum -le $max ]] || { show "$T/f.out"; fail "sum $sum us, want ~2000000"; }
}

test_offcputime_ts_intervals() {
    need root
    build_workload sleeper
    "$T/sleeper" -n 60 >/dev/null &
    local pid=$!
    defer "kill -KILL $pid"
    sleep 0.2
    "$BIN_DIR/offcputime-ts" -p "$pid" -I 1 3 >"$T/i.out" 2>"$T/i.err" || { cat "$T/i.err"; fail "exit $?"; }
    local starts ends
    starts=$(grep -c '^=== Off-CPU Analysis Report - Start Time: ' "$T/i.out")
    ends=$(grep -c '^=== Off-CPU Analysis Report - End Time: ' "$T/i.out")
    [[ $starts -ge 3 && $starts -le 4 && $ends -eq $starts ]] || { show "$T/i.out"; fail "$starts start / $ends end blocks"; }
    # Full blocks (2nd, 3rd) hold ~1 s of naps each.
    local totals
    totals=$(awk '/Start Time/ {n++} /^        [0-9]+$/ {t[n] += $1} END {for (i = 2; i <= 3; i++) print t[i] + 0}' "$T/i.out")
    note "per-interval totals: $(echo $totals)"
    local t
    for t in $totals; do
        [[ $t -ge 850000 && $t -le 1150000 ]] || { show "$T/i.out"; fail "interval total $t us, want ~1000000"; }
    done
    # Each End time is 1 s after the previous one.
    local prev="" e
    while read -r e; do
        e=$(date -d "$e" +%s)
        [[ -z $prev || $((e - prev)) -eq 1 ]] || fail "End times $prev -> $e"
        prev=$e
    done < <(sed -n 's/^=== Off-CPU Analysis Report - End Time: \(.*\) ===$/\1/p' "$T/i.out" | head -3)
}

test_offcputime_ts_stack_modes() {
    need root
    build_workload sleeper
    "$T/sleeper" -n 200 >/dev/null &
    local pid=$!
    defer "kill -KILL $pid"
    sleep 0.2
    "$BIN_DIR/offcputime-ts" -p "$pid" -U 1 >"$T/u.out" 2>/dev/null || fail "-U exit $?"
    grep -q 'nap_here' "$T/u.out" || { show "$T/u.out"; fail "-U: no nap_here"; }
    ! grep -qE '^    (__)?schedule' "$T/u.out" || { show "$T/u.out"; fail "-U shows kernel frames"; }
    grep -q 'by user stack' "$T/u.out" || fail "-U header"
    "$BIN_DIR/offcputime-ts" -p "$pid" -K 1 >"$T/k.out" 2>/dev/null || fail "-K exit $?"
    grep -qE '^    (__)?schedule' "$T/k.out" || { show "$T/k.out"; fail "-K: no schedule"; }
    ! grep -q 'nap_here' "$T/k.out" || { show "$T/k.out"; fail "-K shows user frames"; }
    "$BIN_DIR/offcputime-ts" -p "$pid" -d 1 >"$T/d.out" 2>/dev/null || fail "-d exit $?"
    grep -q '^    --$' "$T/d.out" || { show "$T/d.out"; fail "-d: no -- delimiter"; }
    "$BIN_DIR/offcputime-ts" -p "$pid" -s 1 >"$T/s.out" 2>/dev/null || fail "-s exit $?"
    grep -qE '^    nap_here\+0x[0-9a-f]+$' "$T/s.out" || { show "$T/s.out"; fail "-s: no nap_here+0x.."; }
    grep -qE "^    -                sleeper \($pid\)$" "$T/s.out" || { show "$T/s.out"; fail "no comm (tid) line"; }
}

test_offcputime_ts_filters() {
    need root
    build_workload sleeper
    "$T/sleeper" -n 200 >/dev/null &
    local pid=$!
    defer "kill -KILL $pid"
    sleep 0.2
    "$BIN_DIR/offcputime-ts" -p "$pid" -f -m 150000 1 >"$T/m.out" 2>/dev/null || fail "exit $?"
    ! grep -q 'nap_here' "$T/m.out" || { show "$T/m.out"; fail "-m 150000 kept 100 ms naps"; }
    "$BIN_DIR/offcputime-ts" -p "$pid" -f -M 50000 1 >"$T/M.out" 2>/dev/null || fail "exit $?"
    ! grep -q 'nap_here' "$T/M.out" || { show "$T/M.out"; fail "-M 50000 kept 100 ms naps"; }
    "$BIN_DIR/offcputime-ts" -p "$pid" -f --state 2 1 >"$T/s2.out" 2>/dev/null || fail "exit $?"
    ! grep -q 'nap_here' "$T/s2.out" || { show "$T/s2.out"; fail "--state 2 kept an interruptible sleep"; }
    "$BIN_DIR/offcputime-ts" -p "$pid" -f --state 1 1 >"$T/s1.out" 2>/dev/null || fail "exit $?"
    grep -q 'nap_here' "$T/s1.out" || { show "$T/s1.out"; fail "--state 1 hid the sleep"; }
    # -u: no kernel threads; -k: only kernel threads (no user frames at all).
    "$BIN_DIR/offcputime-ts" -u -f 1 >"$T/uu.out" 2>/dev/null || fail "exit $?"
    ! grep -qE '^(kworker/|rcu_|ksoftirqd/)' "$T/uu.out" || { grep -E '^(kworker/|rcu_|ksoftirqd/)' "$T/uu.out" | head -3; fail "-u shows kernel threads"; }
    grep -q '^sleeper;' "$T/uu.out" || fail "-u misses the sleeper"
    "$BIN_DIR/offcputime-ts" -k -f 1 >"$T/kk.out" 2>/dev/null || fail "exit $?"
    ! grep -q '^sleeper;' "$T/kk.out" || fail "-k shows a user thread"
    [[ -s $T/kk.out ]] || note "no kernel thread blocked in 1 s"
}

test_offcputime_ts_mutex() {
    need root cmd:jq
    build_workload mutexfight
    start_gated MF mutexfight -w -n 3 -i 20 -h 10000
    tool_start offcputime-ts --json -p "$MF_PID"
    release MF
    wait_exit "$MF_PID" 30
    tool_stop 0.2
    # Waiters block in the kernel's futex wait path.
    assert_json_ge 1 ".tid != $MF_PID and ([.kernel_stack[]?.func | select(test(\"^futex_wait\"))] | length > 0)"
    # Those blocks last 10-30 ms (more on a loaded host): -m 200000 drops them.
    start_gated MF2 mutexfight -w -n 3 -i 20 -h 10000
    tool_start offcputime-ts --json -p "$MF2_PID" -m 200000
    release MF2
    wait_exit "$MF2_PID" 30
    tool_stop 0.2
    # (the main thread's long wait in pthread_join stays)
    assert_json_none ".tid != $MF2_PID and ([.kernel_stack[]?.func | select(test(\"^futex_wait\"))] | length > 0)"
}

test_offcputime_ts_bad_input() {
    need root
    local a
    for a in "-p a" "-p 1,,2" "-p -5" "-p 0" "-p 1 -t 2" "-u -k" "-U -K" "-f -s" "-k -U" \
             "-m 0" "-M 0" "--stack-storage-size 0" "-I 0" "--state -1" "0" "abc" "-m 10 -M 5"; do
        # shellcheck disable=SC2086
        expect_exit 2 offcputime-ts $a
    done
}
