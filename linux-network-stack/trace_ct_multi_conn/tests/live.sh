# Live tests of trace_ct_multi_conn: several connections at once through a
# conntrack rule between two namespaces, one line per event.

source "$(dirname "${BASH_SOURCE[0]}")/../../trace_ct/tests/ct_lib.sh"
# On the other kernels of the matrix (MAIN_ONLY=1) only these run.
MAIN_TESTS="trace_ct_multi_conn_two_servers"

test_trace_ct_multi_conn_two_servers() {
    ct_pair
    ct_server 9900 9901
    cat >"$T/two.json" <<JSON
[{"dst_ip": "$IP2", "protocol": "tcp", "dst_port": 9900},
 {"dst_ip": "$IP2", "protocol": "tcp", "dst_port": 9901}]
JSON
    echo "[{\"dst_ip\": \"$IP2\", \"protocol\": \"tcp\", \"dst_port\": 9901}]" >"$T/one.json"
    tool_start trace_ct_multi_conn --netns "$NS2" --filters-file "$T/two.json"
    local two=$TOOL_OUT pid=$TOOL_PID
    tool_start trace_ct_multi_conn --netns "$NS2" --filters-file "$T/one.json" --stack false
    local one=$TOOL_OUT
    ct_connect 9900
    ct_connect 9901
    tool_stop 1
    TOOL_PID=$pid TOOL_OUT=$two
    tool_stop 0
    local line='^DATETIME: [0-9-]+ [0-9:.]{12} COMM: .{16} FUNC: \S+ +NFCT_PTR: '
    # Both servers, both directions, with the one-line layout.
    assert_grep "$line"'0x0 \(INVALID/NULL\) '"$IP1"':[0-9]+ -> '"$IP2"':9900 \(TCP\) IP_ID:0x[0-9a-f]+ SEQ:[0-9]+ ACK:0 \[[A-Z_0-9()]+\]  CT_STATUS: N/A \(_nfct=0\) CTINFO: N/A .*DEV: \S+\[[0-9]+\]$'
    assert_grep "$line"'0xffff[0-9a-f]+  '"$IP2"':9900 -> '"$IP1"':[0-9]+ \(TCP\) .* CT_STATUS: (0x[0-9a-f]+ \(NOT TEMPLATE[A-Z_|]*\)|N/A \(ReadFail\)) CTINFO: 3 \(IP_CT_ESTABLISHED_REPLY\) '
    assert_grep "$line"'0xffff[0-9a-f]+  '"$IP1"':[0-9]+ -> '"$IP2"':9901 \(TCP\) .* CTINFO: [02] \(IP_CT_(NEW|ESTABLISHED)\) '
    assert_grep "$line"'0xffff[0-9a-f]+  '"$IP2"':9901 -> '"$IP1"':[0-9]+ \(TCP\) '
    # One rule: one server only, and no stack lines with --stack false.
    assert_grep ":9901 " "$one"
    assert_no_grep ":9900 " "$one"
    assert_no_grep '^  ' "$one"
    case $(ct_mode) in
        fentry|kprobe) assert_grep '^  nf_conntrack_in\+0x' "$two" ;;
    esac
}

test_trace_ct_multi_conn_json() {
    ct_pair
    ct_server 9903
    tool_start trace_ct_multi_conn --json --netns "$NS2" --dst-ip "$IP2" --protocol tcp --dst-port 9903
    ct_connect 9903
    tool_stop 1
    assert_all_json
    assert_json_ge 1 '.sport == 9903 and .skb_ct.ctinfo == 3 and .skb_ct.label == null and .tcp_flags == null'
    assert_json_ge 1 '.dport == 9903 and .skb_ct.nfct == "0x0" and .skb_ct.ctinfo == null'
}

test_trace_ct_multi_conn_bad_input() {
    need root
    python3 -c 'import json; print(json.dumps([{"dst_port": 1000 + i} for i in range(11)]))' >"$T/eleven.json"
    expect_exit 2 trace_ct_multi_conn --filters-file "$T/eleven.json"; grep -q 'at most 10' <<<"$LAST_ERROR" || fail "$LAST_ERROR"
    echo '[{"protocol": "gre"}]' >"$T/proto.json"
    expect_exit 2 trace_ct_multi_conn --filters-file "$T/proto.json"
    expect_exit 2 trace_ct_multi_conn --dst-ip 10.0.0.300
    expect_exit 2 trace_ct_multi_conn --stack perhaps
    expect_exit 2 trace_ct_multi_conn --dst-port -5
}
