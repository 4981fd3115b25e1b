fn main() {
    shared_build::skeleton("sched_latency_monitor");
}
