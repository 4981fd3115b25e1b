fn main() {
    shared_build::skeleton("trace_offloading_segment");
}
