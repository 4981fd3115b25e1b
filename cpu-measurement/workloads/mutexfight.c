/* mutexfight [-n THREADS] [-i ITERS] [-h HOLD_US] [-w]: THREADS threads take
 * one pthread mutex ITERS times each, sleeping HOLD_US inside (default 10 ms),
 * so the others wait in futex(FUTEX_WAIT). Prints "acquisitions N" and
 * "waited N" (acquisitions that took >= 1 ms) at the end. With -w it first
 * waits for a line on stdin (so a tracer can attach before it starts). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static int iters = 50, hold_us = 10000;
static long acquisitions, waited;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void __attribute__((noinline)) hold_lock(void)
{
	acquisitions++;
	usleep(hold_us);
	pthread_mutex_unlock(&m);
}

static void __attribute__((noinline)) want_lock(void)
{
	double t0 = now_us();
	pthread_mutex_lock(&m);
	if (now_us() - t0 >= 1000)
		waited++;
	hold_lock();
}

static void *worker(void *arg)
{
	for (int i = 0; i < iters; i++) {
		want_lock();
		usleep(100);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int n = 2, c, wait = 0;
	while ((c = getopt(argc, argv, "n:i:h:w")) != -1) {
		if (c == 'n') n = atoi(optarg);
		else if (c == 'i') iters = atoi(optarg);
		else if (c == 'h') hold_us = atoi(optarg);
		else if (c == 'w') wait = 1;
	}
	if (wait) {
		char buf[16];
		if (!fgets(buf, sizeof(buf), stdin))
			return 1;
	}
	pthread_t t[64];
	for (int i = 0; i < n && i < 64; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	for (int i = 0; i < n && i < 64; i++)
		pthread_join(t[i], NULL);
	printf("acquisitions %ld\nwaited %ld\n", acquisitions, waited);
	fflush(stdout);
	return 0;
}
