fn main() {
    vm_pair_latency::run(vm_pair_latency::Variant::Single);
}
