fn main() {
    icmp_rx_latency::run();
}
