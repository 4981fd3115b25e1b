# Live tests of cpu_monitor with workloads/spin.c (threads burning a CPU in
# spin_here()). The spinner gets a name of its own so other processes never
# match; its real CPU time comes from /proc/PID/schedstat.
source "$ROOT/cpu-measurement/workloads/lib.sh"

LAST_CPU() { echo $(($(nproc) - 1)); }

build_spin() {
    build_workload spin
    SP=sp-$$$RANDOM
    SP=${SP:0:15}
    cp "$T/spin" "$T/$SP"
}

# start_spin VAR CPU ARGS: the spinner pinned to CPU, in the background.
start_spin() {
    local var=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$T/$SP" "$@" &
    local pid=$! i
    defer "kill -KILL $pid"
    printf -v "${var}_PID" %s "$pid"
    for ((i = 0; i < 50; i++)); do
        [[ $(cat /proc/$pid/comm 2>/dev/null) == "$SP" ]] && break
        sleep 0.1
    done
}

# run_ns PID: CPU time (utime + stime) of process PID so far, in ns. Not
# /proc/PID/schedstat: it is not brought up to date for a task that runs
# without a tick (alone on a nohz CPU) and then lags by seconds.
run_ns() { awk -v hz="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); printf "%.0f\n", ($12 + $13) * 1e9 / hz}' /proc/"$1"/stat; }

test_cpu_monitor_spinner() {
    need root cmd:jq cmd:taskset
    build_spin
    local cpu
    cpu=$(LAST_CPU)
    start_spin S "$cpu" -s 120
    local r0 w0 r1 w1
    tool_start cpu_monitor -c "$cpu" -i 2 --json -t 50 --perf-output "$T/pd" --duration 4.2
    r0=$(run_ns "$S_PID") w0=$(date +%s%N)
    wait_exit "$TOOL_PID" 15
    r1=$(run_ns "$S_PID") w1=$(date +%s%N)
    wait "$TOOL_PID" || { cat "$TOOL_ERR"; fail "exit status $?"; }
    cp "$TOOL_OUT" "$T/c.json"
    assert_all_json "$T/c.json"
    [[ $(jq -s length "$T/c.json") -eq 2 ]] || { show "$T/c.json"; fail "want 2 cycles"; }
    local real tool usage first
    real=$(awk -v r=$((r1 - r0)) -v w=$((w1 - w0)) 'BEGIN {printf "%.1f", 100 * r / w}')
    tool=$(jq -s "[.[].cpus[] | select(.cpu == $cpu) | .threads[] | select(.tid == $S_PID) | .cpu_pct] | add / 2" "$T/c.json")
    usage=$(jq -s "[.[].cpus[] | select(.cpu == $cpu) | .usage_pct] | min" "$T/c.json")
    note "CPU $cpu usage >= $usage %; spinner: tool $tool %, utime+stime $real % ($((r1 - r0)) ns in $((w1 - w0)) ns)"
    awk -v u="$usage" 'BEGIN {exit !(u >= 90)}' || { show "$T/c.json"; fail "CPU $cpu usage $usage %"; }
    # The spinner's share is what the kernel says it ran (the host may be shared).
    awk -v t="$tool" -v r="$real" 'BEGIN {exit !(t >= r - 10 && t <= r + 10 && t >= 10)}' ||
        { show "$T/c.json"; fail "spinner at $tool %, utime+stime says $real %"; }
    # Alone on the CPU it is ~100 %: then it must be the first row.
    if awk -v r="$real" 'BEGIN {exit !(r >= 90)}'; then
        jq -e -s "all(.[].cpus[] | select(.cpu == $cpu); .threads[0].tid == $S_PID and .threads[0].cpu_pct >= 85)" "$T/c.json" >/dev/null ||
            { show "$T/c.json"; fail "spinner not first with >= 85 %"; }
    fi
    jq -e -s "all(.[].cpus[] | select(.cpu == $cpu); .perf == \"kept\" and (.profile_txt | test(\"/perf_cpu${cpu}_[0-9]{8}_[0-9]{6}\\\\.txt$\")))" "$T/c.json" >/dev/null ||
        { show "$T/c.json"; fail "profile not kept"; }
    # Profiles: Top Functions starts with spin_here, folded lines are valid.
    local txt fold
    txt=$(ls "$T"/pd/perf_cpu"$cpu"_*.txt | head -1)
    fold=${txt%.txt}.folded
    [[ -s $txt && -s $fold ]] || fail "no profile files in $T/pd"
    grep -A2 '^Top Functions:' "$txt" | tail -1 | grep -qE '^  spin_here +[0-9]+ ' || { show "$txt"; fail "first function is not spin_here"; }
    local bad
    bad=$(grep -cvE '^[^; ][^;]*(;[^;]+)* [0-9]+$' "$fold")
    [[ $bad -eq 0 ]] || { show "$fold"; fail "$bad invalid folded lines"; }
    grep -qE "^$SP;.*spin_here [0-9]+$" "$fold" || { show "$fold"; fail "no $SP;...;spin_here line"; }
}

test_cpu_monitor_text_layout() {
    need root cmd:taskset
    build_spin
    local cpu
    cpu=$(LAST_CPU)
    start_spin S "$cpu" -s 20
    tool_start cpu_monitor -c "$cpu" -i 1
    sleep 2.3
    tool_stop 0
    assert_grep '^\[[0-9-]{10} [0-9:]{8}\] ={80}$'
    assert_grep '^\[[0-9-]{10} [0-9:]{8}\] CPU monitor started$'
    assert_grep "^\[[0-9-]{10} [0-9:]{8}\] Target CPUs: \[$cpu\]$"
    assert_grep '^\[[0-9-]{10} [0-9:]{8}\] Perf sampling: disabled$'
    assert_grep '^\[[0-9-]{10} [0-9:]{8}\] ======== CPU Monitor - [0-9:]{8} ========$'
    assert_grep '^Total CPU usage: [0-9]+\.[0-9]%$'
    assert_grep "^Target CPU $cpu and its hyper-thread group \[[0-9 ]+\]:$"
    assert_grep "^  CPU +$cpu: +[0-9]+\.[0-9]% \[target\] - processes/threads \(1s average CPU usage\):$"
    assert_grep '^       PID    TID CPU  %CPU COMMAND'
    assert_grep "^ +$S_PID +$S_PID +$cpu +[0-9]+\.[0-9]% $SP"
    assert_grep '^\[[0-9-]{10} [0-9:]{8}\] Received interrupt, stopping monitor\.\.\.$'
    assert_grep '^\[[0-9-]{10} [0-9:]{8}\] CPU monitor stopped$'
    ! grep -q $'\033' "$TOOL_OUT" || fail "escape codes in redirected output"
}

# Two spinners on one CPU share it evenly.
test_cpu_monitor_two_spinners() {
    need root cmd:jq cmd:taskset
    build_spin
    local cpu
    cpu=$(LAST_CPU)
    start_spin S "$cpu" -s 20 -n 2
    "$BIN_DIR/cpu_monitor" -c "$cpu" -i 2 --json --duration 2.2 >"$T/c.json" 2>"$T/c.err" || { cat "$T/c.err"; fail "exit $?"; }
    local a b
    read -r a b < <(jq -r -s "[.[0].cpus[] | select(.cpu == $cpu) | .threads[] | select(.pid == $S_PID) | .cpu_pct] | @tsv" "$T/c.json")
    note "spinner threads: $a % and $b %"
    [[ -n $b ]] || { show "$T/c.json"; fail "want two spinner threads"; }
    awk -v a="$a" -v b="$b" 'BEGIN {s = a + b; exit !(s > 20 && a / s >= 0.42 && a / s <= 0.58)}' || fail "shares $a / $b not ~50/50"
}

# A spinner on another CPU never shows up under the monitored one (the
# original charged threads to the CPU they last ran on).
test_cpu_monitor_migration() {
    need root cmd:jq cmd:taskset
    [[ $(nproc) -ge 2 ]] || skip "needs 2 CPUs"
    build_spin
    start_spin S 0 -s 20
    "$BIN_DIR/cpu_monitor" -c 1 -i 1 --json --duration 2.2 >"$T/c.json" 2>"$T/c.err" || { cat "$T/c.err"; fail "exit $?"; }
    assert_json_none "[.cpus[] | select(.cpu == 1) | .threads[] | select(.pid == $S_PID)] | length > 0" "$T/c.json"
}

test_cpu_monitor_log_file() {
    need root
    mkdir "$T/wd"
    (cd "$T/wd" && "$BIN_DIR/cpu_monitor" -c 0 -i 1 -l --duration 1.5 >"$T/o" 2>"$T/e") || { cat "$T/e"; fail "exit $?"; }
    [[ ! -s $T/o ]] || { show "$T/o"; fail "stdout not empty with -l"; }
    local f
    f=$(ls "$T"/wd/cpu_monitor_*.log)
    [[ $(echo "$f" | wc -l) -eq 1 ]] || fail "want one log file, got: $f"
    grep -q 'CPU monitor started' "$f" || fail "no banner"
    grep -q "Log file: cpu_monitor_" "$f" || fail "no Log file line"
    assert_count_ge 1 '======== CPU Monitor' "$f"
    ! grep -q $'\033' "$f" || fail "escape codes in the log"
}

test_cpu_monitor_bad_input() {
    need root
    local a
    expect_exit 2 cpu_monitor
    for a in "" "a" "1-" "3-1" "1,,2" "999" "99999"; do
        expect_exit 2 cpu_monitor -c "$a"
    done
    expect_exit 2 cpu_monitor -c 999
    grep -qE "invalid CPU number 999, system CPU range: 0-[0-9]+$" <<<"$LAST_ERROR" || fail "$LAST_ERROR"
    for a in "-i 0" "-i 1.5" "-i x" "-t -1" "-t 101" "-t 50.5" "--top 0" "--no-such-flag"; do
        # shellcheck disable=SC2086
        expect_exit 2 cpu_monitor -c 0 $a
    done
    expect_exit 2 cpu_monitor -c 0 -t 50 --perf-output /proc/no/such/dir
    grep -q -- '--perf-output' <<<"$LAST_ERROR" || fail "$LAST_ERROR"
}
