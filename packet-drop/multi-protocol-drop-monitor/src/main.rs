//! Same tracer as `drop` (one BPF object, see packet-drop/drop), with the
//! original's defaults: every matching drop is printed, VLAN ids come from the
//! accelerated tag or an in-frame 802.1Q header, IP line in its own order.
fn main() {
    drop::run(drop::Variant::MultiProtocol);
}
