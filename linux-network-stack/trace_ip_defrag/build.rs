fn main() {
    shared_build::skeleton("trace_ip_defrag");
}
