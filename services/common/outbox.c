/*
 * outbox.c: the relay that turns committed outbox rows into a gap-free,
 * numbered event stream, plus its heartbeat, replay server and purge.
 * See outbox.h for the model.
 *
 * Everything here runs on the loop thread: database work goes through the
 * shared async db client, socket work through bus_sock. At most one
 * sequencing round and one replay query are in flight at a time; a NOTIFY
 * that arrives during a round only marks that another round is due.
 */
#include "outbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "envelope.h"
#include "log.h"

#define REPLY_BYTES_MAX (4u * 1024 * 1024) /* keep replay replies under this */

struct outbox_relay {
	uv_loop_t *loop;
	db *db;
	outbox_options o;
	char *publisher, *schema, *channel;
	bus_sock *pub, *rep;
	uv_timer_t poll_timer, heartbeat_timer;
	int handles_open; /* timers not yet closed */
	int db_pending;   /* our batches in flight; the struct outlives them */

	bool last_seq_known; /* false until read, and after an unknown outcome */
	bool loading;        /* a query for last_seq is in flight */
	bool round_running;
	bool round_again; /* a wakeup came during the round */
	bool replay_running;
	bool stopping;
	void (*flush_cb)(void *arg);
	void *flush_arg;
	uint64_t last_purge_ms;
	outbox_stats st;
};

/* Sequencing: the advisory lock serialises relays of the same publisher (a
 * second instance during a rolling restart); taking it in its own statement
 * means the sequencing statement's snapshot sees everything committed
 * before the lock was granted. */
static const char SQL_LOCK[] =
    "SELECT pg_advisory_xact_lock(hashtext('trygg_outbox:' || current_schema()))";
static const char SQL_SEQUENCE[] =
    "WITH pending AS (SELECT id FROM outbox WHERE pub_seq IS NULL ORDER BY id LIMIT $1),"
    " numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM pending),"
    " st AS (SELECT last_seq FROM outbox_state),"
    " upd AS (UPDATE outbox o SET pub_seq = st.last_seq + n.rn FROM numbered n, st"
    "         WHERE o.id = n.id AND o.pub_seq IS NULL"
    "         RETURNING o.pub_seq, o.event_id, o.event_type, o.payload, o.occurred_at),"
    " bump AS (UPDATE outbox_state SET last_seq = last_seq + (SELECT count(*) FROM numbered))"
    " SELECT pub_seq, event_id::text, event_type, payload,"
    "  (extract(epoch FROM occurred_at) * 1000000)::bigint FROM upd ORDER BY pub_seq";
static const char SQL_LAST_SEQ[] = "SELECT last_seq FROM outbox_state";
static const char SQL_REPLAY_HEAD[] =
    "SELECT (SELECT last_seq FROM outbox_state),"
    " coalesce((SELECT min(pub_seq) FROM outbox WHERE pub_seq IS NOT NULL), 0)";
static const char SQL_REPLAY_ROWS[] = "SELECT pub_seq, event_id::text, event_type, payload,"
                                      "  (extract(epoch FROM occurred_at) * 1000000)::bigint"
                                      " FROM outbox WHERE pub_seq >= $1 ORDER BY pub_seq LIMIT $2";
static const char SQL_PURGE[] = "DELETE FROM outbox WHERE pub_seq IS NOT NULL"
                                " AND occurred_at < now() - make_interval(secs => $1::bigint)"
                                " AND pub_seq < (SELECT last_seq FROM outbox_state)";
static const char SQL_INSERT[] = "INSERT INTO outbox (event_type, payload) VALUES ($1, $2)";

static void start_round(outbox_relay *r);
static void maybe_free(outbox_relay *r);

/* Ends a flush, if one is waiting. */
static void
flush_finished(outbox_relay *r)
{
	void (*cb)(void *) = r->flush_cb;
	r->flush_cb = NULL;
	if (cb != NULL)
		cb(r->flush_arg);
}

void
outbox_add_event(db_batch *b, const char *type, const uint8_t *payload, size_t len)
{
	const char *values[2] = {type, (const char *)payload};
	int lengths[2] = {0, (int)len};
	int formats[2] = {0, 1};
	db_batch_addb(b, SQL_INSERT, 2, values, lengths, formats);
}

