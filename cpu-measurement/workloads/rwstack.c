/* rwstack: thread "rw-a" calls writer_a() -> lock_it() -> pthread_rwlock_wrlock
 * A times (default 1000), thread "rw-b" calls writer_b() -> lock_it() B times
 * (default 3000). Waits for a line on stdin before starting (so the tracer can
 * attach first) and for another one before exiting (so its maps can be read). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static int na = 1000, nb = 3000;

static void __attribute__((noinline)) lock_it(void)
{
	pthread_rwlock_wrlock(&lock);
	pthread_rwlock_unlock(&lock);
}

static void __attribute__((noinline)) writer_a(void)
{
	for (int i = 0; i < na; i++)
		lock_it();
}

static void __attribute__((noinline)) writer_b(void)
{
	for (int i = 0; i < nb; i++)
		lock_it();
}

static void *ta(void *x) { pthread_setname_np(pthread_self(), "rw-a"); writer_a(); return NULL; }
static void *tb(void *x) { pthread_setname_np(pthread_self(), "rw-b"); writer_b(); return NULL; }

int main(int argc, char **argv)
{
	char buf[16];
	if (argc > 2) { na = atoi(argv[1]); nb = atoi(argv[2]); }
	if (!fgets(buf, sizeof(buf), stdin))
		return 1;
	pthread_t a, b;
	pthread_create(&a, NULL, ta, NULL);
	pthread_create(&b, NULL, tb, NULL);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	printf("done %d %d\n", na, nb);
	fflush(stdout);
	if (!fgets(buf, sizeof(buf), stdin))
		return 0;
	return 0;
}
