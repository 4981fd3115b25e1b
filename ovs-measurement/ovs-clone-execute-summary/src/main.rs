fn main() {
    ovs_clone_execute_summary::run();
}
