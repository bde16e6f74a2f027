/*
 * test_inbox.c: the inbox (inbox.c) against a real Postgres and a fake
 * publisher on real nng sockets.
 *
 * Needs TRYGG_TEST_DATABASE_URL (every test skips without it). The run
 * works in its own schema (test_inbox_<pid>) with the common migrations
 * applied, so the inbox's tables are the real ones; the effect of an event
 * is a row in `eff`, inserted in the inbox's transaction, so the order of
 * `eff.id` shows the order of the effects and a duplicate shows as a
 * second row.
 *
 * The publisher is played by the test: a pub socket for live events and
 * heartbeats, and a rep socket answering replay requests from an imagined
 * outbox holding events 1..last. It can hold a request unanswered and
 * answer it later (a publisher that stalls), which is how a reply arrives
 * after the inbox has reset.
 *
 * Every test ends with inbox_stop(), db_close(), uv_run() until nothing is
 * left and uv_loop_close() == 0, so a leaked handle fails the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pg_support.h"

#include "bus.h"
#include "db.h"
#include "envelope.h"
#include "inbox.h"
#include "log.h"
#include "migrate.h"
#include "strbuf.h"

#define PUBLISHER "tpub"
#define DB_NAME "tinbox"

static char schema[64];
static int url_seq;

/* ---------------------------------------------------------------------- */
/* The fake publisher                                                     */

typedef struct fake {
	bus_sock *pub, *rep;
	uint64_t last;      /* the imagined outbox holds 1..last */
	size_t payload_len; /* bytes of each event's payload (>= 24) */
	uint64_t hold_from; /* keep the next request from >= this unanswered */
	bool has_held;      /* a request is waiting for our answer */
	uint64_t held_from; /* ... for events from this seq */
	uint32_t held_max;  /* ... at most this many */
	unsigned requests;  /* replay requests received */
	uint32_t max_asked; /* the largest max_events of a request after the first */
	uint64_t last_from; /* from_seq of the last request */
	const char *epoch;  /* the epoch its replies carry (NULL: none, pre-epoch) */
} fake;

/* Fills an envelope for event `seq`; the strings live in the buffers. */
static void
fake_event(const fake *f, uint64_t seq, Trygg__Bus__Envelope *e, char *id, uint8_t *payload)
{
	trygg__bus__envelope__init(e);
	e->publisher = (char *)PUBLISHER;
	e->seq = seq;
	snprintf(id, 40, "00000000-0000-4000-8000-%012llu", (unsigned long long)seq);
	e->event_id = id;
	e->type = (char *)"test.Event";
	size_t len = f->payload_len < 24 ? 24 : f->payload_len;
	memset(payload, 'x', len);
	snprintf((char *)payload, 24, "%llu", (unsigned long long)seq);
	e->payload.data = payload;
	e->payload.len = len;
	e->occurred_at_us = 1700000000000000LL + (int64_t)seq;
}

/* Answers a request for events from..from+max-1 from the imagined outbox
 * as it was when it held 1..last. */
static void
fake_answer_as_of(fake *f, uint64_t from, uint32_t max, uint64_t last)
{
	Trygg__Bus__ReplayReply rep = TRYGG__BUS__REPLAY_REPLY__INIT;
	rep.status = TRYGG__BUS__REPLAY_REPLY__STATUS__OK;
	rep.last_seq = last;
	rep.first_available_seq = last > 0 ? 1 : 0;
	if (f->epoch != NULL)
		rep.epoch = (char *)f->epoch;
	size_t n = 0;
	if (from >= 1 && from <= last) {
		n = (size_t)(last - from + 1);
		if (max > 0 && n > max)
			n = max;
	}
	size_t plen = f->payload_len < 24 ? 24 : f->payload_len;
	Trygg__Bus__Envelope *envs = xcalloc(n + 1, sizeof(*envs));
	Trygg__Bus__Envelope **ptrs = xcalloc(n + 1, sizeof(*ptrs));
	char *ids = xcalloc(n + 1, 40);
	uint8_t *payloads = xcalloc(n + 1, plen);
	for (size_t i = 0; i < n; i++) {
		fake_event(f, from + i, &envs[i], ids + 40 * i, payloads + plen * i);
		ptrs[i] = &envs[i];
	}
	rep.n_events = n;
	rep.events = ptrs;
	nng_msg *m;
	assert_int_equal(envelope_replay_reply_pack(&rep, &m), 0);
	assert_int_equal(bus_reply(f->rep, m), 0);
	free(payloads);
	free(ids);
	free(ptrs);
	free(envs);
}

