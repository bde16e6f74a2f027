/*
 * intake-bench.c: the load generator of tests/bench/intake-bench.sh.
 *
 * Keeps N HTTP/1.1 keep-alive connections to intake on one libuv loop and
 * sends requests back to back on each (closed loop, --rate 0) or paced to
 * a total rate (open loop with a token bucket, --rate R), for --seconds.
 * Modes:
 *   post      POST /v1/reports, valid and varied (category, position in
 *             the district, description length), a fresh Idempotency-Key
 *   get-one   GET /v1/reports/<random service_request_id in 1..--max-id>
 *   get-list  GET /v1/reports?category=<c>&limit=1000&cursor=<random>
 * Prints one JSON line: requests, per-status counts, rate, p50/p99/max
 * latency in ms (from the write of the request to the end of the answer).
 *
 *   cc -O2 -o intake-load intake-bench.c $(pkg-config --cflags --libs libuv) -lm
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MAX_CONNS 1024
#define MAX_SAMPLES 20000000

typedef struct conn {
	uv_tcp_t tcp;
	uv_connect_t connect;
	uv_write_t write;
	char req[4096];
	size_t req_len;
	char buf[1 << 20];
	size_t got;
	uint64_t sent_ns;
	int busy;
	unsigned id;
} conn;

static struct {
	const char *host, *key, *mode;
	int port, nconns, seconds, max_id;
	double rate;
	uv_loop_t *loop;
	uv_timer_t tick, stop;
	double tokens;
	uint64_t last_ns, end_ns;
	int stopping;
	uint64_t counter;
	uint64_t status[600];
	uint64_t errors;
	double *lat_ms;
	double *at_ms; /* when each answer came, from the start */
	size_t nlat;
	conn *conns;
	uint64_t start_ns;
	unsigned seed;
} g;

static const char *const categories[] = {"litter", "graffiti_offensive", "vandalism", "lighting",
    "vegetation", "traffic", "sleeping_outdoors", "other"};
static const char filler[] = "Observed during the evening round near the entrance; please check "
                             "and take care of it. ";

static unsigned
rnd(void)
{
	g.seed = g.seed * 1103515245u + 12345u;
	return (g.seed >> 8) & 0xffffff;
}

static void send_next(conn *c);

static void
build_request(conn *c)
{
	char body[2048];
	g.counter++;
	if (strcmp(g.mode, "post") == 0) {
		const char *cat = categories[rnd() % (sizeof(categories) / sizeof(categories[0]))];
		double lat = 59.3265 + (rnd() % 30000) / 1e6;
		double lon = 18.0205 + (rnd() % 64000) / 1e6;
		int dlen = (int)(rnd() % (sizeof(filler) - 1));
		int n = snprintf(body, sizeof(body),
		    "{\"category\":\"%s\",\"lat\":%.6f,\"long\":%.6f,\"description\":\"Report "
		    "%" PRIu64 ": %.*s\",\"address_string\":\"Sveavägen %u\"}",
		    cat, lat, lon, g.counter, dlen, filler, rnd() % 200 + 1);
		c->req_len = (size_t)snprintf(c->req, sizeof(c->req),
		    "POST /v1/reports HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
		    "Content-Type: application/json\r\nIdempotency-Key: bench-%u-%" PRIu64 "-%u\r\n"
		    "Content-Length: %d\r\n\r\n%s",
		    g.host, g.key, c->id, g.counter, g.seed, n, body);
	} else if (strcmp(g.mode, "get-one") == 0) {
		c->req_len = (size_t)snprintf(c->req, sizeof(c->req),
		    "GET /v1/reports/%u HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n",
		    rnd() % (unsigned)g.max_id + 1, g.host, g.key);
	} else {
		const char *cat = categories[rnd() % 3];
		c->req_len = (size_t)snprintf(c->req, sizeof(c->req),
		    "GET /v1/reports?category=%s&limit=1000&cursor=%u HTTP/1.1\r\nHost: %s\r\n"
		    "Authorization: Bearer %s\r\n\r\n",
		    cat, rnd() % (unsigned)g.max_id + 1000, g.host, g.key);
	}
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	conn *c = h->data;
	(void)suggested;
	*buf = uv_buf_init(c->buf + c->got, (unsigned)(sizeof(c->buf) - c->got - 1));
}

