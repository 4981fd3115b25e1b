/* tapguest: plays a VM guest on a tap device for the live tests (no QEMU).
 * Opens /dev/net/tun (IFF_TAP|IFF_NO_PI) for IFNAME, prints "ready" once the
 * device exists, then reads frames: answers ARP requests for its IP and ICMP
 * echo requests to it; with -u, SIGHUP starts a burst of UDP datagrams (the
 * peer's MAC comes from -P or is learned by ARP). SIGUSR1 stops
 * reading (the tap's ptr_ring then fills and tun drops: FULL_RING), SIGUSR2
 * resumes. Ends after -t seconds (default 60) or on SIGTERM.
 *
 * -V serves the tap through /dev/vhost-net like QEMU does: the helper owns
 * the guest memory and both virtqueues; vhost's worker thread moves packets
 * between the tap and the rings (tun_recvmsg/tun_sendmsg), so the host sees
 * the real vhost path. RX buffers are reposted only while reading.
 *
 * -O opens the tap with IFF_VNET_HDR and TSO offloads (TUNSETOFFLOAD), like
 * QEMU for a virtio-net guest with TSO: the host may hand it GSO skbs. -g N
 * makes the -u burst TCP segments of N payload bytes sent as one GSO frame
 * (virtio_net_hdr gso_type TCPV4, gso_size 1448), as a guest with TSO does.
 *
 *   tapguest -i IF -a IP [-m MAC] [-n] [-t SECS] [-V] [-O] [-g N] [-u DSTIP:DPORT:SPORT:COUNT:MS [-P PEERMAC]]
 * Build: gcc -O2 -o tapguest tapguest.c */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/vhost.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t reading = 1, stop, go;
static void on_hup(int s) { (void)s; go = 1; }
static int have_peer;
static void on_usr1(int s) { (void)s; reading = 0; }
static void on_usr2(int s) { (void)s; reading = 1; }
static void on_term(int s) { (void)s; stop = 1; }

static unsigned char my_mac[6] = {0x02, 0, 0, 0, 0, 0x05}, peer_mac[6];
static uint32_t my_ip;
static int tap = -1;
static int vnet_hdr; /* plain mode with IFF_VNET_HDR: 10-byte header before each frame */
static int gso_payload;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static uint16_t csum(const void *p, int n, uint32_t s)
{
	const uint16_t *w = p;
	for (; n > 1; n -= 2)
		s += *w++;
	if (n)
		s += *(const uint8_t *)w;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return ~s;
}

static int parse_mac(const char *s, unsigned char *m)
{
	return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) == 6 ? 0 : -1;
}

/* ---- frame handling (shared by both modes) ---- */

/* Build the reply to frame f (len n) into r; returns its length or 0. */
static int reply(const unsigned char *f, int n, unsigned char *r)
{
	if (n < 42)
		return 0;
	uint16_t et = f[12] << 8 | f[13];
	if (et == 0x0806 && f[21] == 2 && !memcmp(f + 38, &my_ip, 4)) { /* ARP reply to us: the peer */
		memcpy(peer_mac, f + 22, 6);
		have_peer = 1;
		return 0;
	}
	if (et == 0x0806 && f[21] == 1 && !memcmp(f + 38, &my_ip, 4)) { /* ARP request for us */
		memcpy(r, f + 6, 6);
		memcpy(r + 6, my_mac, 6);
		memcpy(r + 12, f + 12, 8);
		r[21] = 2;
		memcpy(r + 22, my_mac, 6);
		memcpy(r + 28, &my_ip, 4);
		memcpy(r + 32, f + 22, 10);
		return 42;
	}
	if (et == 0x0800 && f[23] == 1 && !memcmp(f + 30, &my_ip, 4)) { /* IPv4 ICMP to us */
		int ihl = (f[14] & 0xf) * 4;
		if (n < 14 + ihl + 8 || f[14 + ihl] != 8)
			return 0;
		memcpy(r, f, n);
		memcpy(r, f + 6, 6);
		memcpy(r + 6, my_mac, 6);
		memcpy(r + 26, f + 30, 4);
		memcpy(r + 30, f + 26, 4);
		r[14 + ihl] = 0;
		r[14 + ihl + 2] = r[14 + ihl + 3] = 0;
		uint16_t c = csum(r + 14 + ihl, n - 14 - ihl, 0);
		memcpy(r + 14 + ihl + 2, &c, 2);
		return n;
	}
	return 0;
}

