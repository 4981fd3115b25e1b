fn main() {
    shared_build::skeleton("vm_latency");
}
