# Live tests of the VM CPU binding tools (get_vm_ava_cpu,
# set-process-cpu-mem-affinitity, set-vm-pair-cpu-affinity, binding): fake
# sysfs/cgroup/proc trees and a stub virsh, and one real affinity change on
# test processes read back with taskset.

MAIN_TESTS="get_vm_ava_cpu_fake_tree set_process_affinity_real set_vm_pair_plan binding_exclusive_stub"

source "$ROOT/performance/vm-binding-tools/tests/fakehost.sh"

test_get_vm_ava_cpu_fake_tree() {
    fake_host16 "$T/h"
    # A VM pinned to a range is not exclusive (the original said it was).
    fake_vm "$T/h/cgroup" 'machine-qemu\x2d2\x2dvm2.scope' 4-7
    local args=(--sysfs-root "$T/h/sys" --cgroup-root "$T/h/cgroup")
    "$BIN_DIR/get_vm_ava_cpu" "${args[@]}" >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "exit $?"; }
    TOOL_OUT=$T/out
    assert_grep '^VMs with exclusive CPU binding:$'
    assert_grep '^VM: machine-qemu\\x2d1\\x2dvm1\.scope$'
    assert_grep '^  vcpu0: 2$'
    assert_grep '^  vcpu1: 10$'
    assert_no_grep 'vm2'
    assert_grep '^machine.slice cpus: 1-15$'
    # node0: 1 9 / 3 11 / 8 (0 is not in the slice, 2 and 10 are taken)
    diff <(sed -n '/^NUMA node 0:/,/^NUMA node 1:/p' "$T/out") - <<<$'NUMA node 0:\n  cpu: 1 9\n  cpu: 3 11\n  cpu: 8\nNUMA node 1:' ||
        fail "node 0 groups"
    diff <(sed -n '/^NUMA node 1:/,$p' "$T/out") - <<<$'NUMA node 1:\n  cpu: 4 12\n  cpu: 5 13\n  cpu: 6 14\n  cpu: 7 15' || fail "node 1 groups"
    "$BIN_DIR/get_vm_ava_cpu" --json "${args[@]}" >"$T/js" 2>/dev/null
    TOOL_OUT=$T/js
    assert_json_ge 1 '.free["0"] == [[1,9],[3,11],[8]] and .free["1"] == [[4,12],[5,13],[6,14],[7,15]]'
    assert_json_ge 1 '.exclusive["machine-qemu\\x2d1\\x2dvm1.scope"].vcpu0 == [2] and (.exclusive | length) == 1'
    # No machine.slice: exit 1 with one line.
    expect_exit 1 get_vm_ava_cpu --sysfs-root "$T/h/sys" --cgroup-root "$T/nothing"
}

# Two processes named vhost-4242 and vhost-42421: only the exact name is pinned.
test_set_process_affinity_real() {
    need cmd:taskset
    cp /bin/sleep "$T/vhost-4242" && cp /bin/sleep "$T/vhost-42421"
    "$T/vhost-4242" 60 & local p1=$!
    "$T/vhost-42421" 60 & local p2=$!
    defer "kill $p1 $p2"
    local ncpu cpu before2
    ncpu=$(nproc)
    cpu=$((ncpu - 1))
    before2=$(taskset -p "$p2" | awk '{print $NF}')
    "$BIN_DIR/set-process-cpu-mem-affinitity" -p vhost-4242 -c "$cpu" >"$T/out" 2>"$T/err" || { cat "$T/out" "$T/err"; fail "exit $?"; }
    TOOL_OUT=$T/out
    [[ $(count '^Found process: ') -eq 1 ]] || { show "$T/out"; fail "want exactly one process"; }
    assert_grep "^Found process: $T/vhost-4242 60 \(PID: $p1, TID: $p1, name: vhost-4242\)"
    assert_grep "^pid $p1's new affinity list: $cpu\$"
    [[ $(taskset -pc "$p1" | awk '{print $NF}') == "$cpu" ]] || fail "taskset does not read back CPU $cpu: $(taskset -pc "$p1")"
    [[ $(taskset -p "$p2" | awk '{print $NF}') == "$before2" ]] || fail "vhost-42421 was changed"
    note "pinned $p1 to CPU $cpu (of $ncpu), vhost-42421 kept mask $before2"
    # JSON, and a regular expression that matches both.
    "$BIN_DIR/set-process-cpu-mem-affinitity" --json -E -p 'vhost-4242[0-9]*' -c 0 >"$T/js" 2>/dev/null || fail "-E exit $?"
    TOOL_OUT=$T/js
    assert_json_ge 1 ".pid == $p1 and .new == [0]"
    assert_json_ge 1 ".pid == $p2 and .new == [0] and .comm == \"vhost-42421\""
    [[ $(taskset -p "$p2" | awk '{print $NF}') == 1 ]] || fail "regex did not pin vhost-42421"
    expect_exit 1 set-process-cpu-mem-affinitity -p vhost-no-such-thread -c 0
}

