/* rwfight -n THREADS -i ITERS -h HOLD_US [-g GAP_US] [-w]: each thread loops
 * pthread_rwlock_wrlock; busy-wait HOLD_US; unlock; usleep(GAP_US). Prints
 * "wrlock calls N" (the total number of pthread_rwlock_wrlock calls) and,
 * per thread, how many calls waited >= 512 us ("slow N"). With -w it first
 * waits for a line on stdin (so a tracer can attach before it starts). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static int iters = 500, hold_us = 1000, gap_us = 100;
static long calls, slow;
static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void *worker(void *arg)
{
	long my_slow = 0;
	for (int i = 0; i < iters; i++) {
		double t0 = now_us();
		pthread_rwlock_wrlock(&lock);
		double t1 = now_us();
		if (t1 - t0 >= 512)
			my_slow++;
		while (now_us() - t1 < hold_us)
			;
		pthread_rwlock_unlock(&lock);
		if (gap_us)
			usleep(gap_us);
	}
	pthread_mutex_lock(&cm);
	calls += iters;
	slow += my_slow;
	pthread_mutex_unlock(&cm);
	return NULL;
}

int main(int argc, char **argv)
{
	int n = 4, c, wait = 0;
	while ((c = getopt(argc, argv, "n:i:h:g:w")) != -1) {
		if (c == 'n') n = atoi(optarg);
		else if (c == 'i') iters = atoi(optarg);
		else if (c == 'h') hold_us = atoi(optarg);
		else if (c == 'g') gap_us = atoi(optarg);
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
	printf("wrlock calls %ld\nslow %ld\n", calls, slow);
	fflush(stdout);
	return 0;
}
