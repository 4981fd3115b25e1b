fn main() {
    pthread_rwlock_wrlock_stack::run();
}
