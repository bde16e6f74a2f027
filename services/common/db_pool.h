/*
 * db_pool.h: several db connections behind one submit call.
 *
 * One Postgres backend runs one transaction at a time, so a single pipelined
 * connection commits serially: its rate is 1 / commit latency, however many
 * batches are queued. Concurrent business transactions (reports arriving
 * from many partners) need several backends so Postgres can group their
 * commits. A pool of N db clients gives that; each batch goes to the
 * connected client with the fewest batches in flight.
 *
 * Batches on different connections commit in no particular order: a caller
 * that needs ordering (the outbox relay, an inbox) uses one client of its
 * own, on which order holds. The first `reserved` clients are such
 * dedicated clients (db_pool_client): db_pool_submit leaves them alone
 * while any other client is connected, so a relay's or an inbox's
 * sequential commits never queue behind request traffic, nor each other.
 */
#ifndef TRYGG_DB_POOL_H
#define TRYGG_DB_POOL_H

#include "db.h"

typedef struct db_pool db_pool;

/* Opens `size` clients (1..64) with the same options, the first
 * `reserved` (< size) of them dedicated. */
int db_pool_new(uv_loop_t *loop, const db_options *opts, unsigned size, unsigned reserved,
    db_pool **out) TRYGG_MUSTCHECK;

/* Closes every client (see db_close). Accepts NULL. */
void db_pool_close(db_pool *p);

/* Client i (0 <= i < size); the dedicated ones are 0 .. reserved - 1. */
db *db_pool_client(db_pool *p, unsigned i);

/* Submits to the least-loaded connected shared client (a dedicated one only
 * when no shared client is connected); same contract as db_submit
 * (TRYGG_EDBCONN when none is connected). */
int db_pool_submit(db_pool *p, db_batch *b, db_cb cb, void *arg) TRYGG_MUSTCHECK;

/* Sums of the clients' counters. */
void db_pool_get_stats(const db_pool *p, db_stats *out);

#endif
