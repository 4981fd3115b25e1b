fn main() {
    futex::run();
}