static uint64_t
get_u64(const PGresult *res, int row, int col)
{
	return strtoull(PQgetvalue(res, row, col), NULL, 10);
}

/*
 * Fills `env` from row `row` of a (pub_seq, event_id, type, payload,
 * occurred_us) result. The payload is unescaped into *payload_buf, which
 * the caller frees with PQfreemem; the strings point into `res`.
 */
static int
row_to_envelope(const outbox_relay *r, const PGresult *res, int row, Trygg__Bus__Envelope *env,
    unsigned char **payload_buf)
{
	size_t plen = 0;
	unsigned char *p = PQunescapeBytea((const unsigned char *)PQgetvalue(res, row, 3), &plen);
	if (p == NULL)
		return TRYGG_EPROTO;
	trygg__bus__envelope__init(env);
	env->publisher = r->publisher;
	env->seq = get_u64(res, row, 0);
	env->event_id = PQgetvalue(res, row, 1);
	env->type = PQgetvalue(res, row, 2);
	env->payload.data = p;
	env->payload.len = plen;
	env->occurred_at_us = strtoll(PQgetvalue(res, row, 4), NULL, 10);
	*payload_buf = p;
	return 0;
}

static void
publish_frame(outbox_relay *r, const Trygg__Bus__Frame *f)
{
	nng_msg *m;
	if (envelope_frame_pack(f, &m) != 0) {
		r->st.errors++; /* a row that cannot make a valid frame: logged by the caller */
		return;
	}
	if (bus_send(r->pub, m) != 0) {
		nng_msg_free(m);
		r->st.errors++;
	}
}

static void
round_done(void *arg, const db_reply *rep)
{
	outbox_relay *r = arg;
	r->round_running = false;
	r->db_pending--;
	if (r->stopping) {
		maybe_free(r);
		return;
	}
	if (rep->err != 0) {
		/* Unknown outcome on a lost connection: re-read last_seq later. */
		if (rep->err == TRYGG_EDBCONN)
			r->last_seq_known = false;
		r->st.errors++;
		log_warn("outbox_round_failed", "\"error\":\"%s\"", trygg_strerror(rep->err));
		flush_finished(r);
		return; /* the poll timer retries */
	}
	const PGresult *res = rep->results[1];
	int n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		Trygg__Bus__Envelope env;
		unsigned char *buf;
		if (row_to_envelope(r, res, i, &env, &buf) != 0) {
			r->st.errors++;
			continue;
		}
		Trygg__Bus__Frame f = TRYGG__BUS__FRAME__INIT;
		f.kind_case = TRYGG__BUS__FRAME__KIND_EVENT;
		f.event = &env;
		publish_frame(r, &f);
		r->st.published++;
		if (env.seq > r->st.last_seq)
			r->st.last_seq = env.seq;
		PQfreemem(buf);
	}
	r->st.rounds++;
	/* A full round means more may be waiting; so does a wakeup that came
	 * while this round ran. */
	if (n >= (int)r->o.batch_max || r->round_again)
		start_round(r);
	else
		flush_finished(r);
}

static void
start_round(outbox_relay *r)
{
	if (r->stopping || !r->last_seq_known)
		return;
	if (r->round_running) {
		r->round_again = true;
		return;
	}
	char limit[16];
	snprintf(limit, sizeof(limit), "%u", r->o.batch_max);
	const char *values[1] = {limit};
	db_batch *b = db_batch_new();
	db_batch_add(b, SQL_LOCK, 0, NULL);
	db_batch_add(b, SQL_SEQUENCE, 1, values);
	r->round_again = false;
	if (db_submit(r->db, b, round_done, r) != 0) {
		db_batch_free(b);
		return; /* disconnected: the poll timer retries */
	}
	r->round_running = true;
	r->db_pending++;
}

static void
last_seq_loaded(void *arg, const db_reply *rep)
{
	outbox_relay *r = arg;
	r->loading = false;
	r->db_pending--;
	if (r->stopping) {
		maybe_free(r);
		return;
	}
	if (rep->err != 0)
		return;
	r->st.last_seq = get_u64(rep->results[0], 0, 0);
	r->last_seq_known = true;
	log_info("outbox_relay_ready", "\"publisher\":\"%s\",\"last_seq\":%" PRIu64, r->publisher,
	    r->st.last_seq);
	start_round(r);
}

