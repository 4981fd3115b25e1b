fn main() {
    shared_build::skeleton("trace_ovs_ct_invalid");
}
