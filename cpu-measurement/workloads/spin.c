/* spin [-s SECS] [-n THREADS]: THREADS threads (default 1, the main thread
 * included) burn a CPU in spin_here() for SECS seconds (default: forever);
 * SIGALRM's default action ends the process. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static void __attribute__((noinline)) spin_here(void)
{
	for (;;)
		__asm__ volatile("");
}

static void *burn(void *x)
{
	spin_here();
	return NULL;
}

int main(int argc, char **argv)
{
	int n = 1, secs = 0, c;
	while ((c = getopt(argc, argv, "s:n:")) != -1) {
		if (c == 's') secs = atoi(optarg);
		else if (c == 'n') n = atoi(optarg);
	}
	if (secs > 0)
		alarm(secs);
	pthread_t t;
	for (int i = 1; i < n; i++)
		pthread_create(&t, NULL, burn, NULL);
	spin_here();
	return 0;
}
