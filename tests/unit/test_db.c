/*
 * test_db.c: the asynchronous Postgres client against a real Postgres.
 *
 * Needs TRYGG_TEST_DATABASE_URL (a superuser URL, e.g. from
 * `deploy/pg-cluster.sh url DIR`); every test skips without it. Each run
 * works in its own schema (test_db_<pid>), dropped at the end. A blocking
 * "admin" connection plays the outside world: it kills our backend,
 * sends NOTIFY and checks what was committed.
 *
 * Every test ends with db_close(), uv_run() until nothing is left and
 * uv_loop_close() == 0, so a leaked handle fails the test.
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

#include "db.h"
#include "log.h"

static char schema[64];

/* ---------------------------------------------------------------------- */
/* Helpers                                                                */

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

/* Runs the loop until *counter >= target or timeout_ms passes; returns
 * whether the target was reached. A ticking timer keeps uv_run from
 * sleeping past the deadline. */
static bool
run_until(uv_loop_t *loop, const int *counter, int target, unsigned timeout_ms)
{
	uv_timer_t tick;
	bool closed = false;
	uv_timer_init(loop, &tick);
	tick.data = &closed;
	uv_timer_start(&tick, on_tick, 5, 5);
	uint64_t deadline = trygg_now_ms() + timeout_ms;
	while (*counter < target && trygg_now_ms() < deadline)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&tick, on_tick_closed);
	while (!closed)
		uv_run(loop, UV_RUN_NOWAIT);
	return *counter >= target;
}

/* State shared by a test and its callbacks. */
struct ctx {
	uv_loop_t loop;
	db *d;
	int up, down; /* state callback calls */
	int done;     /* batch callbacks */
	int next;     /* the index the next ordered callback must carry */
	int last_err;
	char last_sqlstate[8];
	int last_failed;
	char last_value[256];
	char events[64]; /* 'U' up, 'D' down, 'C' EDBCONN batch, 'K' ok batch */
	int nevents;
	int notes;
	char last_payload[64];
};

static void
add_event(struct ctx *c, char e)
{
	if (c->nevents < (int)sizeof(c->events) - 1)
		c->events[c->nevents++] = e;
}

static void
on_state(void *arg, bool connected)
{
	struct ctx *c = arg;
	if (connected)
		c->up++;
	else
		c->down++;
	add_event(c, connected ? 'U' : 'D');
}

/* Records the outcome and the first value of the last result. */
static void
on_reply(void *arg, const db_reply *r)
{
	struct ctx *c = arg;
	c->done++;
	c->last_err = r->err;
	c->last_failed = r->failed_index;
	snprintf(c->last_sqlstate, sizeof(c->last_sqlstate), "%s", r->sqlstate ? r->sqlstate : "");
	c->last_value[0] = '\0';
	if (r->err == 0 && r->nresults > 0) {
		const PGresult *res = r->results[r->nresults - 1];
		if (PQntuples(res) > 0)
			snprintf(c->last_value, sizeof(c->last_value), "%s", PQgetvalue(res, 0, 0));
	}
	add_event(c, r->err == TRYGG_EDBCONN ? 'C' : r->err == 0 ? 'K' : 'E');
}

/* Starts a loop and a client named `name`, and waits until it is up. */
static void
ctx_start(struct ctx *c, const char *name, bool wait_up)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(uv_loop_init(&c->loop), 0);
	db_options o = {.conninfo = db_url,
	    .search_path = schema,
	    .name = name,
	    .backoff_min_ms = 10,
	    .backoff_max_ms = 200};
	assert_int_equal(db_new(&c->loop, &o, &c->d), 0);
	db_set_state_cb(c->d, on_state, c);
	if (wait_up) {
		assert_true(run_until(&c->loop, &c->up, 1, 10000));
		assert_true(db_is_connected(c->d));
	}
}

/* Starts a loop and a client on `conninfo` that retries quickly (for
 * servers that are not there). */
static void
ctx_start_at(struct ctx *c, const char *conninfo, const char *name)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(uv_loop_init(&c->loop), 0);
	db_options o = {.conninfo = conninfo,
	    .name = name,
	    .backoff_min_ms = 5,
	    .backoff_max_ms = 20};
	assert_int_equal(db_new(&c->loop, &o, &c->d), 0);
	db_set_state_cb(c->d, on_state, c);
}

/* Closes the client, drains the loop and checks that nothing leaked. */
static void
ctx_finish(struct ctx *c)
{
	db_close(c->d);
	c->d = NULL;
	assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&c->loop), 0);
}

/* Runs one query and waits for its reply. */
static void
query_wait(struct ctx *c, const char *sql, int nparams, const char *const *values)
{
	int before = c->done;
	assert_int_equal(db_query(c->d, sql, nparams, values, on_reply, c), 0);
	assert_true(run_until(&c->loop, &c->done, before + 1, 10000));
}

