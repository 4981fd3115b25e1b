fn main() {
    ovs_upcall_execute::run();
}
