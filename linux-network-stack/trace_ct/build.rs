fn main() {
    shared_build::skeleton("trace_ct");
}
