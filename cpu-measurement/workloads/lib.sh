# Helpers for the cpu-measurement live tests (sourced by each tests/live.sh).
WORKLOADS=${ROOT:-/work/main}/cpu-measurement/workloads

# build_workload NAME [GCC FLAGS...]: compile workloads/NAME.c into $T/NAME.
build_workload() {
    local name=$1
    shift
    need cmd:gcc
    gcc -O0 -g -pthread -fno-omit-frame-pointer "$@" -o "$T/$name" "$WORKLOADS/$name.c" ||
        fail "cannot compile $name.c"
}

# start_gated VAR NAME ARGS...: start $T/NAME ARGS with stdin on a FIFO held
# open on a new fd (so it blocks in its first read); sets VAR_PID, VAR_GATE
# (the fd to write "go" lines to) and VAR_OUT (its stdout).
start_gated() {
    local var=$1 name=$2
    shift 2
    local fifo=$T/$var.gate fd
    mkfifo "$fifo"
    exec {fd}<>"$fifo"
    "$T/$name" "$@" <"$fifo" >"$T/$var.out" 2>&1 &
    local pid=$! i
    defer "kill -KILL $pid"
    # Wait until it runs its own binary with its libraries mapped (blocked in read).
    for ((i = 0; i < 50; i++)); do
        [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$T/$name" ]] &&
            grep -q 'libc' "/proc/$pid/maps" 2>/dev/null && break
        sleep 0.1
    done
    printf -v "${var}_PID" %s "$pid"
    printf -v "${var}_GATE" %s "$fd"
    printf -v "${var}_OUT" %s "$T/$var.out"
}

# release VAR: send one line to a gated workload.
release() {
    local fd=${1}_GATE
    echo go >&"${!fd}"
}

# wait_exit PID SECS: wait for a process to end, fail after SECS.
wait_exit() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    fail "process $1 still running after $2 s"
}

# wait_line FILE REGEX SECS: wait until FILE has a line matching REGEX.
wait_line() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do grep -qE -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    show "$1"
    fail "no /$2/ in $(basename "$1") after $3 s"
}

# json_bucket_sum FILE LOW: sum of histogram bucket counts with low >= LOW.
json_bucket_sum() { jq -s "[.[] | select(.map) | .buckets[] | select(.low >= $2) | .count] | add // 0" "$1"; }
