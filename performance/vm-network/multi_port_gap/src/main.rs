//! Same tracer as `vm_pair_gap` (one BPF object), with the original multi_port_gap flags.
fn main() {
    vm_pair_gap::run(vm_pair_gap::Variant::MultiPortGap);
}
