/*
 * notifier-load.c: load generator and webhook receiver of
 * tests/bench/notifier-bench.sh (issue 5, part 6).
 *
 * One process, plain threads and blocking sockets, one monotonic clock:
 *
 *  - the receiver: an HTTP/1.1 keep-alive server on 127.0.0.1:--listen,
 *    a thread per connection. For every webhook it takes the arrival time
 *    when the whole request has been read, verifies Trygg-Signature as
 *    docs/notifier.md tells a receiver to (HMAC-SHA256(secret, "<t>.<raw
 *    body>"), lowercase hex, constant-time compare, |now - t| <= 300 s),
 *    answers 200 (401 for a bad signature), deduplicates on Trygg-Delivery
 *    and takes the report ids out of task.report_ids;
 *  - the sender: --conns keep-alive connections to intake, each a thread,
 *    posting POST /v1/reports open loop at a fixed rate (report i of a
 *    phase is due at start + i / rate, whoever is free takes it), each
 *    report at its own (cell, category) pair from --cells, so each opens
 *    its own task (see notifier-bench.sh). For each 201 it records the
 *    report id and the time the answer had been read.
 *
 * Phases (--phase RATE:SECONDS, repeated; --warmup RATE:SECONDS is not
 * reported) run one after the other; after each, the receiver is given up
 * to --grace seconds for the webhooks still due. Latency per report =
 * webhook arrival - POST return. Prints one JSON object.
 *
 *   cc -O2 -pthread -o notifier-load notifier-load.c -lcrypto -lm
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PHASES 8
#define TABLE_SIZE (1u << 18) /* report and delivery ids, open addressing */
#define BUF_SIZE (256 * 1024)

static const char *const categories[] = {"litter", "graffiti", "graffiti_offensive", "vandalism",
    "lighting", "vegetation", "traffic", "sleeping_outdoors", "drug_dealing", "school_incident",
    "youth_at_risk", "vulnerable_victim", "other"};
#define NCAT (sizeof(categories) / sizeof(categories[0]))

typedef struct report {
	char id[37];
	int phase;           /* -1: not posted by us (yet) */
	uint64_t post_ns;    /* when the 201 had been read; 0: not yet */
	uint64_t arr_ns;     /* first webhook of kind task; 0: none */
	unsigned deliveries; /* distinct delivery ids of kind task */
} report;

typedef struct phase {
	double rate;
	int seconds;
	bool warmup;
	uint64_t start_ns;
	int n;
	atomic_int next;
	atomic_int posted, failed;
	double *post_ms; /* POST latency, request write -> answer read */
	atomic_int npost;
} phase;

static struct {
	int intake_port, listen_port, conns, grace;
	const char *key, *secret, *dump;
	int64_t wall_minus_mono_ns; /* to print times as wall clock (--dump) */
	double (*cells)[2];
	size_t ncells;
	atomic_long pair; /* next (cell, category) pair */
	phase phases[MAX_PHASES];
	int nphases;
	atomic_int cur; /* the phase being posted */
	pthread_mutex_t mu;
	report *reports; /* TABLE_SIZE slots */
	char (*deliveries)[37];
	size_t nreports, ndeliveries;
	/* receiver counters, under mu */
	uint64_t webhooks, bad_sig, same_id, other_kinds, unknown, expect100, no_reports;
	uint64_t http_errors;
} g;

static uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t
hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

/* The slot of report id (36 chars), created if new. Under g.mu. */
static report *
report_slot(const char *id)
{
	uint32_t i = hash(id, 36) & (TABLE_SIZE - 1);
	for (;;) {
		report *r = &g.reports[i];
		if (r->id[0] == '\0') {
			if (g.nreports + 1 >= TABLE_SIZE / 2) {
				fprintf(stderr, "notifier-load: too many reports\n");
				exit(1);
			}
			memcpy(r->id, id, 36);
			r->id[36] = '\0';
			r->phase = -1;
			g.nreports++;
			return r;
		}
		if (memcmp(r->id, id, 36) == 0)
			return r;
		i = (i + 1) & (TABLE_SIZE - 1);
	}
}

