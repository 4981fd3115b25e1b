fn main() {
    shared_build::skeleton("pthread_rwlock_wrlock_stack");
}
