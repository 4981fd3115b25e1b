fn main() {
    trace_ct::run(trace_ct::Variant::TraceCt);
}