static void
load_last_seq(outbox_relay *r)
{
	if (r->loading || r->stopping)
		return;
	if (db_query(r->db, SQL_LAST_SEQ, 0, NULL, last_seq_loaded, r) == 0) {
		r->loading = true;
		r->db_pending++;
	}
}

static void
purge_done(void *arg, const db_reply *rep)
{
	outbox_relay *r = arg;
	r->db_pending--;
	if (r->stopping) {
		maybe_free(r);
		return;
	}
	if (rep->err == 0 && rep->nresults > 0) {
		const char *n = PQcmdTuples(rep->results[0]);
		if (n[0] != '\0' && strcmp(n, "0") != 0)
			log_info("outbox_purged", "\"rows\":%s", n);
	}
}

static void
on_poll(uv_timer_t *t)
{
	outbox_relay *r = t->data;
	if (!db_is_connected(r->db))
		return;
	if (!r->last_seq_known) {
		load_last_seq(r);
		return;
	}
	start_round(r);
	uint64_t now = trygg_now_ms();
	if (now - r->last_purge_ms > 60000) {
		r->last_purge_ms = now;
		char secs[16];
		snprintf(secs, sizeof(secs), "%u", r->o.retention_s);
		const char *values[1] = {secs};
		if (db_query(r->db, SQL_PURGE, 1, values, purge_done, r) == 0)
			r->db_pending++;
	}
}

static void
on_notify(void *arg, const char *channel, const char *payload)
{
	(void)channel;
	(void)payload;
	start_round(arg);
}

static void
on_heartbeat(uv_timer_t *t)
{
	outbox_relay *r = t->data;
	if (!r->last_seq_known)
		return;
	Trygg__Bus__Heartbeat hb = TRYGG__BUS__HEARTBEAT__INIT;
	hb.publisher = r->publisher;
	hb.last_seq = r->st.last_seq;
	Trygg__Bus__Frame f = TRYGG__BUS__FRAME__INIT;
	f.kind_case = TRYGG__BUS__FRAME__KIND_HEARTBEAT;
	f.heartbeat = &hb;
	publish_frame(r, &f);
}

/* Sends a ReplayReply on the rep socket; the request is then done. */
static void
send_replay_reply(outbox_relay *r, Trygg__Bus__ReplayReply *reply)
{
	nng_msg *m;
	if (envelope_replay_reply_pack(reply, &m) != 0) {
		/* Cannot happen for rows we sequenced; answer rather than hang. */
		Trygg__Bus__ReplayReply err = TRYGG__BUS__REPLAY_REPLY__INIT;
		err.status = TRYGG__BUS__REPLAY_REPLY__STATUS__UNAVAILABLE;
		m = envelope_message_pack(&err.base);
	}
	if (bus_reply(r->rep, m) != 0) {
		nng_msg_free(m);
		r->st.errors++;
	}
	r->st.replays_served++;
}

static void
send_replay_status(outbox_relay *r, Trygg__Bus__ReplayReply__Status status, const char *error)
{
	Trygg__Bus__ReplayReply reply = TRYGG__BUS__REPLAY_REPLY__INIT;
	reply.status = status;
	reply.last_seq = r->last_seq_known ? r->st.last_seq : 0;
	reply.error = (char *)error;
	send_replay_reply(r, &reply);
}