/* Answers a request from the imagined outbox as it is now. */
static void
fake_answer(fake *f, uint64_t from, uint32_t max)
{
	fake_answer_as_of(f, from, max, f->last);
}

static void
fake_on_request(void *arg, nng_msg *msg)
{
	fake *f = arg;
	Trygg__Bus__ReplayRequest *req = NULL;
	assert_int_equal(envelope_replay_request_unpack(nng_msg_body(msg), nng_msg_len(msg), 65536,
	                     &req),
	    0);
	nng_msg_free(msg);
	if (f->requests > 0 && req->max_events > f->max_asked)
		f->max_asked = req->max_events;
	f->requests++;
	f->last_from = req->from_seq;
	if (f->hold_from != 0 && req->from_seq >= f->hold_from) {
		f->hold_from = 0;
		f->has_held = true;
		f->held_from = req->from_seq;
		f->held_max = req->max_events;
	} else {
		fake_answer(f, req->from_seq, req->max_events);
	}
	envelope_replay_request_free(req);
}

/* Answers the request held back, now. */
static void
fake_release(fake *f)
{
	assert_true(f->has_held);
	f->has_held = false;
	fake_answer(f, f->held_from, f->held_max);
}

static void
fake_publish(fake *f, uint64_t seq)
{
	size_t plen = f->payload_len < 24 ? 24 : f->payload_len;
	char id[40];
	uint8_t *payload = xmalloc(plen);
	Trygg__Bus__Envelope e;
	fake_event(f, seq, &e, id, payload);
	Trygg__Bus__Frame fr = TRYGG__BUS__FRAME__INIT;
	fr.kind_case = TRYGG__BUS__FRAME__KIND_EVENT;
	fr.event = &e;
	nng_msg *m;
	assert_int_equal(envelope_frame_pack(&fr, &m), 0);
	assert_int_equal(bus_send(f->pub, m), 0);
	free(payload);
}

static void
fake_heartbeat(fake *f, const char *publisher, uint64_t last_seq)
{
	Trygg__Bus__Heartbeat hb = TRYGG__BUS__HEARTBEAT__INIT;
	hb.publisher = (char *)publisher;
	hb.last_seq = last_seq;
	Trygg__Bus__Frame fr = TRYGG__BUS__FRAME__INIT;
	fr.kind_case = TRYGG__BUS__FRAME__KIND_HEARTBEAT;
	fr.heartbeat = &hb;
	nng_msg *m;
	assert_int_equal(envelope_frame_pack(&fr, &m), 0);
	assert_int_equal(bus_send(f->pub, m), 0);
}

/* ---------------------------------------------------------------------- */
/* The test context: a loop, a db client, the fake publisher, the inbox   */

typedef struct ctx {
	uv_loop_t loop;
	db *db;
	inbox *in;
	fake f;
	char pub_url[128], rep_url[128];
	uint64_t poison_seq;   /* its effect fails with division by zero */
	uint64_t reject_seq;   /* the apply callback refuses it */
	uint64_t deferred_seq; /* its effect violates a deferred FK at commit */
	int committed;         /* on_committed calls */
	/* Set-based mode (the flush hook): apply only collects the seqs of
	 * the run, flush inserts them with one statement, which fails with
	 * division by zero when the run holds poison_seq. */
	bool set_based;
	strbuf run;
} ctx;