# -g UUID -n NODE on a fake /proc and fake host: dry run names the thread and the node's free CPUs.
test_set_process_dry_run_fake_tree() {
    fake_host16 "$T/h"
    local u=0b1c3d5e-1111-2222-3333-444455556666 p=$T/proc
    mkdir -p "$p/100/task/100" "$p/100/task/101" "$p/1000/task/1000"
    echo qemu-kvm >"$p/100/comm"; echo qemu-kvm >"$p/100/task/100/comm"
    printf 'qemu-system-x86_64\0-name\0guest=%s,debug-threads=on\0' "$u" >"$p/100/cmdline"
    echo vhost-100 >"$p/100/task/101/comm"
    printf 'Name:\tvhost-100\nCpus_allowed_list:\t0-15\n' >"$p/100/task/101/status"
    echo vhost-1000 >"$p/1000/comm"; echo vhost-1000 >"$p/1000/task/1000/comm"
    printf 'Cpus_allowed_list:\t0-15\n' >"$p/1000/task/1000/status"
    local args=(--proc-root "$p" --sysfs-root "$T/h/sys" --cgroup-root "$T/h/cgroup")
    "$BIN_DIR/set-process-cpu-mem-affinitity" -g "$u" -n 1 -m --dry-run "${args[@]}" >"$T/out" 2>"$T/err" || { cat "$T/out" "$T/err"; fail "exit $?"; }
    TOOL_OUT=$T/out
    assert_grep "^Guest $u: QEMU PID 100, thread pattern vhost-100" "$T/err"
    [[ $(count '^Found process: ') -eq 1 ]] || { show "$T/out"; fail "want exactly one thread"; }
    assert_grep '^Found process: qemu-system-x86_64 -name guest=.* \(PID: 100, TID: 101, name: vhost-100\)'
    assert_grep "^pid 101's current affinity list: 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15$"
    assert_grep "^dry run: would set pid 101's affinity list to 4,5,6,7,12,13,14,15 \(mask f0f0\)$"
    assert_grep '^dry run: would migrate memory of PID 100 to node\(s\) \[1\]$'
    # Bad input: exit 2 before anything.
    expect_exit 2 set-process-cpu-mem-affinitity -p x -n 5 "${args[@]}" --dry-run
    expect_exit 2 set-process-cpu-mem-affinitity -p x
    expect_exit 2 set-process-cpu-mem-affinitity -p x -g "$u" -c 0
    expect_exit 2 set-process-cpu-mem-affinitity -p x -c 0-x
    expect_exit 2 set-process-cpu-mem-affinitity -p x -c 0 -n 0
    expect_exit 2 set-process-cpu-mem-affinitity -p x -c 99999
    expect_exit 2 set-process-cpu-mem-affinitity -g not-a-uuid -c 0
    expect_exit 2 set-process-cpu-mem-affinitity -p x -c 0 --proc-root "$p"
}

pairs_file() {
    local n=$1 i
    for ((i = 1; i <= n; i++)); do
        printf '0b1c3d5e-1111-2222-3333-%012d 0b1c3d5e-1111-2222-4444-%012d\n' "$i" "$i"
    done
}

