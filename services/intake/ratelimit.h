/*
 * ratelimit.h: a token bucket, one per partner.
 *
 * The bucket holds at most `burst` tokens and refills at `rate` tokens per
 * second; each request takes one. An empty bucket means 429 Too Many
 * Requests with Retry-After set to the time until the next token. Pure
 * arithmetic on a caller-supplied monotonic clock, so it is easy to test.
 */
#ifndef INTAKE_RATELIMIT_H
#define INTAKE_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ratelimit {
	double rate;  /* tokens per second */
	double burst; /* bucket size */
	double tokens;
	uint64_t last_ns;
} ratelimit;

/* Starts a full bucket at time now_ns. */
void ratelimit_init(ratelimit *r, double rate, double burst, uint64_t now_ns);

/* Changes rate and burst, keeping the tokens (capped at the new burst). */
void ratelimit_set(ratelimit *r, double rate, double burst);

/*
 * Takes one token at time now_ns. Returns true if there was one; false if
 * not, with *retry_after_s set to the whole seconds (at least 1) until
 * there will be.
 */
bool ratelimit_take(ratelimit *r, uint64_t now_ns, unsigned *retry_after_s);

/*
 * Buckets for anonymous clients (public Open311 GETs), by client address.
 * A fixed table of RATELIMIT_SLOTS buckets indexed by a hash of the
 * address: memory stays bounded whatever the number of clients; two
 * addresses that collide share a bucket (a stricter limit, never a looser
 * one).
 */
#define RATELIMIT_SLOTS 4096

typedef struct ratelimit_table {
	double rate, burst;
	ratelimit slots[RATELIMIT_SLOTS];
	bool used[RATELIMIT_SLOTS];
} ratelimit_table;

void ratelimit_table_init(ratelimit_table *t, double rate, double burst);

/* True if the bucket of `key` holds a token now, without taking it; else
 * false with *retry_after_s set as ratelimit_take does. */
bool ratelimit_table_peek(ratelimit_table *t, const char *key, uint64_t now_ns,
    unsigned *retry_after_s);

/* Takes a token from the bucket of `key` (e.g. "127.0.0.1"). */
bool ratelimit_table_take(ratelimit_table *t, const char *key, uint64_t now_ns,
    unsigned *retry_after_s);

#endif