static void
replay_rows_done(void *arg, const db_reply *rep)
{
	outbox_relay *r = arg;
	r->replay_running = false;
	r->db_pending--;
	if (r->stopping) {
		maybe_free(r);
		return;
	}
	if (rep->err != 0) {
		send_replay_status(r, TRYGG__BUS__REPLAY_REPLY__STATUS__UNAVAILABLE,
		    "publisher database unavailable");
		return;
	}
	const PGresult *head = rep->results[0], *rows = rep->results[1];
	int n = PQntuples(rows);
	Trygg__Bus__ReplayReply reply = TRYGG__BUS__REPLAY_REPLY__INIT;
	reply.status = TRYGG__BUS__REPLAY_REPLY__STATUS__OK;
	reply.last_seq = get_u64(head, 0, 0);
	reply.first_available_seq = get_u64(head, 0, 1);
	Trygg__Bus__Envelope *envs = xcalloc((size_t)n, sizeof(*envs));
	Trygg__Bus__Envelope **ptrs = xcalloc((size_t)n, sizeof(*ptrs));
	unsigned char **bufs = xcalloc((size_t)n, sizeof(*bufs));
	size_t bytes = 0, count = 0;
	for (int i = 0; i < n && bytes < REPLY_BYTES_MAX; i++) {
		if (row_to_envelope(r, rows, i, &envs[count], &bufs[count]) != 0)
			break; /* stop at the first bad row: replies stay contiguous */
		bytes += envs[count].payload.len + 128;
		ptrs[count] = &envs[count];
		count++;
	}
	reply.n_events = count;
	reply.events = ptrs;
	send_replay_reply(r, &reply);
	for (size_t i = 0; i < count; i++)
		PQfreemem(bufs[i]);
	free(bufs);
	free(ptrs);
	free(envs);
}

/* A replay request arrived on the rep socket (loop thread; we own msg). */
static void
on_replay_request(void *arg, nng_msg *msg)
{
	outbox_relay *r = arg;
	Trygg__Bus__ReplayRequest *req = NULL;
	int rv =
	    envelope_replay_request_unpack(nng_msg_body(msg), nng_msg_len(msg), 64 * 1024, &req);
	nng_msg_free(msg);
	if (rv != 0 || strcmp(req->publisher, r->publisher) != 0) {
		log_warn("outbox_replay_bad_request", "\"error\":\"%s\"",
		    rv != 0 ? trygg_strerror(rv) : "wrong publisher");
		envelope_replay_request_free(req);
		send_replay_status(r, TRYGG__BUS__REPLAY_REPLY__STATUS__BAD_REQUEST,
		    rv != 0 ? "malformed request" : "wrong publisher");
		return;
	}
	unsigned max = req->max_events;
	if (max == 0 || max > r->o.replay_max)
		max = r->o.replay_max;
	char from[24], lim[16];
	snprintf(from, sizeof(from), "%" PRIu64, req->from_seq);
	snprintf(lim, sizeof(lim), "%u", max);
	envelope_replay_request_free(req);
	const char *values[2] = {from, lim};
	db_batch *b = db_batch_new();
	db_batch_add(b, SQL_REPLAY_HEAD, 0, NULL);
	db_batch_add(b, SQL_REPLAY_ROWS, 2, values);
	if (db_submit(r->db, b, replay_rows_done, r) != 0) {
		db_batch_free(b);
		send_replay_status(r, TRYGG__BUS__REPLAY_REPLY__STATUS__UNAVAILABLE,
		    "publisher database unavailable");
		return;
	}
	r->replay_running = true;
	r->db_pending++;
}

int
outbox_relay_start(uv_loop_t *loop, db *d, const outbox_options *o, outbox_relay **out)
{
	int rv;
	outbox_relay *r = xcalloc(1, sizeof(*r));
	r->loop = loop;
	r->db = d;
	r->o = *o;
	r->publisher = xstrdup(o->publisher);
	r->schema = xstrdup(o->schema);
	r->channel = xasprintf("%s_outbox", o->schema);
	r->o.publisher = r->publisher;
	r->o.schema = r->schema;
	r->o.pub_url = r->o.rep_url = NULL; /* not kept */
	if (r->o.batch_max == 0)
		r->o.batch_max = 2000;
	if (r->o.poll_ms == 0)
		r->o.poll_ms = 200;
	if (r->o.heartbeat_ms == 0)
		r->o.heartbeat_ms = 1000;
	if (r->o.replay_max == 0)
		r->o.replay_max = 1000;
	if (r->o.retention_s == 0)
		r->o.retention_s = 7 * 24 * 3600;

	bus_options bo = {.recv_max = 64 * 1024};
	if ((rv = bus_pub_open(loop, o->pub_url, &bo, &r->pub)) != 0)
		goto fail;
	if ((rv = bus_rep_open(loop, o->rep_url, &bo, on_replay_request, r, &r->rep)) != 0)
		goto fail;
	if ((rv = db_listen(d, r->channel, on_notify, r)) != 0)
		goto fail;
	uv_timer_init(loop, &r->poll_timer);
	uv_timer_init(loop, &r->heartbeat_timer);
	r->poll_timer.data = r->heartbeat_timer.data = r;
	r->handles_open = 2;
	uv_timer_start(&r->poll_timer, on_poll, 0, r->o.poll_ms);
	uv_timer_start(&r->heartbeat_timer, on_heartbeat, r->o.heartbeat_ms, r->o.heartbeat_ms);
	log_info("outbox_relay_started",
	    "\"publisher\":\"%s\",\"pub_url\":\"%s\",\"rep_url\":\"%s\"", r->publisher, o->pub_url,
	    o->rep_url);
	*out = r;
	return 0;

fail:
	log_error("outbox_relay_start_failed", "\"error\":\"%s\"", trygg_strerror(rv));
	bus_close(r->rep);
	bus_close(r->pub);
	free(r->channel);
	free(r->schema);
	free(r->publisher);
	free(r);
	return rv;
}

