/*
 * backoff.h: when to try a failed delivery again.
 *
 * Exponential backoff with "full jitter" over the upper half: attempt n
 * (1-based, the attempt that just failed) waits a delay drawn uniformly
 * from [d/2, d], where d = min(base * 2^(n-1), max). The floor keeps a
 * retry from coming back at once; the spread keeps endpoints that failed
 * together (a receiver that was down) from being hit by every retry in
 * the same instant when they come back.
 */
#ifndef NOTIFIER_BACKOFF_H
#define NOTIFIER_BACKOFF_H

#include <stdint.h>

/* The cap d for attempt n (no jitter), in ms. */
uint64_t backoff_ceiling_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms);

/* The delay for attempt n, in ms; `rnd` is a uniform random 32-bit value
 * (passed in so tests are deterministic). */
uint64_t backoff_delay_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, uint32_t rnd);

#endif
