# Live tests of trace_ip_defrag: real fragments between two network
# namespaces (veth, MTU 1500), from ping -s 4000 and from hand-made fragments
# sent through a raw socket (tests/send_frags.py).
# On the other kernels of the matrix (MAIN_ONLY=1) only these run.
MAIN_TESTS="trace_ip_defrag_ping trace_ip_defrag_duplicate trace_ip_defrag_overlap trace_ip_defrag_timeout trace_ip_defrag_kprobe"

DEFRAG_DIR=$(dirname "${BASH_SOURCE[0]}")

# Whether this kernel can trace ip_defrag itself (fentry or kprobe).
defrag_traced() { grep -q 'ip_defrag via' "$TOOL_ERR"; }
# Who reassembles in the receiving namespace: the local delivery, or conntrack's
# defrag (zone 0) where nf_defrag_ipv4 is active (e.g. the Debian VM kernels).
USER_OK='(.user_name == "LOCAL_DELIVER" or .user_name == "CONNTRACK_IN(zone=0)")'
# The kernel has drop reason NAME (DUP_FRAG and FRAG_REASM_TIMEOUT came after 6.1).
has_drop_reason() { bpftool btf dump file /sys/kernel/btf/vmlinux 2>/dev/null | grep -q "'SKB_DROP_REASON_$1'"; }
send_frags() { in1 python3 "$DEFRAG_DIR/send_frags.py" "$IP1" "$IP2" "$@"; }

test_trace_ip_defrag_ping() {
    need root cmd:ping cmd:jq
    netns_pair
    tool_start trace_ip_defrag --json --src "$IP1" --proto icmp
    local hit=$TOOL_OUT hit_err=$TOOL_ERR pid=$TOOL_PID
    tool_start trace_ip_defrag --json --src 10.99.0.9
    local miss=$TOOL_OUT
    in1 ping -c 2 -i 0.3 -s 4000 "$IP2" >/dev/null || fail "ping -s 4000 got no answer"
    tool_stop
    TOOL_PID=$pid TOOL_OUT=$hit TOOL_ERR=$hit_err
    tool_stop 0
    assert_all_json
    local type=frag_rcv
    defrag_traced && type=ip_defrag
    # Every datagram: three fragments with the same IP id, offsets 0/1480/2960,
    # sizes 1500/1500/1068 (4008 bytes of ICMP), MF on all but the last.
    local shape
    shape=$(jq -c --arg t "$type" 'select(.type == $t and .saddr == "'"$IP1"'" and .daddr == "'"$IP2"'")
            | [.ip_id, .frag_off, .mf, .len]' "$TOOL_OUT" | sort -u |
        jq -sc 'group_by(.[0]) | map(map(.[1:])) | unique')
    [[ $shape == '[[[0,1,1500],[1480,1,1500],[2960,0,1068]]]' ]] || { show "$TOOL_OUT"; fail "fragments of $type: $shape"; }
    [[ $(jq -r --arg t "$type" 'select(.type == $t) | .ip_id' "$TOOL_OUT" | sort -u | grep -c .) -eq 2 ]] ||
        fail "expected 2 datagrams (IP ids) for 2 pings"
    if defrag_traced; then
        assert_json_ge 6 ".type == \"ip_defrag\" and $USER_OK"
        # Queued with the right offsets/ends, the queue key carrying the IP id.
        shape=$(jq -c 'select(.type == "frag_queued") | [.offset, .end, (.queue.id == .ip_id), .queue.saddr, .queue.proto]' "$TOOL_OUT" | sort -u | jq -sc .)
        [[ $shape == "[[0,1480,true,\"$IP1\",1],[1480,2960,true,\"$IP1\",1],[2960,4008,true,\"$IP1\",1]]" ]] ||
            { show "$TOOL_OUT"; fail "queued fragments: $shape"; }
        assert_json_ge 2 ".type == \"reassembled\" and .len == 4028 and .frag_off == 0 and .mf == 0 and $USER_OK"
        # The reassembled datagrams are the ones whose fragments were queued.
        local ids_q ids_r
        ids_q=$(jq -r 'select(.type == "frag_queued") | .ip_id' "$TOOL_OUT" | sort -u | tr '\n' ' ')
        ids_r=$(jq -r 'select(.type == "reassembled") | .ip_id' "$TOOL_OUT" | sort -u | tr '\n' ' ')
        [[ $ids_q == "$ids_r" ]] || fail "queued ids $ids_q, reassembled ids $ids_r"
    else
        grep -q "WARN: cannot attach ip_defrag: " "$TOOL_ERR" || fail "no warning for ip_defrag"
        grep -q "WARN: cannot attach inet_frag_queue_insert: " "$TOOL_ERR" || fail "no warning for inet_frag_queue_insert"
        note "ip_defrag not traceable here: checked [frag_rcv] arrivals"
    fi
    assert_json_none '.type != null' "$miss"
    # Delivered pings drop nothing: the fragments freed with the reassembled
    # datagram (kfree_skb with no reason, 5.10 to 6.18) are not drops.
    assert_json_none '.type == "frag_drop"'
}

