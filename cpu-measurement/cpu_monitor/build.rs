fn main() {
    shared_build::skeleton("cpu_monitor");
}
