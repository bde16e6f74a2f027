/*
 * nngbench: the raw nng pub/sub limit on this machine, for `make bench`.
 *
 * Publishes N messages of S bytes from a pub0 socket to a sub0 socket in
 * the same process (separate threads) over the given URL, paced in rounds
 * so that none is dropped, and prints the rate at which the subscriber
 * received them as one JSON line. The same buffer sizes as the bus
 * (1024 messages) are used, so the figure is the ceiling for the relay.
 *
 * usage: trygg-nngbench URL [count] [size]
 */
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_ulong received;
static unsigned long total;
static nng_socket sub;

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
reader(void *arg)
{
	(void)arg;
	while (atomic_load(&received) < total) {
		nng_msg *m;
		if (nng_recvmsg(sub, &m, 0) != 0)
			break;
		nng_msg_free(m);
		atomic_fetch_add(&received, 1);
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s URL [count] [size]\n", argv[0]);
		return 2;
	}
	const char *url = argv[1];
	total = argc > 2 ? strtoul(argv[2], NULL, 10) : 200000;
	size_t size = argc > 3 ? strtoul(argv[3], NULL, 10) : 256;
	nng_socket pub;
	if (nng_pub0_open(&pub) != 0 || nng_sub0_open(&sub) != 0)
		return 1;
	nng_socket_set_int(pub, NNG_OPT_SENDBUF, 1024);
	nng_socket_set_int(sub, NNG_OPT_RECVBUF, 1024);
	nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0);
	nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 2000);
	if (nng_listen(pub, url, NULL, 0) != 0 || nng_dial(sub, url, NULL, 0) != 0) {
		fprintf(stderr, "cannot listen/dial %s\n", url);
		return 1;
	}
	/* Wait until the subscription is live. */
	for (;;) {
		nng_msg *m;
		nng_msg_alloc(&m, 1);
		nng_sendmsg(pub, m, 0);
		if (nng_recvmsg(sub, &m, NNG_FLAG_NONBLOCK) == 0) {
			nng_msg_free(m);
			break;
		}
		usleep(10000);
	}
	usleep(50000);
	for (nng_msg *m; nng_recvmsg(sub, &m, NNG_FLAG_NONBLOCK) == 0;)
		nng_msg_free(m);
	pthread_t t;
	pthread_create(&t, NULL, reader, NULL);
	double t0 = now_s();
	unsigned long sent = 0;
	/* Keep at most ~800 messages outstanding so no queue overflows: this
	 * measures the lossless rate, which is what the relay can use. */
	while (sent < total) {
		if (sent - atomic_load(&received) > 800) {
			sched_yield();
			continue;
		}
		nng_msg *m;
		nng_msg_alloc(&m, size);
		memset(nng_msg_body(m), 'x', size);
		if (nng_sendmsg(pub, m, 0) != 0)
			nng_msg_free(m);
		sent++;
	}
	pthread_join(t, NULL);
	double dt = now_s() - t0;
	unsigned long got = atomic_load(&received);
	printf("{\"url\":\"%s\",\"messages\":%lu,\"received\":%lu,\"bytes\":%zu,\"seconds\":%.3f,"
	       "\"msgs_per_s\":%.0f}\n",
	    url, total, got, size, dt, (double)got / dt);
	nng_close(pub);
	nng_close(sub);
	return got == total ? 0 : 1;
}
