fn main() {
    eth_drop::run();
}
