/*
 * outbox.c: the relay that turns committed outbox rows into a gap-free,
 * numbered event stream, plus its heartbeat, replay server and purge.
 * See outbox.h for the model.
 *
 * Everything here runs on the loop thread: database work goes through two
 * async db clients, socket work through bus_sock. Sequencing (and the idle
 * check before it) runs on the sequencing client `db`; replays and purges,
 * which may read or delete many rows, on `rdb` (outbox_options.replay_db),
 * so a far-behind subscriber never delays live publishing. At most one
 * sequencing round, one idle check, one replay query and one purge chunk
 * are in flight at a time; a NOTIFY that arrives during a round only marks
 * that another round is due.
 *
 * A round is one transaction on `db`: the advisory lock, the numbering of
 * rows left unnumbered, then a read of every row numbered past what the
 * relay has published live (sent_seq), whoever numbered it: this round, a
 * producer that numbered at insert (outbox_reserve), or another instance.
 * The rows go out after the commit, in sequence order.
 *
 * A producer that numbered its events at insert may hand them over after
 * its own commit (outbox_relay_committed): when they continue the live
 * stream they go out at once, with no round, and a round already in
 * flight skips what went out meanwhile. Anything else (answers of two
 * connections in the other order, another epoch) falls back to a round.
 *
 * While idle the relay writes nothing: the poll timer first asks, read-only,
 * whether any row is unnumbered or numbered past sent_seq (and refreshes
 * last_seq and the epoch), and a round that numbers nothing updates nothing.
 *
 * A sequenced row that breaks the bus's limits (one from before the CHECK
 * constraints of sql/004, or inserted around them) is never allowed to stall
 * the stream: it goes out, live and in replays, as an event of type
 * trygg.bus.InvalidEvent with an empty payload and its own seq and
 * event_id, so every subscriber goes past it; it is logged as an error,
 * counted, and recorded in outbox_invalid with the original row.
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
#define PURGE_CHUNK 10000                  /* rows deleted per purge statement */
#define INVALID_TYPE "trygg.bus.InvalidEvent"
#define EPOCH_LEN 40 /* a UUID's text and its NUL */

/* The largest allowed event, with its envelope, fits in a reply (and in a
 * live frame under the subscribers' RECVMAXSZ, ENVELOPE_UNPACK_CAP / 8). */
_Static_assert(OUTBOX_PAYLOAD_MAX + 1024 < REPLY_BYTES_MAX, "largest event fits a reply");
_Static_assert(OUTBOX_PAYLOAD_MAX + 1024 < ENVELOPE_UNPACK_CAP / 8, "largest event fits a frame");

struct outbox_relay {
	uv_loop_t *loop;
	db *db;  /* sequencing, LISTEN, the idle check */
	db *rdb; /* replays and purges (== db when no replay_db was given) */
	outbox_options o;
	char *publisher, *schema, *channel;
	bus_sock *pub, *rep;
	uv_timer_t poll_timer, heartbeat_timer;
	int handles_open; /* timers not yet closed */
	int db_pending;   /* our batches in flight; the struct outlives them */

	bool last_seq_known; /* false until read, and after an unknown outcome */
	bool loading;        /* a state query is in flight (first load or idle check) */
	bool round_running;
	bool round_again; /* a wakeup came during the round */
	bool replay_running;
	bool purge_running;
	bool stopping;
	void (*flush_cb)(void *arg);
	void *flush_arg;
	uint64_t last_purge_ms;
	bool sent_known;        /* sent_seq set: from the first state read on */
	uint64_t sent_seq;      /* published live up to here (from last_seq at start) */
	uint64_t load_sent_seq; /* sent_seq when the state query in flight went out */
	char epoch[EPOCH_LEN];  /* outbox_state.epoch as last read ("" until then) */
	uint64_t epoch_base;    /* outbox_state.epoch_base_seq */
	outbox_stats st;
};

/* Sequencing: the advisory lock serialises relays of the same publisher (a
 * second instance during a rolling restart); taking it in its own statement
 * means the sequencing statement's snapshot sees everything committed
 * before the lock was granted. */
static const char SQL_LOCK[] =
    "SELECT pg_advisory_xact_lock(hashtext('trygg_outbox:' || current_schema()))";
