fn main() {
    shared_build::skeleton("ovs_userspace_megaflow");
}
