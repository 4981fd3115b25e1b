fn main() {
    ovs_userspace_megaflow::run();
}