/* Numbers the rows left unnumbered. The base comes from the UPDATE of
 * outbox_state, not from the snapshot: a producer that numbers at insert
 * (outbox_reserve) may commit between the snapshot and the UPDATE, which
 * then waits for its row lock and reads the row as that producer left it.
 * Returns one row: how many were numbered, last_seq, the epoch and its
 * base. Nothing to number, nothing written: such a round commits no write. */
static const char SQL_SEQUENCE[] =
    "WITH pending AS (SELECT id FROM outbox_unnumbered($1) AS u(id)),"
    " numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM pending),"
    " st AS (SELECT last_seq, epoch, epoch_base_seq FROM outbox_state),"
    " bump AS (UPDATE outbox_state SET last_seq = last_seq + (SELECT count(*) FROM numbered)"
    "          WHERE EXISTS (SELECT 1 FROM numbered)"
    "          RETURNING last_seq, last_seq - (SELECT count(*) FROM numbered) AS base),"
    " upd AS (UPDATE outbox o SET pub_seq = bump.base + n.rn FROM numbered n, bump"
    "         WHERE o.id = n.id AND o.pub_seq IS NULL RETURNING 1)"
    " SELECT (SELECT count(*) FROM upd), coalesce((SELECT last_seq FROM bump), st.last_seq),"
    "  st.epoch::text, st.epoch_base_seq FROM st";
/* The relay's view of its state, read-only: also the idle check. The
 * unnumbered rows are looked up through functions that always read the
 * partial index (sql/007_outbox_unnumbered.sql says why). */
static const char SQL_STATE[] =
    "SELECT last_seq, epoch::text, epoch_base_seq, outbox_unnumbered_exists() FROM outbox_state";
static const char SQL_REPLAY_HEAD[] =
    "SELECT last_seq, coalesce((SELECT pub_seq FROM outbox WHERE pub_seq IS NOT NULL"
    "  ORDER BY pub_seq LIMIT 1), 0), epoch::text, epoch_base_seq FROM outbox_state";
/* Replays, and each round's read of what to publish live: at most $2 rows
 * from $1 and, by a running sum of payload sizes (read from the TOAST
 * header, not detoasted), about $3 bytes plus one row (a replay reply is
 * cut exactly in replay_rows_done). */
static const char SQL_REPLAY_ROWS[] =
    "SELECT pub_seq, event_id, event_type, payload, occurred_us FROM ("
    " SELECT pub_seq, event_id::text, event_type, payload,"
    "  (extract(epoch FROM occurred_at) * 1000000)::bigint AS occurred_us,"
    "  sum(octet_length(payload)) OVER (ORDER BY pub_seq) - octet_length(payload) AS before"
    " FROM outbox WHERE pub_seq >= $1 ORDER BY pub_seq LIMIT $2) x"
    " WHERE before < $3 ORDER BY pub_seq";
/* One chunk of retention: from the oldest row up to (not including) the
 * first row younger than the retention, at most $2 rows, never the last
 * sequenced row (so first_available_seq stays meaningful). By sequence, so
 * no hole opens mid-range. */
static const char SQL_PURGE[] =
    "WITH lo AS (SELECT pub_seq FROM outbox WHERE pub_seq IS NOT NULL ORDER BY pub_seq LIMIT 1),"
    " lim AS (SELECT least(coalesce("
    "   (SELECT o.pub_seq FROM outbox o WHERE o.pub_seq >= (SELECT pub_seq FROM lo)"
    "     AND o.pub_seq < (SELECT pub_seq FROM lo) + $2::bigint"
    "     AND o.occurred_at >= now() - make_interval(secs => $1::bigint)"
    "     ORDER BY o.pub_seq LIMIT 1),"
    "   (SELECT pub_seq FROM lo) + $2::bigint),"
    "  (SELECT last_seq FROM outbox_state)) AS below)"
    " DELETE FROM outbox WHERE pub_seq >= (SELECT pub_seq FROM lo)"
    "  AND pub_seq < (SELECT below FROM lim)";
static const char SQL_INVALID[] =
    "INSERT INTO outbox_invalid (pub_seq, event_id, event_type, payload, reason)"
    " SELECT pub_seq, event_id, event_type, payload, $2 FROM outbox WHERE pub_seq = $1"
    " ON CONFLICT DO NOTHING";
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

