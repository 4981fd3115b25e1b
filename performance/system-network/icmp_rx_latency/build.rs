fn main() {
    shared_build::skeleton("icmp_rx_latency");
}
