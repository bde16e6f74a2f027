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

	/* Epochs and halts (see "Epochs" in inbox.h), all from the cursor row
	 * and the publisher's replay replies. */
	char epoch[40];          /* the cursor's epoch; "" = adopt the first seen */
	const char *halted;      /* NULL while applying, else a HALT_* reason */
	char *halted_detail;     /* what the operator reads (owned) */
	char pending_epoch[40];  /* what accepting would switch to ("" none) */
	uint64_t pending_base;   /* ... and the seq it would continue after */
	bool halt_stored;        /* the halt is in the cursor row */
	bool halt_busy;          /* a query storing or polling the halt is in flight */
	bool halt_recheck;       /* NOTIFY: poll the cursor row now */
	bool purge_continue;     /* the operator lifted a purge halt: go past it once */
	bool probe;              /* a heartbeat disagrees: let a replay reply decide */
	uint64_t halt_polled_ms; /* last poll of the cursor row while halted */
	char *channel;           /* "<schema>_inbox", once known */
};

static const char HALT_EPOCH[] = "epoch_changed";
static const char HALT_WENT_BACK[] = "seq_went_back";
static const char HALT_PURGED[] = "purged";
#define HALT_POLL_MS 2000

static const char SQL_CURSOR_INIT[] =
    "INSERT INTO inbox_cursor (publisher) VALUES ($1) ON CONFLICT DO NOTHING";
static const char SQL_CURSOR_GET[] = "SELECT last_seq FROM inbox_cursor WHERE publisher = $1";
static const char SQL_ADVANCE[] = "SELECT inbox_advance($1, $2, $3)";
static const char SQL_CURSOR_EPOCH[] =
    "SELECT coalesce(epoch::text, ''), coalesce(halted, ''), coalesce(halted_detail, ''),"
    " current_schema() FROM inbox_cursor WHERE publisher = $1";
static const char SQL_ADOPT_EPOCH[] =
    "UPDATE inbox_cursor SET epoch = $2::uuid WHERE publisher = $1 AND epoch IS NULL";
static const char SQL_HALT[] =
    "UPDATE inbox_cursor SET halted = $2, halted_detail = $3,"
    " pending_epoch = nullif($4, '')::uuid, pending_base_seq = $5::bigint WHERE publisher = $1";
static const char SQL_HALT_POLL[] =
    "SELECT coalesce(halted, '') FROM inbox_cursor WHERE publisher = $1";
static const char SQL_SKIPPED[] =
    "INSERT INTO inbox_skipped (publisher, from_seq, to_seq, epoch, reason)"
    " VALUES ($1, $2, $3, nullif($4, '')::uuid, 'purged') ON CONFLICT DO NOTHING";
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
	free(in->halted_detail);
	free(in->channel);
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
	if (!in->cursor_loaded || in->halted != NULL)
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

/*
 * Epochs and halts. A replay reply carries the publisher's epoch and
 * last_seq as read from its database in one statement: only a reply can
 * halt the stream. Heartbeats and live events come from a relay's memory
 * (perhaps a replica's, a moment stale), so when they disagree they only
 * ask for a replay (`probe`), whose reply decides.
 */

static void
epoch_query_done(void *arg, const db_reply *rep)
{
	inbox *in = arg;
	in->db_pending--;
	if (!in->stopping && rep->err != 0)
		log_warn("inbox_epoch_store_failed", "\"publisher\":\"%s\",\"error\":\"%s\"",
		    in->publisher, trygg_strerror(rep->err));
	maybe_free(in);
}

/* Takes the first epoch seen into the cursor (a new subscriber, or one
 * from before epochs). If storing fails the connection was lost, and the
 * cursor reload after it adopts again. */
static void
adopt_epoch(inbox *in, const char *epoch)
{
	snprintf(in->epoch, sizeof(in->epoch), "%s", epoch);
	log_info("inbox_epoch_adopted", "\"publisher\":\"%s\",\"epoch\":\"%s\"", in->publisher,
	    in->epoch);
	const char *values[2] = {in->publisher, in->epoch};
	if (db_query(in->db, SQL_ADOPT_EPOCH, 2, values, epoch_query_done, in) == 0)
		in->db_pending++;
}

static void
halt_query_done(void *arg, const db_reply *rep)
{
	inbox *in = arg;
	in->db_pending--;
	in->halt_busy = false;
	if (in->stopping) {
		maybe_free(in);
		return;
	}
	if (rep->err == 0)
		in->halt_stored = true; /* else the timer stores it again */
}

