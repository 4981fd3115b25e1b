# Live tests of sched_latency_monitor with workloads/latprobe.c: the main
# thread wakes every 1 ms and spins 20 us (about 900 wake-ups a second); -H N
# adds N "hog" threads that spin (bounded by -s), -W N adds N "lp-worker" threads.
# Everything is pinned to the last CPU, so hogs make more runnable threads than CPUs.
source "$ROOT/cpu-measurement/workloads/lib.sh"
# On the other kernels of the matrix (MAIN_ONLY=1) only these run.
MAIN_TESTS="sched_latency_monitor_contention sched_latency_monitor_two_processes"

LAST_CPU() { echo $(($(nproc) - 1)); }

# build_probe: latprobe under a name of its own ($LP, e.g. lp-12345), so
# processes of other tests or users never match -p.
build_probe() {
    build_workload latprobe
    LP=lp-$$$RANDOM
    LP=${LP:0:15}
    cp "$T/latprobe" "$T/$LP"
}

# start_latprobe VAR ARGS: latprobe pinned to the last CPU, in the background.
start_latprobe() {
    local var=$1
    shift
    taskset -c "$(LAST_CPU)" "$T/$LP" "$@" >"$T/$var.out" 2>&1 &
    local pid=$!
    defer "kill -KILL $pid"
    printf -v "${var}_PID" %s "$pid"
    local i
    for ((i = 0; i < 50; i++)); do
        [[ $(cat /proc/$pid/comm 2>/dev/null) == "$LP" ]] && break
        sleep 0.1
    done
}

# slm ARGS: run the monitor in the foreground (JSON on $T/slm.json, log $T/L.log).
slm() {
    "$BIN_DIR/sched_latency_monitor" -l "$T/L.log" --json "$@" >"$T/slm.json" 2>"$T/slm.err" ||
        { cat "$T/slm.err"; fail "sched_latency_monitor $* exited $?"; }
}

# field TASK KEY [FILE]: values of KEY for rows of TASK (one per window).
field() { jq -r ".tasks[] | select(.task == \"$1\") | .$2" "${3:-$T/slm.json}"; }
mean() { awk '{s += $1; n++} END {if (n) printf "%.6f\n", s / n; else print 0}'; }

test_sched_latency_monitor_contention() {
    need root cmd:jq cmd:taskset
    build_probe
    # Idle: latprobe alone on its CPU.
    start_latprobe LP -s 30
    slm -p "$LP" -t 1 -i 1 --duration 3
    kill "$LP_PID"
    wait "$LP_PID" 2>/dev/null
    local wins idle_avg
    wins=$(jq -s 'map(select(.partial | not)) | length' "$T/slm.json")
    [[ $wins -ge 2 && $wins -le 3 ]] || { show "$T/slm.json"; fail "$wins complete windows in 3 s"; }
    local sw
    for sw in $(field "$LP" switches); do
        [[ $sw -ge 300 && $sw -le 1100 ]] || { show "$T/slm.json"; fail "idle: $sw switches in a 1 s window"; }
    done
    idle_avg=$(field "$LP" avg_delay_ms | mean)
    # Contended: two hogs on the same CPU (three runnable threads, one CPU).
    start_latprobe LC -s 30 -H 2
    slm -p "$LP" -t 1 -i 1 --duration 3
    local busy_avg hog_avg hog_max
    busy_avg=$(field "$LP" avg_delay_ms | mean)
    hog_avg=$(field hog avg_delay_ms | mean)
    hog_max=$(field hog max_delay_ms | mean)
    note "latprobe avg delay: idle $idle_avg ms, with 2 hogs $busy_avg ms; hogs: avg $hog_avg ms, max $hog_max ms"
    # Three always-runnable threads on one CPU: the hogs wait while the others run.
    awk -v h="$hog_avg" -v m="$hog_max" 'BEGIN {exit !(h > 0.5 && m >= 1)}' || { show "$T/slm.json"; fail "hogs: avg $hog_avg max $hog_max ms"; }
    # A hog never sleeps: its run time plus its waits fill the window
    # (2 hogs x 1 s; a wait is counted in the window where it ends).
    local w
    for w in $(jq -r '.tasks[] | select(.task == "hog") | .runtime_ms + .switches * .avg_delay_ms' "$T/slm.json"); do
        awk -v w="$w" 'BEGIN {exit !(w >= 1600 && w <= 2400)}' || { show "$T/slm.json"; fail "hogs: run + wait = $w ms in a 1 s window, want ~2000"; }
    done
    # The mostly sleeping latprobe waits less than the hogs, idle or not (the
    # host may be shared, so no absolute bound; on a quiet machine idle is ~0.02 ms).
    awk -v i="$idle_avg" -v b="$busy_avg" -v h="$hog_avg" 'BEGIN {exit !(b < h && i < h)}' ||
        fail "latprobe avg $busy_avg ms (idle $idle_avg ms) not below the hogs' $hog_avg ms"
    [[ $(field hog threads | head -1) -eq 2 ]] || fail "hog row does not merge 2 threads"
}

