fn main() {
    ovs_kernel_module_drop_monitor::run();
}
