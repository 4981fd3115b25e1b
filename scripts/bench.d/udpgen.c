// udpgen: send UDP datagrams to DST:PORT for SECS seconds, at RATE packets/s
// (0 = as fast as possible); print "<sent> <seconds>" at the end. Used by
// scripts/bench for bounded load between two namespaces.
//
//   udpgen DST PORT SECS RATE [SIZE]     UDP payload of SIZE bytes (default 64;
//                                        above the MTU the datagrams are fragmented)
//   udpgen -a IFNAME DST SECS RATE       broadcast ARP requests "who has DST" from
//                                        IFNAME's MAC and IPv4 address instead
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/if_ether.h>
#include <linux/if_packet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

// An ARP request from IFNAME: the socket, destination and frame to send.
static int arp_setup(const char *ifname, const char *dst, struct sockaddr_ll *ll, struct ether_arp *req)
{
	int s = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ARP));
	struct ifreq ifr;
	if (s < 0 || strlen(ifname) >= IFNAMSIZ)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, ifname);
	if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0)
		return -1;
	memset(req, 0, sizeof(*req));
	req->arp_hrd = htons(ARPHRD_ETHER);
	req->arp_pro = htons(ETH_P_IP);
	req->arp_hln = 6;
	req->arp_pln = 4;
	req->arp_op = htons(ARPOP_REQUEST);
	memcpy(req->arp_sha, ifr.ifr_hwaddr.sa_data, 6);
	if (ioctl(s, SIOCGIFADDR, &ifr) < 0)
		return -1;
	memcpy(req->arp_spa, &((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr, 4);
	if (inet_pton(AF_INET, dst, req->arp_tpa) != 1)
		return -1;
	memset(ll, 0, sizeof(*ll));
	ll->sll_family = AF_PACKET;
	ll->sll_protocol = htons(ETH_P_ARP);
	ll->sll_ifindex = if_nametoindex(ifname);
	ll->sll_halen = 6;
	memset(ll->sll_addr, 0xff, 6);
	return ll->sll_ifindex ? s : -1;
}

int main(int argc, char **argv)
{
	int arp = argc > 1 && strcmp(argv[1], "-a") == 0;
	if (argc < (arp ? 6 : 5)) {
		fprintf(stderr, "usage: udpgen DST PORT SECS RATE [SIZE] | udpgen -a IFNAME DST SECS RATE\n");
		return 2;
	}
	char buf[9000];
	const void *msg = buf;
	struct sockaddr_in a = {.sin_family = AF_INET};
	struct sockaddr_ll ll;
	struct ether_arp req;
	const struct sockaddr *to = (const struct sockaddr *)&a;
	socklen_t tolen = sizeof(a);
	double secs, rate;
	int s, size;
	if (arp) {
		s = arp_setup(argv[2], argv[3], &ll, &req);
		secs = atof(argv[4]);
		rate = atof(argv[5]);
		msg = &req;
		size = sizeof(req);
		to = (const struct sockaddr *)&ll;
		tolen = sizeof(ll);
	} else {
		a.sin_port = htons(atoi(argv[2]));
		inet_pton(AF_INET, argv[1], &a.sin_addr);
		secs = atof(argv[3]);
		rate = atof(argv[4]);
		size = argc > 5 ? atoi(argv[5]) : 64;
		memset(buf, 'x', sizeof(buf));
		s = socket(AF_INET, SOCK_DGRAM, 0);
	}
	if (s < 0 || size > (int)sizeof(buf)) {
		perror("udpgen");
		return 1;
	}
	long sent = 0;
	double t0 = now(), end = t0 + secs, t;
	while ((t = now()) < end) {
		if (rate > 0 && sent >= (t - t0) * rate) {
			usleep(50);
			continue;
		}
		if (sendto(s, msg, size, 0, to, tolen) >= 0)
			sent++;
	}
	printf("%ld %.3f\n", sent, now() - t0);
	return 0;
}
