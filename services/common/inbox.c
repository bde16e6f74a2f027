/*
 * inbox.c: follows one publisher's stream and applies each event exactly
 * once, in order. See inbox.h for the model.
 *
 * State, all on the loop thread:
 *   applied     the cursor as last committed (loaded from Postgres);
 *   queue       events applied + 1 .. held, contiguous, waiting to be
 *               applied (the first `inflight` of them are in the batch
 *               being committed);
 *   held        the highest seq in the queue (== applied when empty);
 *   known       the highest seq the publisher has announced.
 * A live event is taken only if it is exactly held + 1; anything else is a
 * duplicate (<= held) or a gap (> held + 1), and gaps are filled by replay,
 * which also starts the stream after a (re)start. There is no reordering
 * buffer: replay is cheap and keeps the logic to one path.
 */
#include "inbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "log.h"

/* One queued event (owned copy), or a range skipped because the publisher
 * purged it (env.seq == 0, skip_to set). */
typedef struct held_event {
	uint64_t seq;  /* first seq covered */
	uint64_t last; /* last seq covered (== seq for an event) */
	bool is_skip;
	int stmt_first; /* its statements in the current batch: */
	int stmt_count; /*   [stmt_first, stmt_first + stmt_count) */
	char *poison;   /* set once its effect failed alone: record, skip */
	Trygg__Bus__Envelope env;
} held_event;

struct inbox {
	uv_loop_t *loop;
	db *db;
	inbox_options o;
	char *publisher;
	inbox_apply_fn apply;
	void *apply_arg;
	bus_sock *sub, *req;
	uv_timer_t timer;
	bool timer_open;

	bool cursor_loaded, loading;
	bool replay_pending;
	bool stopping;
	uint64_t applied, held, known;

	held_event **queue; /* ring buffer of queue_max entries */
	size_t qhead, qlen;
	size_t inflight; /* entries at the head in the batch being committed */
	int db_pending;
	inbox_stats st;
};

static const char SQL_CURSOR_INIT[] =
    "INSERT INTO inbox_cursor (publisher) VALUES ($1) ON CONFLICT DO NOTHING";
static const char SQL_CURSOR_GET[] = "SELECT last_seq FROM inbox_cursor WHERE publisher = $1";
static const char SQL_ADVANCE[] = "SELECT inbox_advance($1, $2, $3)";
static const char SQL_FAILED[] =
    "INSERT INTO inbox_failed (publisher, seq, event_id, event_type, payload, error)"
    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";

static void maybe_apply(inbox *in);
static void maybe_replay(inbox *in);

static void
held_free(held_event *h)
{
	if (h != NULL)
		free(h->poison);
	free(h);
}

static void
maybe_free(inbox *in)
{
	if (!in->stopping || in->timer_open || in->db_pending > 0)
		return;
	for (size_t i = 0; i < in->qlen; i++)
		held_free(in->queue[(in->qhead + i) % in->o.queue_max]);
	free(in->queue);
	free(in->publisher);
	free(in);
}

/* Copies an envelope into one owned allocation. */
static held_event *
hold(const Trygg__Bus__Envelope *ev)
{
	size_t id_len = strlen(ev->event_id) + 1, type_len = strlen(ev->type) + 1;
	held_event *h = xmalloc(sizeof(*h) + id_len + type_len + ev->payload.len);
	char *p = (char *)(h + 1);
	h->seq = h->last = ev->seq;
	h->is_skip = false;
	h->poison = NULL;
	trygg__bus__envelope__init(&h->env);
	h->env.seq = ev->seq;
	h->env.occurred_at_us = ev->occurred_at_us;
	h->env.event_id = memcpy(p, ev->event_id, id_len);
	h->env.type = memcpy(p + id_len, ev->type, type_len);
	h->env.payload.len = ev->payload.len;
	h->env.payload.data = (uint8_t *)(p + id_len + type_len);
	if (ev->payload.len > 0)
		memcpy(h->env.payload.data, ev->payload.data, ev->payload.len);
	return h;
}

static size_t
queue_room(const inbox *in)
{
	return in->o.queue_max - in->qlen;
}

static void
queue_push(inbox *in, held_event *h)
{
	h->env.publisher = in->publisher;
	in->queue[(in->qhead + in->qlen) % in->o.queue_max] = h;
	in->qlen++;
	in->held = h->last;
}