static int
apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev)
{
	ctx *c = arg;
	if (ev->seq == c->reject_seq)
		return TRYGG_EPROTO;
	char seq[24], len[24];
	if (c->set_based) {
		strbuf_appendf(&c->run, "%s%llu", c->run.len ? "," : "",
		    (unsigned long long)ev->seq);
		return 0;
	}
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)ev->seq);
	snprintf(len, sizeof(len), "%zu", ev->payload.len);
	const char *v[2] = {seq, len};
	db_batch_add(b, "INSERT INTO eff (seq, payload_len) VALUES ($1, $2)", 2, v);
	if (ev->seq == c->poison_seq)
		db_batch_add(b, "SELECT 1 / 0", 0, NULL);
	if (ev->seq == c->deferred_seq)
		db_batch_add(b, "INSERT INTO eff_child (parent) VALUES (-1)", 0, NULL);
	return 0;
}

/* The batch-level hook: one statement for the run's events, in order. */
static void
flush(void *arg, db_batch *b)
{
	ctx *c = arg;
	if (b != NULL && c->run.len > 0) {
		char *arr = xasprintf("{%s}", strbuf_str(&c->run));
		char poison[24];
		snprintf(poison, sizeof(poison), "%llu", (unsigned long long)c->poison_seq);
		const char *v[2] = {arr, poison};
		db_batch_add(b,
		    "INSERT INTO eff (seq, payload_len) SELECT u.s, 24 / (u.s <> $2::bigint)::int"
		    " FROM unnest($1::bigint[]) WITH ORDINALITY AS u (s, i) ORDER BY u.i",
		    2, v);
		free(arr);
	}
	strbuf_reset(&c->run);
}

static void
on_committed(void *arg, uint64_t last_seq)
{
	(void)last_seq;
	((ctx *)arg)->committed++;
}

/* Runs `sql` with the test schema on the search path; returns the first
 * value (malloc'd) or NULL. */
static char *
q(const char *sql)
{
	PGconn *c = PQconnectdb(db_url);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PQsetNoticeProcessor(c, quiet_notice, NULL);
	/* A test that failed may leave a lock behind: fail, do not hang. */
	char *set = xasprintf("SET search_path = %s; SET statement_timeout = '20s'", schema);
	PQclear(PQexec(c, set));
	free(set);
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
		fail_msg("query failed: %s: %s", sql, PQresultErrorMessage(r));
	char *out = NULL;
	if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
		out = xstrdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	return out;
}

