/*
 * outbox.h: the publishing half of reliable events (DESIGN.md section 2).
 *
 * A producer writes its events into <schema>.outbox in the same transaction
 * as its state change (outbox_add_event appends that INSERT to a db batch).
 * The relay then, on the loop:
 *   - sequences: in one transaction, under a transaction-level advisory lock,
 *     gives the not-yet-sequenced rows contiguous per-publisher numbers
 *     (pub_seq), in id order among the rows committed so far, and publishes
 *     them, and every row a producer numbered itself (below), as
 *     Frame{event} on the pub socket, in sequence order. It wakes when the
 *     service kicks it after a commit (outbox_relay_kick), on NOTIFY
 *     <schema>_outbox from other writers, and on a timer (poll_ms), since
 *     neither of the first two is durable. There is deliberately no NOTIFY
 *     trigger: see sql/001_outbox.sql. The timer's round first checks,
 *     read-only, that rows wait: an idle relay writes nothing;
 *   - heartbeats: publishes Frame{heartbeat{last_seq, epoch}} every second,
 *     so a subscriber notices a lost tail;
 *   - serves replay: answers ReplayRequest{from_seq, max} on a rep socket
 *     straight from the outbox (idempotent: the same request gets the same
 *     events), in replies of at most 4 MiB; the largest allowed event
 *     always fits one;
 *   - purges: deletes, in chunks, the sequenced rows below the first row
 *     younger than retention_s (by sequence, so no hole opens mid-range).
 * Replays and purges run on their own connection (replay_db), so a
 * far-behind subscriber never slows live sequencing.
 *
 * Epochs: outbox_state.epoch (a UUID made with the state row) names the
 * stream; it is in every event, heartbeat and replay reply, with
 * epoch_base_seq (last_seq when the epoch began). A schema recreated from
 * scratch gets a new epoch by itself. After restoring the schema from a
 * backup the operator runs, in the publisher's schema,
 *
 *     SELECT outbox_new_epoch();
 *
 * (sql/004_epoch_retention.sql): the stream continues in a new epoch from
 * the restored last_seq, and every subscriber halts until its operator
 * accepts the new epoch (inbox.h), instead of taking the reissued numbers
 * for duplicates. A running relay picks the new epoch up within poll_ms.
 *
 * Limits: event_type is 1..OUTBOX_EVENT_TYPE_MAX bytes and the payload at
 * most OUTBOX_PAYLOAD_MAX (CHECK constraints on the table; outbox_add_event
 * refuses more). A row over them that exists anyway (from before the
 * constraints) is published as an event of type trygg.bus.InvalidEvent with
 * an empty payload, logged (outbox_event_invalid) and recorded in
 * outbox_invalid: it never stalls the stream.
 *
 * Two ways to number. outbox_add_event leaves the row to the relay, which
 * numbers it with an UPDATE (a new row version, its index entries, and a
 * commit per round). A producer that writes many events may instead number
 * its rows at insert: its transaction's last step calls the SQL function
 * outbox_reserve(n) (sql/006_outbox_reserve.sql), which returns the first
 * of n numbers, and inserts the rows with pub_seq set. The row lock on
 * outbox_state it takes is held to commit, so such producers commit their
 * numbers in order and a rollback hands them back; the relay takes the
 * same lock for its own numbering. Either way the committed numbers are
 * 1..last_seq without a hole, and the relay publishes both. The price is
 * that numbering transactions of one publisher commit one after another
 * from outbox_reserve on: take it last, and with no lock taken after it.
 * Such a producer knows its events as committed, so it can also hand them
 * to the relay to publish (outbox_relay_committed), which then needs no
 * round to read them back. intake's store numbers its reports' events and
 * hands them over this way (store.c).
 *
 * Publishing after the sequencing commit may fail (crash, slow subscriber);
 * that is fine: the numbers are durable and subscribers replay what they
 * miss.
 */
#ifndef TRYGG_OUTBOX_H
#define TRYGG_OUTBOX_H

#include <nng/nng.h>
#include <uv.h>

#include "db.h"
#include "metrics.h"
#include "util.h"

typedef struct outbox_relay outbox_relay;

typedef struct outbox_options {
	const char *publisher;      /* name in every envelope, e.g. "intake" */
	const char *schema;         /* the outbox's schema; NOTIFY channel "<schema>_outbox" */
	const char *pub_url;        /* where subscribers dial for the live stream */
	const char *rep_url;        /* where subscribers ask for replays */
	unsigned batch_max;         /* rows sequenced per round (default 2000) */
	unsigned poll_ms;           /* fallback scan period (default 200) */
	unsigned heartbeat_ms;      /* heartbeat period (default 1000) */
	unsigned replay_max;        /* events per replay reply (default 1000) */
	unsigned retention_s;       /* keep sequenced rows at least this long (default 30 days) */
	unsigned purge_interval_ms; /* how often retention runs (default 60000) */
	/* Optional: the connection for replays and purges (e.g. a pool client
	 * shared with requests). NULL: the sequencing connection `d`. */
	db *replay_db;
} outbox_options;