static held_event *
queue_at(const inbox *in, size_t i)
{
	return in->queue[(in->qhead + i) % in->o.queue_max];
}

/* Drops everything held and forgets the cursor: after an unknown outcome
 * the only truth is what Postgres has. Only called with nothing in flight. */
static void
reset(inbox *in, const char *why)
{
	log_warn("inbox_reset", "\"publisher\":\"%s\",\"reason\":\"%s\",\"applied_seq\":%" PRIu64,
	    in->publisher, why, in->applied);
	for (size_t i = 0; i < in->qlen; i++)
		held_free(queue_at(in, i));
	in->qhead = in->qlen = 0;
	in->cursor_loaded = false;
}

/*
 * Offers one event (live or replayed) to the queue. Takes a copy if it is
 * the next one and there is room; otherwise counts it and leaves the gap to
 * replay. Returns true if it was taken.
 */
static bool
offer(inbox *in, const Trygg__Bus__Envelope *ev, bool live)
{
	if (ev->seq > in->known)
		in->known = ev->seq;
	if (!in->cursor_loaded)
		return false;
	if (ev->seq <= in->held) {
		in->st.duplicates++;
		return false;
	}
	if (ev->seq != in->held + 1 || queue_room(in) == 0) {
		if (live)
			in->st.gaps++;
		return false;
	}
	queue_push(in, hold(ev));
	return true;
}

static void
on_frame(void *arg, nng_msg *msg)
{
	inbox *in = arg;
	Trygg__Bus__Frame *f = NULL;
	int rv =
	    envelope_frame_unpack(nng_msg_body(msg), nng_msg_len(msg), ENVELOPE_UNPACK_CAP, &f);
	size_t len = nng_msg_len(msg);
	nng_msg_free(msg);
	if (rv != 0) {
		in->st.invalid++;
		log_warn("bus_frame_invalid", "\"publisher\":\"%s\",\"bytes\":%zu,\"error\":\"%s\"",
		    in->publisher, len, trygg_strerror(rv));
		return;
	}
	if (f->kind_case == TRYGG__BUS__FRAME__KIND_EVENT) {
		if (strcmp(f->event->publisher, in->publisher) == 0) {
			offer(in, f->event, true);
		} else {
			/* Someone else's event on this publisher's socket: a
			 * misconfiguration, never to be applied. */
			char name[96];
			in->st.invalid++;
			log_warn("bus_frame_invalid",
			    "\"publisher\":\"%s\",\"bytes\":%zu,\"error\":\"foreign publisher\","
			    "\"from\":%s",
			    in->publisher, len,
			    log_json_str(f->event->publisher, name, sizeof(name)));
		}
	} else if (f->kind_case == TRYGG__BUS__FRAME__KIND_HEARTBEAT) {
		if (f->heartbeat->last_seq > in->known)
			in->known = f->heartbeat->last_seq;
	}
	envelope_frame_free(f);
	maybe_apply(in);
	maybe_replay(in);
}

static void
on_replay_reply(void *arg, int err, nng_msg *msg)
{
	inbox *in = arg;
	in->replay_pending = false;
	if (in->stopping) {
		if (msg)
			nng_msg_free(msg);
		return;
	}
	Trygg__Bus__ReplayReply *rep = NULL;
	if (err == 0) {
		err = envelope_replay_reply_unpack(nng_msg_body(msg), nng_msg_len(msg),
		    ENVELOPE_UNPACK_CAP * 4, &rep);
		nng_msg_free(msg);
	}
	if (err != 0 || rep->status != TRYGG__BUS__REPLAY_REPLY__STATUS__OK) {
		log_warn("inbox_replay_failed", "\"publisher\":\"%s\",\"error\":\"%s\"",
		    in->publisher,
		    err != 0 ? trygg_strerror(err) : (rep->error ? rep->error : "status"));
		envelope_replay_reply_free(rep);
		return; /* the timer asks again */
	}
	if (rep->last_seq > in->known)
		in->known = rep->last_seq;
	if (in->cursor_loaded) {
		uint64_t next = in->held + 1;
		/* The publisher purged events we never had: skip them loudly
		 * rather than wait forever. */
		uint64_t first = rep->n_events > 0 ? rep->events[0]->seq : rep->first_available_seq;
		if (first == 0 && rep->last_seq >= next)
			first = rep->last_seq + 1;
		if (first > next && rep->last_seq >= next && queue_room(in) > 0) {
			held_event *h = xcalloc(1, sizeof(*h));
			trygg__bus__envelope__init(&h->env);
			h->seq = next;
			h->last = first - 1;
			h->is_skip = true;
			log_error("inbox_events_purged",
			    "\"publisher\":\"%s\",\"from\":%" PRIu64 ",\"to\":%" PRIu64,
			    in->publisher, h->seq, h->last);
			queue_push(in, h);
		}
		for (size_t i = 0; i < rep->n_events; i++)
			offer(in, rep->events[i], false);
	}
	envelope_replay_reply_free(rep);
	maybe_apply(in);
	maybe_replay(in);
}