/* Asserts that `sql` returns `want` as its first value ("" for NULL). */
static void
q_eq(const char *sql, const char *want)
{
	char *got = q(sql);
	if (strcmp(got ? got : "", want) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", sql, got ? got : "", want);
	free(got);
}

/* "1,2,...,n" without the listed seqs (0-terminated list). */
static char *
seq_list(uint64_t n, const uint64_t *except)
{
	size_t cap = 16 + n * 8, len = 0;
	char *s = xcalloc(1, cap);
	for (uint64_t i = 1; i <= n; i++) {
		bool skip = false;
		for (const uint64_t *e = except; e && *e; e++)
			skip = skip || *e == i;
		if (!skip)
			len += (size_t)snprintf(s + len, cap - len, "%s%llu", len ? "," : "",
			    (unsigned long long)i);
	}
	return s;
}

/* The effects, in the order they were committed. */
static void
assert_effects(const char *want)
{
	q_eq("SELECT coalesce(string_agg(seq::text, ',' ORDER BY id), '') FROM eff", want);
}

static void
on_tick(uv_timer_t *t)
{
	(void)t;
}

static void
on_tick_closed(uv_handle_t *h)
{
	*(bool *)h->data = true;
}

typedef bool (*pred_fn)(ctx *c);

/* Runs the loop until pred(c) holds or timeout_ms passes; returns pred(c).
 * pred runs at most every 20 ms (it may query Postgres). */
static bool
run_until(ctx *c, pred_fn pred, unsigned timeout_ms)
{
	uv_timer_t tick;
	bool closed = false;
	uv_timer_init(&c->loop, &tick);
	tick.data = &closed;
	uv_timer_start(&tick, on_tick, 5, 5);
	uint64_t deadline = trygg_now_ms() + timeout_ms, next = 0;
	bool ok = false;
	while (trygg_now_ms() < deadline) {
		uv_run(&c->loop, UV_RUN_ONCE);
		if (trygg_now_ms() >= next) {
			if ((ok = pred(c)))
				break;
			next = trygg_now_ms() + 20;
		}
	}
	uv_close((uv_handle_t *)&tick, on_tick_closed);
	while (!closed)
		uv_run(&c->loop, UV_RUN_NOWAIT);
	return ok;
}

static bool
pred_never(ctx *c)
{
	(void)c;
	return false;
}

/* Runs the loop for ms milliseconds. */
static void
run_for(ctx *c, unsigned ms)
{
	run_until(c, pred_never, ms);
}

static uint64_t want_applied;

static bool
pred_applied(ctx *c)
{
	inbox_stats st;
	inbox_get_stats(c->in, &st);
	return st.applied_seq >= want_applied;
}

/* Runs the loop until the cursor reached seq. */
static void
wait_applied(ctx *c, uint64_t seq, unsigned timeout_ms)
{
	want_applied = seq;
	if (!run_until(c, pred_applied, timeout_ms)) {
		inbox_stats st;
		inbox_get_stats(c->in, &st);
		fail_msg("cursor at %llu, want %llu", (unsigned long long)st.applied_seq,
		    (unsigned long long)seq);
	}
}

static bool
pred_waiting_on_lock(ctx *c)
{
	(void)c;
	char *n = q("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" DB_NAME
	            "' AND wait_event_type = 'Lock'");
	bool yes = strcmp(n, "0") != 0;
	free(n);
	return yes;
}

static void
make_url(char *buf, size_t len, const char *what)
{
	snprintf(buf, len, "ipc:///tmp/trygg-test-inbox-%d-%d-%s.ipc", (int)getpid(), url_seq++,
	    what);
}

/* Starts the fake publisher (with events 1..last), a db client and the
 * inbox with `o` (publisher and urls filled in here). */
static void
ctx_start(ctx *c, uint64_t last, inbox_options o)
{
	memset(c, 0, sizeof(*c));
	free(q("TRUNCATE eff, eff_child, inbox_failed; DELETE FROM inbox_cursor"));
	assert_int_equal(uv_loop_init(&c->loop), 0);
	c->f.last = last;
	make_url(c->pub_url, sizeof(c->pub_url), "pub");
	make_url(c->rep_url, sizeof(c->rep_url), "rep");
	bus_options bo = {.recv_max = 1u << 20};
	assert_int_equal(bus_pub_open(&c->loop, c->pub_url, &bo, &c->f.pub), 0);
	assert_int_equal(bus_rep_open(&c->loop, c->rep_url, &bo, fake_on_request, &c->f, &c->f.rep),
	    0);
	db_options dopt = {.conninfo = db_url,
	    .search_path = schema,
	    .name = DB_NAME,
	    .backoff_min_ms = 10,
	    .backoff_max_ms = 100};
	assert_int_equal(db_new(&c->loop, &dopt, &c->db), 0);
	o.publisher = PUBLISHER;
	o.sub_url = c->pub_url;
	o.req_url = c->rep_url;
	o.schema = schema;
	o.on_committed = on_committed;
	if (o.retry_ms == 0)
		o.retry_ms = 20;
	if (o.backoff_max_ms == 0)
		o.backoff_max_ms = 200;
	assert_int_equal(inbox_start(&c->loop, c->db, &o, apply, c, &c->in), 0);
}

static void
ctx_finish(ctx *c)
{
	inbox_stop(c->in);
	strbuf_fini(&c->run);
	bus_close(c->f.pub);
	bus_close(c->f.rep);
	db_close(c->db);
	assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&c->loop), 0);
}

/* Publishes live event `seq` until the inbox has applied it: proves the
 * subscription is up (nng's slow joiner) before a test relies on it. */
static void
sync_live(ctx *c, uint64_t seq)
{
	for (int i = 0; i < 200; i++) {
		fake_publish(&c->f, seq);
		want_applied = seq;
		if (run_until(c, pred_applied, 50))
			return;
	}
	fail_msg("live event %llu never applied", (unsigned long long)seq);
}

