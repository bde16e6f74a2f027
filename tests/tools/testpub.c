/*
 * trygg-testpub: a stand-in publishing service for the backbone's tests and
 * benchmark, built on the common runtime exactly as a real service is.
 *
 * Its "business" is a producer: POST /produce {"count", "concurrency",
 * "rate", "payload_bytes"} starts writing `count` events, each in its own transaction
 * together with a row in testpub.produced (the state change), with at most
 * `concurrency` transactions in flight and at most `rate` per second (0: as
 * fast as possible), each payload padded to about `payload_bytes` (0: a
 * few dozen bytes). GET /produce shows progress. The outbox relay then
 * sequences and publishes the events, and serves replays.
 *
 * With allow_inject, POST /debug/inject {"kind"} publishes one malformed
 * frame on the pub socket, for the fault tests.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "envelope.h"
#include "json.h"
#include "log.h"
#include "outbox.h"
#include "svc.h"
#include "trygg/testing.pb-c.h"

extern const struct migration testpub_migrations[];

typedef struct testpub_config {
	svc_config common;
	char *publisher;
	bool allow_inject;
} testpub_config;

static const config_option options[] = {
    SVC_CONFIG_OPTIONS(testpub_config, "8090"),
    SVC_PUBLISH_OPTIONS(testpub_config, "tcp://127.0.0.1:5560", "tcp://127.0.0.1:5561"),
    CONFIG_OPT_STRING("publisher", testpub_config, publisher, "testpub", 0,
        "publisher name on the envelopes"),
    CONFIG_OPT_BOOL("allow_inject", testpub_config, allow_inject, "false", 0,
        "enable POST /debug/inject (tests only)"),
    CONFIG_END,
};

/* The producer: one job at a time. */
typedef struct testpub testpub;

typedef struct producer {
	svc *svc;
	testpub *owner;
	bool running, stopping;
	bool next_known, loading;
	uint64_t next_n;    /* next event number to write */
	uint64_t remaining; /* events not yet started */
	uint64_t done, retried;
	unsigned concurrency, in_flight;
	unsigned rate;          /* per second; 0 = unlimited */
	unsigned payload_bytes; /* pad each event's body to this; 0 = no padding */
	double tokens;
	uint64_t last_tick_ms, started_ms, finished_ms;
	uint64_t *retry; /* numbers whose transaction failed: write again */
	size_t nretry, capretry;
	uv_timer_t tick;
} producer;

struct testpub {
	testpub_config cfg;
	svc svc;
	producer prod;
};

static void pump(producer *p);
static void producer_stopped(testpub *tp);

static const char SQL_PRODUCED[] = "INSERT INTO produced (n) VALUES ($1)";
static const char SQL_MAX_N[] = "SELECT coalesce(max(n), 0) FROM produced";

typedef struct tx {
	producer *p;
	uint64_t n;
} tx;

static void
tx_done(void *arg, const db_reply *rep)
{
	tx *t = arg;
	producer *p = t->p;
	p->in_flight--;
	/* A unique violation means an earlier attempt whose answer we lost did
	 * commit: the event exists exactly once. */
	bool ok = rep->err == 0 ||
	    (rep->err == TRYGG_EDB && rep->sqlstate && strcmp(rep->sqlstate, "23505") == 0);
	if (ok) {
		p->done++;
		svc_relay_kick(p->svc);
	} else {
		if (p->nretry == p->capretry) {
			p->capretry = p->capretry ? p->capretry * 2 : 64;
			p->retry = xrealloc(p->retry, p->capretry * sizeof(*p->retry));
		}
		p->retry[p->nretry++] = t->n;
		p->retried++;
	}
	free(t);
	pump(p);
}

/* Starts one transaction for event number n. Returns false if the db
 * refused it (disconnected or busy). */
static bool
start_tx(producer *p, uint64_t n)
{
	char nbuf[24];
	snprintf(nbuf, sizeof(nbuf), "%" PRIu64, n);
	size_t body_len = p->payload_bytes > 48 ? p->payload_bytes : 48;
	char *body = xmalloc(body_len + 1);
	int head = snprintf(body, body_len + 1, "test event %" PRIu64, n);
	if (p->payload_bytes > (size_t)head) {
		memset(body + head, 'x', p->payload_bytes - (size_t)head);
		body[p->payload_bytes] = '\0';
	}
	Trygg__Testing__TestEvent ev = TRYGG__TESTING__TEST_EVENT__INIT;
	ev.n = n;
	ev.body = body;
	size_t cap = trygg__testing__test_event__get_packed_size(&ev);
	uint8_t *payload = xmalloc(cap);
	size_t len = trygg__testing__test_event__pack(&ev, payload);
	const char *values[1] = {nbuf};
	db_batch *b = db_batch_new();
	db_batch_add(b, SQL_PRODUCED, 1, values);
	int rv = outbox_add_event(b, "trygg.testing.TestEvent", payload, len);
	free(payload);
	free(body);
	if (rv != 0) { /* too large for the bus: nothing to retry */
		db_batch_free(b);
		return false;
	}
	tx *t = xmalloc(sizeof(*t));
	t->p = p;
	t->n = n;
	if (db_pool_submit(p->svc->pool, b, tx_done, t) != 0) {
		db_batch_free(b);
		free(t);
		return false;
	}
	p->in_flight++;
	return true;
}

