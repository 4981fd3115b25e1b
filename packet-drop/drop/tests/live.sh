# Live tests of drop and multi-protocol-drop-monitor: real drops between two
# network namespaces (see scripts/lib/testlib.sh for the helpers).

# Run on every kernel of the matrix even when time is short (MAIN_ONLY=1).
MAIN_TESTS="drop_icmp_netfilter drop_udp_closed_port drop_attach_tracepoint drop_attach_fentry drop_attach_kprobe multi_protocol_icmp_netfilter multi_protocol_vlan"

# The reason the running kernel reports for a drop, or N/A where it has none.
reason_or_na() {
    if grep -q 'field:.* reason;' "$(tracefs)/events/skb/kfree_skb/format" 2>/dev/null; then echo "$1"; else echo "N/A"; fi
}

test_drop_icmp_netfilter() {
    need root cmd:iptables cmd:ping
    netns_pair
    in2 iptables -A INPUT -p icmp -j DROP || skip "iptables cannot add rules here"
    tool_start drop --src "$IP1" --protocol icmp
    in1 ping -c 3 -i 0.2 -W 1 "$IP2" >/dev/null
    tool_stop
    assert_count_ge 3 "^Source IP: $IP1 +Destination IP: $IP2 +Protocol: ICMP"
    assert_count_ge 3 "^ICMP Type: 8 +Code: 0"
    assert_count_ge 3 "^Device: $VETH2\$"
    assert_count_ge 3 "^Reason: $(reason_or_na NETFILTER_DROP) "
    assert_grep "^  nf_hook_slow\+0x"
    assert_grep "^User Stack Trace:"
    assert_grep "^Tracing\.\.\. Hit Ctrl-C to end\."
    assert_grep "^Summary: [0-9]+ drops reported" "$TOOL_ERR"
}

test_drop_udp_closed_port() {
    need root cmd:nc
    netns_pair
    tool_start drop --json --protocol udp --dst-port 9999
    local hit=$TOOL_OUT pid=$TOOL_PID
    tool_start drop --json --protocol udp --dst-port 9998
    local miss=$TOOL_OUT
    # nc -w0 occasionally exits before its datagram leaves: send a few more than needed.
    for i in 1 2 3 4 5; do echo x | in1 nc -u -w0 "$IP2" 9999; sleep 0.2; done
    tool_stop
    TOOL_PID=$pid
    tool_stop 0
    assert_all_json "$hit"
    assert_json_ge 3 ".proto == \"UDP\" and .dport == 9999 and .daddr == \"$IP2\" and .dev == \"$VETH2\"" "$hit"
    if [[ $(reason_or_na x) == x ]]; then
        assert_json_ge 3 '.reason == "NO_SOCKET" and (.reason_code | type) == "number"' "$hit"
    else
        assert_json_ge 3 '.reason == "N/A"' "$hit"
    fi
    assert_json_ge 1 '[.kstack[] | select(startswith("__udp4_lib_rcv"))] | length > 0' "$hit"
    assert_json_none '.dport == 9999' "$miss"
}

test_drop_tcp_syn_closed_port() {
    need root cmd:nc
    netns_pair
    local extra=()
    # Without drop reasons a free in tcp_v4_rcv looks like a normal release.
    [[ $(reason_or_na x) == x ]] || extra=(--no-normal-filter)
    tool_start drop --json --protocol tcp --dst-port 7777 "${extra[@]}"
    in1 nc -z -w1 "$IP2" 7777 || true
    tool_stop
    assert_json_ge 1 ".proto == \"TCP\" and .dport == 7777 and .saddr == \"$IP1\" and .sport > 0"
    [[ $(reason_or_na x) == x ]] && assert_json_ge 1 '.reason == "NO_SOCKET"'
    true
}

test_drop_filter_matches_nothing() {
    need root cmd:iptables cmd:ping
    netns_pair
    in2 iptables -A INPUT -p icmp -j DROP || skip "iptables cannot add rules here"
    tool_start drop --src 10.99.0.9
    in1 ping -c 3 -i 0.2 -W 1 "$IP2" >/dev/null
    tool_stop
    assert_no_grep "^Time: "
    assert_grep "^Summary: 0 drops reported" "$TOOL_ERR"
}