/* A session of the test's own that holds an exclusive lock on eff, so the
 * inbox's batches wait. */
static PGconn *
lock_eff(void)
{
	PGconn *h = PQconnectdb(db_url);
	assert_int_equal(PQstatus(h), CONNECTION_OK);
	char *sql = xasprintf("BEGIN; LOCK TABLE %s.eff IN EXCLUSIVE MODE", schema);
	PGresult *r = PQexec(h, sql);
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	free(sql);
	return h;
}

static void
unlock_eff(PGconn *h)
{
	PQclear(PQexec(h, "COMMIT"));
	PQfinish(h);
}

static int
signal_inbox_backend(const char *fn)
{
	char *sql = xasprintf("SELECT count(%s(pid)) FROM pg_stat_activity"
	                      " WHERE application_name = '" DB_NAME "'",
	    fn);
	char *n = q(sql);
	int k = atoi(n);
	free(n);
	free(sql);
	return k;
}

/* ---------------------------------------------------------------------- */
/* Tests                                                                  */

/* A backlog replayed on start, then live events with a gap the inbox
 * fills by replay: every effect once, in order. */
static void
test_replay_and_gap(void **state)
{
	(void)state;
	need_db();
	ctx c;
	ctx_start(&c, 2500, (inbox_options){.batch_max = 100});
	wait_applied(&c, 2500, 20000);
	c.f.last = 2501;
	sync_live(&c, 2501);
	c.f.last = 2510;
	for (uint64_t s = 2502; s <= 2510; s++)
		if (s != 2505)
			fake_publish(&c.f, s); /* 2505 lost on the way */
	wait_applied(&c, 2510, 10000);
	char *want = seq_list(2510, NULL);
	assert_effects(want);
	free(want);
	inbox_stats st;
	inbox_get_stats(c.in, &st);
	assert_true(st.gaps >= 1);
	assert_int_equal(st.failed, 0);
	assert_int_equal(st.applied, 2510);
	assert_true(c.committed >= 25);
	ctx_finish(&c);
}

/*
 * The regression of issue 8: a replay request is outstanding when the
 * inbox resets (its batch failed: connection killed), and its reply comes
 * after the cursor was reloaded. It starts past the reloaded cursor; it
 * must be discarded and asked again, never taken as a purged range.
 */
static void
test_stale_reply_after_reset(void **state)
{
	(void)state;
	need_db();
	ctx c;
	ctx_start(&c, 100, (inbox_options){.replay_timeout_ms = 30000, .replay_max = 50});
	wait_applied(&c, 100, 10000);
	c.f.last = 101;
	sync_live(&c, 101);

	PGconn *lock = lock_eff();
	c.f.last = 200;
	/* 102..151 arrive and wait for the lock; the request for 152.. is held. */
	c.f.hold_from = 152;
	fake_heartbeat(&c.f, PUBLISHER, 200);
	assert_true(run_until(&c, pred_waiting_on_lock, 10000));
	for (int i = 0; i < 200 && !c.f.has_held; i++)
		run_for(&c, 10);
	assert_true(c.f.has_held);
	assert_int_equal(c.f.held_from, 152);
	/* The batch fails with its connection; the inbox resets and reloads
	 * its cursor (101) while the request for 152.. is still out. */
	assert_true(signal_inbox_backend("pg_terminate_backend") >= 1);
	unlock_eff(lock);
	run_for(&c, 600);
	fake_release(&c.f);
	wait_applied(&c, 200, 10000);
	char *want = seq_list(200, NULL);
	assert_effects(want);
	free(want);
	inbox_stats st;
	inbox_get_stats(c.in, &st);
	assert_int_equal(st.stale_replies, 1);
	assert_int_equal(st.transient_errors, 1);
	ctx_finish(&c);
}

/*
 * Two relays of one publisher (replicas): one's heartbeat lags, so the
 * inbox asks a replay from 101; the answer is read before the other relay
 * commits 101..110, which then arrive live and are applied; the late answer
 * (last_seq 100, no events) must not read as "the publisher went back"
 * (that halted the notifier's intake stream in test_replicas): it was
 * below what we hold now, not below what we held when we asked.
 */
