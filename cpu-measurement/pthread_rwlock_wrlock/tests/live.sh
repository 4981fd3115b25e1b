# Live tests of pthread_rwlock_wrlock: threads of workloads/rwfight.c take one
# pthread rwlock for writing, hold it a known time, and count their own calls
# and slow (>= 512 us) waits; the histogram must match those counts.
source "$ROOT/cpu-measurement/workloads/lib.sh"
# On the other kernels of the matrix (MAIN_ONLY=1) only these run.
MAIN_TESTS="pthread_rwlock_wrlock_contended pthread_rwlock_wrlock_later_process"

uprobe_ok() { [[ -d /sys/bus/event_source/devices/uprobe ]] || skip "kernel has no uprobe PMU"; }

test_pthread_rwlock_wrlock_contended() {
    need root cmd:jq
    uprobe_ok
    build_workload rwfight
    start_gated RW rwfight -w -n 4 -i 500 -h 1000
    tool_start pthread_rwlock_wrlock --json -p "$RW_PID"
    release RW
    wait_exit "$RW_PID" 60
    tool_stop 0.2
    assert_all_json
    local calls slow count long
    calls=$(awk '/^wrlock calls/ {print $3}' "$RW_OUT")
    slow=$(awk '/^slow/ {print $2}' "$RW_OUT")
    count=$(jq -s '.[0].count' "$TOOL_OUT")
    long=$(json_bucket_sum "$TOOL_OUT" 512)
    note "rwfight: $calls calls, $slow waited >= 512 us; tool: count $count, $long in buckets >= [512, 1K)"
    [[ $calls -eq 2000 ]] || { show "$RW_OUT"; fail "rwfight made $calls calls"; }
    [[ $count -eq 2000 ]] || { show "$TOOL_OUT"; fail "count $count, want exactly 2000"; }
    # At least 25 % of the calls waited >= 512 us. On one CPU how many wait
    # depends on where the holder is preempted (176-448 of 2000 seen on 6.1
    # under TCG): only ask for visible contention there ...
    local want=500
    [[ $(nproc) -ge 2 ]] || want=50
    [[ $long -ge $want ]] || { show "$TOOL_OUT"; fail "only $long samples >= 512 us"; }
    # ... and as many as the program itself measured (+-10 %: the tool times
    # the call only, the program adds clock_gettime around it).
    local lo=$((slow * 90 / 100 - 5)) hi=$((slow * 110 / 100 + 5))
    [[ $long -ge $lo && $long -le $hi ]] || { show "$TOOL_OUT"; fail "$long slow samples, program counted $slow"; }
    jq -e -s '.[0].library | test("libc\\.so\\.6$|libpthread")' "$TOOL_OUT" >/dev/null || fail "library not reported"
    jq -e -s '.[0].unit == "us" and (.[0].offset > 0)' "$TOOL_OUT" >/dev/null || fail "unit/offset"
}

test_pthread_rwlock_wrlock_uncontended() {
    need root cmd:jq
    uprobe_ok
    build_workload rwfight
    start_gated RW rwfight -w -n 1 -i 1000 -h 0
    tool_start pthread_rwlock_wrlock --json -p "$RW_PID"
    release RW
    wait_exit "$RW_PID" 60
    tool_stop 0.2
    local count fast
    count=$(jq -s '.[0].count' "$TOOL_OUT")
    fast=$(jq -s '[.[0].buckets[] | select(.high <= 16) | .count] | add // 0' "$TOOL_OUT")
    note "count $count, $fast below 16 us"
    [[ $count -eq 1000 ]] || { show "$TOOL_OUT"; fail "count $count, want 1000"; }
    # Uncontended: most calls take well under 16 us; preemption by other load
    # (a QEMU guest in CI) stretches the tail, not the median.
    # Under TCG emulation (VMTEST_GUEST) every uprobe hit costs tens of us:
    # the count is checked there, the latency on real CPUs only.
    if [[ ${VMTEST_GUEST:-0} != 1 ]]; then
        [[ $fast -ge 600 ]] || { show "$TOOL_OUT"; fail "only $fast of 1000 below 16 us"; }
    fi
}

