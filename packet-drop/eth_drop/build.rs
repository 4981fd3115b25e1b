fn main() {
    shared_build::skeleton("eth_drop");
}