/* True if delivery id d (any length up to 36) was seen; records it. Under g.mu. */
static bool
delivery_seen(const char *d, size_t n)
{
	char key[37] = {0};
	memcpy(key, d, n > 36 ? 36 : n);
	uint32_t i = hash(key, 36) & (TABLE_SIZE - 1);
	for (;;) {
		if (g.deliveries[i][0] == '\0') {
			if (g.ndeliveries + 1 >= TABLE_SIZE / 2) {
				fprintf(stderr, "notifier-load: too many deliveries\n");
				exit(1);
			}
			memcpy(g.deliveries[i], key, 37);
			g.ndeliveries++;
			return false;
		}
		if (memcmp(g.deliveries[i], key, 37) == 0)
			return true;
		i = (i + 1) & (TABLE_SIZE - 1);
	}
}

/* ---- small HTTP/1.1 helpers (blocking) ---- */

typedef struct hconn {
	int fd;
	char *buf;
	size_t got;
} hconn;

/* Finds header name (with the colon, e.g. "content-length:") in the head
 * [buf, end); returns its value (spaces skipped) and its length. */
static const char *
header(const char *buf, const char *end, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	for (const char *p = buf; p && p < end; p = memchr(p, '\n', (size_t)(end - p))) {
		if (*p == '\n')
			p++;
		if ((size_t)(end - p) > nl && strncasecmp(p, name, nl) == 0) {
			const char *v = p + nl;
			while (*v == ' ' || *v == '\t')
				v++;
			const char *e = v;
			while (e < end && *e != '\r' && *e != '\n')
				e++;
			*vlen = (size_t)(e - v);
			return v;
		}
	}
	return NULL;
}

/* Reads one message (head + Content-Length body). Returns total length
 * (head in [0, *head), body after), 0 on EOF/error. on_head is called once
 * the head is complete (for Expect: 100-continue). */
static size_t
read_message(hconn *c, size_t *head, void (*on_head)(hconn *, size_t))
{
	bool head_seen = false;
	for (;;) {
		char *e = c->got >= 4 ? memmem(c->buf, c->got, "\r\n\r\n", 4) : NULL;
		if (e) {
			size_t h = (size_t)(e + 4 - c->buf), vl = 0;
			const char *cl = header(c->buf, e + 2, "content-length:", &vl);
			size_t len = cl ? strtoul(cl, NULL, 10) : 0;
			if (h + len >= BUF_SIZE)
				return 0;
			if (!head_seen && on_head && c->got < h + len)
				on_head(c, h);
			head_seen = true;
			if (c->got >= h + len) {
				*head = h;
				return h + len;
			}
		}
		if (c->got >= BUF_SIZE - 1)
			return 0;
		ssize_t n = recv(c->fd, c->buf + c->got, BUF_SIZE - 1 - c->got, 0);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return 0;
		}
		c->got += (size_t)n;
	}
}

static void
consume(hconn *c, size_t total)
{
	memmove(c->buf, c->buf + total, c->got - total);
	c->got -= total;
}

static bool
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* ---- receiver ---- */

