/*
 * test_outbox.c: the outbox relay (outbox.c) against a real Postgres.
 *
 * Needs TRYGG_TEST_DATABASE_URL (a superuser URL); every test skips without
 * it. Each test migrates a fresh schema (test_outbox_<pid>) with the common
 * migrations, starts a relay on it with inproc sockets, produces events
 * through outbox_add_event on separate connections, and talks to the relay
 * as a subscriber would: a sub socket for frames, a req socket for
 * replays. A blocking admin connection plays the operator.
 *
 * Every test ends by stopping the relay, closing the clients and sockets,
 * running the loop dry and asserting uv_loop_close() == 0.
 */
#include <inttypes.h>
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
#include "log.h"
#include "migrate.h"
#include "outbox.h"

#define REPLY_BYTES_MAX (4u * 1024 * 1024) /* outbox.c's bound on a reply */

static char schema[64];
static int url_n;

/* ---------------------------------------------------------------------- */
/* Fixture                                                                */

typedef struct fx {
	uv_loop_t loop;
	db *seq_db, *replay_db; /* the relay's two connections */
	db *prod[3];            /* producers' connections */
	outbox_relay *relay;
	bus_sock *sub, *req;
	char pub_url[64], rep_url[64];
	int up;        /* connected clients */
	int committed; /* producer batches committed */
	int failed;    /* producer batches failed */
	/* what the sub socket saw */
	int heartbeats, events;
	char hb_epoch[64];
	uint64_t hb_last_seq, hb_base;
	char ev_epoch_bad; /* an event whose epoch was not hb_epoch's */
	uint64_t ev_last;  /* the seq of the last live event */
	int ev_not_next;   /* live events whose seq was not ev_last + 1 */
	char *live[16];    /* the first live events, as describe() writes them */
	/* the last replay reply */
	int replies;
	size_t reply_bytes;
	Trygg__Bus__ReplayReply *reply;
} fx;

static void
on_state(void *arg, bool connected)
{
	if (connected)
		((fx *)arg)->up++;
}