/* Writes the halt into the cursor row: the operator's view of it and
 * what a restart remembers. */
static void
store_halt(inbox *in)
{
	if (in->halt_busy || in->halted == NULL)
		return;
	char base[24];
	snprintf(base, sizeof(base), "%" PRIu64, in->pending_base);
	const char *values[5] = {in->publisher, in->halted, in->halted_detail, in->pending_epoch,
	    in->pending_epoch[0] != '\0' ? base : NULL};
	if (db_query(in->db, SQL_HALT, 5, values, halt_query_done, in) == 0) {
		in->halt_busy = true;
		in->db_pending++;
	}
}

/* Drops what is queued but not in flight: none of it may be applied. */
static void
drop_queue_tail(inbox *in)
{
	for (size_t i = in->inflight; i < in->qlen; i++)
		held_free(queue_at(in, i));
	in->qlen = in->inflight;
	in->held = in->qlen > 0 ? queue_at(in, in->qlen - 1)->last : in->applied;
}

/*
 * Stops applying this publisher: logs it as an error, drops what is queued
 * (a batch in flight still commits: its events were valid) and stores the
 * halt in the cursor row, where the operator lifts it (CONTRACT.md:
 * accept-epoch, continue). `detail` is taken over.
 */
static void
halt(inbox *in, const char *reason, const char *new_epoch, uint64_t base, uint64_t pub_last_seq,
    char *detail)
{
	char dbuf[640];
	in->halted = reason;
	free(in->halted_detail);
	in->halted_detail = detail;
	snprintf(in->pending_epoch, sizeof(in->pending_epoch), "%s", new_epoch ? new_epoch : "");
	in->pending_base = base;
	in->halt_stored = false;
	in->probe = false;
	in->st.halts++;
	drop_queue_tail(in);
	log_error("inbox_halted",
	    "\"publisher\":\"%s\",\"reason\":\"%s\",\"epoch\":\"%s\",\"new_epoch\":\"%s\","
	    "\"cursor\":%" PRIu64 ",\"publisher_last_seq\":%" PRIu64 ",\"detail\":%s",
	    in->publisher, reason, in->epoch, in->pending_epoch, in->applied, pub_last_seq,
	    log_json_str(detail, dbuf, sizeof(dbuf)));
	store_halt(in);
}

/*
 * Checks a replay reply's epoch and last_seq against the cursor: adopts the
 * first epoch seen, halts on another epoch or on a last_seq below what we
 * hold in the same one. Returns true if the reply's events may be offered.
 */
static bool
reply_epoch_ok(inbox *in, const Trygg__Bus__ReplayReply *rep)
{
	const char *e = rep->epoch;
	in->probe = false;
	if (e == NULL || e[0] == '\0')
		return true; /* a publisher from before epochs: nothing to check */
	if (in->epoch[0] == '\0')
		adopt_epoch(in, e);
	if (strcmp(in->epoch, e) != 0) {
		halt(in, HALT_EPOCH, e, rep->epoch_base_seq, rep->last_seq,
		    xasprintf("publisher %s changed epoch from %s to %s (the new epoch continues "
		              "after seq %" PRIu64 "; our cursor is at %" PRIu64
		              "): accept it with `events accept-epoch %s [--from SEQ]`",
		        in->publisher, in->epoch, e, rep->epoch_base_seq, in->applied,
		        in->publisher));
		return false;
	}
	if (rep->last_seq < in->held) {
		halt(in, HALT_WENT_BACK, e, rep->last_seq, rep->last_seq,
		    xasprintf(
		        "publisher %s is at seq %" PRIu64 ", below our %" PRIu64
		        " in the same epoch %s (restored from a backup without "
		        "outbox_new_epoch()?): accept with `events accept-epoch %s --from SEQ`",
		        in->publisher, rep->last_seq, in->held, e, in->publisher));
		return false;
	}
	return true;
}

/* A heartbeat raises `known` in our epoch; one from another epoch, or with
 * a last_seq below what we hold, asks a replay to decide. */
static void
heartbeat_seen(inbox *in, const Trygg__Bus__Heartbeat *hb)
{
	bool same =
	    hb->epoch[0] == '\0' || in->epoch[0] == '\0' || strcmp(hb->epoch, in->epoch) == 0;
	if (!same || hb->last_seq < in->held) {
		in->probe = in->cursor_loaded && in->halted == NULL;
		return;
	}
	if (hb->last_seq > in->known)
		in->known = hb->last_seq;
}

