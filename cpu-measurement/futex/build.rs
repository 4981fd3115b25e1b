fn main() {
    shared_build::skeleton("futex");
}
