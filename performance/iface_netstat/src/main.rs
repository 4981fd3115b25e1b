fn main() {
    iface_netstat::run();
}
