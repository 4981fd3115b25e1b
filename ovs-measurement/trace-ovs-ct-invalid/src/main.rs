fn main() {
    trace_ovs_ct_invalid::run();
}