/* Why an event of `type` with `len` payload bytes breaks the bus's limits,
 * or NULL if it does not. */
static const char *
invalid_reason(const char *type, size_t len)
{
	if (type == NULL || type[0] == '\0')
		return "empty event_type";
	if (strnlen(type, OUTBOX_EVENT_TYPE_MAX + 1) > OUTBOX_EVENT_TYPE_MAX)
		return "event_type too long";
	if (len > OUTBOX_PAYLOAD_MAX)
		return "payload too large";
	return NULL;
}

int
outbox_add_event(db_batch *b, const char *type, const uint8_t *payload, size_t len)
{
	if (invalid_reason(type, len) != NULL)
		return TRYGG_EINVAL;
	const char *values[2] = {type, (const char *)payload};
	int lengths[2] = {0, (int)len};
	int formats[2] = {0, 1};
	db_batch_addb(b, SQL_INSERT, 2, values, lengths, formats);
	return 0;
}

static uint64_t
get_u64(const PGresult *res, int row, int col)
{
	return strtoull(PQgetvalue(res, row, col), NULL, 10);
}

static void
invalid_recorded(void *arg, const db_reply *rep)
{
	outbox_relay *r = arg;
	r->db_pending--;
	if (!r->stopping && rep->err != 0)
		log_warn("outbox_invalid_record_failed", "\"error\":\"%s\"",
		    trygg_strerror(rep->err));
	maybe_free(r);
}

/*
 * Turns the envelope of a row that broke the limits into the placeholder
 * (see the file comment), logs it and records it durably (best effort: a
 * later replay records it again if this insert fails).
 */
static void
make_placeholder(outbox_relay *r, Trygg__Bus__Envelope *env, const char *why)
{
	char seq[24], tbuf[160];
	snprintf(seq, sizeof(seq), "%" PRIu64, env->seq);
	log_error("outbox_event_invalid",
	    "\"publisher\":\"%s\",\"seq\":%" PRIu64 ",\"event_id\":\"%s\",\"event_type\":%s,"
	    "\"payload_bytes\":%zu,\"reason\":\"%s\"",
	    r->publisher, env->seq, env->event_id, log_json_str(env->type, tbuf, sizeof(tbuf)),
	    env->payload.len, why);
	r->st.invalid++;
	const char *values[2] = {seq, why};
	if (db_query(r->rdb, SQL_INVALID, 2, values, invalid_recorded, r) == 0)
		r->db_pending++;
	env->type = INVALID_TYPE;
	env->payload.data = NULL;
	env->payload.len = 0;
}

/*
 * Fills `env` from row `row` of a (pub_seq, event_id, type, payload,
 * occurred_us) result, in epoch `epoch`. The payload is unescaped into
 * *payload_buf, which the caller frees with PQfreemem; the strings point
 * into `res` or are static. A row that breaks the limits becomes the
 * placeholder.
 */
static int
row_to_envelope(outbox_relay *r, const PGresult *res, int row, const char *epoch,
    Trygg__Bus__Envelope *env, unsigned char **payload_buf)
{
	size_t plen = 0;
	unsigned char *p = PQunescapeBytea((const unsigned char *)PQgetvalue(res, row, 3), &plen);
	if (p == NULL)
		return TRYGG_ENOMEM;
	trygg__bus__envelope__init(env);
	env->publisher = r->publisher;
	env->seq = get_u64(res, row, 0);
	env->event_id = PQgetvalue(res, row, 1);
	env->type = PQgetvalue(res, row, 2);
	env->payload.data = p;
	env->payload.len = plen;
	env->occurred_at_us = strtoll(PQgetvalue(res, row, 4), NULL, 10);
	env->epoch = (char *)epoch;
	*payload_buf = p;
	const char *why = invalid_reason(env->type, env->payload.len);
	if (why != NULL)
		make_placeholder(r, env, why);
	return 0;
}

static void
publish_frame(outbox_relay *r, const Trygg__Bus__Frame *f)
{
	nng_msg *m;
	if (envelope_frame_pack(f, &m) != 0) {
		r->st.errors++; /* cannot happen after row_to_envelope's checks */
		return;
	}
	if (bus_send(r->pub, m) != 0) {
		nng_msg_free(m);
		r->st.errors++;
	}
}