/*
 * Opens the pub and rep sockets and starts the relay on `d` (sequencing,
 * LISTEN) and o->replay_db (replays, purges); it does not own either.
 * Returns 0, or TRYGG_EBUS when a socket cannot listen (logged with the
 * URL).
 */
int outbox_relay_start(uv_loop_t *loop, db *d, const outbox_options *o,
    outbox_relay **out) TRYGG_MUSTCHECK;

/*
 * Runs a sequencing round now, or right after the current one. Call it
 * after every commit that wrote outbox rows: it is what keeps latency low.
 */
void outbox_relay_kick(outbox_relay *r);

/* An event its producer numbered at insert and has committed. */
typedef struct outbox_event {
	uint64_t seq;           /* its pub_seq */
	const char *event_id;   /* outbox.event_id, as text */
	const char *type;       /* outbox.event_type */
	const uint8_t *payload; /* outbox.payload */
	size_t len;
	int64_t occurred_us; /* outbox.occurred_at, in microseconds since 1970 */
} outbox_event;

/*
 * Call after the commit of a transaction that numbered its events at
 * insert with outbox_reserve_epoch (sql/008), with the epoch it returned
 * and the events as written, in sequence order. When they continue what
 * the relay has published live (the first is one past it, the numbers run
 * on without a gap, the epoch is the relay's), they go out at once, with
 * no round and no read of the database; otherwise this is
 * outbox_relay_kick, and a round reads them back. Either way each event
 * goes out live once. The relay copies what it sends.
 */
void outbox_relay_committed(outbox_relay *r, const char *epoch, const outbox_event *ev, size_t n);

/*
 * Flushes for a graceful drain: runs sequencing rounds until the outbox
 * has nothing unsequenced, then calls cb once (also at once, or as soon
 * as a round fails, when Postgres is unreachable: whatever is left is
 * published after the restart).
 */
void outbox_relay_flush(outbox_relay *r, void (*cb)(void *arg), void *arg);

/* Stops the relay, closes its sockets and frees it from close callbacks
 * (after its last database callback). Accepts NULL. */
void outbox_relay_stop(outbox_relay *r);

/* Sends a raw message on the pub socket: for fault tests only. On success
 * the socket owns msg. */
int outbox_relay_publish_raw(outbox_relay *r, nng_msg *msg) TRYGG_MUSTCHECK;

/* Registers trygg_outbox_* gauges that read the stats at scrape time. */
void outbox_relay_register_metrics(outbox_relay *r, metrics *m);

/* Counters for /metrics and tests. */
typedef struct outbox_stats {
	uint64_t last_seq;       /* highest sequence number assigned (0 if unknown) */
	uint64_t published;      /* events sent on the pub socket */
	uint64_t rounds;         /* sequencing transactions committed */
	uint64_t committed;      /* of published: handed over by outbox_relay_committed */
	uint64_t replays_served; /* replay requests answered */
	uint64_t errors;         /* failed rounds, replays and sends */
	uint64_t invalid;        /* rows published as trygg.bus.InvalidEvent (each time) */
	uint64_t purged;         /* rows deleted by retention */
} outbox_stats;
void outbox_relay_get_stats(const outbox_relay *r, outbox_stats *out);

/* The largest event the bus carries; the outbox's CHECK constraints
 * (sql/004_epoch_retention.sql) and envelope.c's validation agree. */
#define OUTBOX_EVENT_TYPE_MAX 128        /* bytes */
#define OUTBOX_PAYLOAD_MAX (256u * 1024) /* bytes */

/*
 * Appends "INSERT INTO outbox (event_type, payload)" to `b`, so the event
 * commits or rolls back with the rest of the batch. `type` is the protobuf
 * full name of the payload message, e.g. "trygg.events.ReportReceived".
 * Returns 0, or TRYGG_EINVAL (and adds nothing) for an empty or over-long
 * type or a payload over OUTBOX_PAYLOAD_MAX: an event the bus could not
 * carry must fail its transaction, not the relay later.
 */
int outbox_add_event(db_batch *b, const char *type, const uint8_t *payload,
    size_t len) TRYGG_MUSTCHECK;

#endif
