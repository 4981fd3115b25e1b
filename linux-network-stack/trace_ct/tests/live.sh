# Live tests of trace_ct: a TCP connection between two namespaces through a
# conntrack rule; OVS ct() actions in the VM kernels.

source "$(dirname "${BASH_SOURCE[0]}")/ct_lib.sh"
# On the other kernels of the matrix (MAIN_ONLY=1) only these run.
MAIN_TESTS="trace_ct_tcp_conntrack trace_ct_filters_file trace_ct_ovs_zone_commit_label trace_ct_ovs_text"

test_trace_ct_tcp_conntrack() {
    ct_pair
    ct_server 5201
    tool_start trace_ct --json --netns "$NS2" --src-ip "$IP1" --dst-ip "$IP2" --protocol tcp --dst-port 5201
    in1 ping -c 3 -i 0.2 "$IP2" >/dev/null &
    local ping=$!
    ct_connect 5201
    wait "$ping"
    tool_stop 1
    assert_all_json
    note "mode $(ct_mode)"
    # The SYN's first event: no conntrack entry yet.
    local first
    first=$(jq -c 'select(.tcp_flags == ["SYN"])' "$TOOL_OUT" | head -1)
    jq -e '.skb_ct.nfct == "0x0" and .skb_ct.status_err == "_nfct=0" and .skb_ct.ctinfo == null' <<<"$first" >/dev/null ||
        { show "$TOOL_OUT"; fail "first SYN event has a conntrack entry: $first"; }
    # The SYN gets an entry with IP_CT_NEW; the SYN-ACK (other direction, same
    # rule) the same entry with IP_CT_ESTABLISHED_REPLY.
    local cts ct ok=0
    cts=$(jq -r 'select(.tcp_flags == ["SYN"] and .skb_ct.ctinfo == 2 and .skb_ct.ctinfo_name == "IP_CT_NEW"
                 and .saddr == "'"$IP1"'" and .dport == 5201) | .skb_ct.ct' "$TOOL_OUT" | sort -u)
    [[ -n $cts ]] || { show "$TOOL_OUT"; fail "no SYN event with IP_CT_NEW"; }
    for ct in $cts; do
        [[ $ct != 0x0 ]] || continue
        [[ $(jcount ".tcp_flags == [\"SYN\",\"ACK\"] and .saddr == \"$IP2\" and .sport == 5201 and .skb_ct.ct == \"$ct\" and .skb_ct.ctinfo == 3 and .skb_ct.ctinfo_name == \"IP_CT_ESTABLISHED_REPLY\"") -gt 0 ]] && ok=1
    done
    [[ $ok == 1 ]] || { show "$TOOL_OUT"; fail "no SYN-ACK with IP_CT_ESTABLISHED_REPLY on the SYN's nf_conn ($cts)"; }
    # Later packets of the client direction: IP_CT_ESTABLISHED on that entry.
    # (5.10 has no BTF for the nf_conntrack module: status unreadable, ReadFail.)
    assert_json_ge 1 ".saddr == \"$IP1\" and .skb_ct.ctinfo == 0 and .skb_ct.ctinfo_name == \"IP_CT_ESTABLISHED\" and ((.skb_ct.status_flags // [] | index(\"CONFIRMED\") != null) or .skb_ct.status_err == \"ReadFail\")"
    assert_json_none '.proto != null and .proto != 6'
    case $(ct_mode) in
        nf-link) assert_json_ge 1 '.probe == "post_ct" and .nf_hook == "LOCAL_OUT"' ;;
        fentry|kprobe)
            assert_json_ge 1 '.probe == "nf_conntrack_in" and (.stack | length) > 0'
            assert_json_ge 1 '.probe == "tcp_packet" or .probe == "__nf_ct_refresh_acct"' ;;
        *) fail "unknown mode $(ct_mode)" ;;
    esac
    grep -q '^Tracing skb->_nfct pointer changes' "$TOOL_ERR" || fail "no start line"
}

