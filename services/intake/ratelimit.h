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

#endif
