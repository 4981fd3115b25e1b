fn main() {
    tcp_latency::run();
}