static bool
verify(const char *sig, size_t siglen, const char *body, size_t blen)
{
	char h[512];
	if (siglen >= sizeof(h))
		return false;
	memcpy(h, sig, siglen);
	h[siglen] = '\0';
	long long t = -1;
	const char *v1[8];
	int nv1 = 0;
	for (char *save = NULL, *p = strtok_r(h, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		while (*p == ' ')
			p++;
		if (strncmp(p, "t=", 2) == 0)
			t = atoll(p + 2);
		else if (strncmp(p, "v1=", 3) == 0 && nv1 < 8)
			v1[nv1++] = p + 3;
	}
	if (t < 0 || llabs((long long)time(NULL) - t) > 300)
		return false;
	char *msg = malloc(blen + 32);
	int tl = snprintf(msg, 32, "%lld.", t);
	memcpy(msg + tl, body, blen);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;
	HMAC(EVP_sha256(), g.secret, (int)strlen(g.secret), (const unsigned char *)msg,
	    (size_t)tl + blen, mac, &maclen);
	free(msg);
	char want[2 * EVP_MAX_MD_SIZE + 1];
	for (unsigned i = 0; i < maclen; i++)
		sprintf(want + 2 * i, "%02x", mac[i]);
	bool ok = false;
	for (int i = 0; i < nv1; i++)
		if (strlen(v1[i]) == 2 * maclen && CRYPTO_memcmp(want, v1[i], 2 * maclen) == 0)
			ok = true;
	return ok;
}

static void
send_continue(hconn *c, size_t head)
{
	size_t vl;
	const char *e = header(c->buf, c->buf + head, "expect:", &vl);
	if (e && vl >= 12 && strncasecmp(e, "100-continue", 12) == 0) {
		write_all(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		pthread_mutex_lock(&g.mu);
		g.expect100++;
		pthread_mutex_unlock(&g.mu);
	}
}

/* Handles one webhook; returns the HTTP status to answer. */
static int
on_webhook(const char *head, size_t hlen, const char *body, size_t blen, uint64_t at)
{
	size_t sl = 0, dl = 0, el = 0;
	const char *sig = header(head, head + hlen, "trygg-signature:", &sl);
	const char *did = header(head, head + hlen, "trygg-delivery:", &dl);
	const char *ev = header(head, head + hlen, "trygg-event:", &el);
	bool ok = sig && verify(sig, sl, body, blen);
	pthread_mutex_lock(&g.mu);
	g.webhooks++;
	if (!ok) {
		g.bad_sig++;
		pthread_mutex_unlock(&g.mu);
		return 401;
	}
	if (did == NULL || delivery_seen(did, dl)) {
		g.same_id++; /* a retry of a delivery already counted */
		pthread_mutex_unlock(&g.mu);
		return 200;
	}
	if (ev == NULL || el != 9 || strncmp(ev, "task.task", 9) != 0) {
		g.other_kinds++;
		pthread_mutex_unlock(&g.mu);
		return 200;
	}
	/* task.report_ids: the only "report_ids" member of the body. */
	const char *p = memmem(body, blen, "\"report_ids\"", 12);
	const char *end = body + blen;
	int n = 0;
	if (p) {
		p = memchr(p, '[', (size_t)(end - p));
		while (p && p < end && *p != ']') {
			const char *q = memchr(p, '"', (size_t)(end - p));
			const char *close = memchr(p, ']', (size_t)(end - p));
			if (q == NULL || (close && close < q) || q + 38 > end || q[37] != '"')
				break;
			report *r = report_slot(q + 1);
			if (r->deliveries++ == 0)
				r->arr_ns = at;
			if (r->phase < 0 && r->post_ns == 0)
				g.unknown++; /* maybe not answered yet: reconciled at the end */
			n++;
			p = q + 38;
		}
	}
	if (n == 0)
		g.no_reports++;
	pthread_mutex_unlock(&g.mu);
	return 200;
}

static void *
serve_conn(void *arg)
{
	hconn c = {.fd = (int)(intptr_t)arg, .buf = malloc(BUF_SIZE)};
	for (;;) {
		size_t head, total = read_message(&c, &head, send_continue);
		if (total == 0)
			break;
		uint64_t at = now_ns();
		int status = 404;
		if (strncmp(c.buf, "POST ", 5) == 0)
			status = on_webhook(c.buf, head, c.buf + head, total - head, at);
		consume(&c, total);
		char resp[128];
		int n = snprintf(resp, sizeof(resp), "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n",
		    status, status == 200 ? "OK" : "Refused");
		if (!write_all(c.fd, resp, (size_t)n))
			break;
	}
	close(c.fd);
	free(c.buf);
	return NULL;
}

static void *
receiver(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("accept");
			exit(1);
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		pthread_t t;
		pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
	return NULL;
}

/* ---- sender ---- */

static int
dial(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g.intake_port)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		perror("connect to intake");
		exit(1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void
sleep_until(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
	    .tv_nsec = (long)(ns % 1000000000u)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void *
sender(void *arg)
{
	unsigned lane = (unsigned)(intptr_t)arg;
	hconn c = {.fd = dial(), .buf = malloc(BUF_SIZE)};
	char body[512], req[2048];
	for (int ph = 0; ph < g.nphases; ph++) {
		phase *P = &g.phases[ph];
		while (atomic_load(&g.cur) < ph)
			usleep(1000);
		for (;;) {
			int i = atomic_fetch_add(&P->next, 1);
			if (i >= P->n)
				break;
			sleep_until(P->start_ns + (uint64_t)((double)i * 1e9 / P->rate));
			long k = atomic_fetch_add(&g.pair, 1);
			if ((size_t)k >= g.ncells * NCAT) {
				fprintf(stderr, "notifier-load: out of (cell, category) pairs\n");
				exit(1);
			}
			/* consecutive reports: different cells; a cell's categories
			 * are used one pass at a time */
			size_t cell = (size_t)k % g.ncells, cat = (size_t)k / g.ncells;
			int bl = snprintf(body, sizeof(body),
			    "{\"category\":\"%s\",\"lat\":%.6f,\"long\":%.6f,"
			    "\"description\":\"notifier bench report %ld (lane %u)\"}",
			    categories[cat], g.cells[cell][0], g.cells[cell][1], k, lane);
			int rl = snprintf(req, sizeof(req),
			    "POST /v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
			    "%s\r\nContent-Type: application/json\r\nIdempotency-Key: "
			    "nbench-%ld\r\n"
			    "Content-Length: %d\r\n\r\n%s",
			    g.key, k, bl, body);
			uint64_t t0 = now_ns();
			size_t head, total = 0;
			if (write_all(c.fd, req, (size_t)rl))
				total = read_message(&c, &head, NULL);
			uint64_t t1 = now_ns();
			if (total == 0) { /* the connection broke: count, redial */
				atomic_fetch_add(&P->failed, 1);
				close(c.fd);
				c.fd = dial();
				c.got = 0;
				continue;
			}
			int status = atoi(c.buf + 9);
			const char *id = memmem(c.buf + head, total - head, "\"id\":", 5);
			if (status == 201 && id) {
				id = memchr(id + 5, '"', total - (size_t)(id + 5 - c.buf));
			}
			if (status != 201 || id == NULL || id + 38 > c.buf + total ||
			    id[37] != '"') {
				atomic_fetch_add(&P->failed, 1);
				if (atomic_load(&P->failed) <= 3)
					fprintf(stderr, "notifier-load: POST answered %d: %.*s\n",
					    status, (int)(total - head), c.buf + head);
			} else {
				pthread_mutex_lock(&g.mu);
				report *r = report_slot(id + 1);
				r->phase = ph;
				r->post_ns = t1;
				pthread_mutex_unlock(&g.mu);
				atomic_fetch_add(&P->posted, 1);
				int j = atomic_fetch_add(&P->npost, 1);
				P->post_ms[j] = (double)(t1 - t0) / 1e6;
			}
			consume(&c, total);
		}
	}
	close(c.fd);
	free(c.buf);
	return NULL;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double
pct(const double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)ceil(p * (double)n) - 1;
	return v[i >= n ? n - 1 : i];
}

/* Reports of phase ph posted and not yet arrived. Under g.mu. */
static int
outstanding(int ph)
{
	int n = 0;
	for (size_t i = 0; i < TABLE_SIZE; i++)
		if (g.reports[i].id[0] && g.reports[i].phase == ph && g.reports[i].arr_ns == 0)
			n++;
	return n;
}

static void
parse_phase(const char *s, bool warmup)
{
	if (g.nphases == MAX_PHASES) {
		fprintf(stderr, "too many phases\n");
		exit(2);
	}
	phase *P = &g.phases[g.nphases++];
	if (sscanf(s, "%lf:%d", &P->rate, &P->seconds) != 2 || P->rate <= 0 || P->seconds <= 0) {
		fprintf(stderr, "bad phase %s (RATE:SECONDS)\n", s);
		exit(2);
	}
	P->warmup = warmup;
	P->n = (int)(P->rate * P->seconds);
	P->post_ms = calloc((size_t)P->n + 1, sizeof(double));
}

static void
load_cells(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		perror(path);
		exit(2);
	}
	size_t cap = 1024;
	g.cells = malloc(cap * sizeof(*g.cells));
	double la, lo;
	while (fscanf(f, "%lf %lf", &la, &lo) == 2) {
		if (g.ncells == cap)
			g.cells = realloc(g.cells, (cap *= 2) * sizeof(*g.cells));
		g.cells[g.ncells][0] = la;
		g.cells[g.ncells][1] = lo;
		g.ncells++;
	}
	fclose(f);
}

int
main(int argc, char **argv)
{
	g.conns = 32;
	g.grace = 10;
	const char *cells = NULL;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];
		if (strcmp(a, "--intake-port") == 0)
			g.intake_port = atoi(v);
		else if (strcmp(a, "--listen") == 0)
			g.listen_port = atoi(v);
		else if (strcmp(a, "--key") == 0)
			g.key = v;
		else if (strcmp(a, "--secret") == 0)
			g.secret = v;
		else if (strcmp(a, "--cells") == 0)
			cells = v;
		else if (strcmp(a, "--dump") == 0)
			g.dump = v;
		else if (strcmp(a, "--conns") == 0)
			g.conns = atoi(v);
		else if (strcmp(a, "--grace") == 0)
			g.grace = atoi(v);
		else if (strcmp(a, "--warmup") == 0)
			parse_phase(v, true);
		else if (strcmp(a, "--phase") == 0)
			parse_phase(v, false);
	}
	if (!g.intake_port || !g.listen_port || !g.key || !g.secret || !cells || g.nphases == 0 ||
	    g.conns < 1) {
		fprintf(stderr,
		    "usage: notifier-load --intake-port P --listen P --key K --secret S "
		    "--cells FILE [--conns 32] [--grace 10] [--warmup R:S] --phase R:S...\n");
		return 2;
	}
	load_cells(cells);
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	g.wall_minus_mono_ns = (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec - (int64_t)now_ns();
	pthread_mutex_init(&g.mu, NULL);
	g.reports = calloc(TABLE_SIZE, sizeof(report));
	g.deliveries = calloc(TABLE_SIZE, sizeof(*g.deliveries));

	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g.listen_port)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 128) != 0) {
		perror("receiver bind");
		return 1;
	}
	pthread_t rt;
	pthread_create(&rt, NULL, receiver, (void *)(intptr_t)lfd);

	atomic_store(&g.cur, -1);
	pthread_t *st = calloc((size_t)g.conns, sizeof(pthread_t));
	for (int i = 0; i < g.conns; i++)
		pthread_create(&st[i], NULL, sender, (void *)(intptr_t)i);
	usleep(200000); /* connections up */

	for (int ph = 0; ph < g.nphases; ph++) {
		phase *P = &g.phases[ph];
		fprintf(stderr, "notifier-load: %s %.0f reports/s for %d s\n",
		    P->warmup ? "warm-up" : "phase", P->rate, P->seconds);
		P->start_ns = now_ns() + 20000000u;
		atomic_store(&g.cur, ph);
		/* posting ends at start + n / rate (plus the last answers) */
		sleep_until(P->start_ns + (uint64_t)((double)P->n * 1e9 / P->rate));
		while (atomic_load(&P->posted) + atomic_load(&P->failed) < P->n)
			usleep(1000);
		uint64_t deadline = now_ns() + (uint64_t)g.grace * 1000000000u;
		for (;;) {
			pthread_mutex_lock(&g.mu);
			int left = outstanding(ph);
			pthread_mutex_unlock(&g.mu);
			if (left == 0 || now_ns() > deadline)
				break;
			usleep(20000);
		}
		usleep(200000); /* let stray duplicates of this phase show */
	}

	pthread_mutex_lock(&g.mu);
	printf("{\"cells\":%zu,\"categories\":%zu,\"conns\":%d,\"grace_s\":%d,\"phases\":[",
	    g.ncells, NCAT, g.conns, g.grace);
	int first = 1;
	for (int ph = 0; ph < g.nphases; ph++) {
		phase *P = &g.phases[ph];
		if (P->warmup)
			continue;
		double *lat = calloc((size_t)P->n + 1, sizeof(double));
		size_t nl = 0;
		int lost = 0, dups = 0, negative = 0;
		for (size_t i = 0; i < TABLE_SIZE; i++) {
			report *r = &g.reports[i];
			if (r->id[0] == '\0' || r->phase != ph)
				continue;
			if (r->arr_ns == 0) {
				lost++;
				continue;
			}
			if (r->deliveries > 1)
				dups += (int)r->deliveries - 1;
			if (r->arr_ns < r->post_ns)
				negative++; /* webhook before the 201 was read */
			lat[nl++] = ((double)r->arr_ns - (double)r->post_ns) / 1e6;
		}
		qsort(lat, nl, sizeof(double), cmp);
		int np = atomic_load(&P->npost);
		qsort(P->post_ms, (size_t)np, sizeof(double), cmp);
		double mean = 0;
		for (size_t i = 0; i < nl; i++)
			mean += lat[i];
		mean = nl ? mean / (double)nl : 0;
		printf(
		    "%s{\"rate\":%.0f,\"seconds\":%d,\"scheduled\":%d,\"posted\":%d,"
		    "\"post_failed\":%d,\"arrived\":%zu,\"lost\":%d,\"duplicates\":%d,"
		    "\"arrived_before_201\":%d,\"p50_ms\":%.2f,\"p90_ms\":%.2f,\"p99_ms\":%.2f,"
		    "\"max_ms\":%.2f,\"mean_ms\":%.2f,\"post_p50_ms\":%.2f,\"post_p99_ms\":%.2f}",
		    first ? "" : ",", P->rate, P->seconds, P->n, atomic_load(&P->posted),
		    atomic_load(&P->failed), nl, lost, dups, negative, pct(lat, nl, 0.5),
		    pct(lat, nl, 0.9), pct(lat, nl, 0.99), nl ? lat[nl - 1] : 0, mean,
		    pct(P->post_ms, (size_t)np, 0.5), pct(P->post_ms, (size_t)np, 0.99));
		first = 0;
		free(lat);
	}
	if (g.dump) { /* per report: id, phase, 201 read, webhook arrival (wall us) */
		FILE *f = fopen(g.dump, "w");
		for (size_t i = 0; f && i < TABLE_SIZE; i++) {
			report *r = &g.reports[i];
			if (r->id[0] == '\0' || r->phase < 0 || g.phases[r->phase].warmup)
				continue;
			fprintf(f, "%s\t%.0f\t%" PRId64 "\t", r->id, g.phases[r->phase].rate,
			    ((int64_t)r->post_ns + g.wall_minus_mono_ns) / 1000);
			if (r->arr_ns)
				fprintf(f, "%" PRId64 "\n",
				    ((int64_t)r->arr_ns + g.wall_minus_mono_ns) / 1000);
			else
				fprintf(f, "\\N\n");
		}
		if (f)
			fclose(f);
	}
	/* reports the webhooks named that we never posted */
	uint64_t strangers = 0;
	for (size_t i = 0; i < TABLE_SIZE; i++)
		if (g.reports[i].id[0] && g.reports[i].phase < 0)
			strangers++;
	printf("],\"webhooks\":%" PRIu64 ",\"bad_signatures\":%" PRIu64
	       ",\"retries_same_delivery_id\":%" PRIu64 ",\"other_kinds\":%" PRIu64
	       ",\"unposted_report_ids\":%" PRIu64 ",\"webhooks_without_report_ids\":%" PRIu64
	       ",\"expect_100_continue\":%" PRIu64 "}\n",
	    g.webhooks, g.bad_sig, g.same_id, g.other_kinds, strangers, g.no_reports, g.expect100);
	fflush(stdout);
	pthread_mutex_unlock(&g.mu);
	_exit(0);
}