test_set_vm_pair_plan() {
    fake_host32 "$T/h"
    local args=(--sysfs-root "$T/h/sys" --cgroup-root "$T/h/cgroup")
    pairs_file 2 >"$T/pairs.txt"
    "$BIN_DIR/set-vm-pair-cpu-affinity" "$T/pairs.txt" --plan-only --json "${args[@]}" >"$T/js" 2>"$T/err" || { cat "$T/err"; fail "exit $?"; }
    TOOL_OUT=$T/js
    assert_json_ge 1 '.pairs[0].vm1 == {"uuid":"0b1c3d5e-1111-2222-3333-000000000001","node":0,"cpus":[0,16,1,17]} and .pairs[0].vm2.cpus == [8,24,9,25] and .pairs[0].vm2.node == 1'
    assert_json_ge 1 '.pairs[1].vm1.cpus == [2,18,3,19] and .pairs[1].vm2.cpus == [10,26,11,27]'
    assert_json_ge 1 '.remaining["0"] == [4,5,6,7,20,21,22,23] and .remaining["1"] == [12,13,14,15,28,29,30,31]'
    "$BIN_DIR/set-vm-pair-cpu-affinity" "$T/pairs.txt" --same-node --plan-only --json "${args[@]}" >"$T/js2" 2>/dev/null
    TOOL_OUT=$T/js2
    assert_json_ge 1 '.pairs[0].vm1.node == 0 and .pairs[0].vm2.node == 0 and .pairs[0].vm1.cpus == [0,16,1,17] and .pairs[0].vm2.cpus == [2,18,3,19]'
    assert_json_ge 1 '.pairs[1].vm1.node == 1 and .pairs[1].vm2.node == 1 and .pairs[1].vm1.cpus == [8,24,9,25]'
    "$BIN_DIR/set-vm-pair-cpu-affinity" "$T/pairs.txt" --plan-only "${args[@]}" >"$T/out" 2>/dev/null
    TOOL_OUT=$T/out
    assert_grep '^NUMA node 0 available CPUs: 0,1,2,3,4,5,6,7,16,17,18,19,20,21,22,23$'
    assert_grep '^  -> vm1 on node0, vm2 on node1 \(4 CPU each, 2-core preference\)$'
    assert_grep '^CPU allocation plan complete\.$'
    # 5 pairs need 40 CPUs, 32 - 4 are there.
    pairs_file 5 >"$T/five.txt"
    expect_exit 1 set-vm-pair-cpu-affinity "$T/five.txt" --plan-only "${args[@]}"
    grep -q 'Not enough CPU in machine.slice' <<<"$LAST_ERROR" || fail "message: $LAST_ERROR"
    # Bad files: exit 2 naming file:line.
    printf '0b1c3d5e-1111-2222-3333-000000000001 nope\n' >"$T/bad.txt"
    expect_exit 2 set-vm-pair-cpu-affinity "$T/bad.txt" --plan-only "${args[@]}"
    grep -q "bad.txt:1" <<<"$LAST_ERROR" || fail "message: $LAST_ERROR"
    printf '0b1c3d5e-1111-2222-3333-000000000001 0b1c3d5e-1111-2222-3333-000000000001\n' >"$T/dup.txt"
    expect_exit 2 set-vm-pair-cpu-affinity "$T/dup.txt" --plan-only "${args[@]}"
}

# --yes with stub binding / set-process / virsh: the planned calls, and RPS/XPS masks written.
test_set_vm_pair_apply_stubs() {
    fake_host32 "$T/h"
    local q
    for q in rx-0 rx-1 tx-0 tx-1; do
        mkdir -p "$T/h/sys/class/net/vnet1/queues/$q"
        echo 0 >"$T/h/sys/class/net/vnet1/queues/$q/$([[ $q == rx-* ]] && echo rps_cpus || echo xps_cpus)"
    done
    printf '#!/bin/sh\necho "$*" >>%s\n' "$T/binding.log" >"$T/binding-stub"
    printf '#!/bin/sh\necho "$*" >>%s\n' "$T/affinity.log" >"$T/affinity-stub"
    chmod +x "$T/binding-stub" "$T/affinity-stub"
    echo running >"$T/state"
    stub_virsh "$T/virsh" "$T/virsh.log" "$T/state"
    pairs_file 2 >"$T/pairs.txt"
    "$BIN_DIR/set-vm-pair-cpu-affinity" "$T/pairs.txt" --yes --binding-cmd "$T/binding-stub" --affinity-cmd "$T/affinity-stub" \
        --virsh "$T/virsh" --sysfs-root "$T/h/sys" --cgroup-root "$T/h/cgroup" >"$T/out" 2>"$T/err" || { cat "$T/out" "$T/err"; fail "exit $?"; }
    [[ $(grep -c . "$T/binding.log") -eq 4 ]] || { cat "$T/binding.log"; fail "binding not called 4 times"; }
    grep -qx -- '--vm_uuid 0b1c3d5e-1111-2222-3333-000000000001 --cpus 0,16,1,17 --mem_numa_node 0 --cpu_mode exclusive' "$T/binding.log" || { cat "$T/binding.log"; fail "vm1 binding args"; }
    grep -qx -- '--vm_uuid 0b1c3d5e-1111-2222-4444-000000000002 --cpus 10,26,11,27 --mem_numa_node 1 --cpu_mode exclusive' "$T/binding.log" || fail "pair 2 vm2 binding args"
    grep -qx -- '-g 0b1c3d5e-1111-2222-3333-000000000001 -c 4,5,6,7,20,21,22,23' "$T/affinity.log" || { cat "$T/affinity.log"; fail "vhost args"; }
    [[ $(grep -c . "$T/affinity.log") -eq 4 ]] || fail "vhost pinning not called 4 times"
    # Every VM maps to vnet1 in the stub; the last VM (node1) wrote last: 12-15,28-31.
    [[ $(cat "$T/h/sys/class/net/vnet1/queues/rx-0/rps_cpus") == f000f000 ]] || fail "rps_cpus: $(cat "$T/h/sys/class/net/vnet1/queues/rx-0/rps_cpus")"
    [[ $(cat "$T/h/sys/class/net/vnet1/queues/tx-1/xps_cpus") == f000f000 ]] || fail "xps_cpus"
    TOOL_OUT=$T/out
    assert_grep 'rx-0/rps_cpus: Before: 0$'
    assert_grep 'rx-0/rps_cpus: After: 00f000f0$'
    grep -q vnet9 "$T/out" && fail "interface on another bridge was touched"
    true
}

