/*
 * inbox.h: the subscribing half of reliable events (DESIGN.md section 2).
 *
 * An inbox follows one publisher's stream and gives each event its effect
 * exactly once, in order. It subscribes to the live stream first, then
 * loads its cursor (<schema>.inbox_cursor) and replays from cursor + 1 over
 * req/rep, so nothing published while it was away is missed. Live events
 * that do not follow on (a gap: the subscriber was slow, nng dropped them)
 * and heartbeats that announce a higher last_seq trigger a replay of the
 * missing range.
 *
 * Effects are applied in batches: for a run of events the service's apply
 * callback adds its statements to one db batch, and the inbox adds
 * inbox_advance(publisher, first, last), which moves the cursor only from
 * exactly first - 1. The batch is one transaction, so effects and cursor
 * commit together or not at all. On a lost connection the in-memory queue
 * is dropped and the cursor re-read: redelivered events are skipped by the
 * cursor, never applied twice. An event whose effect fails on its own (a
 * poison event) is recorded in inbox_failed and skipped, so one bad event
 * never stalls the stream.
 */
#ifndef TRYGG_INBOX_H
#define TRYGG_INBOX_H

#include <uv.h>

#include "db.h"
#include "envelope.h"
#include "metrics.h"
#include "util.h"

typedef struct inbox inbox;

/*
 * Adds the effect of `ev` to `b` (zero or more statements). Runs on the loop
 * thread; must not keep `ev` or `b`. Return 0, or a negative error to record
 * the event as failed (e.g. a payload that does not decode) instead.
 */
typedef int (*inbox_apply_fn)(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev);

typedef struct inbox_options {
	const char *publisher;      /* whose stream, e.g. "intake" */
	const char *sub_url;        /* the publisher's pub socket */
	const char *req_url;        /* the publisher's replay socket */
	unsigned batch_max;         /* events per transaction (default 500) */
	unsigned queue_max;         /* events held in memory (default 20000) */
	unsigned replay_max;        /* events asked for per replay (default 1000) */
	unsigned replay_timeout_ms; /* default 2000 */
	unsigned retry_ms;          /* delay after a failure (default 250) */
	/* Optional: called (with the apply arg) after each batch of effects
	 * committed, e.g. to kick the service's relay or workers in-process
	 * instead of having the effects NOTIFY. */
	void (*on_committed)(void *arg, uint64_t last_seq);
} inbox_options;

/* Opens the sockets and starts following. Returns 0 or TRYGG_EBUS. */
int inbox_start(uv_loop_t *loop, db *d, const inbox_options *o, inbox_apply_fn apply, void *arg,
    inbox **out) TRYGG_MUSTCHECK;

/* Stops, closes the sockets, frees from close callbacks. Accepts NULL. */
void inbox_stop(inbox *in);

typedef struct inbox_stats {
	uint64_t applied_seq;  /* cursor as last committed */
	uint64_t known_seq;    /* highest seq the publisher announced */
	uint64_t applied;      /* events applied by this process */
	uint64_t duplicates;   /* live events already held or applied */
	uint64_t gaps;         /* live events dropped for a gap or a full queue */
	uint64_t replays;      /* replay requests sent */
	uint64_t invalid;      /* malformed frames dropped */
	uint64_t failed;       /* poison events recorded in inbox_failed */
	uint64_t batch_errors; /* batches that failed and were retried */
	/* CONTRACT.md names, filled by backbone-inbox / backbone-outbox;
	 * here so svc's /readyz detail compiles before their merge. */
	uint64_t failed_pending; /* rows in inbox_failed, as last counted */
	const char *halted;      /* NULL while applying, else the reason */
} inbox_stats;
void inbox_get_stats(const inbox *in, inbox_stats *out);

/* True while the inbox applies: its cursor is loaded or loading, and it
 * is not stopped (and, after backbone-outbox, not halted). */
bool inbox_ready(const inbox *in);

/* Registers trygg_inbox_* gauges that read the stats at scrape time. The
 * inbox must outlive the registry's last render. */
void inbox_register_metrics(inbox *in, metrics *m);

#endif
