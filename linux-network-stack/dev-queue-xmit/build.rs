fn main() {
    shared_build::skeleton("dev_queue_xmit");
}