static int udp_frame(unsigned char *b, uint32_t dst, uint16_t dport, uint16_t sport, uint16_t id)
{
	int plen = 32, ulen = 8 + plen, tot = 20 + ulen;
	memset(b, 0, 14 + tot);
	memcpy(b, peer_mac, 6);
	memcpy(b + 6, my_mac, 6);
	b[12] = 0x08;
	unsigned char *ip = b + 14;
	ip[0] = 0x45;
	ip[2] = tot >> 8; ip[3] = tot;
	ip[4] = id >> 8; ip[5] = id;
	ip[8] = 64; ip[9] = 17;
	memcpy(ip + 12, &my_ip, 4);
	memcpy(ip + 16, &dst, 4);
	uint16_t c = csum(ip, 20, 0);
	memcpy(ip + 10, &c, 2);
	unsigned char *u = ip + 20;
	u[0] = sport >> 8; u[1] = sport; u[2] = dport >> 8; u[3] = dport;
	u[4] = ulen >> 8; u[5] = ulen;
	memset(u + 8, 'x', plen);
	return 14 + tot;
}

/* A TCP segment of gso_payload bytes (ACK|PSH) from us to dst; *gso set when
 * it needs segmentation. */
static int tcp_frame(unsigned char *b, uint32_t dst, uint16_t dport, uint16_t sport, uint32_t seq, uint16_t id)
{
	int plen = gso_payload, tot = 20 + 20 + plen;
	memset(b, 0, 14 + 40);
	memcpy(b, peer_mac, 6);
	memcpy(b + 6, my_mac, 6);
	b[12] = 0x08;
	unsigned char *ip = b + 14;
	ip[0] = 0x45;
	ip[2] = tot >> 8; ip[3] = tot;
	ip[4] = id >> 8; ip[5] = id;
	ip[6] = 0x40; /* DF */
	ip[8] = 64; ip[9] = 6;
	memcpy(ip + 12, &my_ip, 4);
	memcpy(ip + 16, &dst, 4);
	uint16_t c = csum(ip, 20, 0);
	memcpy(ip + 10, &c, 2);
	unsigned char *t = ip + 20;
	t[0] = sport >> 8; t[1] = sport; t[2] = dport >> 8; t[3] = dport;
	t[4] = seq >> 24; t[5] = seq >> 16; t[6] = seq >> 8; t[7] = seq;
	t[12] = 5 << 4; t[13] = 0x18; t[14] = 0xff; t[15] = 0xff;
	memset(t + 20, 'x', plen);
	/* partial checksum: the pseudo-header sum, completed by the stack (NEEDS_CSUM) */
	uint32_t ps = 0;
	const uint16_t *w = (const uint16_t *)(ip + 12);
	for (int i = 0; i < 4; i++)
		ps += w[i];
	ps += htons(6) + htons(20 + plen);
	while (ps >> 16)
		ps = (ps & 0xffff) + (ps >> 16);
	uint16_t p16 = ps;
	memcpy(t + 16, &p16, 2);
	return 14 + tot;
}

static void gso_hdr(struct virtio_net_hdr *h, int n)
{
	memset(h, 0, sizeof(*h));
	if (!gso_payload)
		return;
	h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h->csum_start = 14 + 20;
	h->csum_offset = 16;
	h->hdr_len = 14 + 40;
	if (n > 14 + 40 + 1448) {
		h->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
		h->gso_size = 1448;
	}
}

struct udp_job {
	uint32_t dst;
	int dport, sport, count, ms, sent, active;
	double next;
} job;

static int arp_request(unsigned char *b, uint32_t dst)
{
	memset(b, 0, 42);
	memset(b, 0xff, 6);
	memcpy(b + 6, my_mac, 6);
	b[12] = 0x08; b[13] = 0x06;
	b[15] = 1; b[16] = 0x08; b[18] = 6; b[19] = 4; b[21] = 1;
	memcpy(b + 22, my_mac, 6);
	memcpy(b + 28, &my_ip, 4);
	memcpy(b + 38, &dst, 4);
	return 42;
}

/* ---- vhost-net mode ---- */

#define QSZ 16
#define BUFSZ 4096
#define HDR sizeof(struct virtio_net_hdr)

struct vq {
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	unsigned char *bufs;
	uint16_t avail_idx, last_used;
	int kick, call;
};
static struct vq rxq, txq;
static int vh = -1;

static void vq_init(struct vq *q, unsigned char *mem)
{
	q->desc = (void *)mem;
	q->avail = (void *)(mem + 4096);
	q->used = (void *)(mem + 8192);
	q->bufs = mem + 16384;
	q->kick = eventfd(0, EFD_NONBLOCK);
	q->call = eventfd(0, EFD_NONBLOCK);
	for (int i = 0; i < QSZ; i++) {
		q->desc[i].addr = (uint64_t)(uintptr_t)(q->bufs + i * BUFSZ);
		q->desc[i].len = BUFSZ;
	}
}

