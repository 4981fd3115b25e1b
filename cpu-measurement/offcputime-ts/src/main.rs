fn main() {
    offcputime_ts::run();
}
