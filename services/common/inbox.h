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
 *
 * Epochs. The cursor row also keeps the publisher's epoch (outbox.h),
 * adopted from the first replay reply. A replay reply whose epoch differs,
 * or whose last_seq is below what we hold in the same epoch (the publisher
 * was recreated or restored), halts the stream: nothing more is applied,
 * an error `inbox_halted` names the publisher and both epochs or seqs,
 * trygg_inbox_halted is 1, inbox_ready() is false, and the cursor row says
 * why (halted = epoch_changed or seq_went_back, halted_detail, and
 * pending_epoch/pending_base_seq: what accepting switches to). Heartbeats
 * and live events that disagree only trigger such a reply (they come from a
 * relay's memory). The operator accepts with the UPDATE of CONTRACT.md
 * (`events accept-epoch`) and NOTIFY <schema>_inbox; the inbox listens on
 * that channel, also polls the row every 2 s while halted, and then
 * re-reads its cursor and continues from there.
 *
 * Retention. When the publisher no longer has the next event (purged), the
 * inbox halts with halted = purged, unless skip_purged is set; after the
 * operator clears `halted` (`events continue`), or at once with
 * skip_purged, it goes past the range and records it in inbox_skipped in
 * the same transaction as the cursor (counted in skipped_ranges). A halt
 * survives a restart (it is in the cursor row); an operator's `continue`
 * that the inbox did not see before a restart must be given again.
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
	/* Go past purged ranges without halting (still recorded in
	 * inbox_skipped); default false: halt until the operator continues. */
	bool skip_purged;
} inbox_options;

/* Opens the sockets and starts following. Returns 0 or TRYGG_EBUS. */
int inbox_start(uv_loop_t *loop, db *d, const inbox_options *o, inbox_apply_fn apply, void *arg,
    inbox **out) TRYGG_MUSTCHECK;

/* Stops, closes the sockets, frees from close callbacks. Accepts NULL. */
void inbox_stop(inbox *in);

typedef struct inbox_stats {
	uint64_t applied_seq;    /* cursor as last committed */
	uint64_t known_seq;      /* highest seq the publisher announced */
	uint64_t applied;        /* events applied by this process */
	uint64_t duplicates;     /* live events already held or applied */
	uint64_t gaps;           /* live events dropped for a gap or a full queue */
	uint64_t replays;        /* replay requests sent */
	uint64_t invalid;        /* malformed frames dropped */
	uint64_t failed;         /* poison events recorded in inbox_failed */
	uint64_t batch_errors;   /* batches that failed and were retried */
	uint64_t skipped_ranges; /* purged ranges gone past (inbox_skipped) */
	uint64_t halts;          /* times the stream halted */
	uint64_t failed_pending; /* rows in inbox_failed for this publisher, as last counted */
	const char *halted;      /* NULL while applying, else epoch_changed,
	                          * seq_went_back or purged (static strings) */
} inbox_stats;
void inbox_get_stats(const inbox *in, inbox_stats *out);

/* True while the inbox applies (cursor loaded or loading, not halted):
 * for /readyz, one check per consumed stream. */
bool inbox_ready(const inbox *in);

/* Registers trygg_inbox_* gauges that read the stats at scrape time. The
 * inbox must outlive the registry's last render. */
void inbox_register_metrics(inbox *in, metrics *m);

#endif
