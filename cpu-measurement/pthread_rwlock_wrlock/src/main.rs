fn main() {
    pthread_rwlock_wrlock::run();
}
