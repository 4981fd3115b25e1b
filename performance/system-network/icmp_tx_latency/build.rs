fn main() {
    shared_build::skeleton("icmp_tx_latency");
}