/* Publishes one event live, the next after sent_seq. */
static void
publish_event(outbox_relay *r, Trygg__Bus__Envelope *env)
{
	Trygg__Bus__Frame f = TRYGG__BUS__FRAME__INIT;
	f.kind_case = TRYGG__BUS__FRAME__KIND_EVENT;
	f.event = env;
	publish_frame(r, &f);
	r->st.published++;
	r->sent_seq = env->seq;
}

/* Takes the epoch from a result column, logging when it changes (a new
 * schema, or the operator's outbox_new_epoch()). */
static void
set_epoch(outbox_relay *r, const char *epoch, uint64_t base)
{
	if (strcmp(r->epoch, epoch) != 0) {
		log_info("outbox_epoch",
		    "\"publisher\":\"%s\",\"epoch\":\"%s\",\"epoch_base_seq\":%" PRIu64
		    ",\"previous\":\"%s\"",
		    r->publisher, epoch, base, r->epoch);
		snprintf(r->epoch, sizeof(r->epoch), "%s", epoch);
	}
	r->epoch_base = base;
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
	/* results: [0] the lock, [1] the sequencing row, [2] the rows to publish */
	const PGresult *seq = rep->results[1], *res = rep->results[2];
	uint64_t numbered = get_u64(seq, 0, 0), last_seq = get_u64(seq, 0, 1);
	set_epoch(r, PQgetvalue(seq, 0, 2), get_u64(seq, 0, 3));
	int n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		Trygg__Bus__Envelope env;
		unsigned char *buf;
		if (get_u64(res, i, 0) <= r->sent_seq)
			continue; /* handed over by its producer while the round ran */
		if (row_to_envelope(r, res, i, r->epoch, &env, &buf) != 0) {
			r->st.errors++;
			break; /* out of memory: stay contiguous, the next round resumes here */
		}
		publish_event(r, &env);
		PQfreemem(buf);
	}
	if (last_seq < r->sent_seq)
		last_seq = r->sent_seq;
	if (last_seq > r->st.last_seq)
		r->st.last_seq = last_seq;
	r->st.rounds++;
	/* More may wait: rows left unnumbered by a full batch, rows numbered
	 * but cut off by the read's bounds, or a wakeup during the round. */
	if (numbered >= r->o.batch_max || (n > 0 && r->sent_seq < last_seq) || r->round_again)
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
	char limit[16], from[24], bytes[16];
	snprintf(limit, sizeof(limit), "%u", r->o.batch_max);
	snprintf(from, sizeof(from), "%" PRIu64, r->sent_seq + 1);
	snprintf(bytes, sizeof(bytes), "%u", REPLY_BYTES_MAX);
	const char *values[3] = {from, limit, bytes};
	db_batch *b = db_batch_new();
	db_batch_add(b, SQL_LOCK, 0, NULL);
	db_batch_add(b, SQL_SEQUENCE, 1, values + 1);
	/* Its own statement, so its snapshot sees every producer that numbered
	 * its rows and committed before it, as well as this round's numbers. */
	db_batch_add(b, SQL_REPLAY_ROWS, 3, values);
	r->round_again = false;
	if (db_submit(r->db, b, round_done, r) != 0) {
		db_batch_free(b);
		return; /* disconnected: the poll timer retries */
	}
	r->round_running = true;
	r->db_pending++;
}

/* The state query came back: at start, and as the idle check. */
static void
state_loaded(void *arg, const db_reply *rep)
{
	outbox_relay *r = arg;
	r->loading = false;
	r->db_pending--;
	if (r->stopping) {
		maybe_free(r);
		return;
	}
	if (rep->err != 0 || PQntuples(rep->results[0]) != 1)
		return;
	const PGresult *res = rep->results[0];
	bool first = !r->last_seq_known;
	/* Read on the sequencing connection, so after any round before it:
	 * the database's value, also if another relay sequenced meanwhile. */
	uint64_t last_seq = get_u64(res, 0, 0);
	set_epoch(r, PQgetvalue(res, 0, 1), get_u64(res, 0, 2));
	r->last_seq_known = true;
	/* What was numbered before the relay started goes out by replay, as
	 * subscribers ask for it; so does everything after a restore that set
	 * last_seq back. Events handed over (outbox_relay_committed) after the
	 * query went out may be past what it read: that is not going back. */
	if (!r->sent_known || r->load_sent_seq > last_seq)
		r->sent_seq = last_seq;
	r->sent_known = true;
	r->st.last_seq = last_seq > r->sent_seq ? last_seq : r->sent_seq;
	if (first)
		log_info("outbox_relay_ready",
		    "\"publisher\":\"%s\",\"last_seq\":%" PRIu64 ",\"epoch\":\"%s\"", r->publisher,
		    r->st.last_seq, r->epoch);
	if (first || strcmp(PQgetvalue(res, 0, 3), "t") == 0 || r->sent_seq < last_seq)
		start_round(r);
}

