fn main() {
    shared_build::skeleton("tcp_latency");
}
