fn main() {
    cpu_monitor::run();
}
