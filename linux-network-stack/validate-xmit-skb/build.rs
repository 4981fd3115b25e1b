fn main() {
    shared_build::skeleton("validate_xmit_skb");
}
