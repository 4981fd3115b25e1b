fn main() {
    sched_latency_monitor::run();
}