test_binding_exclusive_stub() {
    local u=0b1c3d5e-1111-2222-3333-444455556666
    echo running >"$T/state"
    stub_virsh "$T/virsh" "$T/log" "$T/state"
    "$BIN_DIR/binding" --vm_uuid "$u" --cpus 2,3,18,19 --mem_numa_node 0 --cpu_mode exclusive --virsh "$T/virsh" \
        --log-file "$T/binding.log" >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "exit $?"; }
    local want
    want=$(printf '%s\n' "vcpucount $u --config --maximum" "domstate $u" "shutdown $u" "domstate $u" \
        "numatune $u --nodeset 0 --mode interleave --config" "start $u" "domstate $u" \
        "vcpupin $u 0 2" "vcpupin $u 1 3" "vcpupin $u 2 18" "vcpupin $u 3 19")
    diff <(cat "$T/log") <(echo "$want") || fail "virsh calls differ"
    grep -qE "^\[[0-9a-f-]{36} Step2/5\]:ok: $T/virsh numatune" "$T/err" || { cat "$T/err"; fail "step log"; }
    grep -q 'Step5/5\]:ok: .* vcpupin' "$T/binding.log" || fail "log file"
    # Wrong CPU count: exit 2, the VM is not touched (only the read-only vcpucount).
    : >"$T/log"
    expect_exit 2 binding --vm_uuid "$u" --cpus 2,3,18 --mem_numa_node 0 --virsh "$T/virsh"
    [[ $(cat "$T/log") == "vcpucount $u --config --maximum" ]] || fail "virsh touched the VM: $(cat "$T/log")"
    # Unknown VM: exit 1.
    expect_exit 1 binding --vm_uuid nosuch --cpus 1 --mem_numa_node 0 --virsh "$T/virsh"
    expect_exit 2 binding --vm_uuid "$u" --cpus 1-x --mem_numa_node 0
    expect_exit 2 binding --vm_uuid "$u" --cpus 1 --mem_numa_node 0 --cpu_mode sometimes
    expect_exit 2 binding --cpus 1 --mem_numa_node 0
}

test_binding_non_exclusive_stub() {
    local u=0b1c3d5e-1111-2222-3333-444455556666
    echo "shut off" >"$T/state"
    stub_virsh "$T/virsh" "$T/log" "$T/state"
    "$BIN_DIR/binding" --vm_uuid "$u" --cpus 8-11 --mem_numa_node 1 --cpu_mode non_exclusive --queues 2 --force_shutdown True \
        --virsh "$T/virsh" >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "exit $?"; }
    grep -qx "dumpxml $u --inactive" "$T/log" || { cat "$T/log"; fail "no dumpxml"; }
    grep -q "^define " "$T/log" || fail "no define"
    [[ $(grep -c "queues='2'" "$T/log.defined.xml") -eq 2 ]] || { cat "$T/log.defined.xml"; fail "queues not set on both virtio interfaces"; }
    grep -q "^shutdown\|^destroy" "$T/log" && fail "VM was already off"
    [[ $(grep -c "^vcpupin $u [0-3] 8,9,10,11\$" "$T/log") -eq 4 ]] || { cat "$T/log"; fail "vcpupin to the whole list"; }
    # Dry run changes nothing.
    : >"$T/log"; echo running >"$T/state"
    "$BIN_DIR/binding" --vm_uuid "$u" --cpus 8-11 --mem_numa_node 1 --virsh "$T/virsh" --dry-run >"$T/out" 2>"$T/err" || fail "dry run exit $?"
    grep -q "^start\|^shutdown\|^numatune\|^vcpupin" "$T/log" && { cat "$T/log"; fail "dry run changed the VM"; }
    grep -q "dry run: $T/virsh vcpupin $u 3 11" "$T/err" || { cat "$T/err"; fail "dry run does not show the pinning"; }
}
