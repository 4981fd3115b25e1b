fn main() {
    icmp_tx_latency::run();
}