/* Asks the publisher for what we miss, if anything and if there is room. */
static void
send_replay(inbox *in)
{
	size_t room = queue_room(in);
	if (room == 0)
		return;
	Trygg__Bus__ReplayRequest req = TRYGG__BUS__REPLAY_REQUEST__INIT;
	req.publisher = in->publisher;
	req.from_seq = in->held + 1;
	req.max_events = (uint32_t)(room < in->o.replay_max ? room : in->o.replay_max);
	nng_msg *m = envelope_message_pack(&req.base);
	if (bus_request(in->req, m, in->o.replay_timeout_ms, on_replay_reply, in) != 0) {
		nng_msg_free(m);
		return;
	}
	in->replay_pending = true;
	in->st.replays++;
}

static void
maybe_replay(inbox *in)
{
	if (in->stopping || !in->cursor_loaded || in->replay_pending)
		return;
	if (in->known > in->held)
		send_replay(in);
}

static void
cursor_loaded(void *arg, const db_reply *rep)
{
	inbox *in = arg;
	in->loading = false;
	in->db_pending--;
	if (in->stopping) {
		maybe_free(in);
		return;
	}
	if (rep->err != 0 || PQntuples(rep->results[1]) != 1)
		return; /* the timer tries again */
	in->applied = strtoull(PQgetvalue(rep->results[1], 0, 0), NULL, 10);
	in->held = in->applied; /* the queue is empty whenever the cursor is not loaded */
	in->cursor_loaded = true;
	log_info("inbox_ready", "\"publisher\":\"%s\",\"applied_seq\":%" PRIu64, in->publisher,
	    in->applied);
	/* Subscribed already; now replay from cursor + 1 (always once, since
	 * we do not know yet how far the publisher is). */
	if (!in->replay_pending)
		send_replay(in);
}

static void
load_cursor(inbox *in)
{
	if (in->loading || in->inflight > 0 || !db_is_connected(in->db))
		return;
	const char *values[1] = {in->publisher};
	db_batch *b = db_batch_new();
	db_batch_add(b, SQL_CURSOR_INIT, 1, values);
	db_batch_add(b, SQL_CURSOR_GET, 1, values);
	if (db_submit(in->db, b, cursor_loaded, in) != 0) {
		db_batch_free(b);
		return;
	}
	in->loading = true;
	in->db_pending++;
}

/* Adds the "record as failed" statement for one event to a batch. */
static void
add_failed(inbox *in, db_batch *b, const held_event *h, const char *error)
{
	char seq[24];
	snprintf(seq, sizeof(seq), "%" PRIu64, h->seq);
	const char *values[6] = {in->publisher, seq, h->env.event_id, h->env.type,
	    (const char *)h->env.payload.data, error};
	int lengths[6] = {0, 0, 0, 0, (int)h->env.payload.len, 0};
	int formats[6] = {0, 0, 0, 0, 1, 0};
	char ebuf[512], idbuf[128];
	db_batch_addb(b, SQL_FAILED, 6, values, lengths, formats);
	in->st.failed++;
	log_error("inbox_event_failed",
	    "\"publisher\":\"%s\",\"seq\":%" PRIu64 ",\"event_id\":%s,\"error\":%s", in->publisher,
	    h->seq, log_json_str(h->env.event_id, idbuf, sizeof(idbuf)),
	    log_json_str(error, ebuf, sizeof(ebuf)));
}

/* Finds the queued event whose statements include statement `idx`. */
static held_event *
event_of_statement(inbox *in, size_t n, int idx)
{
	for (size_t i = 0; i < n; i++) {
		held_event *h = queue_at(in, i);
		if (idx >= h->stmt_first && idx < h->stmt_first + h->stmt_count)
			return h;
	}
	return NULL;
}

