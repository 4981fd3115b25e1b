fn main() {
    shared_build::skeleton("ovs_clone_execute_summary");
}
