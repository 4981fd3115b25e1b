fn main() {
    shared_build::skeleton("vm_pair_latency");
}
