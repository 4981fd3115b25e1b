//! Port of tun-vhost.bt on the tun_ring_monitor BPF object: one line per skb sent
//! to a tap with its ptr_ring state, `--full-only`, `--interval` summaries.
fn main() {
    tun_ring_monitor::run(tun_ring_monitor::Variant::TunVhost);
}
