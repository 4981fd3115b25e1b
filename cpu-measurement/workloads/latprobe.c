/* latprobe [-s SECS] [-H HOGS] [-W WORKERS]: the main thread loops
 * nanosleep(1 ms) + 20 us of spinning (each loop is one wake-up -> run);
 * HOGS threads named "hog" spin for SECS; WORKERS extra threads named
 * "lp-worker" do what the main thread does. Runs SECS seconds (default:
 * forever), then prints "loops N" (main thread iterations) and exits. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double secs = 0;
static double t_end;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int done(void) { return secs > 0 && now_s() >= t_end; }

static long probe_loop(void)
{
	struct timespec ms = { 0, 1000000 };
	long n = 0;
	while (!done()) {
		nanosleep(&ms, NULL);
		double t = now_s();
		while (now_s() - t < 20e-6)
			;
		n++;
	}
	return n;
}

static void *hog(void *x)
{
	pthread_setname_np(pthread_self(), "hog");
	while (!done())
		for (volatile int i = 0; i < 100000; i++)
			;
	return NULL;
}

static void *worker(void *x)
{
	pthread_setname_np(pthread_self(), "lp-worker");
	probe_loop();
	return NULL;
}

int main(int argc, char **argv)
{
	int hogs = 0, workers = 0, c;
	while ((c = getopt(argc, argv, "s:H:W:")) != -1) {
		if (c == 's') secs = atof(optarg);
		else if (c == 'H') hogs = atoi(optarg);
		else if (c == 'W') workers = atoi(optarg);
	}
	t_end = now_s() + secs;
	pthread_t t[64];
	int n = 0;
	for (int i = 0; i < hogs && n < 64; i++)
		pthread_create(&t[n++], NULL, hog, NULL);
	for (int i = 0; i < workers && n < 64; i++)
		pthread_create(&t[n++], NULL, worker, NULL);
	long loops = probe_loop();
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	printf("loops %ld\n", loops);
	fflush(stdout);
	return 0;
}