/* Kills every backend whose application_name is `name`; returns how many. */
static int
kill_backend(const char *name)
{
	const char *p[1] = {name};
	char *n = admin_exec("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
	                     "WHERE application_name = $1",
	    1, p);
	int k = n ? atoi(n) : 0;
	free(n);
	return k;
}

/* ---------------------------------------------------------------------- */
/* Tests                                                                  */

static void
test_single_query(void **state)
{
	(void)state;
	need_db();
	struct ctx c;
	ctx_start(&c, "tdb_single", true);
	const char *v[1] = {"41"};
	query_wait(&c, "SELECT $1::int + 1", 1, v);
	assert_int_equal(c.last_err, 0);
	assert_string_equal(c.last_value, "42");
	/* search_path from the options took effect */
	query_wait(&c, "SELECT current_schema()", 0, NULL);
	assert_string_equal(c.last_value, schema);
	/* more parameters than the protocol allows: refused, still ours */
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT 1", 70000, NULL);
	assert_int_equal(db_submit(c.d, b, on_reply, &c), TRYGG_EINVAL);
	db_batch_free(b);
	assert_true(db_is_connected(c.d));
	db_stats st;
	db_get_stats(c.d, &st);
	assert_int_equal(st.batches_ok, 2);
	assert_int_equal(st.in_flight, 0);
	ctx_finish(&c);
}

/* Callback for the ordering test: arg is the ctx, the value is the index. */
static void
on_ordered(void *arg, const db_reply *r)
{
	struct ctx *c = arg;
	assert_int_equal(r->err, 0);
	assert_true(r->nresults >= 1);
	const PGresult *res = r->results[r->nresults - 1];
	assert_int_equal(atoi(PQgetvalue(res, 0, 0)), c->next);
	/* every statement of the batch has its own result */
	for (int i = 0; i < r->nresults; i++)
		assert_int_equal(PQresultStatus(r->results[i]), PGRES_TUPLES_OK);
	c->next++;
	c->done++;
}

static void
test_pipelined_batches_in_order(void **state)
{
	(void)state;
	need_db();
	struct ctx c;
	ctx_start(&c, "tdb_order", true);
	enum { N = 500 };
	for (int i = 0; i < N; i++) {
		char buf[16];
		snprintf(buf, sizeof(buf), "%d", i);
		const char *v[1] = {buf};
		db_batch *b = db_batch_new();
		/* batches of 1..3 statements, two distinct SQL texts */
		for (int k = 0; k < i % 3; k++)
			db_batch_add(b, "SELECT $1::int - 1000", 1, v);
		db_batch_add(b, "SELECT $1::int", 1, v);
		assert_int_equal(db_batch_count(b), i % 3 + 1);
		assert_int_equal(db_submit(c.d, b, on_ordered, &c), 0);
	}
	db_stats st;
	db_get_stats(c.d, &st);
	assert_int_equal(st.in_flight, N);
	assert_true(run_until(&c.loop, &c.done, N, 20000));
	assert_int_equal(c.next, N);
	db_get_stats(c.d, &st);
	assert_int_equal(st.batches_ok, N);
	assert_int_equal(st.in_flight, 0);
	ctx_finish(&c);
}

/* Checks the length echoed back for the big-parameter test. */
static void
on_length(void *arg, const db_reply *r)
{
	struct ctx *c = arg;
	assert_int_equal(r->err, 0);
	assert_string_equal(PQgetvalue(r->results[0], 0, 0), "1048576");
	c->done++;
}

/* 40 MB of parameters: more than the socket takes at once, so PQflush
 * returns 1 and the client must wait for writability. */
static void
test_large_writes_flush(void **state)
{
	(void)state;
	need_db();
	struct ctx c;
	ctx_start(&c, "tdb_flush", true);
	enum { N = 40, LEN = 1 << 20 };
	char *big = xmalloc(LEN + 1);
	memset(big, 'x', LEN);
	big[LEN] = '\0';
	const char *v[1] = {big};
	for (int i = 0; i < N; i++)
		assert_int_equal(db_query(c.d, "SELECT length($1::text)", 1, v, on_length, &c), 0);
	free(big);
	assert_true(run_until(&c.loop, &c.done, N, 30000));
	ctx_finish(&c);
}

