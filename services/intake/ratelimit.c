/*
 * ratelimit.c: the token bucket (see ratelimit.h).
 */
#include "ratelimit.h"

#include <math.h>

void
ratelimit_init(ratelimit *r, double rate, double burst, uint64_t now_ns)
{
	r->rate = rate;
	r->burst = burst < 1.0 ? 1.0 : burst;
	r->tokens = r->burst;
	r->last_ns = now_ns;
}

void
ratelimit_set(ratelimit *r, double rate, double burst)
{
	r->rate = rate;
	r->burst = burst < 1.0 ? 1.0 : burst;
	if (r->tokens > r->burst)
		r->tokens = r->burst;
}

bool
ratelimit_take(ratelimit *r, uint64_t now_ns, unsigned *retry_after_s)
{
	if (now_ns > r->last_ns) {
		r->tokens += (double)(now_ns - r->last_ns) / 1e9 * r->rate;
		if (r->tokens > r->burst)
			r->tokens = r->burst;
		r->last_ns = now_ns;
	}
	if (r->tokens >= 1.0) {
		r->tokens -= 1.0;
		return true;
	}
	double wait = r->rate > 0 ? (1.0 - r->tokens) / r->rate : 3600.0;
	double secs = ceil(wait);
	*retry_after_s = secs < 1.0 ? 1u : secs > 3600.0 ? 3600u : (unsigned)secs;
	return false;
}