static void
batch_done(void *arg, const db_reply *rep)
{
	inbox *in = arg;
	in->db_pending--;
	size_t n = in->inflight;
	in->inflight = 0;
	if (in->stopping) {
		maybe_free(in);
		return;
	}
	if (rep->err == 0) {
		uint64_t events = 0;
		for (size_t i = 0; i < n; i++) {
			held_event *h = queue_at(in, i);
			events += h->is_skip ? 0 : 1;
			in->applied = h->last;
			held_free(h);
		}
		in->qhead = (in->qhead + n) % in->o.queue_max;
		in->qlen -= n;
		in->st.applied += events;
		if (in->o.on_committed != NULL)
			in->o.on_committed(in->apply_arg, in->applied);
		maybe_apply(in);
		maybe_replay(in);
		return;
	}
	in->st.batch_errors++;
	held_event *bad = NULL;
	if (rep->err == TRYGG_EDB && rep->sqlstate != NULL && strcmp(rep->sqlstate, "TR001") != 0)
		bad = event_of_statement(in, n, rep->failed_index);
	if (bad != NULL && bad->poison == NULL) {
		/* One event's effect failed: a bug or a bad payload, which no
		 * retry will cure. Record it instead and apply the rest. */
		bad->poison = xstrdup(rep->message ? rep->message : "statement failed");
		maybe_apply(in);
		return;
	}
	reset(in,
	    rep->err == TRYGG_EDB ? (rep->message ? rep->message : "batch failed")
	                          : trygg_strerror(rep->err));
}

/* Starts applying the next run of queued events, if nothing is in flight. */
static void
maybe_apply(inbox *in)
{
	if (in->stopping || in->inflight > 0 || in->qlen == 0 || !in->cursor_loaded)
		return;
	size_t n = in->qlen < in->o.batch_max ? in->qlen : in->o.batch_max;
	db_batch *b = db_batch_new();
	for (size_t i = 0; i < n; i++) {
		held_event *h = queue_at(in, i);
		h->stmt_first = db_batch_count(b);
		if (h->is_skip) {
			/* nothing to apply: the cursor jumps over the range */
		} else if (h->poison != NULL) {
			add_failed(in, b, h, h->poison);
		} else {
			int rv = in->apply(in->apply_arg, b, &h->env);
			if (rv != 0) {
				/* The service refused it (e.g. undecodable). Its
				 * statements so far would be a partial effect, so
				 * start the batch again without them. */
				h->poison =
				    xasprintf("rejected by the service: %s", trygg_strerror(rv));
				db_batch_free(b);
				maybe_apply(in);
				return;
			}
		}
		h->stmt_count = db_batch_count(b) - h->stmt_first;
	}
	char from[24], to[24];
	snprintf(from, sizeof(from), "%" PRIu64, queue_at(in, 0)->seq);
	snprintf(to, sizeof(to), "%" PRIu64, queue_at(in, n - 1)->last);
	const char *values[3] = {in->publisher, from, to};
	db_batch_add(b, SQL_ADVANCE, 3, values);
	if (db_submit(in->db, b, batch_done, in) != 0) {
		db_batch_free(b);
		return; /* disconnected or busy: the timer retries */
	}
	in->inflight = n;
	in->db_pending++;
}

/* The heartbeat of the inbox itself: loads the cursor when needed and
 * retries whatever failed. */
static void
on_timer(uv_timer_t *t)
{
	inbox *in = t->data;
	if (!in->cursor_loaded) {
		load_cursor(in);
		return;
	}
	maybe_apply(in);
	maybe_replay(in);
}