test_trace_ct_text_options() {
    ct_pair
    ct_server 5202
    tool_start trace_ct --netns "$NS2" --stack false --rel-time --protocol tcp --dst-port 5202
    ct_connect 5202
    tool_stop 1
    # First event at 0.0000, no stack lines, the block layout.
    head -1 "$TOOL_OUT" | grep -qE '^TIME\(s\): 0\.0000 +COMM: .{16} FUNC: \S+ *( DEV: \S+\[[0-9]+\])?$' ||
        { show "$TOOL_OUT"; fail "first line: $(head -1 "$TOOL_OUT")"; }
    assert_no_grep '^  '
    assert_grep "^PKTINFO: $IP1:[0-9]+ -> $IP2:5202 \(TCP\) IP_ID:0x[0-9a-f]+ SEQ:[0-9]+ ACK:0 FLAGS:\[SYN\] \[UNKNOWN_STATE\(255\)\]$"
    assert_grep "^PKTINFO: $IP2:5202 -> $IP1:[0-9]+ \(TCP\) .* FLAGS:\[SYN\|ACK\] \[TCP_(NEW_)?SYN_RECV\]$"
    assert_grep '^SKB_CT_INFO: CT_STATUS:N/A\(_nfct=0\) CTINFO:N/A NFCT_PTR:NULL '
    # (N/A(ReadFail): 5.10, no BTF for the nf_conntrack module.)
    assert_grep '^SKB_CT_INFO: CT_STATUS:(0x[0-9a-f]+\(NOT_TEMPLATE[A-Z_|]*\)|N/A\(ReadFail\)) CTINFO:3\(IP_CT_ESTABLISHED_REPLY\) NFCT_PTR:0xffff[0-9a-f]+ SKBZoneID:(0\(KernelDefaultZone\)|N/A\(ReadFail\)) SKBZoneDir:'
    assert_grep '^OVS_CT_INFO: OvsConInfoNFCT:N/A\(Init\) OvsCommit:N/A\(Init\) OvsZoneID:N/A\(Init\) OvsZoneDir:N/A\(Init\)$'
    assert_grep '^-{80}$'
    assert_grep '^Detaching probes and exiting\.\.\.$'
}

test_trace_ct_filters_file() {
    ct_pair
    ct_server 9900 9901 9902
    cat >"$T/rules.json" <<JSON
[{"src_ip": "$IP1", "dst_ip": "$IP2", "protocol": "tcp", "dst_port": 9900},
 {"src_ip": "$IP2", "protocol": "tcp", "src_port": 9901}]
JSON
    tool_start trace_ct --json --netns "$NS2" --filters-file "$T/rules.json" --dst-port 1
    ct_connect 9900
    ct_connect 9901
    ct_connect 9902
    tool_stop 1
    # Both rules, both directions; not the third flow (nor --dst-port 1: ignored).
    assert_json_ge 1 '.dport == 9900 and .tcp_flags == ["SYN"]'
    assert_json_ge 1 '.sport == 9900 and .tcp_flags == ["SYN","ACK"]'
    assert_json_ge 1 '.dport == 9901 and .tcp_flags == ["SYN"]'
    assert_json_ge 1 '.sport == 9901 and .tcp_flags == ["SYN","ACK"]'
    assert_json_none '.dport == 9902 or .sport == 9902'
    grep -q '^Rule 2: src_ip=10.99.0.2 dst_ip=any protocol=tcp src_port=9901 dst_port=any' "$TOOL_ERR" || fail "rules not shown"
}

test_trace_ct_bad_input() {
    need root
    expect_exit 2 trace_ct --src-ip 1.2.3; grep -q -- '--src-ip' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 trace_ct --protocol sctp; grep -q -- '--protocol' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 trace_ct --src-port 70000; grep -q -- '--src-port' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 trace_ct --stack maybe; grep -q -- '--stack' <<<"$LAST_ERROR" || fail "no flag name"
    expect_exit 2 trace_ct --filters-file "$T/missing.json"; grep -q -- '--filters-file' <<<"$LAST_ERROR" || fail "no flag name"
    echo '[{"src_ip": "10.0.0.1",' >"$T/broken.json"
    expect_exit 2 trace_ct --filters-file "$T/broken.json"
    echo '{"src_ip": "10.0.0.1"}' >"$T/object.json"
    expect_exit 2 trace_ct --filters-file "$T/object.json"
    echo '[{"protocol": "sctp"}]' >"$T/proto.json"
    expect_exit 2 trace_ct --filters-file "$T/proto.json"
    python3 -c 'import json; print(json.dumps([{"dst_port": 1000 + i} for i in range(11)]))' >"$T/eleven.json"
    expect_exit 2 trace_ct --filters-file "$T/eleven.json"; grep -q 'at most 10' <<<"$LAST_ERROR" || fail "$LAST_ERROR"
    expect_exit 2 trace_ct --netns no-such-netns-xyz
}