/* True if a live event may be offered: we are applying and it is in our
 * epoch. Until the first reply has told us the epoch, events wait for the
 * replay. */
static bool
event_epoch_ok(inbox *in, const Trygg__Bus__Envelope *ev)
{
	if (in->halted != NULL)
		return false;
	if (ev->epoch[0] == '\0' || strcmp(ev->epoch, in->epoch) == 0)
		return true;
	in->probe = in->cursor_loaded && in->epoch[0] != '\0';
	return false;
}

/*
 * The publisher no longer has events from..to, which we never applied. Goes
 * past them, recording the range in inbox_skipped in the same transaction
 * as the cursor, if skip_purged is set or the operator lifted the purge
 * halt; halts otherwise. Returns true if the range was queued as skipped.
 */
static bool
purged_range(inbox *in, uint64_t from, uint64_t to, uint64_t pub_last_seq)
{
	if (!in->o.skip_purged && !in->purge_continue) {
		halt(in, HALT_PURGED, NULL, 0, pub_last_seq,
		    xasprintf("events %" PRIu64 "..%" PRIu64 " of publisher %s were purged before "
		              "we applied them: `events continue %s` goes past them (recorded in "
		              "inbox_skipped)",
		        from, to, in->publisher, in->publisher));
		return false;
	}
	in->purge_continue = false;
	held_event *h = xcalloc(1, sizeof(*h));
	trygg__bus__envelope__init(&h->env);
	h->seq = from;
	h->last = to;
	h->is_skip = true;
	log_error("inbox_events_purged",
	    "\"publisher\":\"%s\",\"from\":%" PRIu64 ",\"to\":%" PRIu64 ",\"epoch\":\"%s\"",
	    in->publisher, from, to, in->epoch);
	queue_push(in, h);
	return true;
}

/* Adds the durable record of a skipped (purged) range to a batch. */
static void
add_skipped(inbox *in, db_batch *b, const held_event *h)
{
	char from[24], to[24];
	snprintf(from, sizeof(from), "%" PRIu64, h->seq);
	snprintf(to, sizeof(to), "%" PRIu64, h->last);
	const char *values[4] = {in->publisher, from, to, in->epoch};
	db_batch_add(b, SQL_SKIPPED, 4, values);
}

/* The operator lifted the halt (the cursor row says halted IS NULL). */
static void
resume(inbox *in)
{
	log_info("inbox_resumed", "\"publisher\":\"%s\",\"was\":\"%s\"", in->publisher, in->halted);
	/* Lifting a purge halt is the operator's `continue`: go past it once. */
	in->purge_continue = in->halted == HALT_PURGED;
	in->halted = NULL;
	free(in->halted_detail);
	in->halted_detail = NULL;
	in->pending_epoch[0] = '\0';
}

static void
halt_polled(void *arg, const db_reply *rep)
{
	inbox *in = arg;
	in->db_pending--;
	in->halt_busy = false;
	if (in->stopping) {
		maybe_free(in);
		return;
	}
	if (rep->err != 0 || PQntuples(rep->results[0]) != 1 || in->halted == NULL ||
	    PQgetvalue(rep->results[0], 0, 0)[0] != '\0')
		return; /* still halted */
	resume(in);
	/* The operator may have moved the cursor and its epoch: read both
	 * again (the queue beyond what is in flight is already empty). */
	in->epoch[0] = '\0';
	in->cursor_loaded = false;
}

/*
 * While halted: store the halt until it is stored, then poll the cursor row
 * every HALT_POLL_MS, or at once after NOTIFY <schema>_inbox, for the
 * operator's decision.
 */
static void
halt_tick(inbox *in)
{
	if (in->halt_busy)
		return;
	if (!in->halt_stored) {
		store_halt(in);
		return;
	}
	uint64_t now = trygg_now_ms();
	if (!in->halt_recheck && now - in->halt_polled_ms < HALT_POLL_MS)
		return;
	in->halt_recheck = false;
	in->halt_polled_ms = now;
	const char *values[1] = {in->publisher};
	if (db_query(in->db, SQL_HALT_POLL, 1, values, halt_polled, in) == 0) {
		in->halt_busy = true;
		in->db_pending++;
	}
}

static void
on_inbox_notify(void *arg, const char *channel, const char *payload)
{
	inbox *in = arg;
	(void)channel;
	(void)payload;
	if (in->halted != NULL && !in->stopping) {
		in->halt_recheck = true;
		halt_tick(in);
	}
}

