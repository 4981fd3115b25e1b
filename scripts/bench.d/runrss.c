// runrss OUTFILE CMD [ARG...]: run CMD, pass SIGINT/SIGTERM on to it, and at
// its end write "<peak RSS kB> <exit status>" to OUTFILE (wait4's ru_maxrss).
// scripts/bench starts every tool through it: a process forked straight from
// Python inherits Python's memory high-water mark (ru_maxrss survives exec),
// a child of this small program starts from a few hundred kB.
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t child;

static void forward(int sig)
{
	if (child > 0)
		kill(child, sig);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: runrss OUTFILE CMD [ARG...]\n");
		return 2;
	}
	struct sigaction sa = {.sa_handler = forward};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	child = fork();
	if (child == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		execvp(argv[2], argv + 2);
		perror(argv[2]);
		_exit(127);
	}
	if (child < 0)
		return 127;
	int status;
	struct rusage ru;
	while (wait4(child, &status, 0, &ru) < 0)
		;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	FILE *f = fopen(argv[1], "w");
	if (f) {
		fprintf(f, "%ld %d\n", ru.ru_maxrss, code);
		fclose(f);
	}
	return code;
}
