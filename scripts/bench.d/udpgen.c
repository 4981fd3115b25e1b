// udpgen: send UDP datagrams to DST:PORT for SECS seconds, at RATE packets/s
// (0 = as fast as possible); print "<sent> <seconds>" at the end. Used by
// scripts/bench for bounded load between two namespaces.
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: udpgen DST PORT SECS RATE [SIZE]\n");
		return 2;
	}
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	inet_pton(AF_INET, argv[1], &a.sin_addr);
	double secs = atof(argv[3]), rate = atof(argv[4]);
	int size = argc > 5 ? atoi(argv[5]) : 64;
	char buf[9000];
	memset(buf, 'x', sizeof(buf));
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0 || size > (int)sizeof(buf))
		return 1;
	long sent = 0;
	double t0 = now(), end = t0 + secs, t;
	while ((t = now()) < end) {
		if (rate > 0 && sent >= (t - t0) * rate) {
			usleep(50);
			continue;
		}
		if (sendto(s, buf, size, 0, (struct sockaddr *)&a, sizeof(a)) >= 0)
			sent++;
	}
	printf("%ld %.3f\n", sent, now() - t0);
	return 0;
}
