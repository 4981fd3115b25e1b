fn main() {
    icmp_rtt_latency::run();
}