static void
next_loaded(void *arg, const db_reply *rep)
{
	producer *p = arg;
	p->loading = false;
	if (rep->err == 0) {
		p->next_n = strtoull(PQgetvalue(rep->results[0], 0, 0), NULL, 10) + 1;
		p->next_known = true;
	}
	pump(p);
}

/* Starts as many transactions as concurrency and rate allow. */
static void
pump(producer *p)
{
	if (!p->running)
		return;
	if (!p->next_known) {
		if (!p->loading && db_query(p->svc->db, SQL_MAX_N, 0, NULL, next_loaded, p) == 0)
			p->loading = true;
		return;
	}
	while (p->in_flight < p->concurrency && !p->stopping) {
		if (p->rate > 0 && p->tokens < 1.0)
			break;
		uint64_t n;
		if (p->nretry > 0)
			n = p->retry[p->nretry - 1];
		else if (p->remaining > 0)
			n = p->next_n;
		else
			break;
		if (!start_tx(p, n))
			break; /* the tick timer tries again */
		if (p->nretry > 0) {
			p->nretry--;
		} else {
			p->next_n++;
			p->remaining--;
		}
		if (p->rate > 0)
			p->tokens -= 1.0;
	}
	/* When draining, numbers still to retry are simply not written: the
	 * produced table is the record of what exists. */
	bool finished = p->in_flight == 0 && (p->stopping || (p->nretry == 0 && p->remaining == 0));
	if (finished) {
		p->running = false;
		p->finished_ms = trygg_now_ms();
		if (!p->stopping)
			uv_timer_stop(&p->tick);
		log_info("produce_finished",
		    "\"done\":%" PRIu64 ",\"retried\":%" PRIu64 ",\"ms\":%" PRIu64, p->done,
		    p->retried, p->finished_ms - p->started_ms);
		if (p->stopping)
			producer_stopped(p->owner);
	}
}

static void
on_tick(uv_timer_t *t)
{
	producer *p = t->data;
	uint64_t now = trygg_now_ms();
	if (p->rate > 0) {
		p->tokens += (double)(now - p->last_tick_ms) * p->rate / 1000.0;
		double cap = p->rate / 50.0 + 1.0; /* at most 20 ms of burst */
		if (p->tokens > cap)
			p->tokens = cap;
	}
	p->last_tick_ms = now;
	pump(p);
}

static json_t *
producer_status(const producer *p)
{
	uint64_t end = p->running ? trygg_now_ms() : p->finished_ms;
	return json_pack("{s:b, s:I, s:I, s:I, s:I, s:I}", "running", p->running, "done",
	    (json_int_t)p->done, "remaining", (json_int_t)p->remaining, "in_flight",
	    (json_int_t)p->in_flight, "retried", (json_int_t)p->retried, "elapsed_ms",
	    (json_int_t)(p->started_ms ? end - p->started_ms : 0));
}

static void
handle_produce_get(http_request *req, void *arg)
{
	testpub *tp = arg;
	http_respond_json(req, 200, producer_status(&tp->prod));
}

static void
handle_produce_post(http_request *req, void *arg)
{
	testpub *tp = arg;
	producer *p = &tp->prod;
	size_t len;
	const char *body = http_request_body(req, &len);
	json_t *obj;
	tjson_error err;
	int64_t count, concurrency = 16, rate = 0, payload_bytes = 0;
	if (tjson_parse(body, len, 0, 0, &obj, &err) != 0) {
		http_respond_error(req, (unsigned)err.status, err.code, err.message, err.field);
		return;
	}
	if (tjson_get_int(obj, "count", true, 1, 100000000, &count, &err) != 0 ||
	    tjson_get_int(obj, "concurrency", false, 1, 256, &concurrency, &err) != 0 ||
	    tjson_get_int(obj, "rate", false, 0, 1000000, &rate, &err) != 0 ||
	    tjson_get_int(obj, "payload_bytes", false, 0, 1024 * 1024, &payload_bytes, &err) != 0) {
		json_decref(obj);
		http_respond_error(req, (unsigned)err.status, err.code, err.message, err.field);
		return;
	}
	json_decref(obj);
	if (p->running || p->stopping) {
		http_respond_error(req, 409, "busy", "a production run is in progress", NULL);
		return;
	}
	p->running = true;
	p->remaining = (uint64_t)count;
	p->concurrency = (unsigned)concurrency;
	p->rate = (unsigned)rate;
	p->payload_bytes = (unsigned)payload_bytes;
	p->tokens = 1.0;
	p->done = p->retried = 0;
	p->started_ms = p->last_tick_ms = trygg_now_ms();
	uv_timer_start(&p->tick, on_tick, 5, 5);
	pump(p);
	http_respond_json(req, 202, producer_status(p));
}

