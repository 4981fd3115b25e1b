# Live tests of futex: futex() durations of a program whose threads fight over
# one pthread mutex, holding it 10 ms each time (workloads/mutexfight.c).
source "$ROOT/cpu-measurement/workloads/lib.sh"
# On the other kernels of the matrix (MAIN_ONLY=1) only these run.
MAIN_TESTS="futex_mutex_waits futex_no_stale_entry"

test_futex_mutex_waits() {
    need root cmd:jq tracepoint:syscalls/sys_enter_futex
    build_workload mutexfight
    start_gated MF mutexfight -w -n 4 -i 25 -h 10000
    tool_start futex --json -p "$MF_PID" --unit us
    release MF
    wait_exit "$MF_PID" 30
    tool_stop 0.2
    assert_all_json
    local acq waited long total fullest
    acq=$(awk '/^acquisitions/ {print $2}' "$MF_OUT")
    waited=$(awk '/^waited/ {print $2}' "$MF_OUT")
    [[ $acq -eq 100 ]] || { show "$MF_OUT"; fail "mutexfight made $acq acquisitions, want 100"; }
    long=$(json_bucket_sum "$TOOL_OUT" 1024)
    total=$(jq -s '.[0].count' "$TOOL_OUT")
    note "mutexfight: $acq acquisitions, $waited waited >= 1 ms; futex: $total calls, $long >= 1 ms"
    # Every wait >= 1 ms the program saw is one futex(FUTEX_WAIT) >= 1 ms
    # (a woken waiter that loses the race waits again: allow up to 2x).
    [[ $long -ge $((waited * 9 / 10)) && $long -le $((waited * 2 + 5)) ]] ||
        { show "$TOOL_OUT"; fail "$long futex calls >= 1 ms, program waited $waited times"; }
    # Waits are 1-3 holds of 10 ms: the fullest bucket >= 1K us is [8K,16K) or [16K,32K).
    fullest=$(jq -s '[.[0].buckets[] | select(.low >= 1024)] | max_by(.count) | .low' "$TOOL_OUT")
    [[ $fullest -eq 8192 || $fullest -eq 16384 ]] || { show "$TOOL_OUT"; fail "fullest bucket starts at $fullest us"; }
    # The JSON count equals the sum of the buckets.
    [[ $(jq -s '[.[0].buckets[].count] | add' "$TOOL_OUT") -eq $total ]] || fail "count != sum of buckets"
}

test_futex_text_histogram() {
    need root tracepoint:syscalls/sys_enter_futex
    build_workload mutexfight
    start_gated MF mutexfight -w -n 3 -i 10 -h 10000
    tool_start futex -p "$MF_PID"
    release MF
    wait_exit "$MF_PID" 30
    tool_stop 0.2
    assert_grep '^Attaching 2 probes\.\.\.$'
    assert_grep '^@lat:$'
    # bpftrace layout: label in 16 columns, count in 8, a 52-wide bar.
    assert_grep '^\[8, 16\)          +[0-9]+ \|@*( *)\|$'
    local bad
    bad=$(grep -E '^\[' "$TOOL_OUT" | grep -vcE '^.{16}[ 0-9]{8} \|[@ ]{52}\|$')
    [[ $bad -eq 0 ]] || { show "$TOOL_OUT"; fail "$bad histogram lines off the bpftrace layout"; }
    [[ $(grep -c '^@lat:' "$TOOL_OUT") -eq 1 ]] || fail "histogram printed more than once"
}

# A thread already blocked in futex() when tracing starts must not produce a
# bogus "uptime" sample when it returns (the original's bug).
test_futex_no_stale_entry() {
    need root cmd:jq tracepoint:syscalls/sys_enter_futex
    need cmd:gcc
    cat >"$T/condblock.c" <<'C'
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int ready;
static void *waiter(void *x) { pthread_mutex_lock(&m); while (!ready) pthread_cond_wait(&c, &m); pthread_mutex_unlock(&m); return NULL; }
int main(void) { pthread_t t; pthread_create(&t, NULL, waiter, NULL); sleep(3);
  pthread_mutex_lock(&m); ready = 1; pthread_cond_signal(&c); pthread_mutex_unlock(&m);
  pthread_join(t, NULL); puts("released"); return 0; }
C
    gcc -O0 -g -pthread -o "$T/condblock" "$T/condblock.c" || fail "cannot compile"
    "$T/condblock" >"$T/cb.out" &
    local pid=$!
    defer "kill -KILL $pid"
    sleep 1
    tool_start futex --json -p "$pid"
    wait_exit "$pid" 10
    tool_stop 0.2
    grep -q released "$T/cb.out" || fail "condblock did not finish"
    # The 3 s wait started before tracing: no sample >= 1 s (ms unit).
    [[ $(json_bucket_sum "$TOOL_OUT" 1024) -eq 0 ]] || { show "$TOOL_OUT"; fail "stale entry counted"; }
}

test_futex_idle_duration() {
    need root cmd:jq tracepoint:syscalls/sys_enter_futex
    local start=$SECONDS
    "$BIN_DIR/futex" -d 2 --json >"$T/o.json" 2>"$T/o.err" || fail "exit $?"
    # Under TCG emulation (VMTEST_GUEST) attaching alone can take seconds.
    local limit=4
    [[ ${VMTEST_GUEST:-0} == 1 ]] && limit=20
    [[ $((SECONDS - start)) -le $limit ]] || fail "took $((SECONDS - start)) s"
    if [[ -s $T/o.json ]]; then
        [[ $(jq '[.buckets[]?.count] | add // 0' "$T/o.json") -eq $(jq '.count // 0' "$T/o.json") ]] || { show "$T/o.json"; fail "count != sum"; }
    fi
    grep -q '^Attaching 2 probes' "$T/o.err" || fail "no Attaching line on stderr in JSON mode"
}

test_futex_bad_input() {
    need root
    expect_exit 2 futex -p 0; grep -q -- '--pid' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 futex -p x
    expect_exit 2 futex -p 999999999
    expect_exit 2 futex --unit s; grep -q -- '--unit' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 futex -d 0
    expect_exit 2 futex -d -1
    expect_exit 2 futex extra
}
