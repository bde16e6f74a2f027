/*
 * outbox.h: the publishing half of reliable events (DESIGN.md section 2).
 *
 * A producer writes its events into <schema>.outbox in the same transaction
 * as its state change (outbox_add_event appends that INSERT to a db batch).
 * The relay then, on the loop:
 *   - sequences: in one transaction, under a transaction-level advisory lock,
 *     gives the not-yet-sequenced rows contiguous per-publisher numbers
 *     (pub_seq), in id order among the rows committed so far, and publishes
 *     them as Frame{event} on the pub socket. It wakes when the service
 *     kicks it after a commit (outbox_relay_kick), on NOTIFY <schema>_outbox
 *     from other writers, and on a timer (poll_ms), since neither of the
 *     first two is durable. There is deliberately no NOTIFY trigger: see
 *     sql/001_outbox.sql;
 *   - heartbeats: publishes Frame{heartbeat{last_seq}} every second, so a
 *     subscriber notices a lost tail;
 *   - serves replay: answers ReplayRequest{from_seq, max} on a rep socket
 *     straight from the outbox (idempotent: the same request gets the same
 *     events);
 *   - purges: deletes sequenced rows older than the retention period.
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
	const char *publisher; /* name in every envelope, e.g. "intake" */
	const char *schema;    /* the outbox's schema; NOTIFY channel "<schema>_outbox" */
	const char *pub_url;   /* where subscribers dial for the live stream */
	const char *rep_url;   /* where subscribers ask for replays */
	unsigned batch_max;    /* rows sequenced per round (default 2000) */
	unsigned poll_ms;      /* fallback scan period (default 200) */
	unsigned heartbeat_ms; /* heartbeat period (default 1000) */
	unsigned replay_max;   /* events per replay reply (default 1000) */
	unsigned retention_s;  /* keep sequenced rows this long (default 7 days) */
} outbox_options;

/*
 * Opens the pub and rep sockets and starts the relay on `d` (which it
 * shares with the service; it does not own it). Returns 0, or TRYGG_EBUS
 * when a socket cannot listen (logged with the URL).
 */
int outbox_relay_start(uv_loop_t *loop, db *d, const outbox_options *o,
    outbox_relay **out) TRYGG_MUSTCHECK;

/*
 * Runs a sequencing round now, or right after the current one. Call it
 * after every commit that wrote outbox rows: it is what keeps latency low.
 */
void outbox_relay_kick(outbox_relay *r);

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
	uint64_t replays_served; /* replay requests answered */
	uint64_t errors;         /* failed rounds, replays and sends */
} outbox_stats;
void outbox_relay_get_stats(const outbox_relay *r, outbox_stats *out);

/*
 * Appends "INSERT INTO outbox (event_type, payload)" to `b`, so the event
 * commits or rolls back with the rest of the batch. `type` is the protobuf
 * full name of the payload message, e.g. "trygg.events.ReportReceived".
 */
void outbox_add_event(db_batch *b, const char *type, const uint8_t *payload, size_t len);

#endif
