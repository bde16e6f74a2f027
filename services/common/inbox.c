/*
 * inbox.c: follows one publisher's stream and applies each event exactly
 * once, in order. See inbox.h for the model.
 *
 * State, all on the loop thread:
 *   applied     the cursor as last committed (loaded from Postgres);
 *   queue       events applied + 1 .. held, contiguous, waiting to be
 *               applied (the first `inflight` of them are in the batch
 *               being committed), bounded by count and by bytes;
 *   held        the highest seq in the queue (== applied when empty);
 *   known       the highest seq the publisher has announced;
 *   gen         bumped by every reset. A replay request remembers the gen
 *               and from_seq it was sent for; its reply is used only if
 *               both still hold and its first event is that from_seq, so a
 *               reply that arrives after a reset (the queue it was asked
 *               for is gone) is discarded and asked again, never taken as
 *               a purged range.
 * A live event is taken only if it is exactly held + 1; anything else is a
 * duplicate (<= held) or a gap (> held + 1), and gaps are filled by replay,
 * which also starts the stream after a (re)start. There is no reordering
 * buffer: replay is cheap and keeps the logic to one path.
 *
 * A failed batch is judged by db_error_is_transient(): a transient error
 * (connection, deadlock, serialization, cancel, lock timeout, read-only...)
 * resets the inbox and retries the whole run after an exponential backoff
 * with jitter; a permanent error in one event's statements marks that event
 * poison (recorded in inbox_failed in the next attempt, the rest applied);
 * a permanent error at commit (a deferred constraint) or in the flush
 * hook's statements names no event, so the events of that batch are then
 * applied one per transaction, and the one that still fails alone is the
 * poison. TR001 (the cursor moved under
 * us: another replica) resets too.
 *
 * Set-aside events come back on request: rows of inbox_failed with
 * retry_requested_at set are re-applied one at a time, on NOTIFY
 * <schema>_inbox and on a poll timer, each in a transaction that deletes
 * its row (inbox_failed_take).
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
	size_t bytes;  /* its share of the queue's byte bound */
	bool is_skip;
	int stmt_first;       /* its statements in the current batch: */
	int stmt_count;       /*   [stmt_first, stmt_first + stmt_count) */
	char *poison;         /* set once its effect failed alone: record, skip */
	char poison_state[6]; /* its SQLSTATE, "" if none */
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
	bool replay_needed; /* ask once after a cursor load, whatever `known` says */
	bool stopping;
	uint64_t applied, held, known;
	uint64_t gen;                     /* bumped by reset() */
	uint64_t replay_gen, replay_from; /* what the pending request asked for */

	held_event **queue; /* ring buffer of queue_max entries */
	size_t qhead, qlen;
	size_t qbytes;       /* sum of the queued entries' bytes */
	size_t avg_bytes;    /* running average size of an event (0: none seen yet) */
	size_t inflight;     /* entries at the head in the batch being committed */
	int inflight_stmts;  /* statements in that batch, the advance included */
	int flush_first;     /* the flush hook's statements in it: [flush_first, */
	                     /*   inflight_stmts - 1) */
	uint64_t solo_until; /* apply one event per batch up to this seq */
	int db_pending;

	unsigned backoff_ms;    /* the next backoff after a failure */
	uint64_t not_before_ms; /* no cursor load before this */
	uint32_t rng;

	char *channel;             /* "<schema>_inbox", or NULL */
	bool retry_running;        /* a scan or re-apply is in flight */
	bool retry_again;          /* a request came during it */
	uint64_t retry_seq;        /* the set-aside event being re-applied */
	uint64_t retry_not_before; /* after a transient failure of a re-apply */
	uint64_t next_poll_ms;
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
    "INSERT INTO inbox_failed (publisher, seq, event_id, event_type, payload, error, sqlstate,"
    " occurred_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";
static const char SQL_FAILED_COUNT[] = "SELECT count(*) FROM inbox_failed WHERE publisher = $1";
static const char SQL_RETRY_NEXT[] =
    "SELECT seq, event_id, event_type, payload, coalesce(occurred_at_us,"
    " (extract(epoch FROM failed_at) * 1000000)::bigint) FROM inbox_failed"
    " WHERE publisher = $1 AND retry_requested_at IS NOT NULL ORDER BY seq LIMIT 1";
