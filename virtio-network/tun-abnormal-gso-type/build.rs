fn main() {
    shared_build::skeleton("tun_abnormal_gso_type");
}
