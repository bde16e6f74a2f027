/*
 * inbox.h: the subscribing half of reliable events (DESIGN.md section 2).
 *
 * An inbox follows one publisher's stream and gives each event its effect
 * exactly once, in order. It subscribes to the live stream first, then
 * loads its cursor (<schema>.inbox_cursor) and replays from cursor + 1 over
 * req/rep, so nothing published while it was away is missed. Live events
 * that do not follow on (a gap: the subscriber was slow, nng dropped them)
 * and heartbeats that announce a higher last_seq trigger a replay of the
 * missing range. A replay reply is used only if it answers the request
 * made for the current state (no reset since, first event == from_seq);
 * a late one is discarded and the range asked for again. Heartbeats and
 * events naming another publisher are dropped and counted as invalid. The
 * in-memory queue is bounded by count (queue_max) and by bytes
 * (queue_max_bytes), and replay asks only for what fits.
 *
 * Effects are applied in batches: for a run of events the service's apply
 * callback adds its statements to one db batch, and the inbox adds
 * inbox_advance(publisher, first, last), which moves the cursor only from
 * exactly first - 1. The batch is one transaction, so effects and cursor
 * commit together or not at all; redelivered events are skipped by the
 * cursor, never applied twice.
 *
 * When a batch fails, db_error_is_transient() decides:
 *   - transient (lost connection, deadlock, serialization failure, query
 *     cancel, lock timeout, too many connections, read-only after a
 *     failover, ...) and TR001 (the cursor moved: another replica): the
 *     queue is dropped, the cursor re-read and the run retried after an
 *     exponential backoff with jitter (retry_ms doubling up to
 *     backoff_max_ms), counted in transient_errors;
 *   - permanent, in one event's statements (data, constraint, syntax, a
 *     function's RAISE), or the apply callback refusing the event (e.g. an
 *     undecodable payload): that event is a poison event, recorded in
 *     inbox_failed instead of applied, and the rest commit, so one bad
 *     event never stalls the stream and is never silently lost;
 *   - permanent at commit (a deferred constraint), or in a statement the
 *     flush hook added for the whole run (below): which event caused it is
 *     unknown, so the run's events are applied one per transaction, and
 *     the one that fails alone is set aside as above.
 *
 * A batch-level hook (options.flush) lets a service turn the run into
 * set-based statements: its apply callback only collects what each event
 * means (and may still add statements of its own), and flush, called once
 * after the run's last event and before the cursor advance, adds one
 * statement for all of it. Poison isolation is kept: a permanent error in
 * a flush statement sends the run one event per transaction, where flush
 * carries that event alone.
 *
 * Set-aside events are re-applied on an operator's request: rows of
 * inbox_failed with retry_requested_at set (for this publisher) are found
 * on NOTIFY <schema>_inbox (options.schema) and by a poll every
 * failed_poll_ms, and applied one at a time through the apply callback, out
 * of sequence order (they are past the cursor already), each in a
 * transaction that deletes its row. If it fails again the row stays, with
 * retry_requested_at cleared, attempts bumped and the new error; a
 * transient failure leaves the request standing for a later poll.
 *
 * Epochs. The cursor row also keeps the publisher's epoch (outbox.h),
 * adopted from the first replay reply. A replay reply whose epoch differs,
 * or whose last_seq is below what we held in the same epoch when we asked
 * (the publisher was recreated or restored; not a replica's reply read
 * before its sibling's newer events), halts the stream: nothing more is applied,
 * an error `inbox_halted` names the publisher and both epochs or seqs,
 * trygg_inbox_halted is 1, inbox_ready() is false, and the cursor row says
 * why (halted = epoch_changed or seq_went_back, halted_detail, and
 * pending_epoch/pending_base_seq: what accepting switches to). Heartbeats
 * and live events that disagree only trigger such a reply (they come from a
 * relay's memory). The operator accepts with the UPDATE of `admin events accept-epoch` (services/common/admin_events.c)
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
	unsigned retry_ms;          /* timer period; first backoff step (default 250) */
	size_t queue_max_bytes;     /* payload bytes held in memory (default 64 MiB) */
	unsigned backoff_max_ms;    /* cap of the backoff after failures (default 5000) */
	unsigned failed_poll_ms;    /* scan for retry requests this often (default 3000) */
	/* The consuming service's schema: the inbox LISTENs on "<schema>_inbox"
	 * for operator requests. NULL: it only polls. */
	const char *schema;
	/* Optional: called (with the apply arg) after each batch of effects
	 * committed, e.g. to kick the service's relay or workers in-process
	 * instead of having the effects NOTIFY. */
	void (*on_committed)(void *arg, uint64_t last_seq);
	/* Optional: the batch-level hook (with the apply arg). Called once per
	 * batch after the apply callback has seen each of its events (also for
	 * a set-aside event re-applied alone), before the cursor advance: adds
	 * the statements for what apply collected since the previous call,
	 * then forgets it. Called with b == NULL when the inbox abandons the
	 * run before sending it (an event was refused and the run is built
	 * again): forget what was collected, add nothing. */
	void (*flush)(void *arg, db_batch *b);
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
	uint64_t applied_seq;      /* cursor as last committed */
	uint64_t known_seq;        /* highest seq the publisher announced */
	uint64_t applied;          /* events applied by this process */
	uint64_t duplicates;       /* live events already held or applied */
	uint64_t gaps;             /* live events dropped for a gap or a full queue */
	uint64_t replays;          /* replay requests sent */
	uint64_t invalid;          /* malformed or foreign frames dropped */
	uint64_t failed;           /* poison events recorded in inbox_failed */
	uint64_t batch_errors;     /* batches that failed and were retried */
	uint64_t transient_errors; /* batches retried after a transient error */
	uint64_t retried;          /* set-aside events re-applied by request */
	uint64_t failed_pending;   /* rows in inbox_failed for this publisher */
	uint64_t stale_replies;    /* replay replies discarded as not current */
	uint64_t skipped_ranges;   /* purged ranges gone past (inbox_skipped) */
	uint64_t halts;            /* times the stream halted */
	const char *halted;        /* NULL while applying, else epoch_changed,
	                            * seq_went_back or purged (static strings) */
} inbox_stats;
void inbox_get_stats(const inbox *in, inbox_stats *out);

/* True unless the stream is halted (only an operator can lift that) or
 * stopped: for /readyz, one check per consumed stream. A cursor being
 * (re)loaded or a batch retried after a transient error is normal work and
 * keeps the stream ready, so /readyz does not flap with every backoff;
 * Postgres being away shows in the "postgres" check. */
bool inbox_ready(const inbox *in);

/* Registers trygg_inbox_* gauges that read the stats at scrape time. The
 * inbox must outlive the registry's last render. */
void inbox_register_metrics(inbox *in, metrics *m);

#endif
