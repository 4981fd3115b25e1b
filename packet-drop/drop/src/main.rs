fn main() {
    drop::run(drop::Variant::Drop);
}