static void
test_batch_is_atomic(void **state)
{
	(void)state;
	need_db();
	struct ctx c;
	ctx_start(&c, "tdb_atomic", true);
	query_wait(&c, "CREATE TABLE atomic_t (v int PRIMARY KEY)", 0, NULL);
	assert_int_equal(c.last_err, 0);

	/* 2nd statement fails (bad int): the 1st must not be committed. */
	db_batch *b = db_batch_new();
	const char *one[1] = {"1"};
	const char *bad[1] = {"not a number"};
	const char *three[1] = {"3"};
	db_batch_add(b, "INSERT INTO atomic_t VALUES ($1)", 1, one);
	db_batch_add(b, "INSERT INTO atomic_t VALUES ($1::int)", 1, bad);
	db_batch_add(b, "INSERT INTO atomic_t VALUES ($1)", 1, three);
	assert_int_equal(db_submit(c.d, b, on_reply, &c), 0);
	assert_true(run_until(&c.loop, &c.done, c.done + 1, 10000));
	assert_int_equal(c.last_err, TRYGG_EDB);
	assert_string_equal(c.last_sqlstate, "22P02");
	assert_int_equal(c.last_failed, 1);

	query_wait(&c, "SELECT count(*) FROM atomic_t", 0, NULL);
	assert_string_equal(c.last_value, "0");
	char *q = xasprintf("SELECT count(*) FROM %s.atomic_t", schema);
	char *n = admin_exec(q, 0, NULL);
	assert_string_equal(n, "0");
	free(n);
	free(q);

	/* The statement prepared inside the failed batch is still usable. */
	query_wait(&c, "INSERT INTO atomic_t VALUES ($1)", 1, one);
	assert_int_equal(c.last_err, 0);
	query_wait(&c, "SELECT count(*) FROM atomic_t", 0, NULL);
	assert_string_equal(c.last_value, "1");

	/* A constraint violation in the last statement also undoes the rest. */
	b = db_batch_new();
	db_batch_add(b, "INSERT INTO atomic_t VALUES ($1)", 1, three);
	db_batch_add(b, "INSERT INTO atomic_t VALUES ($1)", 1, one);
	assert_int_equal(db_submit(c.d, b, on_reply, &c), 0);
	assert_true(run_until(&c.loop, &c.done, c.done + 1, 10000));
	assert_int_equal(c.last_err, TRYGG_EDB);
	assert_string_equal(c.last_sqlstate, "23505");
	assert_int_equal(c.last_failed, 1);
	query_wait(&c, "SELECT count(*) FROM atomic_t", 0, NULL);
	assert_string_equal(c.last_value, "1");
	ctx_finish(&c);
}

/*
 * An error raised at the implicit commit (a deferred foreign key, a
 * deferred constraint trigger) rolls the transaction back: the batch must
 * fail with that SQLSTATE, failed_index past the last statement, and
 * nothing of it may be committed.
 */
static void
test_commit_time_error_fails_batch(void **state)
{
	(void)state;
	need_db();
	struct ctx c;
	ctx_start(&c, "tdb_commit", true);
	query_wait(&c, "CREATE TABLE cparent (id int PRIMARY KEY)", 0, NULL);
	query_wait(&c,
	    "CREATE TABLE cchild (v int, p int REFERENCES cparent (id)"
	    " DEFERRABLE INITIALLY DEFERRED)",
	    0, NULL);
	assert_int_equal(c.last_err, 0);
	db_batch *b = db_batch_new();
	db_batch_add(b, "INSERT INTO cparent VALUES (1)", 0, NULL);
	db_batch_add(b, "INSERT INTO cchild VALUES (1, 1)", 0, NULL);
	db_batch_add(b, "INSERT INTO cchild VALUES (2, 99)", 0, NULL);
	assert_int_equal(db_submit(c.d, b, on_reply, &c), 0);
	assert_true(run_until(&c.loop, &c.done, c.done + 1, 10000));
	assert_int_equal(c.last_err, TRYGG_EDB);
	assert_string_equal(c.last_sqlstate, "23503");
	assert_int_equal(c.last_failed, 3);
	char *q = xasprintf("SELECT (SELECT count(*) FROM %s.cparent) + (SELECT count(*) FROM "
	                    "%s.cchild)",
	    schema, schema);
	char *n = admin_exec(q, 0, NULL);
	assert_string_equal(n, "0");
	free(n);
	free(q);
	/* A deferred constraint trigger raising at commit, same story. */
	query_wait(&c,
	    "CREATE FUNCTION cfail() RETURNS trigger LANGUAGE plpgsql AS"
	    " $$BEGIN RAISE EXCEPTION 'no' USING ERRCODE = 'P0001'; END$$",
	    0, NULL);
	query_wait(&c,
	    "CREATE CONSTRAINT TRIGGER ctrig AFTER INSERT ON cparent DEFERRABLE INITIALLY DEFERRED"
	    " FOR EACH ROW EXECUTE FUNCTION cfail()",
	    0, NULL);
	assert_int_equal(c.last_err, 0);
	query_wait(&c, "INSERT INTO cparent VALUES (2)", 0, NULL);
	assert_int_equal(c.last_err, TRYGG_EDB);
	assert_string_equal(c.last_sqlstate, "P0001");
	assert_int_equal(c.last_failed, 1);
	/* The connection is fine afterwards. */
	query_wait(&c, "SELECT count(*) FROM cparent", 0, NULL);
	assert_int_equal(c.last_err, 0);
	assert_string_equal(c.last_value, "0");
	ctx_finish(&c);
}