test_trace_ip_defrag_duplicate() {
    need root cmd:python3 cmd:jq
    # On 5.10 the crafted fragment that should be dropped never reached the
    # receiver's IP layer in this topology (IpInReceives counted 3 of 4
    # fragments): nothing there to report. 6.1 and later deliver it.
    local kv; kv=$(uname -r | awk -F'[.-]' '{print $1 * 1000 + $2}')
    [[ $kv -ge 6000 ]] || skip "before 6.0 the crafted duplicate/overlap does not reach ip_defrag in this topology"
    netns_pair
    # Hand-made fragments are sent once: resolve the neighbour first, or the
    # first ones can be lost while ARP is pending (seen on 5.10).
    wait_ping "$NS1" "$IP2"
    tool_start trace_ip_defrag --json --src "$IP1"
    send_frags 0x1234 dup
    tool_stop
    # The second copy of fragment 0 of IP id 0x1234 = 4660 is dropped.
    if grep -q 'kfree_skb via' "$TOOL_ERR"; then
        assert_json_ge 1 '.type == "frag_drop" and .ip_id == 4660 and .frag_off == 0 and .mf == 1 and .len == 1500'
        local want='.reason == "DUP_FRAG"'
        has_drop_reason DUP_FRAG || want='true'
        assert_json_ge 1 ".type == \"frag_drop\" and .ip_id == 4660 and $want and ([.stack[] | select(startswith(\"ip_defrag+\"))] | length > 0)"
    fi
    if defrag_traced; then
        assert_json_ge 1 ".type == \"dup_insert\" and .queue.id == 4660 and .queue.saddr == \"$IP1\" and .queue.daddr == \"$IP2\" and .queue.proto == 1 and .offset == 0 and .end == 1480"
        # The datagram is still completed from the other fragments.
        assert_json_ge 1 '.type == "reassembled" and .ip_id == 4660 and .len == 3028'
    fi
}

test_trace_ip_defrag_overlap() {
    need root cmd:python3 cmd:jq
    # On 5.10 the crafted fragment that should be dropped never reached the
    # receiver's IP layer in this topology (IpInReceives counted 3 of 4
    # fragments): nothing there to report. 6.1 and later deliver it.
    local kv; kv=$(uname -r | awk -F'[.-]' '{print $1 * 1000 + $2}')
    [[ $kv -ge 6000 ]] || skip "before 6.0 the crafted duplicate/overlap does not reach ip_defrag in this topology"
    netns_pair
    # Hand-made fragments are sent once: resolve the neighbour first, or the
    # first ones can be lost while ARP is pending (seen on 5.10).
    wait_ping "$NS1" "$IP2"
    tool_start trace_ip_defrag --json --src "$IP1" --proto 1
    send_frags 0x1235 overlap
    tool_stop
    assert_json_ge 1 '.type == "frag_drop" and .ip_id == 4661 and .frag_off == 800 and .mf == 1'
    if defrag_traced; then
        assert_json_ge 1 '.type == "overlap_insert" and .queue.id == 4661 and .offset == 800 and .end == 2280'
        assert_json_none '.type == "reassembled"'
    fi
}

