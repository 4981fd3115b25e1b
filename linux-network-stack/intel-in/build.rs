fn main() {
    shared_build::skeleton("intel_in");
}
