fn main() {
    shared_build::skeleton("tun_ring_monitor");
}
