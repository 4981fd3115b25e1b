/* sleeper [-n NAPS] [-t MS] [-w]: NAPS times (default: forever) sleep MS ms
 * (default 100) inside nap_here(), then print "naps N" and, with -w, wait
 * for a line on stdin; with -w it also waits for a line before starting.
 * "slept_us N" is the total measured wall time of the naps (CLOCK_MONOTONIC
 * around each one: off-CPU time plus the wait for a CPU after the wake-up).
 * nap_here() makes the nanosleep system call itself (x86-64 inline asm), so
 * the user stack a frame-pointer unwinder sees at the block starts in
 * nap_here even though libc is built without frame pointers. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int ms = 100;

static void __attribute__((noinline)) nap_here(void)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
#if defined(__x86_64__)
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(35 /* nanosleep */), "D"(&ts), "S"(0)
			 : "rcx", "r11", "memory");
#else
	nanosleep(&ts, NULL);
#endif
}

int main(int argc, char **argv)
{
	int naps = -1, c, wait = 0;
	char buf[16];
	while ((c = getopt(argc, argv, "n:t:w")) != -1) {
		if (c == 'n') naps = atoi(optarg);
		else if (c == 't') ms = atoi(optarg);
		else if (c == 'w') wait = 1;
	}
	if (wait && !fgets(buf, sizeof(buf), stdin))
		return 1;
	double slept = 0;
	for (int i = 0; naps < 0 || i < naps; i++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		nap_here();
		clock_gettime(CLOCK_MONOTONIC, &b);
		slept += (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
	}
	printf("slept_us %.0f\n", slept);
	printf("naps %d\n", naps);
	fflush(stdout);
	if (wait && !fgets(buf, sizeof(buf), stdin))
		return 0;
	return 0;
}