# OVS ct() in zone 5 with commit and a label (VM kernels with openvswitch).
test_trace_ct_ovs_zone_commit_label() {
    need root cmd:ovs-ofctl cmd:jq cmd:ping module_btf:openvswitch
    ovs_bridge_pair 10.97.0.1 10.97.0.2
    ovs-ofctl del-flows "$BR"
    ovs-ofctl add-flow "$BR" "table=0,priority=10,ip,ct_state=-trk,actions=ct(zone=5,table=1)"
    ovs-ofctl add-flow "$BR" "table=0,priority=0,actions=NORMAL"
    ovs-ofctl add-flow "$BR" "table=1,priority=10,ip,ct_state=+trk+new,actions=ct(commit,zone=5,exec(set_field:0x1->ct_label)),NORMAL"
    ovs-ofctl add-flow "$BR" "table=1,priority=10,ip,ct_state=+trk+est,actions=ct(commit,zone=5),NORMAL"
    wait_ping "$NS1" "$IP2"
    tool_start trace_ct --json --src-ip "$IP1" --dst-ip "$IP2" --protocol icmp
    in1 ping -c 3 -i 0.3 "$IP2" >/dev/null || fail "ping through the ct() flows failed"
    tool_stop 1
    note "ovs_ct_execute via $(grep -o 'ovs_ct_execute via [^,]*' "$TOOL_ERR")"
    assert_json_ge 1 '.probe == "ovs_ct_execute" and .ovs_ct.zone_id == 5 and .ovs_ct.commit == 0'
    assert_json_ge 1 '.probe == "ovs_ct_execute" and .ovs_ct.zone_id == 5 and .ovs_ct.commit == 1 and .skb_ct.zone_id == 5'
    local label=0x00000000000000000000000000000001
    assert_json_ge 1 ".probe == \"ovs_ct_execute\" and .ovs_ct.commit == 1 and .skb_ct.label == \"$label\""
    assert_json_none '.proto != 1'
}

test_trace_ct_ovs_text() {
    need root cmd:ovs-ofctl cmd:ping module_btf:openvswitch
    ovs_bridge_pair 10.97.1.1 10.97.1.2
    ovs-ofctl del-flows "$BR"
    ovs-ofctl add-flow "$BR" "table=0,priority=10,ip,ct_state=-trk,actions=ct(zone=5,table=1)"
    ovs-ofctl add-flow "$BR" "table=0,priority=0,actions=NORMAL"
    ovs-ofctl add-flow "$BR" "table=1,priority=10,ip,actions=ct(commit,zone=5,exec(set_field:0x1->ct_label)),NORMAL"
    wait_ping "$NS1" "$IP2"
    tool_start trace_ct --src-ip "$IP1" --protocol icmp
    in1 ping -c 2 -i 0.3 "$IP2" >/dev/null
    tool_stop 1
    assert_grep '^DATETIME: [0-9-]+ [0-9:.]+ COMM: .{16} FUNC: ovs_ct_execute +DEV: '
    assert_grep '^OVS_CT_INFO: OvsConInfoNFCT:0x[0-9a-f]+ OvsCommit:0 OvsZoneID:5 OvsZoneDir:'
    assert_grep '^OVS_CT_INFO: OvsConInfoNFCT:0x[0-9a-f]+ OvsCommit:1 OvsZoneID:5 '
    assert_grep '^SKB_CT_INFO: CT_STATUS:0x[0-9a-f]+\(NOT_TEMPLATE[A-Z_|]*\) CTINFO:[0-9]\(IP_CT_[A-Z_]+\) NFCT_PTR:0xffff[0-9a-f]+ SKBZoneID:5 SKBZoneDir:\S+ CT_LABEL:0x0{31}1$'
    assert_grep '^  do_execute_actions\+0x'
}
