fn main() {
    vm_pair_gap::run(vm_pair_gap::Variant::VmPairGap);
}