static const char SQL_RETRY_TAKE[] = "SELECT inbox_failed_take($1, $2)";
static const char SQL_RETRY_FAILED[] =
    "UPDATE inbox_failed SET retry_requested_at = NULL, attempts = attempts + 1,"
    " error = $3, sqlstate = $4, failed_at = now() WHERE publisher = $1 AND seq = $2";

#define BACKOFF_MIN_DEFAULT 250
#define REPLAY_REPLY_BYTES (4u * 1024 * 1024) /* the relay's cap on one reply */

static void maybe_apply(inbox *in);
static void maybe_replay(inbox *in);
static void retry_scan(inbox *in);

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
	free(in->publisher);
	free(in->channel);
	free(in);
}

/* What one event costs the queue's byte bound. */
static size_t
event_bytes(const Trygg__Bus__Envelope *ev)
{
	return sizeof(held_event) + strlen(ev->event_id) + strlen(ev->type) + 2 + ev->payload.len;
}

/* Copies an envelope into one owned allocation. */
static held_event *
hold(const Trygg__Bus__Envelope *ev)
{
	size_t id_len = strlen(ev->event_id) + 1, type_len = strlen(ev->type) + 1;
	held_event *h = xmalloc(sizeof(*h) + id_len + type_len + ev->payload.len);
	char *p = (char *)(h + 1);
	h->seq = h->last = ev->seq;
	h->bytes = event_bytes(ev);
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

/* True if an event of `bytes` fits the byte bound. An empty queue takes
 * any event, so one larger than the bound cannot stall the stream. */
static bool
bytes_fit(const inbox *in, size_t bytes)
{
	return in->qlen == 0 || in->qbytes + bytes <= in->o.queue_max_bytes;
}

static void
queue_push(inbox *in, held_event *h)
{
	h->env.publisher = in->publisher;
	in->queue[(in->qhead + in->qlen) % in->o.queue_max] = h;
	in->qlen++;
	in->qbytes += h->bytes;
	in->held = h->last;
}

/* Drops the first n entries (applied, or the whole queue on a reset). */
static void
queue_drop(inbox *in, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		held_event *h = in->queue[(in->qhead + i) % in->o.queue_max];
		in->qbytes -= h->bytes;
		held_free(h);
	}
	in->qhead = (in->qhead + n) % in->o.queue_max;
	in->qlen -= n;
}

/* The next delay of the failure backoff: "equal jitter" around the current
 * step, which then doubles up to backoff_max_ms. A success resets it. */
static unsigned
next_backoff(inbox *in)
{
	unsigned b = in->backoff_ms ? in->backoff_ms : in->o.retry_ms;
	in->rng ^= in->rng << 13;
	in->rng ^= in->rng >> 17;
	in->rng ^= in->rng << 5;
	unsigned delay = b / 2 + (unsigned)(in->rng % (b / 2 + 1));
	in->backoff_ms = b >= in->o.backoff_max_ms / 2 ? in->o.backoff_max_ms : b * 2;
	return delay;
}

static held_event *
queue_at(const inbox *in, size_t i)
{
	return in->queue[(in->qhead + i) % in->o.queue_max];
}

/*
 * Drops everything held and forgets the cursor: after an unknown outcome
 * the only truth is what Postgres has. The cursor is loaded again after a
 * backoff delay. Bumping `gen` makes any replay reply still on its way
 * stale. Only called with nothing in flight.
 */