# -p counts only that process; a second rwfight at the same time is ignored.
test_pthread_rwlock_wrlock_pid_filter() {
    need root cmd:jq
    uprobe_ok
    build_workload rwfight
    start_gated A rwfight -w -n 2 -i 300 -h 0 -g 50
    start_gated B rwfight -w -n 2 -i 700 -h 0 -g 50
    tool_start pthread_rwlock_wrlock --json -p "$A_PID"
    release A
    release B
    wait_exit "$A_PID" 60
    wait_exit "$B_PID" 60
    tool_stop 0.2
    local count
    count=$(jq -s '.[0].count' "$TOOL_OUT")
    [[ $count -eq 600 ]] || { show "$TOOL_OUT"; fail "count $count, want 600 (A only)"; }
}

# System-wide (no -p): a process started after the tool is traced, and the
# library found on this host is the one reported and printed.
test_pthread_rwlock_wrlock_later_process() {
    need root cmd:jq
    uprobe_ok
    build_workload rwfight
    tool_start pthread_rwlock_wrlock --json
    "$T/rwfight" -n 2 -i 250 -h 0 >"$T/rw.out" || fail "rwfight failed"
    tool_stop 0.2
    local count
    count=$(jq -s '.[0].count' "$TOOL_OUT")
    [[ $count -ge 500 ]] || { show "$TOOL_OUT"; fail "count $count, want >= 500"; }
    grep -qE '^Probe: /.*:(__)?pthread_rwlock_wrlock\+0x[0-9a-f]+$' "$TOOL_ERR" || { cat "$TOOL_ERR"; fail "no Probe line"; }
    grep -q '^Attaching 3 probes' "$TOOL_ERR" || fail "no Attaching line on stderr"
}

test_pthread_rwlock_wrlock_text() {
    need root
    uprobe_ok
    build_workload rwfight
    start_gated RW rwfight -w -n 2 -i 200 -h 500
    tool_start pthread_rwlock_wrlock -p "$RW_PID"
    release RW
    wait_exit "$RW_PID" 60
    tool_stop 0.2
    assert_grep '^Attaching 3 probes\.\.\.$'
    [[ $(grep -c '^@lat:$' "$TOOL_OUT") -eq 1 ]] || { show "$TOOL_OUT"; fail "want one @lat: histogram"; }
    assert_no_grep '^@begin'
    local total
    total=$(grep -E '^\[' "$TOOL_OUT" | sed -E 's/^.{16}([ 0-9]{8}).*/\1/' | awk '{s+=$1} END {print s}')
    [[ $total -eq 400 ]] || { show "$TOOL_OUT"; fail "histogram sums to $total, want 400"; }
}

test_pthread_rwlock_wrlock_bad_input() {
    need root
    expect_exit 2 pthread_rwlock_wrlock --lib /nonexistent/libx.so
    echo "not elf" >"$T/notelf.so"
    expect_exit 2 pthread_rwlock_wrlock --lib "$T/notelf.so"; grep -q 'not an ELF' <<<"$LAST_ERROR" || fail "$LAST_ERROR"
    # glibc >= 2.34: libpthread.so.0 is an empty stub.
    local stub
    stub=$(ldconfig -p 2>/dev/null | awk '$1 == "libpthread.so.0" {print $NF; exit}')
    if [[ -n $stub ]] && ! nm -D --defined-only "$stub" 2>/dev/null | grep -q ' pthread_rwlock_wrlock'; then
        expect_exit 2 pthread_rwlock_wrlock --lib "$stub"; grep -q 'not found' <<<"$LAST_ERROR" || fail "$LAST_ERROR"
    fi
    expect_exit 2 pthread_rwlock_wrlock --symbol no_such_function_xyz
    expect_exit 2 pthread_rwlock_wrlock -p 999999999
    expect_exit 2 pthread_rwlock_wrlock -p 0
    # A static binary maps no library defining the symbol.
    if [[ -x $BIN_DIR/futex ]]; then
        "$BIN_DIR/futex" -d 5 >/dev/null 2>&1 &
        local sp=$!
        defer "kill -KILL $sp"
        sleep 0.3
        expect_exit 2 pthread_rwlock_wrlock -p "$sp"; grep -q 'defines' <<<"$LAST_ERROR" || fail "$LAST_ERROR"
    fi
    expect_exit 2 pthread_rwlock_wrlock -d 0
    expect_exit 2 pthread_rwlock_wrlock extra
}
