fn main() {
    shared_build::skeleton("tracepoint_qdisc_dequeue");
}
