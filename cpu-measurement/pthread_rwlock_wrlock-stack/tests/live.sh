# Live tests of pthread_rwlock_wrlock-stack: workloads/rwstack.c has thread
# rw-a call writer_a() -> lock_it() -> pthread_rwlock_wrlock 1000 times and
# rw-b writer_b() -> lock_it() 3000 times; the counts per thread and the
# callers in the stacks must match.
source "$ROOT/cpu-measurement/workloads/lib.sh"
# On the other kernels of the matrix (MAIN_ONLY=1) only these run.
MAIN_TESTS="pthread_rwlock_wrlock_stack_callers"

uprobe_ok() { [[ -d /sys/bus/event_source/devices/uprobe ]] || skip "kernel has no uprobe PMU"; }

# Run rwstack (gated) under the tool; $1.. = extra tool args.
run_rwstack() {
    build_workload rwstack
    start_gated RS rwstack
    tool_start pthread_rwlock_wrlock-stack "$RS_PID" "$@"
    release RS
    wait_line "$RS_OUT" '^done ' 30
    tool_stop 0.2
    release RS
}

test_pthread_rwlock_wrlock_stack_callers() {
    need root cmd:jq
    uprobe_ok
    run_rwstack --json
    assert_all_json
    local a b
    a=$(jq -s '[.[] | select(.comm == "rw-a") | .count] | add' "$TOOL_OUT")
    b=$(jq -s '[.[] | select(.comm == "rw-b") | .count] | add' "$TOOL_OUT")
    note "rw-a $a calls, rw-b $b calls ($(grep '^done' "$RS_OUT"))"
    [[ $a -eq 1000 && $b -eq 3000 ]] || { show "$TOOL_OUT"; fail "rw-a $a (want 1000), rw-b $b (want 3000)"; }
    # Every entry's top frame is the probed function (either alias).
    assert_json_none '.user_stack[0].func | test("^(__)?pthread_rwlock_wrlock$") | not'
    assert_json_ge 1 '.comm == "rw-a" and ([.user_stack[].func] | index("writer_a")) != null'
    assert_json_ge 1 '.comm == "rw-b" and ([.user_stack[].func] | index("writer_b")) != null'
    assert_json_none '.comm == "rw-a" and ([.user_stack[].func] | index("writer_b")) != null'
    # lock_it sits between the top frame and writer_X where the kernel reads the
    # return address of an entry uprobe (x86 fix of the 6.12/6.13 era, only when
    # the probed function starts with push %rbp/endbr64); else it is skipped.
    if jq -e -s '[.[] | .user_stack[1].func == "lock_it"] | any' "$TOOL_OUT" >/dev/null; then
        note "caller lock_it present directly below the top frame"
    else
        note "caller lock_it skipped (entry-uprobe FP unwinding on $(uname -r))"
        assert_json_ge 1 '.user_stack[1].func == "writer_a" or .user_stack[1].func == "writer_b"'
    fi
}

test_pthread_rwlock_wrlock_stack_text() {
    need root
    uprobe_ok
    run_rwstack
    assert_grep '^Attaching 2 probes\.\.\.$'
    assert_grep "^@\[rw-a, $RS_PID, $"
    assert_grep "^@\[rw-b, $RS_PID, $"
    assert_grep '^        (__)?pthread_rwlock_wrlock\+0$'
    assert_grep '^        writer_a\+[0-9]+$'
    assert_grep '^        writer_b\+[0-9]+$'
    assert_grep '^\]: 1000$'
    assert_grep '^\]: 3000$'
    # Sorted by count ascending: the 1000 entry comes before the 3000 one.
    [[ $(grep -n '^\]: 1000$' "$TOOL_OUT" | cut -d: -f1) -lt $(grep -n '^\]: 3000$' "$TOOL_OUT" | cut -d: -f1) ]] ||
        { show "$TOOL_OUT"; fail "not sorted ascending"; }
}

# Calls from a second rwstack process are not counted.
test_pthread_rwlock_wrlock_stack_other_process() {
    need root cmd:jq
    uprobe_ok
    build_workload rwstack
    start_gated RS rwstack
    start_gated OT rwstack 500 500
    tool_start pthread_rwlock_wrlock-stack "$RS_PID" --json --max-depth 2
    release OT
    release RS
    wait_line "$RS_OUT" '^done ' 30
    wait_line "$OT_OUT" '^done ' 30
    tool_stop 0.2
    release RS
    release OT
    assert_json_none ".pid != $RS_PID"
    [[ $(jq -s '[.[].count] | add' "$TOOL_OUT") -eq 4000 ]] || { show "$TOOL_OUT"; fail "want 4000 calls"; }
    assert_json_none '(.user_stack | length) > 2'
}

test_pthread_rwlock_wrlock_stack_bad_input() {
    need root
    expect_exit 2 pthread_rwlock_wrlock-stack
    expect_exit 2 pthread_rwlock_wrlock-stack 0
    expect_exit 2 pthread_rwlock_wrlock-stack abc
    expect_exit 2 pthread_rwlock_wrlock-stack 999999999
    # PID of an exited process.
    sleep 0.01 &
    local gone=$!
    wait "$gone"
    expect_exit 2 pthread_rwlock_wrlock-stack "$gone"
    expect_exit 2 pthread_rwlock_wrlock-stack $$ --max-depth 0
    expect_exit 2 pthread_rwlock_wrlock-stack $$ --max-depth 128
    expect_exit 2 pthread_rwlock_wrlock-stack $$ --lib /nonexistent/lib.so
    expect_exit 2 pthread_rwlock_wrlock-stack $$ --symbol no_such_function_xyz
    expect_exit 2 pthread_rwlock_wrlock-stack $$ -d 0
}
