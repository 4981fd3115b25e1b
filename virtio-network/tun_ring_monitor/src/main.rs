fn main() {
    tun_ring_monitor::run(tun_ring_monitor::Variant::Monitor);
}