/*
 * Reads the cursor's epoch columns (a SQL_CURSOR_EPOCH result) and starts
 * listening for the operator's NOTIFY. Returns false if the cursor is
 * halted (then nothing is replayed until the operator lifts it).
 */
static bool
cursor_epoch_loaded(inbox *in, const PGresult *res)
{
	if (PQntuples(res) != 1)
		return true;
	snprintf(in->epoch, sizeof(in->epoch), "%s", PQgetvalue(res, 0, 0));
	if (in->channel == NULL) {
		in->channel = xasprintf("%s_inbox", PQgetvalue(res, 0, 3));
		if (db_listen(in->db, in->channel, on_inbox_notify, in) != 0)
			log_warn("inbox_listen_failed", "\"channel\":\"%s\"", in->channel);
	}
	const char *h = PQgetvalue(res, 0, 1);
	if (h[0] == '\0') {
		/* A halt of ours not stored yet stands (the timer stores it);
		 * one that was stored has been lifted meanwhile. */
		if (in->halted != NULL && in->halt_stored)
			resume(in);
		return in->halted == NULL;
	}
	in->halted = strcmp(h, HALT_EPOCH) == 0 ? HALT_EPOCH
	    : strcmp(h, HALT_WENT_BACK) == 0    ? HALT_WENT_BACK
	                                        : HALT_PURGED;
	free(in->halted_detail);
	in->halted_detail = xstrdup(PQgetvalue(res, 0, 2));
	in->halt_stored = true;
	char dbuf[640];
	log_error("inbox_halted",
	    "\"publisher\":\"%s\",\"reason\":\"%s\",\"epoch\":\"%s\",\"cursor\":%" PRIu64
	    ",\"since_before_start\":true,\"detail\":%s",
	    in->publisher, in->halted, in->epoch, in->applied,
	    log_json_str(in->halted_detail, dbuf, sizeof(dbuf)));
	return false;
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
			if (event_epoch_ok(in, f->event))
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
		heartbeat_seen(in, f->heartbeat);
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
	if (in->cursor_loaded && in->halted == NULL && reply_epoch_ok(in, rep)) {
		if (rep->last_seq > in->known)
			in->known = rep->last_seq;
		uint64_t next = in->held + 1;
		/* The publisher purged events we never had: halt, or skip them
		 * with a durable record (purged_range), never wait forever. */
		uint64_t first = rep->n_events > 0 ? rep->events[0]->seq : rep->first_available_seq;
		if (first == 0 && rep->last_seq >= next)
			first = rep->last_seq + 1;
		bool go = true;
		if (first > next && rep->last_seq >= next && queue_room(in) > 0)
			go = purged_range(in, next, first - 1, rep->last_seq);
		for (size_t i = 0; go && i < rep->n_events; i++)
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
	if (in->stopping || !in->cursor_loaded || in->replay_pending || in->halted != NULL)
		return;
	if (in->known > in->held || in->probe)
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
	bool halted = !cursor_epoch_loaded(in, rep->results[2]);
	log_info("inbox_ready", "\"publisher\":\"%s\",\"applied_seq\":%" PRIu64, in->publisher,
	    in->applied);
	/* Subscribed already; now replay from cursor + 1 (always once, since
	 * we do not know yet how far the publisher is). */
	if (!in->replay_pending && !halted)
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
	db_batch_add(b, SQL_CURSOR_EPOCH, 1, values);
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
			in->st.skipped_ranges += h->is_skip ? 1 : 0;
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
			add_skipped(in, b, h);
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
	if (in->halted != NULL) {
		halt_tick(in);
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
	out->halted = in->halted;
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
STAT_GAUGE(skipped_ranges)
STAT_GAUGE(halts)

static double
stat_halted(void *arg)
{
	return ((const inbox *)arg)->halted != NULL ? 1.0 : 0.0;
}

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
	metrics_gauge_fn(m, "trygg_inbox_halted",
	    "1 while the stream is halted (epoch changed, seq went back, purged)", l, stat_halted,
	    in);
	metrics_gauge_fn(m, "trygg_inbox_halts_total", "Times the stream halted", l, stat_halts,
	    in);
	metrics_gauge_fn(m, "trygg_inbox_skipped_ranges_total",
	    "Purged ranges gone past (recorded in inbox_skipped)", l, stat_skipped_ranges, in);
}

bool
inbox_ready(const inbox *in)
{
	return in != NULL && !in->stopping && in->halted == NULL &&
	    (in->cursor_loaded || in->loading);
}