/* Returns the total length of a complete response in c->buf, or 0. */
static size_t
complete(conn *c, int *status)
{
	c->buf[c->got] = '\0';
	char *end = strstr(c->buf, "\r\n\r\n");
	if (end == NULL)
		return 0;
	size_t head = (size_t)(end + 4 - c->buf);
	const char *cl = strcasestr(c->buf, "\r\nContent-Length:");
	size_t len = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
	if (c->got < head + len)
		return 0;
	*status = atoi(c->buf + 9);
	return head + len;
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	conn *c = s->data;
	(void)buf;
	if (n < 0) {
		g.errors++;
		uv_read_stop(s);
		c->busy = -1; /* dead */
		return;
	}
	c->got += (size_t)n;
	int status;
	size_t total = complete(c, &status);
	if (total == 0)
		return;
	uint64_t now = uv_hrtime();
	if (status > 0 && status < 600)
		g.status[status]++;
	if (g.nlat < MAX_SAMPLES) {
		g.at_ms[g.nlat] = (double)(now - g.start_ns) / 1e6;
		g.lat_ms[g.nlat++] = (double)(now - c->sent_ns) / 1e6;
	}
	memmove(c->buf, c->buf + total, c->got - total);
	c->got -= total;
	c->busy = 0;
	if (!g.stopping && g.rate <= 0)
		send_next(c);
}

static void
on_write(uv_write_t *w, int status)
{
	if (status < 0)
		g.errors++;
	(void)w;
}

static void
send_next(conn *c)
{
	build_request(c);
	uv_buf_t b = uv_buf_init(c->req, (unsigned)c->req_len);
	c->busy = 1;
	c->sent_ns = uv_hrtime();
	if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
		g.errors++;
		c->busy = -1;
	}
}

static void
on_connect(uv_connect_t *req, int status)
{
	conn *c = req->data;
	if (status < 0) {
		fprintf(stderr, "connect: %s\n", uv_strerror(status));
		exit(1);
	}
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (g.rate <= 0)
		send_next(c);
}