static void vq_setup(int idx, struct vq *q)
{
	struct vhost_vring_state num = {idx, QSZ}, base = {idx, 0};
	struct vhost_vring_addr addr = {.index = idx,
		.desc_user_addr = (uint64_t)(uintptr_t)q->desc,
		.avail_user_addr = (uint64_t)(uintptr_t)q->avail,
		.used_user_addr = (uint64_t)(uintptr_t)q->used};
	struct vhost_vring_file kick = {idx, q->kick}, call = {idx, q->call}, be = {idx, tap};
	if (ioctl(vh, VHOST_SET_VRING_NUM, &num) || ioctl(vh, VHOST_SET_VRING_BASE, &base) ||
	    ioctl(vh, VHOST_SET_VRING_ADDR, &addr) || ioctl(vh, VHOST_SET_VRING_KICK, &kick) ||
	    ioctl(vh, VHOST_SET_VRING_CALL, &call) || ioctl(vh, VHOST_NET_SET_BACKEND, &be)) {
		perror("vhost vring setup");
		exit(1);
	}
}

static void kick(struct vq *q)
{
	uint64_t one = 1;
	if (write(q->kick, &one, 8) < 0)
		perror("kick");
}

/* Post descriptor d to the avail ring (RX: writable buffer, TX: a frame). */
static void post(struct vq *q, int d, int len, int writable)
{
	q->desc[d].len = len;
	q->desc[d].flags = writable ? VRING_DESC_F_WRITE : 0;
	q->avail->ring[q->avail_idx % QSZ] = d;
	__atomic_store_n(&q->avail->idx, ++q->avail_idx, __ATOMIC_RELEASE);
}

static int vhost_init(void)
{
	size_t sz = 2 * (16384 + QSZ * BUFSZ);
	unsigned char *mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (mem == MAP_FAILED)
		return -1;
	memset(mem, 0, sz);
	vh = open("/dev/vhost-net", O_RDWR);
	if (vh < 0) {
		perror("/dev/vhost-net");
		exit(77);
	}
	uint64_t features = 0;
	if (ioctl(vh, VHOST_SET_OWNER) || ioctl(vh, VHOST_SET_FEATURES, &features)) {
		perror("vhost owner/features");
		exit(1);
	}
	struct vhost_memory *m = calloc(1, sizeof(*m) + sizeof(struct vhost_memory_region));
	m->nregions = 1;
	m->regions[0].guest_phys_addr = (uint64_t)(uintptr_t)mem;
	m->regions[0].memory_size = sz;
	m->regions[0].userspace_addr = (uint64_t)(uintptr_t)mem;
	if (ioctl(vh, VHOST_SET_MEM_TABLE, m)) {
		perror("VHOST_SET_MEM_TABLE");
		exit(1);
	}
	vq_init(&rxq, mem);
	vq_init(&txq, mem + sz / 2);
	vq_setup(0, &rxq);
	vq_setup(1, &txq);
	for (int i = 0; i < QSZ; i++)
		post(&rxq, i, BUFSZ, 1);
	kick(&rxq);
	return 0;
}

static int tx_next;
static void vhost_send(const unsigned char *f, int n)
{
	/* reclaim sent descriptors first */
	while (txq.last_used != __atomic_load_n(&txq.used->idx, __ATOMIC_ACQUIRE))
		txq.last_used++;
	if ((uint16_t)(txq.avail_idx - txq.last_used) >= QSZ)
		return; /* ring full: drop, like a busy guest */
	int d = tx_next++ % QSZ;
	unsigned char *b = txq.bufs + d * BUFSZ;
	memset(b, 0, HDR);
	if (f[23] == 6)
		gso_hdr((struct virtio_net_hdr *)b, n);
	memcpy(b + HDR, f, n);
	post(&txq, d, HDR + n, 0);
	kick(&txq);
}

static void send_frame(const unsigned char *f, int n)
{
	if (vh >= 0) {
		vhost_send(f, n);
	} else if (vnet_hdr) {
		static unsigned char b[65536 + 64];
		gso_hdr((struct virtio_net_hdr *)b, f[23] == 6 ? n : 0);
		if (f[23] != 6)
			memset(b, 0, HDR);
		memcpy(b + HDR, f, n);
		if (write(tap, b, HDR + n) < 0 && errno != EAGAIN)
			perror("write tap");
	} else if (write(tap, f, n) < 0 && errno != EAGAIN) {
		perror("write tap");
	}
}

