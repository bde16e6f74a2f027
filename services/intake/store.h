/*
 * store.h: writing reports with group commit.
 *
 * On this machine Postgres, not the disk, is the limit: each transaction
 * costs CPU for its begin, commit and WAL flush whatever it holds. So
 * reports that arrive together are written together: store_submit() queues
 * a validated report; on the next loop iteration the queue is flushed as
 * one db batch (one transaction: one statement per report plus its outbox
 * row), on the least-loaded connection of the pool. At most `parallel`
 * batches are in flight; while they are, new reports wait and form the
 * next, larger batch. Under light load every report commits alone and at
 * once; under heavy load batches grow and the commit count stays low.
 *
 * Each report is one statement (data-modifying CTEs) that inserts the
 * idempotency key (ON CONFLICT DO NOTHING), and only if that went in, the
 * report, its places, its contact details and its ReportReceived outbox
 * row. Everything that could fail a statement (unknown category, bad
 * coordinates, over-long text) was checked in C before, so one report does
 * not fail its batch; if a batch fails anyway, each of its reports is
 * retried alone so only the bad one fails.
 *
 * A report's callback runs only after its batch's outcome is known:
 * STORE_CREATED means committed (and the relay was kicked). When the
 * connection broke after the batch was sent, the outcome is unknown to the
 * db client, and the store finds out before answering: on another
 * connection it makes sure the old backend is gone (pg_terminate_backend
 * with a wait: once it has exited, its transaction either committed or
 * never will) and then looks the batch's reports up by their ids, which
 * were chosen before the insert, and their idempotency keys. It keeps
 * trying for STORE_VERIFY_MS; if no connection answers by then, the
 * outcome stays STORE_UNKNOWN.
 */
#ifndef INTAKE_STORE_H
#define INTAKE_STORE_H

#include <stdint.h>
#include <uv.h>

#include "db_pool.h"
#include "metrics.h"
#include "outbox.h"
#include "report.h"

typedef struct store store;

typedef enum store_outcome {
	STORE_CREATED,     /* committed; srid is its service_request_id */
	STORE_DUPLICATE,   /* its idempotency key was already used: nothing written */
	STORE_UNAVAILABLE, /* Postgres unreachable: not stored (known): 503 */
	STORE_FAILED,      /* Postgres refused this report on its own: 500 */
	STORE_UNKNOWN,     /* sent, then the connection broke, and no connection
	                      could tell in time whether it committed: 503 */
} store_outcome;

/* How long the store tries to learn the outcome of a broken batch. */
#define STORE_VERIFY_MS 2000

/* Runs on the loop thread; r is the submitted report, still owned by the
 * store (freed after the callback returns). */
typedef void (*store_cb)(void *arg, store_outcome outcome, const report_in *r, int64_t srid);

typedef struct store_options {
	unsigned batch_max; /* reports per transaction (default 500) */
	unsigned parallel;  /* transactions in flight (default 4) */
} store_options;

int store_new(uv_loop_t *loop, db_pool *pool, outbox_relay *relay, metrics *m,
    const store_options *o, store **out) TRYGG_MUSTCHECK;

/* Queues a report. The store takes ownership of *r (its contents are
 * moved; r itself may be on the caller's stack) and calls cb exactly once. */
void store_submit(store *s, report_in *r, store_cb cb, void *arg);

/* Calls cb once nothing is queued or in flight (at once if idle). */
void store_drain(store *s, void (*cb)(void *arg), void *arg);

/* Frees the store from its timer's close callback; the store must be
 * drained. Accepts NULL. */
void store_free(store *s);

/* Packs the ReportReceived event of a report into a malloc'd buffer. */
uint8_t *store_pack_event(const report_in *r, size_t *len);

#endif
