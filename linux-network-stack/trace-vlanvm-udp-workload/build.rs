fn main() {
    shared_build::skeleton("trace_vlanvm_udp_workload");
}