/* Packets vhost wrote into RX buffers: handle them, repost while reading. */
static int pending_rx[QSZ], npending;
static void vhost_rx(void)
{
	unsigned char r[BUFSZ];
	while (rxq.last_used != __atomic_load_n(&rxq.used->idx, __ATOMIC_ACQUIRE)) {
		struct vring_used_elem *e = &rxq.used->ring[rxq.last_used % QSZ];
		rxq.last_used++;
		unsigned char *b = rxq.bufs + e->id * BUFSZ;
		int n = reply(b + HDR, e->len - HDR, r);
		if (n)
			send_frame(r, n);
		pending_rx[npending++] = e->id;
	}
	if (reading && npending) {
		for (int i = 0; i < npending; i++)
			post(&rxq, pending_rx[i], BUFSZ, 1);
		npending = 0;
		kick(&rxq);
	}
}

int main(int argc, char **argv)
{
	const char *ifname = NULL, *udp = NULL;
	double life = 60;
	int opt, use_vhost = 0;
	int offload = 0;
	while ((opt = getopt(argc, argv, "i:a:m:nt:u:P:VOg:")) != -1) {
		switch (opt) {
		case 'i': ifname = optarg; break;
		case 'a': inet_pton(AF_INET, optarg, &my_ip); break;
		case 'm': if (parse_mac(optarg, my_mac)) return 2; break;
		case 'n': reading = 0; break;
		case 't': life = atof(optarg); break;
		case 'u': udp = optarg; break;
		case 'P': if (parse_mac(optarg, peer_mac)) return 2; have_peer = 1; break;
		case 'V': use_vhost = 1; break;
		case 'O': offload = 1; break;
		case 'g': gso_payload = atoi(optarg); break;
		default: return 2;
		}
	}
	if (!ifname)
		return 2;
	if (udp) {
		char ip[64];
		if (sscanf(udp, "%63[^:]:%d:%d:%d:%d", ip, &job.dport, &job.sport, &job.count, &job.ms) != 5 ||
		    inet_pton(AF_INET, ip, &job.dst) != 1)
			return 2;
	}
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	signal(SIGTERM, on_term);
	signal(SIGHUP, on_hup);
	signal(SIGINT, on_term);
	tap = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
	if (tap < 0) {
		perror("/dev/net/tun");
		return 1;
	}
	struct ifreq ifr = {0};
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (use_vhost || offload ? IFF_VNET_HDR : 0);
	strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
	if (ioctl(tap, TUNSETIFF, &ifr)) {
		perror("TUNSETIFF");
		return 1;
	}
	if (offload) {
		if (ioctl(tap, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) {
			perror("TUNSETOFFLOAD");
			return 1;
		}
		vnet_hdr = !use_vhost;
	}
	if (gso_payload && !offload && !use_vhost) {
		fprintf(stderr, "-g needs -O or -V (a virtio_net_hdr)\n");
		return 2;
	}
	if (gso_payload > 60000)
		gso_payload = 60000;
	if (use_vhost && gso_payload > BUFSZ - 100)
		gso_payload = BUFSZ - 100;
	if (use_vhost && vhost_init())
		return 1;
	printf("ready %s%s\n", ifr.ifr_name, use_vhost ? " vhost" : "");
	fflush(stdout);
	double end = now() + life;
	static unsigned char f[65536 + 64], r[BUFSZ];
	while (!stop && now() < end) {
		if (udp && go) {
			go = 0;
			job.active = 1;
			job.sent = 0;
			job.next = now();
		}
		if (job.active && job.sent < job.count && now() >= job.next) {
			if (!have_peer) {
				send_frame(f, arp_request(f, job.dst));
				job.next = now() + 0.1;
			} else {
				static int id = 1000;
				static uint32_t seq = 1;
				static unsigned char big[65536];
				int n;
				if (gso_payload) {
					n = tcp_frame(big, job.dst, job.dport, job.sport, seq, id++);
					seq += gso_payload;
					send_frame(big, n);
					job.sent++;
					job.next = now() + job.ms / 1000.0;
					continue;
				}
				n = udp_frame(f, job.dst, job.dport, job.sport, id++);
				send_frame(f, n);
				job.sent++;
				job.next = now() + job.ms / 1000.0;
			}
		}
		if (use_vhost) {
			struct pollfd p = {rxq.call, POLLIN};
			poll(&p, 1, 5);
			uint64_t v;
			if (read(rxq.call, &v, 8) < 0 && errno != EAGAIN)
				perror("call");
			vhost_rx();
			continue;
		}
		if (!reading) {
			usleep(5000);
			continue;
		}
		struct pollfd p = {tap, POLLIN};
		if (poll(&p, 1, 5) <= 0)
			continue;
		int n;
		while (reading && (n = read(tap, f, sizeof(f))) > 0) {
			int m = vnet_hdr ? reply(f + HDR, n - HDR, r) : reply(f, n, r);
			if (m)
				send_frame(r, m);
		}
	}
	return 0;
}
