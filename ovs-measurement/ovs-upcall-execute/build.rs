fn main() {
    shared_build::skeleton("ovs_upcall_execute");
}