/* Every field of an event, as one string. */
static char *
describe(const Trygg__Bus__Envelope *e)
{
	char hex[64] = "";
	for (size_t i = 0; i < e->payload.len && i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", e->payload.data[i]);
	return xasprintf("%s %" PRIu64 " %s %s %" PRId64 " %s %zu:%s", e->publisher, e->seq,
	    e->event_id, e->type, e->occurred_at_us, e->epoch, e->payload.len, hex);
}

static void
on_frame(void *arg, nng_msg *msg)
{
	fx *f = arg;
	Trygg__Bus__Frame *fr;
	int rv = envelope_frame_unpack(nng_msg_body(msg), nng_msg_len(msg), 0, &fr);
	nng_msg_free(msg);
	assert_int_equal(rv, 0);
	if (fr->kind_case == TRYGG__BUS__FRAME__KIND_HEARTBEAT) {
		f->heartbeats++;
		snprintf(f->hb_epoch, sizeof(f->hb_epoch), "%s", fr->heartbeat->epoch);
		f->hb_last_seq = fr->heartbeat->last_seq;
		f->hb_base = fr->heartbeat->epoch_base_seq;
	} else {
		if ((size_t)f->events < TRYGG_ARRAY_LEN(f->live))
			f->live[f->events] = describe(fr->event);
		f->events++;
		if (fr->event->seq != f->ev_last + 1)
			f->ev_not_next++;
		f->ev_last = fr->event->seq;
		if (strlen(fr->event->epoch) != 36)
			f->ev_epoch_bad = 1;
	}
	envelope_frame_free(fr);
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

/* Runs the loop until pred(f) holds or timeout_ms passes. */
static bool
run_until(fx *f, bool (*pred)(fx *f), unsigned timeout_ms)
{
	uv_timer_t tick;
	bool closed = false;
	uv_timer_init(&f->loop, &tick);
	tick.data = &closed;
	uv_timer_start(&tick, on_tick, 5, 5);
	uint64_t deadline = trygg_now_ms() + timeout_ms;
	while (!pred(f) && trygg_now_ms() < deadline)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&tick, on_tick_closed);
	while (!closed)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	return pred(f);
}

static bool
all_up(fx *f)
{
	return f->up == 5;
}

/* A fresh schema, migrated, and a relay on it with `o`'s timings. */
static void
fx_start(fx *f, const outbox_options *extra)
{
	need_db();
	memset(f, 0, sizeof(*f));
	char *sql = xasprintf("DROP SCHEMA IF EXISTS %s CASCADE", schema);
	free(admin_exec(sql, 0, NULL));
	free(sql);
	assert_int_equal(migrate_apply(db_url, schema, NULL, 5000), 0);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	db_options dbo = {.conninfo = db_url, .search_path = schema, .name = "test_outbox"};
	db **clients[5] = {&f->seq_db, &f->replay_db, &f->prod[0], &f->prod[1], &f->prod[2]};
	for (int i = 0; i < 5; i++) {
		assert_int_equal(db_new(&f->loop, &dbo, clients[i]), 0);
		db_set_state_cb(*clients[i], on_state, f);
	}
	assert_true(run_until(f, all_up, 10000));
	url_n++;
	snprintf(f->pub_url, sizeof(f->pub_url), "inproc://test_outbox_pub_%d", url_n);
	snprintf(f->rep_url, sizeof(f->rep_url), "inproc://test_outbox_rep_%d", url_n);
	outbox_options o = extra ? *extra : (outbox_options){0};
	o.publisher = "tp";
	o.schema = schema;
	o.pub_url = f->pub_url;
	o.rep_url = f->rep_url;
	o.replay_db = f->replay_db;
	if (o.heartbeat_ms == 0)
		o.heartbeat_ms = 100;
	if (o.poll_ms == 0)
		o.poll_ms = 50;
	assert_int_equal(outbox_relay_start(&f->loop, f->seq_db, &o, &f->relay), 0);
	bus_options bo = {.recv_max = 16u * 1024 * 1024};
	assert_int_equal(bus_sub_open(&f->loop, f->pub_url, &bo, on_frame, f, &f->sub), 0);
	assert_int_equal(bus_req_open(&f->loop, f->rep_url, &bo, &f->req), 0);
}

static void
fx_finish(fx *f)
{
	envelope_replay_reply_free(f->reply);
	for (size_t i = 0; i < TRYGG_ARRAY_LEN(f->live); i++)
		free(f->live[i]);
	outbox_relay_stop(f->relay);
	bus_close(f->sub);
	bus_close(f->req);
	db_close(f->seq_db);
	db_close(f->replay_db);
	for (int i = 0; i < 3; i++)
		db_close(f->prod[i]);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void
produced(void *arg, const db_reply *rep)
{
	fx *f = arg;
	if (rep->err == 0)
		f->committed++;
	else
		f->failed++;
	outbox_relay_kick(f->relay);
}

/* Submits one transaction with one event of `len` payload bytes. */
static void
produce_one(fx *f, db *d, size_t len)
{
	uint8_t *payload = xcalloc(1, len + 1);
	db_batch *b = db_batch_new();
	assert_int_equal(outbox_add_event(b, "trygg.testing.TestEvent", payload, len), 0);
	free(payload);
	assert_int_equal(db_submit(d, b, produced, f), 0);
}

/* Submits one transaction of `sql` with $1 = n; with `fail`, a statement
 * after it fails. */
static void
submit_n(db *d, const char *sql, int n, bool fail, db_cb cb, void *arg)
{
	char count[16];
	snprintf(count, sizeof(count), "%d", n);
	const char *values[1] = {count};
	db_batch *b = db_batch_new();
	db_batch_add(b, sql, 1, values);
	if (fail)
		db_batch_add(b, "SELECT 1 / 0", 0, NULL);
	assert_int_equal(db_submit(d, b, cb, arg), 0);
}

/* Submits one transaction that numbers its `n` events itself
 * (outbox_reserve, as intake's store does); with `fail`, it reserves and
 * then fails, so its numbers must come back. */
static void
produce_numbered(fx *f, db *d, int n, bool fail)
{
	submit_n(d,
	    "INSERT INTO outbox (pub_seq, event_type, payload)"
	    " SELECT first + g - 1, 'trygg.testing.TestEvent', '\\x00'::bytea"
	    " FROM outbox_reserve($1::bigint) first, generate_series(1, $1::int) g",
	    n, fail, produced, f);
}

static uint64_t want_seq;
static bool
relay_reached(fx *f)
{
	outbox_stats st;
	outbox_relay_get_stats(f->relay, &st);
	return st.last_seq >= want_seq && f->committed + f->failed > 0;
}

static void
wait_sequenced(fx *f, uint64_t n)
{
	want_seq = n;
	assert_true(run_until(f, relay_reached, 20000));
}

static void
on_reply(void *arg, int err, nng_msg *msg)
{
	fx *f = arg;
	assert_int_equal(err, 0);
	envelope_replay_reply_free(f->reply);
	f->reply = NULL;
	f->reply_bytes = nng_msg_len(msg);
	assert_int_equal(envelope_replay_reply_unpack(nng_msg_body(msg), nng_msg_len(msg),
	                     64u * 1024 * 1024, &f->reply),
	    0);
	nng_msg_free(msg);
	f->replies++;
}

static int want_replies;
static bool
replied(fx *f)
{
	return f->replies >= want_replies;
}

/* Asks for a replay and waits for the reply (in f->reply). */
static void
replay(fx *f, uint64_t from, uint32_t max)
{
	Trygg__Bus__ReplayRequest rq = TRYGG__BUS__REPLAY_REQUEST__INIT;
	rq.publisher = "tp";
	rq.from_seq = from;
	rq.max_events = max;
	nng_msg *m;
	assert_int_equal(envelope_replay_request_pack(&rq, &m), 0);
	want_replies = f->replies + 1;
	assert_int_equal(bus_request(f->req, m, 5000, on_reply, f), 0);
	assert_true(run_until(f, replied, 10000));
	assert_int_equal(f->reply->status, TRYGG__BUS__REPLAY_REPLY__STATUS__OK);
}

static char *admin(const char *fmt, ...) TRYGG_PRINTF(1, 2);
static char *
admin(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *sql = NULL;
	assert_true(vasprintf(&sql, fmt, ap) >= 0);
	va_end(ap);
	char *v = admin_exec(sql, 0, NULL);
	free(sql);
	return v;
}

static long
admin_long(const char *fmt, const char *arg)
{
	char *v = admin(fmt, arg);
	long n = v ? strtol(v, NULL, 10) : -1;
	free(v);
	return n;
}

/* ---------------------------------------------------------------------- */
/* Tests                                                                  */

/* Three producers commit concurrently; the numbers are 1..N without a gap
 * or a duplicate, and every live event carries the epoch. */
static void
test_sequencing_contiguous_across_producers(void **state)
{
	(void)state;
	fx f;
	fx_start(&f, NULL);
	enum { PER = 300 };
	for (int i = 0; i < PER; i++)
		for (int p = 0; p < 3; p++)
			produce_one(&f, f.prod[p], 20);
	wait_sequenced(&f, 3 * PER);
	assert_int_equal(f.failed, 0);
	char *v = admin("SELECT count(*)::text || ' ' || count(DISTINCT pub_seq) || ' ' ||"
	                " min(pub_seq) || ' ' || max(pub_seq) FROM %s.outbox",
	    schema);
	assert_string_equal(v, "900 900 1 900");
	free(v);
	assert_int_equal(admin_long("SELECT last_seq FROM %s.outbox_state", schema), 900);
	assert_false(f.ev_epoch_bad);
	fx_finish(&f);
}

static bool
heartbeat_seen(fx *f)
{
	return f->heartbeats > 0;
}

static int want_events;
static bool
events_seen(fx *f)
{
	return f->events >= want_events;
}

/* Producers that number their events at insert (outbox_reserve) commit
 * concurrently with producers that leave theirs to the relay, and with
 * producers that reserve and roll back: the numbers are still 1..N without
 * a hole or a duplicate, and the live stream carries each event once, in
 * order. */
static void
test_numbered_at_insert_and_by_the_relay_interleave(void **state)
{
	(void)state;
	fx f;
	fx_start(&f, NULL);
	assert_true(run_until(&f, heartbeat_seen, 5000)); /* subscribed */
	enum { ROUNDS = 150 };
	for (int i = 0; i < ROUNDS; i++) {
		produce_one(&f, f.prod[0], 20);
		produce_numbered(&f, f.prod[1], 1 + i % 4, false);
		produce_numbered(&f, f.prod[2], 3, i % 5 == 0);
	}
	/* Events per round: 1 + (1..4) + 3 when it does not fail. */
	int want = 0;
	for (int i = 0; i < ROUNDS; i++)
		want += 1 + (1 + i % 4) + (i % 5 == 0 ? 0 : 3);
	want_events = want;
	assert_true(run_until(&f, events_seen, 20000));
	assert_int_equal(f.failed, ROUNDS / 5);
	char *v = admin("SELECT count(*)::text || ' ' || count(DISTINCT pub_seq) || ' ' ||"
	                " min(pub_seq) || ' ' || max(pub_seq) FROM %s.outbox",
	    schema);
	char *expect = xasprintf("%d %d 1 %d", want, want, want);
	assert_string_equal(v, expect);
	free(expect);
	free(v);
	assert_int_equal(admin_long("SELECT last_seq FROM %s.outbox_state", schema), want);
	assert_int_equal(f.events, want);
	assert_int_equal(f.ev_not_next, 0);
	assert_int_equal(f.ev_last, (uint64_t)want);
	fx_finish(&f);
}

static bool
two_events(fx *f)
{
	return f->events >= 2;
}

/* The relay numbers a row while a producer holds outbox_reserve's lock
 * (reserved, not yet committed: its number is not in the relay's
 * snapshot): the relay's numbering waits for that commit and continues
 * after the producer's number, without a failed round. */
static void
test_relay_numbers_after_a_producer_holding_the_lock(void **state)
{
	(void)state;
	fx f;
	fx_start(&f, NULL);
	assert_true(run_until(&f, heartbeat_seen, 5000));
	db_batch *b = db_batch_new();
	db_batch_add(b,
	    "INSERT INTO outbox (pub_seq, event_type, payload)"
	    " SELECT outbox_reserve(1), 'trygg.testing.TestEvent', '\\x00'::bytea",
	    0, NULL);
	db_batch_add(b, "SELECT pg_sleep(0.6)", 0, NULL);
	assert_int_equal(db_submit(f.prod[1], b, produced, &f), 0);
	/* Commits at ~0.15 s, unnumbered, and kicks the relay. */
	b = db_batch_new();
	db_batch_add(b, "SELECT pg_sleep(0.15)", 0, NULL);
	assert_int_equal(outbox_add_event(b, "trygg.testing.TestEvent", (const uint8_t *)"x", 1),
	    0);
	assert_int_equal(db_submit(f.prod[0], b, produced, &f), 0);
	assert_true(run_until(&f, two_events, 10000));
	assert_int_equal(f.failed, 0);
	outbox_stats st;
	outbox_relay_get_stats(f.relay, &st);
	assert_int_equal(st.errors, 0);
	assert_int_equal(f.ev_not_next, 0);
	assert_int_equal(f.ev_last, 2);
	char *v = admin("SELECT string_agg(pub_seq || ':' || octet_length(payload), ' '"
	                " ORDER BY pub_seq) FROM %s.outbox",
	    schema);
	assert_string_equal(v, "1:1 2:1");
	free(v);
	fx_finish(&f);
}

static bool
relay_sent(fx *f)
{
	outbox_stats st;
	outbox_relay_get_stats(f->relay, &st);
	return st.last_seq >= want_seq;
}

static uint64_t polls_until_ms;
static bool
time_passed(fx *f)
{
	(void)f;
	return trygg_now_ms() >= polls_until_ms;
}

/* Runs the loop for ms milliseconds. */
static void
run_for(fx *f, unsigned ms)
{
	polls_until_ms = trygg_now_ms() + ms;
	run_until(f, time_passed, ms + 1000);
}

/* Rows read so far from the outbox's heap by sequential scans and from its
 * index of unnumbered rows: what an idle check can read (none, when it
 * uses that index). Not the reads through pub_seq's index: those are the
 * replay's, and a backend reports its statistics up to seconds late (CI
 * under ASan saw nine replay rounds' reads arrive after the relay had
 * published everything). */
static long
outbox_rows_read(void)
{
	char *v = admin("SELECT coalesce((SELECT seq_tup_read FROM pg_stat_user_tables"
	                " WHERE schemaname = '%s' AND relname = 'outbox'), 0)"
	                " + coalesce((SELECT idx_tup_read FROM pg_stat_user_indexes"
	                " WHERE schemaname = '%s' AND indexrelname = 'outbox_unsequenced'), 0)",
	    schema, schema);
	long n = v ? strtol(v, NULL, 10) : -1;
	free(v);
	return n;
}

/* The relay's questions about unnumbered rows keep using the partial index
 * when the outbox grows after they were first planned (a prepared
 * statement keeps the plan it made while the table was empty: a full scan
 * of the outbox in every idle check, 5 a second, was measured in the
 * intake bench): no sequential scan of the outbox while the relay idles
 * over 60,000 numbered rows. */
static void
test_idle_checks_do_not_scan_a_grown_outbox(void **state)
{
	(void)state;
	fx f;
	fx_start(&f, NULL);
	run_for(&f, 600); /* ~12 idle checks, a round: the plans are made now */
	free(admin("INSERT INTO %s.outbox (pub_seq, event_type, payload)"
	           " SELECT g, 'trygg.testing.TestEvent', '\\x00'::bytea"
	           " FROM generate_series(1, 60000) g",
	    schema));
	free(admin("UPDATE %s.outbox_state SET last_seq = 60000", schema));
	want_seq = 60000;
	assert_true(run_until(&f, relay_sent, 20000));
	run_for(&f, 1500); /* the plans made on the empty table are in use */
	long before = outbox_rows_read();
	run_for(&f, 2000); /* ~40 idle checks */
	long after = outbox_rows_read();
	assert_true(before >= 0);
	if (after - before > 1000)
		fail_msg("%ld outbox rows or index entries read in 2 s of idling", after - before);
	fx_finish(&f);
}

/* A transaction that numbered its events at insert and what its answer
 * said of them, to hand over to the relay when the test chooses. */
typedef struct handover {
	bool done;
	int n;
	uint64_t seq[4];
	char event_id[4][40];
	char epoch[40];
	uint8_t payload[4];
} handover;

#define OCCURRED_US INT64_C(1700000000000000)

static void
handover_committed(void *arg, const db_reply *rep)
{
	handover *h = arg;
	assert_int_equal(rep->err, 0);
	const PGresult *res = rep->results[0];
	h->n = PQntuples(res);
	assert_true(h->n > 0 && h->n <= 4);
	for (int i = 0; i < h->n; i++) {
		h->seq[i] = strtoull(PQgetvalue(res, i, 0), NULL, 10);
		snprintf(h->event_id[i], sizeof(h->event_id[i]), "%s", PQgetvalue(res, i, 1));
		h->payload[i] = (uint8_t)(i + 1);
	}
	snprintf(h->epoch, sizeof(h->epoch), "%s", PQgetvalue(res, 0, 2));
	h->done = true;
}

static handover *waiting_for;
static bool
handover_done(fx *f)
{
	(void)f;
	return waiting_for->done;
}

/* Commits n events numbered at insert (as intake's store does: payload
 * byte i, occurred at OCCURRED_US + seq) and waits for the answer. */
static void
produce_handover(fx *f, db *d, int n, handover *h)
{
	memset(h, 0, sizeof(*h));
	submit_n(d,
	    "WITH s AS (SELECT * FROM outbox_reserve_epoch($1::bigint)),"
	    " e AS (SELECT s.first + g - 1 AS seq, gen_random_uuid() AS event_id, g"
	    "  FROM s, generate_series(1, $1::int) g),"
	    " o AS (INSERT INTO outbox (pub_seq, event_id, event_type, payload, occurred_at)"
	    "  SELECT seq, event_id, 'trygg.testing.TestEvent',"
	    "  decode(lpad(to_hex(g), 2, '0'), 'hex'),"
	    "  'epoch'::timestamptz + (1700000000000000 + seq) * interval '1 microsecond' FROM e)"
	    " SELECT seq, event_id, s.epoch FROM s, e ORDER BY seq",
	    n, false, handover_committed, h);
	waiting_for = h;
	assert_true(run_until(f, handover_done, 10000));
}

/* Hands h's events over, as written, in `epoch` (NULL: the one returned). */
static void
hand_over(fx *f, const handover *h, const char *epoch)
{
	outbox_event ev[4];
	for (int i = 0; i < h->n; i++)
		ev[i] = (outbox_event){.seq = h->seq[i],
		    .event_id = h->event_id[i],
		    .type = "trygg.testing.TestEvent",
		    .payload = &h->payload[i],
		    .len = 1,
		    .occurred_us = OCCURRED_US + (int64_t)h->seq[i]};
	outbox_relay_committed(f->relay, epoch ? epoch : h->epoch, ev, (size_t)h->n);
}

/* Events handed over as they commit go out with no round when they
 * continue the stream; handed over out of order (two connections' answers
 * come in either order) or in another epoch, a round reads them back.
 * Each goes out live once, in order, exactly as a replay gives it. */
static void
test_committed_events_go_out_without_a_round(void **state)
{
	(void)state;
	fx f;
	fx_start(&f, &(outbox_options){.poll_ms = 60000}); /* no idle checks */
	assert_true(run_until(&f, heartbeat_seen, 5000));
	run_for(&f, 200); /* the first state read's round is over */
	outbox_stats st0, st;
	outbox_relay_get_stats(f.relay, &st0);

	handover a, b, c, d, e;
	produce_handover(&f, f.prod[0], 3, &a);
	hand_over(&f, &a, NULL);
	produce_handover(&f, f.prod[1], 2, &b);
	hand_over(&f, &b, NULL);
	want_events = 5;
	assert_true(run_until(&f, events_seen, 5000));
	outbox_relay_get_stats(f.relay, &st);
	assert_int_equal(st.rounds, st0.rounds);
	assert_int_equal(st.committed, 5);

	produce_handover(&f, f.prod[0], 2, &c); /* 6, 7 */
	produce_handover(&f, f.prod[1], 2, &d); /* 8, 9 */
	hand_over(&f, &d, NULL);                /* ahead of 6: a round */
	hand_over(&f, &c, NULL);                /* while that round runs */
	want_events = 9;
	assert_true(run_until(&f, events_seen, 5000));

	produce_handover(&f, f.prod[2], 1, &e);
	hand_over(&f, &e, "00000000-0000-4000-8000-000000000000");
	want_events = 10;
	assert_true(run_until(&f, events_seen, 5000));
	run_for(&f, 300); /* a duplicate would come now */
	assert_int_equal(f.events, 10);
	assert_int_equal(f.ev_not_next, 0);
	outbox_relay_get_stats(f.relay, &st);
	assert_true(st.rounds >= st0.rounds + 2);
	assert_int_equal(st.last_seq, 10);
	assert_int_equal(st.errors, 0);

	replay(&f, 1, 100);
	assert_int_equal(f.reply->n_events, 10);
	for (int i = 0; i < 10; i++) {
		char *r = describe(f.reply->events[i]);
		assert_string_equal(f.live[i], r);
		free(r);
	}
	fx_finish(&f);
}

/* Idle checks that race with handed-over events (a check's snapshot taken
 * before a commit whose events went out before its answer came) take no
 * event for unpublished: nothing goes out twice. */
static void
test_idle_checks_racing_handed_over_events_send_nothing_twice(void **state)
{
	(void)state;
	fx f;
	fx_start(&f, &(outbox_options){.poll_ms = 1});
	assert_true(run_until(&f, heartbeat_seen, 5000));
	run_for(&f, 100);
	outbox_stats st0, st;
	outbox_relay_get_stats(f.relay, &st0);
	enum { N = 300 };
	for (int i = 0; i < N; i++) {
		handover h;
		produce_handover(&f, f.prod[i % 3], 1, &h);
		hand_over(&f, &h, NULL);
	}
	want_events = N;
	assert_true(run_until(&f, events_seen, 10000));
	run_for(&f, 200);
	outbox_relay_get_stats(f.relay, &st);
	assert_int_equal(f.ev_not_next, 0);
	assert_int_equal(f.events, N);
	assert_true(st.committed > N / 2); /* the race was run: most went out handed over */
	assert_true(st.rounds > st0.rounds);
	fx_finish(&f);
}

static bool
heartbeat_new(fx *f)
{
	return f->heartbeats > 0 && f->hb_base == 50;
}

/* Replay reads the outbox; the reply and the heartbeat carry the epoch and
 * its base, and outbox_new_epoch() changes both. */
static void
test_replay_and_epoch(void **state)
{
	(void)state;
	fx f;
	fx_start(&f, NULL);
	for (int i = 0; i < 50; i++)
		produce_one(&f, f.prod[i % 3], 10);
	wait_sequenced(&f, 50);
	char *epoch = admin("SELECT epoch::text FROM %s.outbox_state", schema);
	replay(&f, 10, 20);
	assert_int_equal(f.reply->n_events, 20);
	for (size_t i = 0; i < f.reply->n_events; i++) {
		assert_int_equal(f.reply->events[i]->seq, 10 + i);
		assert_string_equal(f.reply->events[i]->epoch, epoch);
	}
	assert_int_equal(f.reply->last_seq, 50);
	assert_int_equal(f.reply->first_available_seq, 1);
	assert_string_equal(f.reply->epoch, epoch);
	assert_int_equal(f.reply->epoch_base_seq, 0);

	/* The operator's step after a restore. */
	char *fresh = admin("SELECT %s.outbox_new_epoch()::text", schema);
	assert_string_not_equal(fresh, epoch);
	assert_true(run_until(&f, heartbeat_new, 5000));
	assert_string_equal(f.hb_epoch, fresh);
	assert_int_equal(f.hb_last_seq, 50);
	replay(&f, 51, 10);
	assert_int_equal(f.reply->n_events, 0);
	assert_string_equal(f.reply->epoch, fresh);
	assert_int_equal(f.reply->epoch_base_seq, 50);
	free(fresh);
	free(epoch);
	fx_finish(&f);
}

/* Events at the size limit: a reply never exceeds its bound, always holds
 * at least one event, and the replies together hold them all in order.
 * One byte more is refused at outbox_add_event. */
static void
test_reply_size_bound_with_large_events(void **state)
{
	(void)state;
	fx f;
	fx_start(&f, NULL);
	db_batch *b = db_batch_new();
	uint8_t *big = xcalloc(1, OUTBOX_PAYLOAD_MAX + 1);
	assert_int_equal(outbox_add_event(b, "t", big, OUTBOX_PAYLOAD_MAX + 1), TRYGG_EINVAL);
	assert_int_equal(outbox_add_event(b, "", big, 1), TRYGG_EINVAL);
	char type[OUTBOX_EVENT_TYPE_MAX + 2];
	memset(type, 'x', sizeof(type) - 1);
	type[sizeof(type) - 1] = '\0';
	assert_int_equal(outbox_add_event(b, type, big, 1), TRYGG_EINVAL);
	assert_int_equal(db_batch_count(b), 0);
	db_batch_free(b);
	free(big);
	enum { N = 20 };
	for (int i = 0; i < N; i++)
		produce_one(&f, f.prod[i % 3], OUTBOX_PAYLOAD_MAX);
	wait_sequenced(&f, N);
	uint64_t next = 1;
	int replies = 0;
	while (next <= N) {
		replay(&f, next, 1000);
		replies++;
		assert_true(f.reply_bytes <= REPLY_BYTES_MAX);
		assert_true(f.reply->n_events >= 1);
		for (size_t i = 0; i < f.reply->n_events; i++) {
			assert_int_equal(f.reply->events[i]->seq, next);
			assert_int_equal(f.reply->events[i]->payload.len, OUTBOX_PAYLOAD_MAX);
			next++;
		}
	}
	assert_true(replies >= 2);
	fx_finish(&f);
}

static bool
purged_to_11(fx *f)
{
	(void)f;
	return admin_long("SELECT min(pub_seq) FROM %s.outbox", schema) == 11;
}

/* Retention deletes by sequence: everything below the first row younger
 * than the retention, never a later old row (no hole mid-range). */
static void
test_purge_by_sequence(void **state)
{
	(void)state;
	fx f;
	outbox_options o = {.purge_interval_ms = 100, .retention_s = 3600};
	fx_start(&f, &o);
	for (int i = 0; i < 30; i++)
		produce_one(&f, f.prod[i % 3], 10);
	wait_sequenced(&f, 30);
	free(admin("UPDATE %s.outbox SET occurred_at = now() - interval '2 hours'"
	           " WHERE pub_seq <= 10 OR pub_seq = 15",
	    schema));
	assert_true(run_until(&f, purged_to_11, 5000));
	assert_int_equal(admin_long("SELECT count(*) FROM %s.outbox WHERE pub_seq = 15", schema),
	    1);
	assert_int_equal(admin_long("SELECT count(*) FROM %s.outbox", schema), 20);
	outbox_stats st;
	outbox_relay_get_stats(f.relay, &st);
	assert_int_equal(st.purged, 10);
	replay(&f, 1, 5);
	assert_int_equal(f.reply->first_available_seq, 11);
	assert_int_equal(f.reply->events[0]->seq, 11);
	fx_finish(&f);
}

static void
slept(void *arg, const db_reply *rep)
{
	(void)rep;
	(*(int *)arg)++;
}

/* A replay (or purge) that takes long never delays sequencing: they run on
 * the replay connection, kept busy here for 3 s while events are produced. */
static void
test_slow_replay_does_not_delay_sequencing(void **state)
{
	(void)state;
	fx f;
	fx_start(&f, NULL);
	int sleeping = 0;
	assert_int_equal(db_query(f.replay_db, "SELECT pg_sleep(3)", 0, NULL, slept, &sleeping), 0);
	Trygg__Bus__ReplayRequest rq = TRYGG__BUS__REPLAY_REQUEST__INIT;
	rq.publisher = "tp";
	rq.from_seq = 1;
	nng_msg *m;
	assert_int_equal(envelope_replay_request_pack(&rq, &m), 0);
	assert_int_equal(bus_request(f.req, m, 10000, on_reply, &f), 0);
	uint64_t t0 = trygg_now_ms();
	for (int i = 0; i < 10; i++)
		produce_one(&f, f.prod[i % 3], 10);
	wait_sequenced(&f, 10);
	assert_true(trygg_now_ms() - t0 < 2500);
	assert_int_equal(f.replies, 0); /* still queued behind the sleep */
	want_replies = 1;
	assert_true(run_until(&f, replied, 10000));
	assert_int_equal(sleeping, 1);
	assert_true(f.reply->n_events >= 1);
	fx_finish(&f);
}

static int
group_setup(void **state)
{
	(void)state;
	log_init("test_outbox", LOG_ERROR);
	db_url = getenv("TRYGG_TEST_DATABASE_URL");
	if (db_url != NULL && *db_url == '\0')
		db_url = NULL;
	snprintf(schema, sizeof(schema), "test_outbox_%d", (int)getpid());
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	if (db_url != NULL) {
		char *sql = xasprintf("DROP SCHEMA IF EXISTS %s CASCADE", schema);
		free(admin_exec(sql, 0, NULL));
		free(sql);
	}
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sequencing_contiguous_across_producers),
	    cmocka_unit_test(test_numbered_at_insert_and_by_the_relay_interleave),
	    cmocka_unit_test(test_relay_numbers_after_a_producer_holding_the_lock),
	    cmocka_unit_test(test_idle_checks_do_not_scan_a_grown_outbox),
	    cmocka_unit_test(test_committed_events_go_out_without_a_round),
	    cmocka_unit_test(test_idle_checks_racing_handed_over_events_send_nothing_twice),
	    cmocka_unit_test(test_replay_and_epoch),
	    cmocka_unit_test(test_reply_size_bound_with_large_events),
	    cmocka_unit_test(test_purge_by_sequence),
	    cmocka_unit_test(test_slow_replay_does_not_delay_sequencing),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