static void
test_late_reply_from_a_lagging_replica(void **state)
{
	(void)state;
	need_db();
	ctx c;
	ctx_start(&c, 100, (inbox_options){.replay_timeout_ms = 30000});
	c.f.epoch = "6b5748d2-28cc-4d3e-a3b4-89f98a21a747";
	wait_applied(&c, 100, 10000);
	c.f.last = 101;
	sync_live(&c, 101); /* the epoch is adopted from a reply by now */
	c.f.hold_from = 102;
	fake_heartbeat(&c.f, PUBLISHER, 50); /* the lagging relay: a probe from 102 */
	for (int i = 0; i < 200 && !c.f.has_held; i++)
		run_for(&c, 10);
	assert_true(c.f.has_held);
	assert_int_equal(c.f.held_from, 102);
	c.f.last = 110;
	for (uint64_t s = 102; s <= 110; s++)
		fake_publish(&c.f, s);
	wait_applied(&c, 110, 10000);
	/* The answer as the replica read it before 102..110 were committed. */
	c.f.has_held = false;
	fake_answer_as_of(&c.f, c.f.held_from, c.f.held_max, 101);
	run_for(&c, 300);
	c.f.last = 111;
	sync_live(&c, 111);
	inbox_stats st;
	inbox_get_stats(c.in, &st);
	assert_null(st.halted);
	char *want = seq_list(111, NULL);
	assert_effects(want);
	free(want);
	ctx_finish(&c);
}

/* A statement cancelled while it waits for a lock is a transient error:
 * the batch is retried, nothing is set aside. */
static void
test_cancel_is_transient(void **state)
{
	(void)state;
	need_db();
	ctx c;
	ctx_start(&c, 0, (inbox_options){.batch_max = 5});
	c.f.last = 1;
	sync_live(&c, 1);
	PGconn *lock = lock_eff();
	c.f.last = 30;
	fake_heartbeat(&c.f, PUBLISHER, 30);
	for (int i = 0; i < 3; i++) {
		assert_true(run_until(&c, pred_waiting_on_lock, 10000));
		assert_true(signal_inbox_backend("pg_cancel_backend") >= 1);
		run_for(&c, 50);
	}
	unlock_eff(lock);
	wait_applied(&c, 30, 10000);
	char *want = seq_list(30, NULL);
	assert_effects(want);
	free(want);
	q_eq("SELECT count(*) FROM inbox_failed", "0");
	inbox_stats st;
	inbox_get_stats(c.in, &st);
	assert_int_equal(st.failed, 0);
	assert_true(st.transient_errors >= 3);
	ctx_finish(&c);
}

/* A statement error is poison: that event is set aside (also one the
 * service refuses to decode), the rest applied. Re-applied on request
 * once fixed; a request while still broken counts an attempt. */
static void
test_poison_set_aside_and_retried(void **state)
{
	(void)state;
	need_db();
	ctx c;
	ctx_start(&c, 12, (inbox_options){0});
	c.poison_seq = 7;
	c.reject_seq = 9;
	wait_applied(&c, 12, 10000);
	const uint64_t skipped[] = {7, 9, 0};
	char *want = seq_list(12, skipped);
	assert_effects(want);
	free(want);
	q_eq("SELECT string_agg(seq || ':' || coalesce(sqlstate, '-') || ':' || attempts, ','"
	     " ORDER BY seq) FROM inbox_failed",
	    "7:22012:1,9:-:1");
	q_eq("SELECT error FROM inbox_failed WHERE seq = 9",
	    "rejected by the service: "
	    "protocol error");
	inbox_stats st;
	inbox_get_stats(c.in, &st);
	assert_int_equal(st.failed, 2);
	assert_int_equal(st.failed_pending, 2);

	/* 7 fixed, 9 still refused: both asked for. */
	c.poison_seq = 0;
	char *sql = xasprintf("UPDATE inbox_failed SET retry_requested_at = now(); NOTIFY %s_inbox",
	    schema);
	free(q(sql));
	free(sql);
	want_applied = 0;
	for (int i = 0; i < 300; i++) {
		run_for(&c, 10);
		inbox_get_stats(c.in, &st);
		if (st.retried == 1 && st.failed_pending == 1)
			break;
	}
	assert_int_equal(st.retried, 1);
	assert_int_equal(st.failed_pending, 1);
	run_for(&c, 200);
	assert_effects("1,2,3,4,5,6,8,10,11,12,7");
	q_eq("SELECT string_agg(seq || ':' || attempts || ':' || (retry_requested_at IS NULL), ',')"
	     " FROM inbox_failed",
	    "9:2:true");
	ctx_finish(&c);
}

