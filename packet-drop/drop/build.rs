fn main() {
    shared_build::skeleton("drop");
}
