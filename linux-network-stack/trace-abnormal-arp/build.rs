fn main() {
    shared_build::skeleton("trace_abnormal_arp");
}