/* An error at commit (a deferred foreign key) names no statement: the
 * batch must not count as applied; the inbox applies its events one by
 * one and sets aside the one that fails alone. */
static void
test_commit_time_error(void **state)
{
	(void)state;
	need_db();
	ctx c;
	ctx_start(&c, 10, (inbox_options){.batch_max = 100});
	c.deferred_seq = 5;
	wait_applied(&c, 10, 10000);
	const uint64_t skipped[] = {5, 0};
	char *want = seq_list(10, skipped);
	assert_effects(want);
	free(want);
	q_eq("SELECT seq || ':' || sqlstate FROM inbox_failed", "5:23503");
	q_eq("SELECT last_seq FROM inbox_cursor", "10");
	ctx_finish(&c);
}

/* The batch-level hook: the run's effects are one set statement. When it
 * fails for good (one event's data), the inbox goes one event per
 * transaction and sets aside only that event; the others are applied
 * exactly once, in order. An event the service refuses makes the inbox
 * abandon the run (flush with NULL: the collected events are forgotten),
 * so no event of it is applied twice either. */
static void
test_flush_set_statement_poison(void **state)
{
	(void)state;
	need_db();
	ctx c;
	ctx_start(&c, 6, (inbox_options){.batch_max = 100, .flush = flush});
	c.set_based = true;
	c.reject_seq = 3;
	wait_applied(&c, 6, 10000);
	assert_effects("1,2,4,5,6");
	c.poison_seq = 9;
	c.f.last = 12;
	fake_heartbeat(&c.f, PUBLISHER, 12);
	wait_applied(&c, 12, 10000);
	const uint64_t skipped[] = {3, 9, 0};
	char *want = seq_list(12, skipped);
	assert_effects(want);
	free(want);
	q_eq("SELECT string_agg(seq || ':' || coalesce(sqlstate, '-'), ',' ORDER BY seq)"
	     " FROM inbox_failed",
	    "3:-,9:22012");
	inbox_stats st;
	inbox_get_stats(c.in, &st);
	assert_int_equal(st.failed, 2);
	assert_true(st.batch_errors >= 1);

	/* Re-applied on request once fixed, through the hook as well. */
	c.poison_seq = 0;
	c.reject_seq = 0;
	char *sql = xasprintf("UPDATE inbox_failed SET retry_requested_at = now(); NOTIFY %s_inbox",
	    schema);
	free(q(sql));
	free(sql);
	for (int i = 0; i < 300; i++) {
		run_for(&c, 10);
		inbox_get_stats(c.in, &st);
		if (st.retried == 2)
			break;
	}
	assert_int_equal(st.retried, 2);
	q_eq("SELECT count(*) FROM inbox_failed", "0");
	q_eq("SELECT count(*) || ':' || count(DISTINCT seq) FROM eff", "12:12");
	ctx_finish(&c);
}

/* Another writer (a second replica) moved the cursor: TR001, reset, reload,
 * carry on from its position without applying anything twice. */
