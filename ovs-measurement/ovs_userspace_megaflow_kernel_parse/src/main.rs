fn main() {
    ovs_userspace_megaflow_kernel_parse::run();
}
