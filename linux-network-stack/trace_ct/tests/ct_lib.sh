# Helpers of the trace_ct / trace_ct_multi_conn live tests (sourced by both).

# ct_pair: netns pair with a conntrack rule in NS2 (conntrack tracks there).
ct_pair() {
    need root cmd:iptables cmd:nc cmd:jq
    netns_pair "$@"
    in2 iptables -A INPUT -p tcp -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT ||
        skip "iptables cannot add conntrack rules here"
}

# ct_server PORT...: TCP servers in NS2 that accept and discard (killed at the end).
ct_server() {
    local p
    for p in "$@"; do
        in2 bash -c "exec nc -l -k -p $p >/dev/null 2>&1" &
        defer "kill $!"
    done
    sleep 0.3
}

# ct_connect PORT: one short TCP connection from NS1 (a line sent, then closed).
ct_connect() { echo hello | in1 nc -w 1 -q 0 "$IP2" "$1" >/dev/null 2>&1 || true; }

# Which way the tool reached conntrack (nf-link on >= 6.4, else fentry/kprobe).
ct_mode() { sed -n 's/^Mode: //p' "$TOOL_ERR"; }