test_drop_log_file() {
    need root cmd:iptables cmd:ping
    netns_pair
    in2 iptables -A INPUT -p icmp -j DROP || skip "iptables cannot add rules here"
    tool_start drop --src "$IP1" --log-file "$T/x.log"
    in1 ping -c 2 -i 0.2 -W 1 "$IP2" >/dev/null
    tool_stop
    [[ ! -s $TOOL_OUT ]] || { show "$TOOL_OUT"; fail "stdout not silent with --log-file"; }
    head -1 "$T/x.log" | grep -qE '^=== Monitoring started at [0-9-]+ [0-9:]+ ===$' || { show "$T/x.log"; fail "no start line"; }
    assert_count_ge 2 "^Source IP: $IP1" "$T/x.log"
    tail -1 "$T/x.log" | grep -qE '^=== Monitoring ended at ' || { show "$T/x.log"; fail "no end line"; }
}

test_drop_bad_input() {
    need root
    expect_exit 2 drop --src 10.0.0.256; grep -q -- '--src' <<<"$LAST_ERROR" || fail "message does not name --src"
    expect_exit 2 drop --src foo
    expect_exit 2 drop --protocol sctp; grep -q -- '--protocol' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 drop --src-port 70000; grep -q -- '--src-port' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 drop --src-port 0
    expect_exit 2 drop --dst-port -1
    expect_exit 2 drop --duration -1; grep -q -- '--duration' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 drop --log-file /nonexistent/dir/x; grep -q -- '--log-file' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 drop --attach magic
    expect_exit 2 multi-protocol-drop-monitor --dst 1.2.3
    # Not root: one clear line, exit 1.
    if command -v setpriv >/dev/null; then
        local out rc
        out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$BIN_DIR/drop" 2>&1); rc=$?
        [[ $rc -eq 1 && $out == "error: must run as root"* ]] || fail "not root: exit $rc: $out"
    fi
}

# The same firewall drop through every way the kernel offers (issue: attach
# fallback). Each forced mode must report it, with a reason where it has one.
forced_attach() {
    local mode=$1
    netns_pair
    in2 iptables -A INPUT -p icmp -j DROP || skip "iptables cannot add rules here"
    tool_start drop --json --attach "$mode" --src "$IP1" --protocol icmp
    in1 ping -c 3 -i 0.2 -W 1 "$IP2" >/dev/null
    tool_stop 1
    grep -q "via $mode:" "$TOOL_ERR" || { cat "$TOOL_ERR"; fail "not attached via $mode"; }
    assert_json_ge 3 ".saddr == \"$IP1\" and .icmp_type == 8 and .dev == \"$VETH2\""
    case $(kernel_series) in
        5.10) assert_json_ge 3 '.reason == "N/A"' ;;
        *) assert_json_ge 3 '.reason == "NETFILTER_DROP"' ;;
    esac
    note "$(head -1 "$TOOL_ERR")"
}
test_drop_attach_tracepoint() { need root cmd:iptables cmd:ping tracepoint:skb/kfree_skb; forced_attach tracepoint; }
test_drop_attach_fentry() { need root cmd:iptables cmd:ping fentry; forced_attach fentry; }
test_drop_attach_kprobe() { need root cmd:iptables cmd:ping kprobe; forced_attach kprobe; }

test_multi_protocol_icmp_netfilter() {
    need root cmd:iptables cmd:ping
    netns_pair
    in2 iptables -A INPUT -p icmp -j DROP || skip "iptables cannot add rules here"
    tool_start multi-protocol-drop-monitor --src "$IP1" --protocol icmp
    in1 ping -c 3 -i 0.2 -W 1 "$IP2" >/dev/null
    tool_stop
    assert_count_ge 3 "^Source IP: $IP1 +Destination IP: $IP2 +Protocol: ICMP +IP ID: [0-9]+ +VLAN: 0"
    assert_count_ge 3 "^ICMP Type: 8 +Code: 0"
    assert_count_ge 3 "^Stack Trace:"
    assert_count_ge 3 "^User Stack Trace:"
}

test_multi_protocol_vlan() {
    need root cmd:iptables cmd:ping
    netns_pair 10.98.0.1 10.98.0.2
    in1 ip link add link "$VETH1" name v1.100 type vlan id 100 || skip "cannot create VLAN devices"
    in2 ip link add link "$VETH2" name v2.100 type vlan id 100
    in1 ip addr add 10.99.100.1/24 dev v1.100
    in2 ip addr add 10.99.100.2/24 dev v2.100
    in1 ip link set v1.100 up
    in2 ip link set v2.100 up
    in2 iptables -A INPUT -i v2.100 -p icmp -j DROP
    tool_start multi-protocol-drop-monitor --json --src 10.99.100.1 --protocol icmp
    in1 ping -c 3 -i 0.2 -W 1 10.99.100.2 >/dev/null
    tool_stop
    # The tag may be stripped before the drop (VLAN 0) or still present (100); the IPs must be right.
    assert_json_ge 3 '.saddr == "10.99.100.1" and .daddr == "10.99.100.2" and (.vlan == 0 or .vlan == 100)'
}
