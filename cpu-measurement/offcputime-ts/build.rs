fn main() {
    shared_build::skeleton("offcputime_ts");
}