/* The classification every retry decision uses. */
static void
test_error_is_transient(void **state)
{
	(void)state;
	const char *transient[] = {"08006", "08000", "40001", "40P01", "53300", "55P03", "57014",
	    "57P01", "25006", NULL};
	const char *permanent[] = {"22012", "23505", "23503", "42P01", "42601", "P0001", "TR001",
	    "25001", NULL};
	for (int i = 0; transient[i]; i++)
		assert_true(db_error_is_transient(transient[i]));
	for (int i = 0; permanent[i]; i++)
		assert_false(db_error_is_transient(permanent[i]));
	assert_true(db_error_is_transient(NULL));
}

/*
 * A new SQL text whose prepare is aborted (an earlier statement of its
 * batch failed) must not break a later batch, already sent, that uses the
 * same text. A syntax error is reported against the right statement.
 */
static void
test_aborted_prepare_does_not_leak(void **state)
{
	(void)state;
	need_db();
	struct ctx c;
	ctx_start(&c, "tdb_abortprep", true);
	db_batch *a = db_batch_new();
	db_batch_add(a, "SELECT 1/0", 0, NULL);
	db_batch_add(a, "SELECT 7 AS fresh_text", 0, NULL);
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT 7 AS fresh_text", 0, NULL);
	db_batch *s = db_batch_new();
	db_batch_add(s, "SELECT 1", 0, NULL);
	db_batch_add(s, "SELEKT oops", 0, NULL);
	assert_int_equal(db_submit(c.d, a, on_reply, &c), 0);
	assert_int_equal(db_submit(c.d, b, on_reply, &c), 0);
	assert_int_equal(db_submit(c.d, s, on_reply, &c), 0);
	/* collect outcomes in order through the event string */
	assert_true(run_until(&c.loop, &c.done, 3, 10000));
	assert_memory_equal(c.events + c.nevents - 3, "EKE", 3);
	assert_string_equal(c.last_sqlstate, "42601");
	assert_int_equal(c.last_failed, 1);
	/* and the text works again, named, afterwards */
	query_wait(&c, "SELECT 7 AS fresh_text", 0, NULL);
	assert_int_equal(c.last_err, 0);
	assert_string_equal(c.last_value, "7");
	ctx_finish(&c);
}

static void
test_autoprepare_reused_and_after_reconnect(void **state)
{
	(void)state;
	need_db();
	struct ctx c;
	ctx_start(&c, "tdb_prepare", true);
	enum { N = 300 };
	for (int i = 0; i < N; i++) {
		char buf[16];
		snprintf(buf, sizeof(buf), "%d", i);
		const char *v[1] = {buf};
		assert_int_equal(db_query(c.d, "SELECT $1::int * 2", 1, v, on_reply, &c), 0);
	}
	assert_true(run_until(&c.loop, &c.done, N, 20000));
	assert_int_equal(c.last_err, 0);
	assert_string_equal(c.last_value, "598");
	/* one server-side statement for the 300 uses, plus this query's own */
	query_wait(&c, "SELECT count(*) FROM pg_prepared_statements", 0, NULL);
	assert_string_equal(c.last_value, "2");

	/* A new session has no prepared statements: they must be redone. */
	assert_int_equal(kill_backend("tdb_prepare"), 1);
	assert_true(run_until(&c.loop, &c.up, 2, 10000));
	const char *v[1] = {"21"};
	query_wait(&c, "SELECT $1::int * 2", 1, v);
	assert_int_equal(c.last_err, 0);
	assert_string_equal(c.last_value, "42");
	query_wait(&c, "SELECT count(*) FROM pg_prepared_statements", 0, NULL);
	assert_string_equal(c.last_value, "2");
	/* Someone drops our statements behind our back: one failure, then
	 * re-prepared. */
	query_wait(&c, "DEALLOCATE ALL", 0, NULL);
	assert_int_equal(c.last_err, 0);
	query_wait(&c, "SELECT $1::int * 2", 1, v);
	assert_int_equal(c.last_err, TRYGG_EDB);
	assert_string_equal(c.last_sqlstate, "26000");
	query_wait(&c, "SELECT $1::int * 2", 1, v);
	assert_int_equal(c.last_err, 0);
	assert_string_equal(c.last_value, "42");
	db_stats st;
	db_get_stats(c.d, &st);
	assert_int_equal(st.reconnects, 1);
	ctx_finish(&c);
}