static void
test_cursor_conflict(void **state)
{
	(void)state;
	need_db();
	ctx c;
	ctx_start(&c, 10, (inbox_options){0});
	wait_applied(&c, 10, 10000);
	c.f.last = 11;
	sync_live(&c, 11);
	PGconn *lock = lock_eff();
	c.f.last = 20;
	fake_heartbeat(&c.f, PUBLISHER, 20);
	assert_true(run_until(&c, pred_waiting_on_lock, 10000));
	/* The other replica, while ours waits: */
	char *sql = xasprintf("INSERT INTO %s.eff (seq, payload_len) SELECT g, 24 FROM"
	                      " generate_series(12, 15) g;"
	                      " UPDATE %s.inbox_cursor SET last_seq = 15",
	    schema, schema);
	PGresult *r = PQexec(lock, sql);
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	free(sql);
	unlock_eff(lock);
	wait_applied(&c, 20, 10000);
	char *want = seq_list(20, NULL);
	assert_effects(want);
	free(want);
	inbox_stats st;
	inbox_get_stats(c.in, &st);
	assert_int_equal(st.failed, 0);
	assert_true(st.batch_errors >= 1);
	ctx_finish(&c);
}

/* A heartbeat naming another publisher is dropped and counted; believed,
 * its last_seq would make the inbox ask for replays in a tight loop. */
static void
test_foreign_heartbeat_dropped(void **state)
{
	(void)state;
	need_db();
	ctx c;
	ctx_start(&c, 0, (inbox_options){0});
	c.f.last = 1;
	sync_live(&c, 1);
	unsigned before = c.f.requests;
	fake_heartbeat(&c.f, "someone-else", 1000000);
	run_for(&c, 500);
	inbox_stats st;
	inbox_get_stats(c.in, &st);
	assert_int_equal(st.invalid, 1);
	assert_int_equal(st.known_seq, 1);
	assert_true(c.f.requests - before <= 1);
	ctx_finish(&c);
}

/* The queue is bounded in bytes too: with big events, replay asks only for
 * what fits, and everything still arrives. */
static void
test_queue_bounded_in_bytes(void **state)
{
	(void)state;
	need_db();
	ctx c;
	ctx_start(&c, 0, (inbox_options){.queue_max_bytes = 16384, .batch_max = 4});
	c.f.payload_len = 2000;
	c.f.last = 1;
	sync_live(&c, 1);
	PGconn *lock = lock_eff();
	c.f.last = 120;
	fake_heartbeat(&c.f, PUBLISHER, 120);
	assert_true(run_until(&c, pred_waiting_on_lock, 10000));
	run_for(&c, 300);
	unlock_eff(lock);
	wait_applied(&c, 120, 20000);
	char *want = seq_list(120, NULL);
	assert_effects(want);
	free(want);
	q_eq("SELECT min(payload_len) FROM eff", "2000");
	/* 16 KiB holds at most eight such events. */
	assert_true(c.f.max_asked > 0);
	assert_true(c.f.max_asked <= 8);
	ctx_finish(&c);
}

/* ---------------------------------------------------------------------- */

static int
group_setup(void **state)
{
	(void)state;
	log_init("test_inbox", LOG_WARN);
	db_url = getenv("TRYGG_TEST_DATABASE_URL");
	if (db_url != NULL && *db_url == '\0')
		db_url = NULL;
	snprintf(schema, sizeof(schema), "test_inbox_%d", (int)getpid());
	if (db_url == NULL)
		return 0;
	if (migrate_apply(db_url, schema, NULL, 10000) != 0)
		return -1;
	free(q("CREATE TABLE eff (id bigserial PRIMARY KEY, seq bigint NOT NULL,"
	       " payload_len int NOT NULL)"));
	free(q("CREATE TABLE eff_parent (id bigint PRIMARY KEY)"));
	free(q("CREATE TABLE eff_child (parent bigint REFERENCES eff_parent (id)"
	       " DEFERRABLE INITIALLY DEFERRED)"));
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	drop_test_schema(schema);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_replay_and_gap),
	    cmocka_unit_test(test_stale_reply_after_reset),
	    cmocka_unit_test(test_late_reply_from_a_lagging_replica),
	    cmocka_unit_test(test_cancel_is_transient),
	    cmocka_unit_test(test_poison_set_aside_and_retried),
	    cmocka_unit_test(test_commit_time_error),
	    cmocka_unit_test(test_flush_set_statement_poison),
	    cmocka_unit_test(test_cursor_conflict),
	    cmocka_unit_test(test_foreign_heartbeat_dropped),
	    cmocka_unit_test(test_queue_bounded_in_bytes),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
