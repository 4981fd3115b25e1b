# Live tests of cpu_monitor with workloads/spin.c (threads burning a CPU in
# spin_here()). The spinner gets a name of its own so other processes never
# match; its real CPU time comes from /proc/PID/schedstat.
source "$ROOT/cpu-measurement/workloads/lib.sh"
# On the other kernels of the matrix (MAIN_ONLY=1) only these run.
MAIN_TESTS="cpu_monitor_spinner cpu_monitor_two_spinners"

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
    # Sample the spinner's CPU time every 50 ms to get its
    # real share over exactly each cycle the tool reports (the tool's start and
    # exit can take seconds under QEMU TCG).
    (
        hz=$(getconf CLK_TCK)
        while read -r line </proc/"$S_PID"/stat; do
            f=(${line##*) })
            echo "$EPOCHREALTIME $(((f[11] + f[12]) * 1000 / hz))"
            sleep 0.05
        done
    ) >"$T/samples" 2>/dev/null &
    local sampler=$!
    defer "kill $sampler"
    tool_start cpu_monitor -c "$cpu" -i 2 --json -t 50 --perf-output "$T/pd" --duration 4.2
    wait_exit "$TOOL_PID" 60
    wait "$TOOL_PID" || { cat "$TOOL_ERR"; fail "exit status $?"; }
    kill "$sampler"
    cp "$TOOL_OUT" "$T/c.json"
    assert_all_json "$T/c.json"
    [[ $(jq -s length "$T/c.json") -eq 2 ]] || { show "$T/c.json"; fail "want 2 cycles"; }
    local usage
    usage=$(jq -s "[.[].cpus[] | select(.cpu == $cpu) | .usage_pct] | min" "$T/c.json")
    awk -v u="$usage" 'BEGIN {exit !(u >= 90)}' || { show "$T/c.json"; fail "CPU $cpu usage $usage %"; }
    # Per cycle: the tool's %CPU for the spinner against its utime+stime share
    # (interpolated at the cycle's start and end).
    jq -r ".ts + \" \" + (.elapsed_s | tostring) + \" \" + ([.cpus[] | select(.cpu == $cpu) | .threads[] | select(.tid == $S_PID) | .cpu_pct] | first // 0 | tostring) + \" \" + ([.cpus[] | select(.cpu == $cpu) | .threads[0].tid] | first | tostring)" "$T/c.json" >"$T/cycles"
    local ts el tool first real
    while read -r ts el tool first; do
        real=$(awk -v e="$(date -d "$ts" +%s.%N)" -v el="$el" '
            function at(t,   i) { for (i = 2; i <= n; i++) if (T[i] >= t) return R[i-1] + (R[i] - R[i-1]) * (t - T[i-1]) / (T[i] - T[i-1]); return -1 }
            { n++; T[n] = $1; R[n] = $2 }
            END { a = at(e - el); b = at(e); if (a < 0 || b < 0) print "nan"; else printf "%.1f", (b - a) / 10 / el }' "$T/samples")
        note "cycle ending $ts: tool $tool %, utime+stime $real %"
        [[ $real != nan ]] || { show "$T/samples"; fail "no CPU-time samples around the cycle ending $ts"; }
        awk -v t="$tool" -v r="$real" 'BEGIN {exit !(t >= r - 10 && t <= r + 10 && t > 0)}' ||
            { show "$T/c.json"; fail "spinner at $tool %, utime+stime says $real %"; }
        # Alone on the CPU it is ~100 %: then it is the first row with >= 85 %.
        if awk -v r="$real" 'BEGIN {exit !(r >= 90)}'; then
            [[ $first == "$S_PID" ]] && awk -v t="$tool" 'BEGIN {exit !(t >= 85)}' ||
                { show "$T/c.json"; fail "spinner not first with >= 85 % in the cycle ending $ts"; }
        fi
    done <"$T/cycles"
    jq -e -s "all(.[].cpus[] | select(.cpu == $cpu); .perf == \"kept\" and (.profile_txt | test(\"/perf_cpu${cpu}_[0-9]{8}_[0-9]{6}\\\\.txt$\")))" "$T/c.json" >/dev/null ||
        { show "$T/c.json"; fail "profile not kept"; }
    # Profiles: Top Functions starts with spin_here, folded lines are valid.
    local txt fold
    txt=$(ls "$T"/pd/perf_cpu"$cpu"_*.txt | head -1)
    fold=${txt%.txt}.folded
    [[ -s $txt && -s $fold ]] || fail "no profile files in $T/pd"
    # spin_here's share of the samples is the spinner's %CPU in that cycle
    # (the host may be shared); with the CPU mostly to itself it comes first.
    local share first_pct
    share=$(awk '/^Top Functions:/ {f = 1; next} f && $1 == "spin_here" {sub("%", "", $3); print $3; exit}' "$txt")
    first_pct=$(head -1 "$T/cycles" | awk '{print $3}')
    note "profile: spin_here ${share:-0} % of the samples, spinner ${first_pct} % CPU"
    awk -v s="${share:-0}" -v p="$first_pct" 'BEGIN {exit !(s >= p - 10 && s <= p + 10)}' || { show "$txt"; fail "spin_here ${share:-0} % of samples, spinner at $first_pct %"; }
    if awk -v p="$first_pct" 'BEGIN {exit !(p >= 60)}'; then
        grep -A2 '^Top Functions:' "$txt" | tail -1 | grep -qE '^  spin_here +[0-9]+ ' || { show "$txt"; fail "first function is not spin_here"; }
    fi
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
    # The split is the point; the sum depends on what else runs on that CPU
    # (in CI a QEMU guest may share it).
    awk -v a="$a" -v b="$b" 'BEGIN {s = a + b; exit !(s > 4 && a / s >= 0.42 && a / s <= 0.58)}' || fail "shares $a / $b not ~50/50"
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