/* Checks the bytea that came back against the 6 bytes that went in. */
static void
on_bytea(void *arg, const db_reply *r)
{
	struct ctx *c = arg;
	assert_int_equal(r->err, 0);
	assert_int_equal(r->nresults, 2);
	const PGresult *res = r->results[1];
	assert_string_equal(PQgetvalue(res, 0, 0), "\\x00ff00410a00");
	assert_string_equal(PQgetvalue(res, 0, 1), "6");
	assert_true(PQgetisnull(res, 0, 2));
	c->done++;
}

static void
test_binary_bytea_params(void **state)
{
	(void)state;
	need_db();
	struct ctx c;
	ctx_start(&c, "tdb_bytea", true);
	query_wait(&c, "CREATE TABLE blob_t (id int, b bytea, n text)", 0, NULL);
	assert_int_equal(c.last_err, 0);
	static const char bytes[6] = {0x00, (char)0xff, 0x00, 'A', '\n', 0x00};
	const char *vals[3] = {"1", bytes, NULL};
	const int lens[3] = {0, 6, 0};
	const int fmts[3] = {0, 1, 0};
	db_batch *b = db_batch_new();
	db_batch_addb(b, "INSERT INTO blob_t VALUES ($1, $2, $3)", 3, vals, lens, fmts);
	db_batch_add(b, "SELECT b, length(b), n FROM blob_t WHERE id = 1", 0, NULL);
	int before = c.done;
	assert_int_equal(db_submit(c.d, b, on_bytea, &c), 0);
	assert_true(run_until(&c.loop, &c.done, before + 1, 10000));
	ctx_finish(&c);
}

static void
on_note(void *arg, const char *channel, const char *payload)
{
	struct ctx *c = arg;
	assert_non_null(channel);
	snprintf(c->last_payload, sizeof(c->last_payload), "%s", payload);
	c->notes++;
}

static void
test_listen_notify(void **state)
{
	(void)state;
	need_db();
	struct ctx c;
	char chan[64];
	snprintf(chan, sizeof(chan), "Chan_%d", (int)getpid()); /* mixed case: quoted */
	ctx_start(&c, "tdb_listen", false);
	/* before connecting: issued at connect, before the state callback */
	assert_int_equal(db_listen(c.d, chan, on_note, &c), 0);
	assert_true(run_until(&c.loop, &c.up, 1, 10000));
	const char *p[2] = {chan, "hello"};
	free(admin_exec("SELECT pg_notify($1, $2)", 2, p));
	assert_true(run_until(&c.loop, &c.notes, 1, 5000));
	assert_string_equal(c.last_payload, "hello");

	/* a second channel added while connected */
	char chan2[64];
	snprintf(chan2, sizeof(chan2), "second_%d", (int)getpid());
	assert_int_equal(db_listen(c.d, chan2, on_note, &c), 0);
	query_wait(&c, "SELECT 1", 0, NULL); /* the LISTEN went before this */
	const char *p2[2] = {chan2, "two"};
	free(admin_exec("SELECT pg_notify($1, $2)", 2, p2));
	assert_true(run_until(&c.loop, &c.notes, 2, 5000));
	assert_string_equal(c.last_payload, "two");

	/* bad arguments */
	assert_int_equal(db_listen(c.d, "", on_note, &c), TRYGG_EINVAL);
	for (int i = 2; i < 8; i++)
		assert_int_equal(db_listen(c.d, chan, on_note, &c), 0);
	assert_int_equal(db_listen(c.d, chan, on_note, &c), TRYGG_ETOOBIG);
	ctx_finish(&c);
}

static void
test_connection_killed(void **state)
{
	(void)state;
	need_db();
	struct ctx c;
	char chan[64];
	snprintf(chan, sizeof(chan), "kill_%d", (int)getpid());
	ctx_start(&c, "tdb_kill", false);
	assert_int_equal(db_listen(c.d, chan, on_note, &c), 0);
	assert_true(run_until(&c.loop, &c.up, 1, 10000));
	query_wait(&c, "SELECT 1", 0, NULL);

	/* in flight: a slow statement */
	assert_int_equal(db_query(c.d, "SELECT pg_sleep(5)", 0, NULL, on_reply, &c), 0);
	int before = c.done;
	assert_int_equal(kill_backend("tdb_kill"), 1);
	assert_true(run_until(&c.loop, &c.done, before + 1, 10000));
	assert_int_equal(c.last_err, TRYGG_EDBCONN);
	assert_int_equal(c.down, 1);
	assert_false(db_is_connected(c.d));
	assert_int_equal(db_query(c.d, "SELECT 1", 0, NULL, on_reply, &c), TRYGG_EDBCONN);

	assert_true(run_until(&c.loop, &c.up, 2, 10000));
	/* U, K (SELECT 1), C (killed batch), D, U */
	assert_int_equal(c.nevents, 5);
	assert_memory_equal(c.events, "UKCDU", 5);
	query_wait(&c, "SELECT 'back'", 0, NULL);
	assert_int_equal(c.last_err, 0);
	assert_string_equal(c.last_value, "back");
	/* LISTEN was re-issued */
	const char *p[2] = {chan, "again"};
	free(admin_exec("SELECT pg_notify($1, $2)", 2, p));
	assert_true(run_until(&c.loop, &c.notes, 1, 5000));
	assert_string_equal(c.last_payload, "again");
	db_stats st;
	db_get_stats(c.d, &st);
	assert_int_equal(st.reconnects, 1);
	assert_int_equal(st.batches_failed, 1);
	ctx_finish(&c);
}