/* Reads last_seq, the epoch and whether anything waits: read-only. */
static void
load_state(outbox_relay *r)
{
	if (r->loading || r->stopping)
		return;
	if (db_query(r->db, SQL_STATE, 0, NULL, state_loaded, r) == 0) {
		r->load_sent_seq = r->sent_seq;
		r->loading = true;
		r->db_pending++;
	}
}

static void start_purge(outbox_relay *r);

static void
purge_done(void *arg, const db_reply *rep)
{
	outbox_relay *r = arg;
	r->purge_running = false;
	r->db_pending--;
	if (r->stopping) {
		maybe_free(r);
		return;
	}
	if (rep->err != 0) {
		r->st.errors++;
		log_warn("outbox_purge_failed", "\"error\":\"%s\"", trygg_strerror(rep->err));
		return;
	}
	uint64_t n = strtoull(PQcmdTuples(rep->results[0]), NULL, 10);
	if (n > 0) {
		r->st.purged += n;
		log_info("outbox_purged", "\"publisher\":\"%s\",\"rows\":%" PRIu64, r->publisher,
		    n);
	}
	if (n >= PURGE_CHUNK)
		start_purge(r); /* more is due: the next chunk, still off the hot path */
}

/* Deletes one chunk of rows older than the retention, on the replay
 * connection. */
static void
start_purge(outbox_relay *r)
{
	if (r->purge_running || r->stopping)
		return;
	char secs[24], chunk[16];
	snprintf(secs, sizeof(secs), "%u", r->o.retention_s);
	snprintf(chunk, sizeof(chunk), "%u", PURGE_CHUNK);
	const char *values[2] = {secs, chunk};
	if (db_query(r->rdb, SQL_PURGE, 2, values, purge_done, r) == 0) {
		r->purge_running = true;
		r->db_pending++;
	}
}

