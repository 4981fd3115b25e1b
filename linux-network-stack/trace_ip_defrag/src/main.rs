fn main() {
    trace_ip_defrag::run();
}