static void
test_submit_while_disconnected(void **state)
{
	(void)state;
	struct ctx c;
	/* nothing listens on port 1 */
	ctx_start_at(&c, "postgresql://trygg@127.0.0.1:1/postgres?connect_timeout=2", "tdb_down");
	assert_false(db_is_connected(c.d));
	assert_int_equal(db_query(c.d, "SELECT 1", 0, NULL, on_reply, &c), TRYGG_EDBCONN);
	/* let it fail and retry a few times */
	int never = 0;
	assert_false(run_until(&c.loop, &never, 1, 150));
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT 1", 0, NULL);
	assert_int_equal(db_submit(c.d, b, on_reply, &c), TRYGG_EDBCONN);
	db_batch_free(b); /* still ours */
	assert_int_equal(c.done, 0);
	assert_int_equal(c.up + c.down, 0);
	ctx_finish(&c);

	/* bad arguments */
	db *d = NULL;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	db_options bad = {.conninfo = NULL};
	assert_int_equal(db_new(&loop, &bad, &d), TRYGG_EINVAL);
	bad.conninfo = "host='unterminated";
	assert_int_equal(db_new(&loop, &bad, &d), TRYGG_EINVAL);
	assert_null(d);
	db_close(NULL);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A callback that tries to submit more while the client is closing. */
static void
on_closed_reply(void *arg, const db_reply *r)
{
	struct ctx *c = arg;
	assert_int_equal(r->err, TRYGG_ECLOSED);
	assert_non_null(r->message);
	assert_int_equal(db_query(c->d, "SELECT 1", 0, NULL, on_reply, c), TRYGG_ECLOSED);
	c->done++;
}

/* A host *name* is resolved on libuv's thread pool, not by libpq on the
 * loop; an unresolvable one fails, retries, and closes cleanly, also while
 * a lookup is pending. */
static void
test_host_name_resolved_off_loop(void **state)
{
	(void)state;
	struct ctx c;
	const char *url = "postgresql://trygg@no-such-host.invalid:5432/postgres";
	ctx_start_at(&c, url, "tdb_dns");
	int never = 0;
	assert_false(run_until(&c.loop, &never, 1, 200));
	assert_false(db_is_connected(c.d));
	assert_int_equal(db_query(c.d, "SELECT 1", 0, NULL, on_reply, &c), TRYGG_EDBCONN);
	assert_int_equal(c.up + c.down, 0);
	db_stats st;
	db_get_stats(c.d, &st);
	assert_true(st.dns_lookups >= 2); /* every attempt looks it up again */
	ctx_finish(&c);

	/* closed immediately, with the first lookup still pending */
	ctx_start_at(&c, url, "tdb_dns");
	ctx_finish(&c);
}

/* Fills `out` from the test URL: its socket directory, port, user, dbname. */
struct url_parts {
	char host[256], port[16], user[64], dbname[64];
};

static void
url_parts_get(struct url_parts *u)
{
	memset(u, 0, sizeof(*u));
	PQconninfoOption *ci = PQconninfoParse(db_url, NULL);
	assert_non_null(ci);
	for (PQconninfoOption *o = ci; o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		if (strcmp(o->keyword, "host") == 0)
			snprintf(u->host, sizeof(u->host), "%s", o->val);
		else if (strcmp(o->keyword, "port") == 0)
			snprintf(u->port, sizeof(u->port), "%s", o->val);
		else if (strcmp(o->keyword, "user") == 0)
			snprintf(u->user, sizeof(u->user), "%s", o->val);
		else if (strcmp(o->keyword, "dbname") == 0)
			snprintf(u->dbname, sizeof(u->dbname), "%s", o->val);
	}
	PQconninfoFree(ci);
	if (u->host[0] != '/')
		skip(); /* these tests reach the server over its unix socket */
}

/* Connects with `conninfo`, checks a query works and returns how many
 * host names the client resolved itself. */
static uint64_t
connect_count_lookups(const char *conninfo, const char *name)
{
	struct ctx c;
	memset(&c, 0, sizeof(c));
	assert_int_equal(uv_loop_init(&c.loop), 0);
	db_options o = {.conninfo = conninfo, .name = name, .backoff_min_ms = 10};
	assert_int_equal(db_new(&c.loop, &o, &c.d), 0);
	db_set_state_cb(c.d, on_state, &c);
	assert_true(run_until(&c.loop, &c.up, 1, 10000));
	query_wait(&c, "SELECT 1", 0, NULL);
	assert_int_equal(c.last_err, 0);
	db_stats st;
	db_get_stats(c.d, &st);
	ctx_finish(&c);
	return st.dns_lookups;
}

/* A multi-host URL: every name in it is resolved on the loop (libpq gets
 * an address for each), a name that does not resolve is skipped, and an
 * IP literal or socket directory in the list still works. */
static void
test_multi_host_resolved_off_loop(void **state)
{
	(void)state;
	need_db();
	struct url_parts u;
	url_parts_get(&u);
	char enc[768], *e = enc;
	for (const char *s = u.host; *s; s++)
		e += *s == '/' ? sprintf(e, "%%2F") : sprintf(e, "%c", *s);
	char *url = xasprintf("postgresql://%s@nonexistent.invalid,127.0.0.1,%s/%s?port=%s", u.user,
	    enc, u.dbname, u.port);
	assert_int_equal(connect_count_lookups(url, "tdb_multi"), 1);
	free(url);
	char *kv = xasprintf("host=nonexistent.invalid,localhost,%s port=%s user=%s dbname=%s "
	                     "target_session_attrs=any",
	    u.host, u.port, u.user, u.dbname);
	assert_int_equal(connect_count_lookups(kv, "tdb_multi"), 2);
	free(kv);
}

/* No host in the URL: PGHOST's names are resolved on the loop too. */
static void
test_pghost_resolved_off_loop(void **state)
{
	(void)state;
	need_db();
	struct url_parts u;
	url_parts_get(&u);
	char *pghost = xasprintf("localhost,%s", u.host);
	setenv("PGHOST", pghost, 1);
	char *url = xasprintf("postgresql://%s@/%s?port=%s", u.user, u.dbname, u.port);
	uint64_t n = connect_count_lookups(url, "tdb_pghost");
	unsetenv("PGHOST");
	assert_int_equal(n, 1);
	free(url);
	free(pghost);
}

static void
sleep_work(uv_work_t *w)
{
	(void)w;
	usleep(600 * 1000);
}

static void
sleep_done(uv_work_t *w, int status)
{
	(void)status;
	(*(int *)w->data)++;
}

static void
on_count_tick(uv_timer_t *t)
{
	(*(int *)t->data)++;
}

/* A lookup that takes long (here: it waits 0.6 s for libuv's thread pool,
 * kept busy) holds up only the connect; the loop runs timers meanwhile,
 * and the connection comes once the pool got to the lookup. */
static void
test_slow_lookup_does_not_block_loop(void **state)
{
	(void)state;
	need_db();
	struct url_parts u;
	url_parts_get(&u);
	struct ctx c;
	memset(&c, 0, sizeof(c));
	assert_int_equal(uv_loop_init(&c.loop), 0);
	const char *env = getenv("UV_THREADPOOL_SIZE");
	int nwork = env != NULL && atoi(env) > 0 ? atoi(env) : 4, worked = 0, ticks = 0;
	assert_true(nwork <= 64);
	uv_work_t work[64];
	for (int i = 0; i < nwork; i++) {
		work[i].data = &worked;
		assert_int_equal(uv_queue_work(&c.loop, &work[i], sleep_work, sleep_done), 0);
	}
	uv_timer_t tick;
	uv_timer_init(&c.loop, &tick);
	tick.data = &ticks;
	uv_timer_start(&tick, on_count_tick, 10, 10);
	char *kv = xasprintf("host=localhost,%s port=%s user=%s dbname=%s", u.host, u.port, u.user,
	    u.dbname);
	db_options o = {.conninfo = kv, .name = "tdb_slow_dns"};
	assert_int_equal(db_new(&c.loop, &o, &c.d), 0);
	db_set_state_cb(c.d, on_state, &c);
	assert_true(run_until(&c.loop, &c.up, 1, 10000));
	assert_true(worked >= 1); /* the connect waited for the pool */
	assert_true(ticks >= 10); /* and the loop kept running meanwhile */
	uv_close((uv_handle_t *)&tick, NULL);
	free(kv);
	ctx_finish(&c);
}

/* A named pg_service.conf service is left wholly to libpq (its entries
 * rank between the conninfo and the environment): no lookup of ours. */
static void
test_service_left_to_libpq(void **state)
{
	(void)state;
	struct ctx c;
	ctx_start_at(&c, "service=trygg_no_such_service host=nonexistent.invalid", "tdb_service");
	int never = 0;
	assert_false(run_until(&c.loop, &never, 1, 100));
	assert_false(db_is_connected(c.d));
	db_stats st;
	db_get_stats(c.d, &st);
	assert_int_equal(st.dns_lookups, 0);
	ctx_finish(&c);
}

static void
test_close_with_pending(void **state)
{
	(void)state;
	need_db();
	struct ctx c;
	ctx_start(&c, "tdb_close", true);
	for (int i = 0; i < 20; i++)
		assert_int_equal(db_query(c.d, "SELECT pg_sleep(0.2)", 0, NULL, on_closed_reply,
		                     &c),
		    0);
	db_close(c.d); /* callbacks run right here */
	assert_int_equal(c.done, 20);
	assert_int_equal(db_query(c.d, "SELECT 1", 0, NULL, on_reply, &c), TRYGG_ECLOSED);
	db_close(c.d); /* twice is harmless */
	c.d = NULL;
	assert_int_equal(uv_run(&c.loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&c.loop), 0);
}

/* Closes the client from inside the first reply. */
static void
on_reply_then_close(void *arg, const db_reply *r)
{
	struct ctx *c = arg;
	assert_int_equal(r->err, 0);
	c->done++;
	db_close(c->d);
}

static void
test_close_from_callback_and_busy(void **state)
{
	(void)state;
	need_db();
	struct ctx c;
	memset(&c, 0, sizeof(c));
	assert_int_equal(uv_loop_init(&c.loop), 0);
	db_options o = {.conninfo = db_url, .name = "tdb_busy", .max_in_flight = 3};
	assert_int_equal(db_new(&c.loop, &o, &c.d), 0);
	db_set_state_cb(c.d, on_state, &c);
	assert_true(run_until(&c.loop, &c.up, 1, 10000));
	assert_int_equal(db_query(c.d, "SELECT 1", 0, NULL, on_reply_then_close, &c), 0);
	assert_int_equal(db_query(c.d, "SELECT 2", 0, NULL, on_closed_reply, &c), 0);
	assert_int_equal(db_query(c.d, "SELECT 3", 0, NULL, on_closed_reply, &c), 0);
	assert_int_equal(db_query(c.d, "SELECT 4", 0, NULL, on_reply, &c), TRYGG_EBUSY);
	assert_true(run_until(&c.loop, &c.done, 3, 10000));
	/* the loop drains: the db freed itself in its close callbacks */
	assert_int_equal(uv_run(&c.loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&c.loop), 0);
}

static void
test_close_while_connecting(void **state)
{
	(void)state;
	need_db();
	struct ctx c;
	ctx_start(&c, "tdb_early", false);
	ctx_finish(&c);
	assert_int_equal(c.up, 0);
}

/* ---------------------------------------------------------------------- */

static int
group_setup(void **state)
{
	(void)state;
	log_init("test_db", LOG_WARN);
	db_url = getenv("TRYGG_TEST_DATABASE_URL");
	if (db_url != NULL && *db_url == '\0')
		db_url = NULL;
	snprintf(schema, sizeof(schema), "test_db_%d", (int)getpid());
	if (db_url != NULL) {
		char *sql = xasprintf("CREATE SCHEMA %s", schema);
		free(admin_exec(sql, 0, NULL));
		free(sql);
	}
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
	    cmocka_unit_test(test_single_query),
	    cmocka_unit_test(test_pipelined_batches_in_order),
	    cmocka_unit_test(test_large_writes_flush),
	    cmocka_unit_test(test_batch_is_atomic),
	    cmocka_unit_test(test_commit_time_error_fails_batch),
	    cmocka_unit_test(test_error_is_transient),
	    cmocka_unit_test(test_aborted_prepare_does_not_leak),
	    cmocka_unit_test(test_autoprepare_reused_and_after_reconnect),
	    cmocka_unit_test(test_binary_bytea_params),
	    cmocka_unit_test(test_listen_notify),
	    cmocka_unit_test(test_connection_killed),
	    cmocka_unit_test(test_submit_while_disconnected),
	    cmocka_unit_test(test_host_name_resolved_off_loop),
	    cmocka_unit_test(test_multi_host_resolved_off_loop),
	    cmocka_unit_test(test_pghost_resolved_off_loop),
	    cmocka_unit_test(test_slow_lookup_does_not_block_loop),
	    cmocka_unit_test(test_service_left_to_libpq),
	    cmocka_unit_test(test_close_with_pending),
	    cmocka_unit_test(test_close_from_callback_and_busy),
	    cmocka_unit_test(test_close_while_connecting),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