int
inbox_start(uv_loop_t *loop, db *d, const inbox_options *o, inbox_apply_fn apply, void *arg,
    inbox **out)
{
	int rv;
	inbox *in = xcalloc(1, sizeof(*in));
	in->loop = loop;
	in->db = d;
	in->o = *o;
	in->publisher = xstrdup(o->publisher);
	in->o.publisher = in->publisher;
	in->o.sub_url = in->o.req_url = NULL; /* not kept */
	in->apply = apply;
	in->apply_arg = arg;
	if (in->o.batch_max == 0)
		in->o.batch_max = 500;
	if (in->o.queue_max == 0)
		in->o.queue_max = 20000;
	if (in->o.replay_max == 0)
		in->o.replay_max = 1000;
	if (in->o.replay_timeout_ms == 0)
		in->o.replay_timeout_ms = 2000;
	if (in->o.retry_ms == 0)
		in->o.retry_ms = 250;
	in->queue = xcalloc(in->o.queue_max, sizeof(*in->queue));

	/* Subscribe first, then replay: whatever is published from now on
	 * reaches us live or by the replay that follows the cursor load. */
	bus_options sub_opts = {.recv_max = ENVELOPE_UNPACK_CAP / 8};
	bus_options req_opts = {.recv_max = 16u * 1024 * 1024};
	if ((rv = bus_sub_open(loop, o->sub_url, &sub_opts, on_frame, in, &in->sub)) != 0)
		goto fail;
	if ((rv = bus_req_open(loop, o->req_url, &req_opts, &in->req)) != 0)
		goto fail;
	uv_timer_init(loop, &in->timer);
	in->timer.data = in;
	in->timer_open = true;
	uv_timer_start(&in->timer, on_timer, 0, in->o.retry_ms);
	log_info("inbox_started", "\"publisher\":\"%s\",\"sub_url\":\"%s\",\"req_url\":\"%s\"",
	    in->publisher, o->sub_url, o->req_url);
	*out = in;
	return 0;

fail:
	log_error("inbox_start_failed", "\"publisher\":\"%s\",\"error\":\"%s\"", o->publisher,
	    trygg_strerror(rv));
	bus_close(in->sub);
	free(in->queue);
	free(in->publisher);
	free(in);
	return rv;
}

static void
on_timer_closed(uv_handle_t *h)
{
	inbox *in = h->data;
	in->timer_open = false;
	maybe_free(in);
}

void
inbox_stop(inbox *in)
{
	if (in == NULL)
		return;
	in->stopping = true;
	bus_close(in->sub);
	bus_close(in->req);
	in->sub = in->req = NULL;
	uv_close((uv_handle_t *)&in->timer, on_timer_closed);
}

void
inbox_get_stats(const inbox *in, inbox_stats *out)
{
	*out = in->st;
	out->applied_seq = in->applied;
	out->known_seq = in->known;
}

#define STAT_GAUGE(field) \
	static double stat_##field(void *arg) \
	{ \
		return (double)((const inbox *)arg)->st.field; \
	}
STAT_GAUGE(applied)
STAT_GAUGE(duplicates)
STAT_GAUGE(gaps)
STAT_GAUGE(replays)
STAT_GAUGE(invalid)
STAT_GAUGE(failed)
STAT_GAUGE(batch_errors)

static double
stat_applied_seq(void *arg)
{
	return (double)((const inbox *)arg)->applied;
}

static double
stat_known_seq(void *arg)
{
	return (double)((const inbox *)arg)->known;
}

void
inbox_register_metrics(inbox *in, metrics *m)
{
	const char *l[] = {"publisher", in->publisher, NULL};
	metrics_gauge_fn(m, "trygg_inbox_applied_seq", "Cursor: last sequence number applied", l,
	    stat_applied_seq, in);
	metrics_gauge_fn(m, "trygg_inbox_known_seq", "Highest sequence number announced", l,
	    stat_known_seq, in);
	metrics_gauge_fn(m, "trygg_inbox_applied_total", "Events applied by this process", l,
	    stat_applied, in);
	metrics_gauge_fn(m, "trygg_inbox_duplicates_total", "Redelivered events skipped", l,
	    stat_duplicates, in);
	metrics_gauge_fn(m, "trygg_inbox_gaps_total", "Live events dropped for a gap", l, stat_gaps,
	    in);
	metrics_gauge_fn(m, "trygg_inbox_replays_total", "Replay requests sent", l, stat_replays,
	    in);
	metrics_gauge_fn(m, "trygg_inbox_invalid_total", "Malformed frames dropped", l,
	    stat_invalid, in);
	metrics_gauge_fn(m, "trygg_inbox_failed_total", "Poison events recorded", l, stat_failed,
	    in);
	metrics_gauge_fn(m, "trygg_inbox_batch_errors_total", "Batches that failed", l,
	    stat_batch_errors, in);
}

bool
inbox_ready(const inbox *in)
{
	return in != NULL && !in->stopping && (in->cursor_loaded || in->loading);
}
