//! Same tracer as `vm_pair_latency` (one BPF object), with the original multi_vm_pair_latency flags.
fn main() {
    vm_pair_latency::run(vm_pair_latency::Variant::Multi);
}