static void
reset(inbox *in, const char *why)
{
	char m[512];
	unsigned delay = next_backoff(in);
	in->not_before_ms = trygg_now_ms() + delay;
	log_warn("inbox_reset",
	    "\"publisher\":\"%s\",\"reason\":%s,\"applied_seq\":%" PRIu64 ",\"retry_ms\":%u",
	    in->publisher, log_json_str(why, m, sizeof(m)), in->applied, delay);
	queue_drop(in, in->qlen);
	in->qhead = 0;
	in->cursor_loaded = false;
	in->gen++;
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
	if (ev->seq != in->held + 1 || queue_room(in) == 0 || !bytes_fit(in, event_bytes(ev))) {
		if (live)
			in->st.gaps++;
		return false;
	}
	held_event *h = hold(ev);
	in->avg_bytes = in->avg_bytes ? (in->avg_bytes * 3 + h->bytes) / 4 : h->bytes;
	queue_push(in, h);
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
 * halt in the cursor row, where the operator lifts it (admin_events.c:
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
 * held in the same one when we asked. Returns true if the reply's events
 * may be offered.
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
	/* Against what we held when we asked, not now: live events from
	 * another relay of the publisher (a replica) may have been committed,
	 * received and queued after this reply's query read last_seq. */
	uint64_t held_then = in->replay_from > 0 ? in->replay_from - 1 : 0;
	if (rep->last_seq < held_then) {
		halt(in, HALT_WENT_BACK, e, rep->last_seq, rep->last_seq,
		    xasprintf(
		        "publisher %s is at seq %" PRIu64 ", below our %" PRIu64
		        " in the same epoch %s (restored from a backup without "
		        "outbox_new_epoch()?): accept with `events accept-epoch %s --from SEQ`",
		        in->publisher, rep->last_seq, held_then, e, in->publisher));
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

static void on_notify(void *arg, const char *channel, const char *payload);

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
		if (db_listen(in->db, in->channel, on_notify, in) != 0)
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

/* Counts and logs a frame from another publisher, which is dropped. */
static void
drop_foreign(inbox *in, size_t len, const char *what, const char *from)
{
	char name[96];
	in->st.invalid++;
	log_warn("bus_frame_invalid",
	    "\"publisher\":\"%s\",\"bytes\":%zu,\"error\":\"%s\",\"from\":%s", in->publisher, len,
	    what, log_json_str(from, name, sizeof(name)));
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
			drop_foreign(in, len, "foreign publisher", f->event->publisher);
		}
	} else if (f->kind_case == TRYGG__BUS__FRAME__KIND_HEARTBEAT) {
		if (strcmp(f->heartbeat->publisher, in->publisher) == 0) {
			heartbeat_seen(in, f->heartbeat);
		} else {
			/* A foreign heartbeat's last_seq says nothing about our
			 * stream: believed, it would have us ask for replays in
			 * a tight loop. */
			drop_foreign(in, len, "foreign heartbeat", f->heartbeat->publisher);
		}
	}
	envelope_frame_free(f);
	maybe_apply(in);
	maybe_replay(in);
}

/*
 * True if a reply answers the request for the current state: sent in this
 * generation (no reset since), and starting where it was asked to (or at
 * the first event the publisher still has, when it purged older ones).
 * Anything else is a late answer to a question no longer asked; using it
 * could make the inbox skip events the outbox still holds.
 */
static bool
reply_is_current(const inbox *in, const Trygg__Bus__ReplayReply *rep)
{
	if (!in->cursor_loaded || in->replay_gen != in->gen)
		return false;
	if (rep->n_events == 0)
		return true;
	uint64_t first = rep->events[0]->seq;
	return first == in->replay_from ||
	    (first == rep->first_available_seq && first > in->replay_from);
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
	if (!reply_is_current(in, rep)) {
		in->st.stale_replies++;
		log_info("inbox_replay_stale",
		    "\"publisher\":\"%s\",\"asked_from\":%" PRIu64 ",\"first\":%" PRIu64
		    ",\"held\":%" PRIu64 ",\"reset_since\":%s",
		    in->publisher, in->replay_from, rep->n_events > 0 ? rep->events[0]->seq : 0,
		    in->held, in->replay_gen != in->gen ? "true" : "false");
		envelope_replay_reply_free(rep);
		if (in->cursor_loaded)
			in->replay_needed = true; /* ask again, for the current state */
		maybe_replay(in);
		return;
	}
	in->replay_needed = false;
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

/*
 * Asks the publisher for what we miss, if there is room: no more events
 * than the queue has slots for, nor than its byte bound has room for at
 * the average event size seen so far.
 */
static void
send_replay(inbox *in)
{
	size_t room = queue_room(in);
	size_t free_bytes =
	    in->qbytes < in->o.queue_max_bytes ? in->o.queue_max_bytes - in->qbytes : 0;
	size_t fit = free_bytes / (in->avg_bytes ? in->avg_bytes : 1);
	if (fit == 0 && in->qlen == 0)
		fit = 1; /* one event larger than the bound still goes through */
	if (fit < room)
		room = fit;
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
	in->replay_gen = in->gen;
	in->replay_from = req.from_seq;
	in->st.replays++;
}

static void
maybe_replay(inbox *in)
{
	if (in->stopping || !in->cursor_loaded || in->replay_pending || in->halted != NULL)
		return;
	if (in->known > in->held || in->probe || in->replay_needed)
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
	if (rep->err != 0 || PQntuples(rep->results[1]) != 1) {
		/* The timer tries again, after a backoff (a read-only database
		 * fails the INSERT until it is writable again). */
		unsigned delay = next_backoff(in);
		in->not_before_ms = trygg_now_ms() + delay;
		char m[512];
		log_warn("inbox_cursor_load_failed",
		    "\"publisher\":\"%s\",\"sqlstate\":\"%s\",\"error\":%s,\"retry_ms\":%u",
		    in->publisher, rep->sqlstate ? rep->sqlstate : "",
		    log_json_str(rep->message ? rep->message : "no cursor row", m, sizeof(m)),
		    delay);
		return;
	}
	in->applied = strtoull(PQgetvalue(rep->results[1], 0, 0), NULL, 10);
	in->st.failed_pending = strtoull(PQgetvalue(rep->results[2], 0, 0), NULL, 10);
	in->held = in->applied; /* the queue is empty whenever the cursor is not loaded */
	in->cursor_loaded = true;
	bool halted = !cursor_epoch_loaded(in, rep->results[3]);
	log_info("inbox_ready", "\"publisher\":\"%s\",\"applied_seq\":%" PRIu64, in->publisher,
	    in->applied);
	/* Subscribed already; now replay from cursor + 1 (always once, since
	 * we do not know yet how far the publisher is). A request still
	 * pending from before a reset gets a stale reply, which asks again. */
	if (!halted) {
		in->replay_needed = true;
		maybe_replay(in);
	}
}

/* Submits one batch of statements whose only parameter is the publisher;
 * counted in db_pending. Returns 0 or db_submit's error. */
static int
submit_by_publisher(inbox *in, const char *const *sqls, int n, db_cb cb)
{
	const char *values[1] = {in->publisher};
	db_batch *b = db_batch_new();
	for (int i = 0; i < n; i++)
		db_batch_add(b, sqls[i], 1, values);
	int rv = db_submit(in->db, b, cb, in);
	if (rv != 0) {
		db_batch_free(b);
		return rv;
	}
	in->db_pending++;
	return 0;
}

static void
load_cursor(inbox *in)
{
	if (in->loading || in->inflight > 0 || !db_is_connected(in->db) ||
	    trygg_now_ms() < in->not_before_ms)
		return;
	const char *sqls[4] = {SQL_CURSOR_INIT, SQL_CURSOR_GET, SQL_FAILED_COUNT, SQL_CURSOR_EPOCH};
	if (submit_by_publisher(in, sqls, 4, cursor_loaded) == 0)
		in->loading = true;
}

/* Adds the "record as failed" statement for one event to a batch; counted
 * and logged once it committed. */
static void
add_failed(inbox *in, db_batch *b, const held_event *h)
{
	char seq[24], at[24];
	snprintf(seq, sizeof(seq), "%" PRIu64, h->seq);
	snprintf(at, sizeof(at), "%" PRId64, h->env.occurred_at_us);
	const char *values[8] = {in->publisher, seq, h->env.event_id, h->env.type,
	    (const char *)h->env.payload.data, h->poison,
	    h->poison_state[0] ? h->poison_state : NULL, at};
	int lengths[8] = {0, 0, 0, 0, (int)h->env.payload.len, 0, 0, 0};
	int formats[8] = {0, 0, 0, 0, 1, 0, 0, 0};
	db_batch_addb(b, SQL_FAILED, 8, values, lengths, formats);
}

/* Marks an event poison: it is recorded in inbox_failed instead of applied
 * in the next attempt. */
static void
set_poison(held_event *h, const char *sqlstate, const char *error)
{
	free(h->poison);
	h->poison = xstrdup(error ? error : "statement failed");
	snprintf(h->poison_state, sizeof(h->poison_state), "%s", sqlstate ? sqlstate : "");
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

/* A batch committed: its events leave the queue. */
static void
batch_committed(inbox *in, size_t n)
{
	uint64_t events = 0;
	for (size_t i = 0; i < n; i++) {
		held_event *h = queue_at(in, i);
		if (h->poison != NULL) {
			char ebuf[512], idbuf[128];
			in->st.failed++;
			in->st.failed_pending++;
			log_error("inbox_event_failed",
			    "\"publisher\":\"%s\",\"seq\":%" PRIu64
			    ",\"event_id\":%s,\"sqlstate\":\"%s\",\"error\":%s",
			    in->publisher, h->seq,
			    log_json_str(h->env.event_id, idbuf, sizeof(idbuf)), h->poison_state,
			    log_json_str(h->poison, ebuf, sizeof(ebuf)));
		} else if (h->is_skip) {
			in->st.skipped_ranges++;
		} else {
			events++;
		}
		in->applied = h->last;
	}
	queue_drop(in, n);
	in->st.applied += events;
	in->backoff_ms = 0;
	if (in->solo_until != 0 && in->applied >= in->solo_until)
		in->solo_until = 0;
	if (in->o.on_committed != NULL)
		in->o.on_committed(in->apply_arg, in->applied);
}

/*
 * A batch failed. Transient errors and cursor conflicts reset and retry
 * after a backoff; a permanent error names its poison event, or (at
 * commit) makes the inbox apply the batch's events one by one to find it.
 */
static void
batch_failed(inbox *in, size_t n, const db_reply *rep)
{
	char m[512];
	in->st.batch_errors++;
	const char *why = rep->err == TRYGG_EDB ? (rep->message ? rep->message : "batch failed")
	                                        : trygg_strerror(rep->err);
	if (rep->err == TRYGG_EDB && rep->sqlstate != NULL && strcmp(rep->sqlstate, "TR001") == 0) {
		reset(in, why); /* someone else moved the cursor: re-read it */
		return;
	}
	if (rep->err != TRYGG_EDB || db_error_is_transient(rep->sqlstate)) {
		in->st.transient_errors++;
		log_warn("inbox_transient_error",
		    "\"publisher\":\"%s\",\"sqlstate\":\"%s\",\"error\":%s,\"events\":%zu",
		    in->publisher, rep->sqlstate ? rep->sqlstate : "",
		    log_json_str(why, m, sizeof(m)), n);
		reset(in, why);
		return;
	}
	/* Statements: the events' [0, flush_first), the flush hook's
	 * [flush_first, inflight_stmts - 1), then the advance, then
	 * failed_index == inflight_stmts for the commit. */
	bool at_commit = rep->failed_index >= in->inflight_stmts;
	bool in_flush =
	    rep->failed_index >= in->flush_first && rep->failed_index < in->inflight_stmts - 1;
	bool unnamed = at_commit || in_flush; /* no single event's statement */
	held_event *bad = NULL;
	if (rep->failed_index >= 0 && rep->failed_index < in->flush_first)
		bad = event_of_statement(in, n, rep->failed_index);
	else if (unnamed && n == 1)
		bad = queue_at(in, 0); /* alone and failing at commit or in flush */
	if (bad != NULL && bad->poison == NULL && !bad->is_skip) {
		/* One event's effect failed: a bug or a bad payload, which no
		 * retry will cure. Record it instead and apply the rest. */
		set_poison(bad, rep->sqlstate, why);
		maybe_apply(in);
		return;
	}
	if (bad == NULL && unnamed && n > 1) {
		/* Failed at commit (a deferred constraint) or in the flush
		 * hook's set statement: which event is unknown, so go one event
		 * per transaction through this run. */
		in->solo_until = queue_at(in, n - 1)->last;
		log_warn("inbox_commit_failed",
		    "\"publisher\":\"%s\",\"sqlstate\":\"%s\",\"error\":%s,\"from\":%" PRIu64
		    ",\"to\":%" PRIu64,
		    in->publisher, rep->sqlstate, log_json_str(why, m, sizeof(m)),
		    queue_at(in, 0)->seq, in->solo_until);
		maybe_apply(in);
		return;
	}
	/* Our own statements failed (the cursor or inbox_failed): nothing a
	 * poison mark cures; retry after a backoff. */
	reset(in, why);
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
	if (rep->err == 0)
		batch_committed(in, n);
	else
		batch_failed(in, n, rep);
	maybe_apply(in);
	maybe_replay(in);
}

/* Starts applying the next run of queued events, if nothing is in flight. */
static void
maybe_apply(inbox *in)
{
	if (in->stopping || in->inflight > 0 || in->qlen == 0 || !in->cursor_loaded)
		return;
	size_t n = in->qlen < in->o.batch_max ? in->qlen : in->o.batch_max;
	if (in->solo_until >= queue_at(in, 0)->seq)
		n = 1;
	db_batch *b = db_batch_new();
	for (size_t i = 0; i < n; i++) {
		held_event *h = queue_at(in, i);
		h->stmt_first = db_batch_count(b);
		if (h->is_skip) {
			/* nothing to apply: the cursor jumps over the range */
			add_skipped(in, b, h);
		} else if (h->poison != NULL) {
			add_failed(in, b, h);
		} else {
			int rv = in->apply(in->apply_arg, b, &h->env);
			if (rv != 0) {
				/* The service refused it (e.g. undecodable). Its
				 * statements so far would be a partial effect, so
				 * start the batch again without them. */
				char *why =
				    xasprintf("rejected by the service: %s", trygg_strerror(rv));
				set_poison(h, NULL, why);
				free(why);
				if (in->o.flush != NULL)
					in->o.flush(in->apply_arg, NULL); /* forget the run */
				db_batch_free(b);
				maybe_apply(in);
				return;
			}
		}
		h->stmt_count = db_batch_count(b) - h->stmt_first;
	}
	int flush_first = db_batch_count(b);
	if (in->o.flush != NULL)
		in->o.flush(in->apply_arg, b);
	char from[24], to[24];
	snprintf(from, sizeof(from), "%" PRIu64, queue_at(in, 0)->seq);
	snprintf(to, sizeof(to), "%" PRIu64, queue_at(in, n - 1)->last);
	const char *values[3] = {in->publisher, from, to};
	db_batch_add(b, SQL_ADVANCE, 3, values);
	int nstmts = db_batch_count(b);
	if (db_submit(in->db, b, batch_done, in) != 0) {
		db_batch_free(b);
		return; /* disconnected or busy: the timer retries */
	}
	in->inflight = n;
	in->inflight_stmts = nstmts;
	in->flush_first = flush_first;
	in->db_pending++;
}

/* ---------------------------------------------------------------------- */
/* Set-aside events, re-applied on an operator's request                   */

/* The re-apply (or its bookkeeping) is over; look for the next one now if
 * asked to, else at the next poll. */
static void
retry_finish(inbox *in, bool next)
{
	in->retry_running = false;
	if (next || in->retry_again) {
		in->retry_again = false;
		retry_scan(in);
	}
}

static void
retry_recorded(void *arg, const db_reply *rep)
{
	inbox *in = arg;
	in->db_pending--;
	if (in->stopping) {
		in->retry_running = false;
		maybe_free(in);
		return;
	}
	retry_finish(in, rep->err == 0);
}

/* The re-apply failed for good: the row stays, no longer asked for, with
 * one more attempt and the new error. */
static void
retry_record_failure(inbox *in, uint64_t seq, const char *sqlstate, const char *error)
{
	char sbuf[24], ebuf[512];
	snprintf(sbuf, sizeof(sbuf), "%" PRIu64, seq);
	log_error("inbox_event_retry_failed",
	    "\"publisher\":\"%s\",\"seq\":%" PRIu64 ",\"sqlstate\":\"%s\",\"error\":%s",
	    in->publisher, seq, sqlstate ? sqlstate : "", log_json_str(error, ebuf, sizeof(ebuf)));
	const char *values[4] = {in->publisher, sbuf, error, sqlstate};
	db_batch *b = db_batch_new();
	db_batch_add(b, SQL_RETRY_FAILED, 4, values);
	if (db_submit(in->db, b, retry_recorded, in) != 0) {
		db_batch_free(b);
		retry_finish(in, false);
		return;
	}
	in->db_pending++;
}

static void
retry_applied(void *arg, const db_reply *rep)
{
	inbox *in = arg;
	in->db_pending--;
	if (in->stopping) {
		in->retry_running = false;
		maybe_free(in);
		return;
	}
	uint64_t seq = in->retry_seq;
	if (rep->err == 0) {
		in->st.retried++;
		if (in->st.failed_pending > 0)
			in->st.failed_pending--;
		log_info("inbox_event_retried", "\"publisher\":\"%s\",\"seq\":%" PRIu64,
		    in->publisher, seq);
		if (in->o.on_committed != NULL)
			in->o.on_committed(in->apply_arg, in->applied);
		retry_finish(in, true);
		return;
	}
	if (rep->err == TRYGG_EDB && rep->sqlstate != NULL && strcmp(rep->sqlstate, "TR002") == 0) {
		retry_finish(in, true); /* another replica took it */
		return;
	}
	const char *why = rep->err == TRYGG_EDB ? rep->message : trygg_strerror(rep->err);
	if (rep->err != TRYGG_EDB || db_error_is_transient(rep->sqlstate)) {
		/* Still asked for: try again at a later poll. */
		char m[512];
		in->st.transient_errors++;
		log_warn("inbox_transient_error",
		    "\"publisher\":\"%s\",\"sqlstate\":\"%s\",\"error\":%s,\"retry_of\":%" PRIu64,
		    in->publisher, rep->sqlstate ? rep->sqlstate : "",
		    log_json_str(why, m, sizeof(m)), seq);
		in->retry_not_before = trygg_now_ms() + in->o.backoff_max_ms;
		retry_finish(in, false);
		return;
	}
	retry_record_failure(in, seq, rep->sqlstate, why);
}

/* The next event asked for came back: re-apply it through the service's
 * callback, in a transaction that takes its row out of inbox_failed. */
static void
retry_scanned(void *arg, const db_reply *rep)
{
	inbox *in = arg;
	in->db_pending--;
	if (in->stopping) {
		in->retry_running = false;
		maybe_free(in);
		return;
	}
	if (rep->err != 0) {
		retry_finish(in, false);
		return;
	}
	in->st.failed_pending = strtoull(PQgetvalue(rep->results[0], 0, 0), NULL, 10);
	const PGresult *r = rep->results[1];
	if (PQntuples(r) == 0) {
		retry_finish(in, false);
		return;
	}
	size_t plen = 0;
	unsigned char *payload = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 3), &plen);
	Trygg__Bus__Envelope env = TRYGG__BUS__ENVELOPE__INIT;
	env.publisher = in->publisher;
	env.seq = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	env.event_id = PQgetvalue(r, 0, 1);
	env.type = PQgetvalue(r, 0, 2);
	env.occurred_at_us = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
	env.payload.data = payload;
	env.payload.len = plen;
	in->retry_seq = env.seq;
	const char *values[2] = {in->publisher, PQgetvalue(r, 0, 0)};
	db_batch *b = db_batch_new();
	db_batch_add(b, SQL_RETRY_TAKE, 2, values);
	int rv = payload != NULL ? in->apply(in->apply_arg, b, &env) : TRYGG_EPROTO;
	PQfreemem(payload);
	if (in->o.flush != NULL)
		in->o.flush(in->apply_arg, rv == 0 ? b : NULL);
	if (rv != 0) {
		char *why = xasprintf("rejected by the service: %s", trygg_strerror(rv));
		db_batch_free(b);
		retry_record_failure(in, env.seq, NULL, why);
		free(why);
		return;
	}
	if (db_submit(in->db, b, retry_applied, in) != 0) {
		db_batch_free(b);
		retry_finish(in, false);
		return;
	}
	in->db_pending++;
}

/* Looks for a set-aside event asked for (one at a time); also refreshes
 * failed_pending. */
static void
retry_scan(inbox *in)
{
	if (in->stopping)
		return;
	if (in->retry_running) {
		in->retry_again = true;
		return;
	}
	if (!db_is_connected(in->db) || trygg_now_ms() < in->retry_not_before)
		return;
	const char *sqls[2] = {SQL_FAILED_COUNT, SQL_RETRY_NEXT};
	if (submit_by_publisher(in, sqls, 2, retry_scanned) == 0)
		in->retry_running = true;
}

/* NOTIFY <schema>_inbox: an operator asked for something: a re-apply of
 * set-aside events, or lifted a halt (accept-epoch, continue). */
static void
on_notify(void *arg, const char *channel, const char *payload)
{
	inbox *in = arg;
	(void)channel;
	(void)payload;
	if (in->stopping)
		return;
	retry_scan(in);
	if (in->halted != NULL) {
		in->halt_recheck = true;
		halt_tick(in);
	}
}

/* The heartbeat of the inbox itself: loads the cursor when needed, retries
 * whatever failed, and polls for retry requests. */
static void
on_timer(uv_timer_t *t)
{
	inbox *in = t->data;
	uint64_t now = trygg_now_ms();
	if (now >= in->next_poll_ms) {
		in->next_poll_ms = now + in->o.failed_poll_ms;
		retry_scan(in);
	}
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
		in->o.retry_ms = BACKOFF_MIN_DEFAULT;
	if (in->o.queue_max_bytes == 0)
		in->o.queue_max_bytes = 64u * 1024 * 1024;
	if (in->o.backoff_max_ms < in->o.retry_ms)
		in->o.backoff_max_ms = in->o.retry_ms > 5000 ? in->o.retry_ms : 5000;
	if (in->o.failed_poll_ms == 0)
		in->o.failed_poll_ms = 3000;
	in->o.schema = NULL; /* not kept */
	in->rng = (uint32_t)(trygg_now_ns() ^ (uintptr_t)in) | 1u;
	in->queue = xcalloc(in->o.queue_max, sizeof(*in->queue));
	if (o->schema != NULL && *o->schema != '\0') {
		in->channel = xasprintf("%s_inbox", o->schema);
		if (db_listen(d, in->channel, on_notify, in) != 0)
			log_warn("inbox_listen_failed", "\"publisher\":\"%s\",\"channel\":\"%s\"",
			    in->publisher, in->channel);
	}

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
	db_unlisten(d, on_notify, in);
	free(in->queue);
	free(in->publisher);
	free(in->channel);
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
	db_unlisten(in->db, on_notify, in);
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
STAT_GAUGE(transient_errors)
STAT_GAUGE(retried)
STAT_GAUGE(failed_pending)
STAT_GAUGE(stale_replies)

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
	metrics_gauge_fn(m, "trygg_inbox_transient_errors_total",
	    "Batches retried after a transient database error", l, stat_transient_errors, in);
	metrics_gauge_fn(m, "trygg_inbox_retried_total", "Set-aside events re-applied on request",
	    l, stat_retried, in);
	metrics_gauge_fn(m, "trygg_inbox_failed_pending", "Events set aside in inbox_failed", l,
	    stat_failed_pending, in);
	metrics_gauge_fn(m, "trygg_inbox_stale_replies_total",
	    "Replay replies discarded as answers to an outdated request", l, stat_stale_replies,
	    in);
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
	return in != NULL && !in->stopping && in->halted == NULL;
}