test_sched_latency_monitor_log_layout() {
    need root cmd:taskset
    build_probe
    start_latprobe LP -s 4 -W 3
    "$BIN_DIR/sched_latency_monitor" -p "$LP" -t 1 -i 1 -l "$T/L.log" --duration 2 >"$T/o" 2>"$T/e" || { cat "$T/e"; fail "exit $?"; }
    [[ ! -s $T/o ]] || { show "$T/o"; fail "stdout not silent without -v"; }
    head -4 "$T/L.log" | grep -q '^# Scheduling latency monitor log V2 (continuous sampling)$' || { show "$T/L.log"; fail "no log header"; }
    grep -q '^# Start time: [0-9-]* [0-9:]*$' "$T/L.log" || fail "no start time"
    assert_count_ge 2 '^==================== Scheduling latency window #[0-9]+ ====================$' "$T/L.log"
    assert_grep '^Timestamp: [0-9-]+ [0-9:]+\.[0-9]{3}$' "$T/L.log"
    assert_grep "^PID: $LP_PID$" "$T/L.log"
    assert_grep '^Period: 1s$' "$T/L.log"
    assert_grep "^  $LP:$LP_PID +\| +[0-9]+\.[0-9]{3} ms \| +[0-9]+ \| avg: +[0-9]+\.[0-9]{3} ms \| max: +[0-9]+\.[0-9]{3} ms \| max start: +[0-9]+\.[0-9]{6} s \| max end: +[0-9]+\.[0-9]{6} s$" "$T/L.log"
    # Three threads with one name merge into one row.
    assert_grep '^  lp-worker:\(3\) +\|' "$T/L.log"
    assert_grep '^  TOTAL: +\| +[0-9]+\.[0-9]{3} ms \| +[0-9]+ \|$' "$T/L.log"
    assert_grep '^==================== Window #1 end ==========================$' "$T/L.log"
}

test_sched_latency_monitor_overlap() {
    need root cmd:jq cmd:taskset
    build_probe
    start_latprobe LP -s 6
    slm -p "$LP" -t 2 -i 1 --duration 4
    local n d sw
    n=$(jq -s length "$T/slm.json")
    [[ $n -ge 3 && $n -le 5 ]] || { show "$T/slm.json"; fail "$n windows"; }
    d=$(jq -s '.[1].start_mono_ns - .[0].start_mono_ns' "$T/slm.json")
    [[ $d -ge 980000000 && $d -le 1020000000 ]] || fail "window #2 starts $d ns after #1"
    # A complete 2 s window holds about two seconds of wake-ups.
    sw=$(jq -s '[.[] | select(.partial | not) | .tasks[] | select(.task == "'"$LP"'") | .switches] | .[0]' "$T/slm.json")
    note "switches in a 2 s window: $sw"
    [[ $sw -ge 700 && $sw -le 2200 ]] || { show "$T/slm.json"; fail "$sw switches in 2 s"; }
    jq -e -s '.[-1].partial' "$T/slm.json" >/dev/null || fail "last (cut) window not partial"
    grep -q '(partial) ====' "$T/L.log" || fail "no partial window in the log"
}

test_sched_latency_monitor_two_processes() {
    need root cmd:jq cmd:taskset
    build_probe
    start_latprobe A -s 4
    start_latprobe B -s 4
    slm -p "$LP" -t 1 -i 1 --duration 2
    local pids
    pids=$(jq -c -s '.[0].pids' "$T/slm.json")
    [[ $pids == "[$(printf '%s\n' "$A_PID" "$B_PID" | sort -n | paste -sd,)]" ]] || fail "pids $pids"
    grep -q "^PID: .*$A_PID" "$T/L.log" && grep -q "^PID: .*$B_PID" "$T/L.log" || fail "PID line"
    jq -e -s "[.[0].tasks[] | select(.task == \"$LP\") | .threads] == [2]" "$T/slm.json" >/dev/null ||
        { show "$T/slm.json"; fail "both latprobe threads not in one merged row"; }
}

test_sched_latency_monitor_target_exits() {
    need root cmd:taskset
    build_probe
    start_latprobe LP -s 1.5
    local start=$SECONDS
    timeout 20 "$BIN_DIR/sched_latency_monitor" -p "$LP" -t 0.5 -i 0.5 -l "$T/L.log" -v >"$T/o" 2>"$T/e" || { cat "$T/e"; fail "exit $?"; }
    # Under TCG emulation (VMTEST_GUEST) attaching alone can take seconds.
    local limit=5
    [[ ${VMTEST_GUEST:-0} == 1 ]] && limit=20
    [[ $((SECONDS - start)) -le $limit ]] || fail "took $((SECONDS - start)) s"
    assert_grep '^\[[0-9-]+ [0-9:]+\.[0-9]{3}\] target process disappeared$' "$T/o"
    assert_grep '^\[[0-9-]+ [0-9:]+\.[0-9]{3}\] window 1 started$' "$T/o"
    assert_grep '^\[[0-9-]+ [0-9:]+\.[0-9]{3}\] window 1 written$' "$T/o"
}

test_sched_latency_monitor_bad_input() {
    need root
    local a
    for a in "-t 0" "-t -1" "-t abc" "-i 0" "-i 1e3" "-i 0.01" "-t 4000" "--no-such-flag" "--duration 0"; do
        # shellcheck disable=SC2086
        expect_exit 2 sched_latency_monitor -p sched_latency_monitor $a
    done
    expect_exit 2 sched_latency_monitor -p no-such-process-xyz
    grep -q -- '--process' <<<"$LAST_ERROR" || fail "no flag name: $LAST_ERROR"
    expect_exit 2 sched_latency_monitor -p sched_latency_monitor -l /nonexistent/dir/x.log
    grep -q -- '--log' <<<"$LAST_ERROR" || fail "no flag name: $LAST_ERROR"
}
