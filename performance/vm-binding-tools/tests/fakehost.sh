# Fake libvirt host trees for the binding tools (sourced by live.sh; also
# used to (re)generate fixture/ for the conformance check).

# fake_sys DIR NCPU NODE0 NODE1 SIBLING_OFFSET ONLINE: sysfs with two NUMA nodes
# and HT siblings (n, n+SIBLING_OFFSET).
fake_sys() {
    local d=$1 n=$2 n0=$3 n1=$4 off=$5 c s
    mkdir -p "$d/devices/system/node/node0" "$d/devices/system/node/node1"
    echo "$n0" >"$d/devices/system/node/node0/cpulist"
    echo "$n1" >"$d/devices/system/node/node1/cpulist"
    mkdir -p "$d/devices/system/cpu"
    echo "0-$((n - 1))" >"$d/devices/system/cpu/online"
    for ((c = 0; c < n; c++)); do
        mkdir -p "$d/devices/system/cpu/cpu$c/topology"
        if ((c < off)); then s="$c,$((c + off))"; else s="$((c - off)),$c"; fi
        echo "$s" >"$d/devices/system/cpu/cpu$c/topology/thread_siblings_list"
    done
}

# fake_vm CGROUP SCOPE CPUSET...: a VM scope with one vcpuN dir per cpuset.
fake_vm() {
    local cg=$1 scope=$2 i=0
    shift 2
    for cs in "$@"; do
        mkdir -p "$cg/cpuset/machine.slice/$scope/vcpu$i"
        echo "$cs" >"$cg/cpuset/machine.slice/$scope/vcpu$i/cpuset.cpus"
        i=$((i + 1))
    done
}

# The spec's 16-CPU host: node0 0-3,8-11, node1 4-7,12-15, siblings n/n+8,
# machine.slice 1-15, VM "vm1" with vcpu0=2 vcpu1=10.
fake_host16() {
    local root=$1
    fake_sys "$root/sys" 16 0-3,8-11 4-7,12-15 8
    mkdir -p "$root/cgroup/cpuset/machine.slice"
    echo 1-15 >"$root/cgroup/cpuset/machine.slice/cpuset.cpus"
    fake_vm "$root/cgroup" 'machine-qemu\x2d1\x2dvm1.scope' 2 10
}

# The spec's 32-CPU host: node0 0-7,16-23, node1 8-15,24-31, siblings n/n+16, slice 0-31.
fake_host32() {
    local root=$1
    fake_sys "$root/sys" 32 0-7,16-23 8-15,24-31 16
    mkdir -p "$root/cgroup/cpuset/machine.slice"
    echo 0-31 >"$root/cgroup/cpuset/machine.slice/cpuset.cpus"
}

# stub_virsh FILE LOG STATE: a virsh that records its arguments in LOG and
# plays a domain with 4 vCPUs whose state is in STATE; dumpxml shows tap vnet1
# on bridge vpcbr.
stub_virsh() {
    local f=$1 log=$2 state=$3
    cat >"$f" <<STUB
#!/bin/bash
echo "\$*" >>"$log"
case \$1 in
  vcpucount) [[ \$2 == nosuch ]] && { echo "error: failed to get domain" >&2; exit 1; }; echo \${STUB_VCPUS:-4} ;;
  domstate) cat "$state" ;;
  shutdown|destroy) echo "shut off" >"$state" ;;
  start) echo running >"$state" ;;
  dumpxml) cat <<XML
<domain type='kvm'>
  <uuid>\$2</uuid>
  <devices>
    <interface type='bridge'>
      <source bridge='vpcbr'/>
      <target dev='vnet1'/>
      <model type='virtio'/>
    </interface>
    <interface type='bridge'>
      <source bridge='other'/>
      <target dev='vnet9'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
XML
  ;;
  define) cp "\$2" "$log.defined.xml" ;;
esac
exit 0
STUB
    chmod +x "$f"
}
