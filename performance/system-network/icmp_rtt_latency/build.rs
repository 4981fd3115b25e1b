fn main() {
    shared_build::skeleton("icmp_rtt_latency");
}