static void
on_tick(uv_timer_t *t)
{
	(void)t;
	uint64_t now = uv_hrtime();
	g.tokens += (double)(now - g.last_ns) / 1e9 * g.rate;
	g.last_ns = now;
	if (g.tokens > g.rate / 100 + 1)
		g.tokens = g.rate / 100 + 1;
	for (int i = 0; i < g.nconns && g.tokens >= 1.0; i++) {
		conn *c = &g.conns[(i + (int)(rnd() % (unsigned)g.nconns)) % g.nconns];
		if (c->busy == 0) {
			send_next(c);
			g.tokens -= 1.0;
		}
	}
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void
on_close(uv_handle_t *h)
{
	(void)h;
}

static void
on_stop(uv_timer_t *t)
{
	(void)t;
	g.stopping = 1;
	uv_timer_stop(&g.tick);
	double secs = (double)(uv_hrtime() - g.start_ns) / 1e9;
	/* BENCH_LAT_FILE: every answer's time and latency, to see where a
	 * tail comes from (stalls, or a spread). */
	const char *lat_file = getenv("BENCH_LAT_FILE");
	FILE *lf = lat_file && lat_file[0] ? fopen(lat_file, "w") : NULL;
	for (size_t i = 0; lf && i < g.nlat; i++)
		fprintf(lf, "%.3f %.3f\n", g.at_ms[i], g.lat_ms[i]);
	if (lf)
		fclose(lf);
	qsort(g.lat_ms, g.nlat, sizeof(double), cmp);
	double p50 = g.nlat ? g.lat_ms[g.nlat / 2] : 0,
	       p99 = g.nlat ? g.lat_ms[g.nlat * 99 / 100] : 0;
	double mx = g.nlat ? g.lat_ms[g.nlat - 1] : 0;
	uint64_t ok = 0;
	for (int s = 200; s < 300; s++)
		ok += g.status[s];
	printf("{\"mode\":\"%s\",\"connections\":%d,\"target_rate\":%.0f,\"seconds\":%.2f,"
	       "\"responses\":%zu,\"ok\":%" PRIu64 ",\"ok_per_s\":%.1f,\"p50_ms\":%.3f,"
	       "\"p99_ms\":%.3f,\"max_ms\":%.3f,\"errors\":%" PRIu64 ",\"status\":{",
	    g.mode, g.nconns, g.rate, secs, g.nlat, ok, (double)ok / secs, p50, p99, mx, g.errors);
	int first = 1;
	for (int s = 0; s < 600; s++) {
		if (g.status[s]) {
			printf("%s\"%d\":%" PRIu64, first ? "" : ",", s, g.status[s]);
			first = 0;
		}
	}
	printf("}}\n");
	fflush(stdout);
	for (int i = 0; i < g.nconns; i++)
		uv_close((uv_handle_t *)&g.conns[i].tcp, on_close);
	uv_close((uv_handle_t *)&g.tick, on_close);
	uv_close((uv_handle_t *)&g.stop, on_close);
}

int
main(int argc, char **argv)
{
	g.host = "127.0.0.1";
	g.port = 8080;
	g.nconns = 16;
	g.seconds = 10;
	g.mode = "post";
	g.max_id = 1000;
	g.seed = (unsigned)uv_hrtime();
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--port") == 0)
			g.port = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--key") == 0)
			g.key = argv[i + 1];
		else if (strcmp(argv[i], "--conns") == 0)
			g.nconns = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--seconds") == 0)
			g.seconds = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--rate") == 0)
			g.rate = atof(argv[i + 1]);
		else if (strcmp(argv[i], "--mode") == 0)
			g.mode = argv[i + 1];
		else if (strcmp(argv[i], "--max-id") == 0)
			g.max_id = atoi(argv[i + 1]);
	}
	if (g.key == NULL || g.nconns < 1 || g.nconns > MAX_CONNS || g.max_id < 1) {
		fprintf(stderr,
		    "usage: intake-load --key KEY [--port 8080] [--conns 16] "
		    "[--seconds 10] [--rate 0] [--mode post|get-one|get-list] [--max-id N]\n");
		return 2;
	}
	g.loop = uv_default_loop();
	g.lat_ms = malloc(MAX_SAMPLES * sizeof(double));
	g.at_ms = malloc(MAX_SAMPLES * sizeof(double));
	g.conns = calloc((size_t)g.nconns, sizeof(conn));
	struct sockaddr_in addr;
	uv_ip4_addr(g.host, g.port, &addr);
	for (int i = 0; i < g.nconns; i++) {
		conn *c = &g.conns[i];
		c->id = (unsigned)i;
		uv_tcp_init(g.loop, &c->tcp);
		uv_tcp_nodelay(&c->tcp, 1);
		c->tcp.data = c;
		c->connect.data = c;
		uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&addr, on_connect);
	}
	g.start_ns = g.last_ns = uv_hrtime();
	uv_timer_init(g.loop, &g.tick);
	uv_timer_init(g.loop, &g.stop);
	if (g.rate > 0)
		uv_timer_start(&g.tick, on_tick, 1, 1);
	uv_timer_start(&g.stop, on_stop, (uint64_t)g.seconds * 1000, 0);
	uv_run(g.loop, UV_RUN_DEFAULT);
	free(g.lat_ms);
	free(g.at_ms);
	free(g.conns);
	return 0;
}
