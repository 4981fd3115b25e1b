fn main() {
    shared_build::skeleton("vpc_vm_udp_datapath");
}