static void
on_poll(uv_timer_t *t)
{
	outbox_relay *r = t->data;
	if (!db_is_connected(r->db))
		return;
	/* The idle check; it starts a round only if rows wait. A round in
	 * flight will be followed by another if needed (round_again). */
	if (!r->round_running)
		load_state(r);
	if (!r->last_seq_known)
		return;
	uint64_t now = trygg_now_ms();
	if (r->last_purge_ms == 0 || now - r->last_purge_ms >= r->o.purge_interval_ms) {
		r->last_purge_ms = now;
		start_purge(r);
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
	hb.epoch = r->epoch;
	hb.epoch_base_seq = r->epoch_base;
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
	reply.error = (char *)error;
	/* No epoch or last_seq: a subscriber decides nothing from an error. */
	send_replay_reply(r, &reply);
}

/* Bytes an envelope adds to a reply: the packed message, its tag and its
 * length prefix. */
static size_t
envelope_reply_bytes(const Trygg__Bus__Envelope *env)
{
	return protobuf_c_message_get_packed_size(&env->base) + 1 + 10;
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
	if (rep->err != 0 || PQntuples(rep->results[0]) != 1) {
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
	reply.epoch = PQgetvalue(head, 0, 2);
	reply.epoch_base_seq = get_u64(head, 0, 3);
	Trygg__Bus__Envelope *envs = xcalloc((size_t)n + 1, sizeof(*envs));
	Trygg__Bus__Envelope **ptrs = xcalloc((size_t)n + 1, sizeof(*ptrs));
	unsigned char **bufs = xcalloc((size_t)n + 1, sizeof(*bufs));
	/* The reply's own fields, generously. */
	size_t bytes = 256 + strlen(reply.epoch), count = 0;
	for (int i = 0; i < n; i++) {
		if (row_to_envelope(r, rows, i, reply.epoch, &envs[count], &bufs[count]) != 0)
			break; /* out of memory: replies stay contiguous, send what we have */
		/* Checked after building, before adding: the reply never
		 * exceeds the bound, and the first event always goes (the
		 * largest allowed event fits, see the static assertion). */
		size_t add = envelope_reply_bytes(&envs[count]);
		if (count > 0 && bytes + add > REPLY_BYTES_MAX) {
			PQfreemem(bufs[count]);
			break;
		}
		bytes += add;
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
	char from[24], lim[16], bytes[16];
	snprintf(from, sizeof(from), "%" PRIu64, req->from_seq);
	snprintf(lim, sizeof(lim), "%u", max);
	snprintf(bytes, sizeof(bytes), "%u", REPLY_BYTES_MAX);
	envelope_replay_request_free(req);
	const char *values[3] = {from, lim, bytes};
	db_batch *b = db_batch_new();
	db_batch_add(b, SQL_REPLAY_HEAD, 0, NULL);
	db_batch_add(b, SQL_REPLAY_ROWS, 3, values);
	if (db_submit(r->rdb, b, replay_rows_done, r) != 0) {
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
	r->rdb = o->replay_db != NULL ? o->replay_db : d;
	r->o = *o;
	r->o.replay_db = NULL; /* reached through r->rdb */
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
		r->o.retention_s = 30 * 24 * 3600;
	if (r->o.purge_interval_ms == 0)
		r->o.purge_interval_ms = 60000;

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
outbox_relay_committed(outbox_relay *r, const char *epoch, const outbox_event *ev, size_t n)
{
	if (r->stopping || n == 0)
		return;
	/* A round may have read some or all of them already. */
	size_t k = 0;
	while (r->sent_known && k < n && ev[k].seq <= r->sent_seq)
		k++;
	if (k == n)
		return;
	bool continues = r->sent_known && r->last_seq_known && ev[k].seq == r->sent_seq + 1 &&
	    epoch != NULL && strcmp(epoch, r->epoch) == 0;
	for (size_t i = k; continues && i < n; i++)
		continues = ev[i].seq == ev[k].seq + (i - k) &&
		    invalid_reason(ev[i].type, ev[i].len) == NULL;
	if (!continues) {
		/* Out of order with another commit, another epoch, or a row the
		 * round must turn into a placeholder: read back from the table. */
		start_round(r);
		return;
	}
	for (size_t i = k; i < n; i++) {
		Trygg__Bus__Envelope env = TRYGG__BUS__ENVELOPE__INIT;
		env.publisher = r->publisher;
		env.seq = ev[i].seq;
		env.event_id = (char *)ev[i].event_id;
		env.type = (char *)ev[i].type;
		env.payload.data = (uint8_t *)ev[i].payload;
		env.payload.len = ev[i].len;
		env.occurred_at_us = ev[i].occurred_us;
		env.epoch = r->epoch;
		publish_event(r, &env);
		r->st.committed++;
	}
	if (r->sent_seq > r->st.last_seq)
		r->st.last_seq = r->sent_seq;
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
STAT_GAUGE(committed)
STAT_GAUGE(replays_served)
STAT_GAUGE(errors)
STAT_GAUGE(invalid)
STAT_GAUGE(purged)

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
	metrics_gauge_fn(m, "trygg_outbox_published_at_commit_total",
	    "Events published as their producer committed them, with no round", labels,
	    stat_committed, r);
	metrics_gauge_fn(m, "trygg_outbox_replays_served_total", "Replay requests answered", labels,
	    stat_replays_served, r);
	metrics_gauge_fn(m, "trygg_outbox_errors_total",
	    "Failed sequencing rounds, replays and sends", labels, stat_errors, r);
	metrics_gauge_fn(m, "trygg_outbox_invalid_total",
	    "Rows over the bus limits published as trygg.bus.InvalidEvent", labels, stat_invalid,
	    r);
	metrics_gauge_fn(m, "trygg_outbox_purged_total", "Rows deleted by retention", labels,
	    stat_purged, r);
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
