// tapsink IFNAME: create tap device IFNAME (not persistent: it goes when this
// process ends), print "ready", then read and discard every frame the host
// sends to it, as a VM's virtio-net would. scripts/bench puts the tap on its
// bridge so that the tun/tap tools see real tun_net_xmit traffic.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2 || strlen(argv[1]) >= IFNAMSIZ) {
		fprintf(stderr, "usage: tapsink IFNAME\n");
		return 2;
	}
	int fd = open("/dev/net/tun", O_RDWR);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	strcpy(ifr.ifr_name, argv[1]);
	if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0) {
		perror("tapsink");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	char buf[65536];
	for (;;)
		if (read(fd, buf, sizeof(buf)) < 0)
			return 0;
}
