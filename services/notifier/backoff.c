/*
 * backoff.c: exponential backoff with jitter for delivery retries.
 */
#include "backoff.h"

uint64_t
backoff_ceiling_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms)
{
	uint64_t d = base_ms ? base_ms : 1;
	if (attempt == 0)
		attempt = 1;
	for (unsigned i = 1; i < attempt && d < max_ms; i++)
		d *= 2; /* stops at max, so it cannot overflow */
	return d < max_ms ? d : max_ms;
}

uint64_t
backoff_delay_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, uint32_t rnd)
{
	uint64_t d = backoff_ceiling_ms(attempt, base_ms, max_ms);
	uint64_t half = d / 2;
	return half + (uint64_t)((double)(d - half) * ((double)rnd / 4294967295.0));
}