void
outbox_relay_kick(outbox_relay *r)
{
	start_round(r);
}

void
outbox_relay_flush(outbox_relay *r, void (*cb)(void *arg), void *arg)
{
	r->flush_cb = cb;
	r->flush_arg = arg;
	if (!r->last_seq_known || !db_is_connected(r->db)) {
		flush_finished(r);
		return;
	}
	start_round(r);
	if (!r->round_running) /* could not submit */
		flush_finished(r);
}

int
outbox_relay_publish_raw(outbox_relay *r, nng_msg *msg)
{
	return bus_send(r->pub, msg);
}

#define STAT_GAUGE(field) \
	static double stat_##field(void *arg) \
	{ \
		return (double)((const outbox_relay *)arg)->st.field; \
	}
STAT_GAUGE(last_seq)
STAT_GAUGE(published)
STAT_GAUGE(rounds)
STAT_GAUGE(replays_served)
STAT_GAUGE(errors)

void
outbox_relay_register_metrics(outbox_relay *r, metrics *m)
{
	const char *labels[] = {"publisher", r->publisher, NULL};
	metrics_gauge_fn(m, "trygg_outbox_last_seq", "Highest event sequence number assigned",
	    labels, stat_last_seq, r);
	metrics_gauge_fn(m, "trygg_outbox_published_total", "Events published on the bus", labels,
	    stat_published, r);
	metrics_gauge_fn(m, "trygg_outbox_rounds_total", "Sequencing transactions committed",
	    labels, stat_rounds, r);
	metrics_gauge_fn(m, "trygg_outbox_replays_served_total", "Replay requests answered", labels,
	    stat_replays_served, r);
	metrics_gauge_fn(m, "trygg_outbox_errors_total",
	    "Failed sequencing rounds, replays and sends", labels, stat_errors, r);
}

/* Frees the relay once it is stopped, its timers are closed and no
 * database callback can reach it any more. */
static void
maybe_free(outbox_relay *r)
{
	if (!r->stopping || r->handles_open > 0 || r->db_pending > 0)
		return;
	free(r->channel);
	free(r->schema);
	free(r->publisher);
	free(r);
}

static void
on_timer_closed(uv_handle_t *h)
{
	outbox_relay *r = h->data;
	r->handles_open--;
	maybe_free(r);
}

void
outbox_relay_stop(outbox_relay *r)
{
	if (r == NULL)
		return;
	/* In-flight db callbacks may still come (db calls them even on close);
	 * `stopping` makes them no-ops, and the struct lives until the timers
	 * closed, which happens in the same loop iteration at the earliest. */
	r->stopping = true;
	bus_close(r->pub);
	bus_close(r->rep);
	r->pub = r->rep = NULL;
	uv_close((uv_handle_t *)&r->poll_timer, on_timer_closed);
	uv_close((uv_handle_t *)&r->heartbeat_timer, on_timer_closed);
}

void
outbox_relay_get_stats(const outbox_relay *r, outbox_stats *out)
{
	*out = r->st;
}
