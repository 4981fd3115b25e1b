// cpuload MODE SECS: a bounded CPU-side load for scripts/bench's CPU tools.
// Waits for a line on stdin first (so a tool given this PID can attach before
// the clock starts), runs SECS seconds, prints "<operations> <seconds>".
//
//   pingpong  two threads hand a token back and forth through futex
//             WAIT/WAKE: every operation is two futex calls, two wake-ups and
//             two context switches (pin the process to one CPU to keep it so)
//   rwlock    two threads take and release one pthread_rwlock for writing,
//             ~1 us of work inside: every operation is one
//             pthread_rwlock_wrlock call; contended calls wait in futex
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double secs;
static atomic_int stop;
static atomic_int token;
static long ops[2];
static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void fwait(atomic_int *p, int v)
{
	syscall(SYS_futex, p, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

static void fwake(atomic_int *p)
{
	syscall(SYS_futex, p, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

// Thread `me` (0 or 1) waits until token == me, then passes it on.
static void *pingpong(void *arg)
{
	int me = (int)(long)arg;
	while (!atomic_load(&stop)) {
		int v = atomic_load(&token);
		if (v != me) {
			fwait(&token, v);
			continue;
		}
		atomic_store(&token, !me);
		fwake(&token);
		ops[me]++;
	}
	atomic_store(&token, !me);
	fwake(&token);
	return NULL;
}

static void __attribute__((noinline)) work(void)
{
	for (volatile int i = 0; i < 300; i++)
		;
}

static void *rwlock(void *arg)
{
	int me = (int)(long)arg;
	while (!atomic_load(&stop)) {
		pthread_rwlock_wrlock(&lock);
		work();
		pthread_rwlock_unlock(&lock);
		ops[me]++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3 || (strcmp(argv[1], "pingpong") && strcmp(argv[1], "rwlock"))) {
		fprintf(stderr, "usage: cpuload pingpong|rwlock SECS\n");
		return 2;
	}
	void *(*fn)(void *) = strcmp(argv[1], "pingpong") ? rwlock : pingpong;
	secs = atof(argv[2]);
	char line[64];
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	pthread_t t[2];
	double t0 = now();
	for (long i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, fn, (void *)i);
	usleep((useconds_t)(secs * 1e6));
	atomic_store(&stop, 1);
	fwake(&token);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	long n = fn == pingpong ? ops[0] : ops[0] + ops[1];
	printf("%ld %.3f\n", n, now() - t0);
	return 0;
}
