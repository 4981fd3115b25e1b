//! trace_ct_multi_conn: the BPF object and code of trace_ct, one-line output.
fn main() {
    trace_ct::run(trace_ct::Variant::MultiConn);
}
