fn main() {
    shared_build::skeleton("sch_direct_xmit");
}