/* Publishes one deliberately broken frame, for the fault tests. */
static void
handle_inject(http_request *req, void *arg)
{
	testpub *tp = arg;
	size_t len;
	const char *body = http_request_body(req, &len);
	json_t *obj;
	tjson_error err;
	const char *kind;
	if (!tp->cfg.allow_inject) {
		http_respond_error(req, 404, "not_found", "injection is disabled", NULL);
		return;
	}
	if (tjson_parse(body, len, 0, 0, &obj, &err) != 0) {
		http_respond_error(req, (unsigned)err.status, err.code, err.message, err.field);
		return;
	}
	if (tjson_get_string(obj, "kind", true, 64, &kind, &err) != 0) {
		json_decref(obj);
		http_respond_error(req, (unsigned)err.status, err.code, err.message, err.field);
		return;
	}
	nng_msg *m = NULL;
	Trygg__Bus__Frame f = TRYGG__BUS__FRAME__INIT;
	Trygg__Bus__Envelope env = TRYGG__BUS__ENVELOPE__INIT;
	env.publisher = tp->cfg.publisher;
	env.seq = 1;
	env.event_id = "00000000-0000-0000-0000-000000000000";
	env.type = "trygg.testing.TestEvent";
	if (strcmp(kind, "garbage") == 0) {
		nng_msg_alloc(&m, 64);
		memset(nng_msg_body(m), 0xff, 64);
	} else if (strcmp(kind, "oversized") == 0) {
		/* Just over the subscriber's RECVMAXSZ (1 MiB): small enough to sit
		 * in the kernel's socket buffer rather than in nng's send path. */
		nng_msg_alloc(&m, 1024u * 1024 + 64 * 1024);
		memset(nng_msg_body(m), 0, nng_msg_len(m));
	} else if (strcmp(kind, "no_kind") == 0) {
		m = envelope_message_pack(&f.base);
	} else if (strcmp(kind, "zero_seq") == 0) {
		env.seq = 0;
		f.kind_case = TRYGG__BUS__FRAME__KIND_EVENT;
		f.event = &env;
		m = envelope_message_pack(&f.base);
	} else if (strcmp(kind, "wrong_publisher") == 0) {
		env.publisher = "someone-else";
		env.seq = 999999;
		f.kind_case = TRYGG__BUS__FRAME__KIND_EVENT;
		f.event = &env;
		m = envelope_message_pack(&f.base);
	} else if (strcmp(kind, "empty") == 0) {
		nng_msg_alloc(&m, 0);
	} else {
		json_decref(obj);
		http_respond_error(req, 400, "invalid_value",
		    "kind must be garbage, oversized, no_kind, zero_seq, wrong_publisher or empty",
		    "kind");
		return;
	}
	json_t *answer = json_pack("{s:s}", "injected", kind);
	json_decref(obj);
	if (outbox_relay_publish_raw(svc_relay(&tp->svc), m) != 0) {
		nng_msg_free(m);
		json_decref(answer);
		http_respond_error(req, 503, "unavailable", "could not publish", NULL);
		return;
	}
	http_respond_json(req, 200, answer);
}

/* The producer has nothing in flight: svc flushes the outbox, then stops. */
static void
producer_stopped(testpub *tp)
{
	free(tp->prod.retry);
	tp->prod.retry = NULL;
	svc_drain_done(&tp->svc);
}

static void
on_drain(svc *s, void *arg)
{
	testpub *tp = arg;
	producer *p = &tp->prod;
	(void)s;
	uv_close((uv_handle_t *)&p->tick, NULL);
	if (p->running && p->in_flight > 0) {
		p->stopping = true; /* pump() calls producer_stopped() at the last commit */
		return;
	}
	p->running = false;
	producer_stopped(tp);
}

int
main(int argc, char **argv)
{
	static testpub tp;
	svc_options so = {.name = "testpub",
	    .schema = "testpub",
	    .options = options,
	    .config = &tp.cfg,
	    .common = &tp.cfg.common,
	    .migrations = testpub_migrations,
	    .argc = argc,
	    .argv = argv};
	int rv = svc_init(&tp.svc, &so);
	if (rv != 0)
		return rv == TRYGG_ECLOSED ? 0 : 1;
	if (svc_publish(&tp.svc, tp.cfg.publisher) != 0)
		return svc_abort(&tp.svc);
	tp.prod.svc = &tp.svc;
	tp.prod.owner = &tp;
	uv_timer_init(svc_uv(&tp.svc), &tp.prod.tick);
	tp.prod.tick.data = &tp.prod;
	if (http_server_route(tp.svc.http, "POST /produce", handle_produce_post, &tp) != 0 ||
	    http_server_route(tp.svc.http, "GET /produce", handle_produce_get, &tp) != 0 ||
	    http_server_route(tp.svc.http, "POST /debug/inject", handle_inject, &tp) != 0)
		return svc_abort(&tp.svc);
	svc_set_drain(&tp.svc, on_drain, &tp);
	return svc_run(&tp.svc);
}
