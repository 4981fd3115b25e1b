fn main() {
    shared_build::skeleton("ovs_kernel_module_drop_monitor");
}
