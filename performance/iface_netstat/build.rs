fn main() {
    shared_build::skeleton("iface_netstat");
}