test_trace_ip_defrag_timeout() {
    need root cmd:python3 cmd:jq drop_reasons
    netns_pair
    # Hand-made fragments are sent once: resolve the neighbour first, or the
    # first ones can be lost while ARP is pending (seen on 5.10).
    wait_ping "$NS1" "$IP2"
    # conntrack may already reassemble on the sender's way out (CONNTRACK_OUT).
    in1 sysctl -qw net.ipv4.ipfrag_time=1 || skip "cannot lower net.ipv4.ipfrag_time"
    in2 sysctl -qw net.ipv4.ipfrag_time=1
    tool_start trace_ip_defrag --json --dst "$IP2"
    send_frags 0x1236 first
    local i
    for ((i = 0; i < 50; i++)); do
        jq -e 'select(.type == "frag_drop")' "$TOOL_OUT" >/dev/null 2>&1 && break
        sleep 0.2
    done
    tool_stop
    # Where the kernel has no FRAG_REASM_TIMEOUT reason, the free in ip_expire tells.
    local want='.reason == "FRAG_REASM_TIMEOUT"'
    has_drop_reason FRAG_REASM_TIMEOUT || want='([.stack[] | select(startswith("ip_expire+"))] | length > 0)'
    assert_json_ge 1 ".type == \"frag_drop\" and .ip_id == 4662 and .frag_off == 0 and .mf == 1 and $want"
}

test_trace_ip_defrag_text_log_file() {
    need root cmd:ping
    netns_pair
    tool_start trace_ip_defrag --src "$IP1" --log-file "$T/defrag.log"
    in1 ping -c 1 -s 4000 "$IP2" >/dev/null
    tool_stop
    cmp -s "$TOOL_OUT" "$T/defrag.log" || { show "$T/defrag.log"; fail "log file differs from stdout"; }
    local p="^\[(ip_defrag|frag_rcv)\] [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} [0-9]+/.{1,16} +DEV=\S+ +$IP1 -> $IP2 Proto=ICMP"
    assert_count_ge 3 "$p"
    assert_grep "$p FragOff=0 MF=1 IPID=[0-9]+ Len=1500"
    assert_grep "$p frag FragOff=2960 MF=0 IPID=[0-9]+ Len=1068"
    if defrag_traced; then
        assert_grep "^\[ip_defrag\] .* User=(LOCAL_DELIVER|CONNTRACK_IN\(zone=0\))$"
        assert_grep "^\[FRAG_QUEUED\] .* Queue=\($IP1->$IP2 ID=[0-9]+ Proto=1\) Offset=1480 End=2960$"
        assert_grep "^\[REASSEMBLED\] .*$IP1 -> $IP2 Proto=ICMP IPID=[0-9]+ Len=4028 User=(LOCAL_DELIVER|CONNTRACK_IN\(zone=0\))$"
    fi
    assert_grep "^Detaching probes and exiting\.\.\.$"
}

test_trace_ip_defrag_bad_input() {
    need root
    expect_exit 2 trace_ip_defrag --src 300.1.1.1; grep -q -- '--src' <<<"$LAST_ERROR" || fail "message does not name --src"
    expect_exit 2 trace_ip_defrag --dst 10.0.0
    expect_exit 2 trace_ip_defrag --proto foo; grep -q -- '--proto' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 trace_ip_defrag --proto 256
    expect_exit 2 trace_ip_defrag --log-file /nonexistent/x; grep -q -- '--log-file' <<<"$LAST_ERROR" || fail "no flag name"
}

# The kprobe/kretprobe pairs (entry arguments kept per thread until the return).
test_trace_ip_defrag_kprobe() {
    need root cmd:ping cmd:jq kprobe
    netns_pair
    tool_start trace_ip_defrag --json --attach kprobe --src "$IP1" --proto icmp
    in1 ping -c 1 -s 4000 "$IP2" >/dev/null || fail "ping -s 4000 got no answer"
    tool_stop
    grep -q 'ip_defrag via kprobe:ip_defrag' "$TOOL_ERR" || { cat "$TOOL_ERR"; fail "not attached via kprobe"; }
    assert_json_ge 3 ".type == \"ip_defrag\" and $USER_OK"
    assert_json_ge 1 '.type == "frag_queued" and .offset == 2960 and .end == 4008 and .queue.id == .ip_id'
    assert_json_ge 1 ".type == \"reassembled\" and .len == 4028 and $USER_OK"
}
