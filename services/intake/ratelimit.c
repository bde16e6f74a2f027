/*
 * ratelimit.c: the token bucket (see ratelimit.h).
 */
#include "ratelimit.h"

#include <math.h>
#include <string.h>

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

void
ratelimit_table_init(ratelimit_table *t, double rate, double burst)
{
	t->rate = rate;
	t->burst = burst;
	memset(t->used, 0, sizeof(t->used));
}

/* The bucket of a key, started full on first use. */
static ratelimit *
slot(ratelimit_table *t, const char *key, uint64_t now_ns)
{
	/* FNV-1a: addresses are short and need no protection against chosen
	 * collisions (a collision only makes the limit stricter). */
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	size_t i = h % RATELIMIT_SLOTS;
	if (!t->used[i]) {
		ratelimit_init(&t->slots[i], t->rate, t->burst, now_ns);
		t->used[i] = true;
	}
	return &t->slots[i];
}

bool
ratelimit_table_peek(ratelimit_table *t, const char *key, uint64_t now_ns, unsigned *retry_after_s)
{
	ratelimit copy = *slot(t, key, now_ns);
	return ratelimit_take(&copy, now_ns, retry_after_s);
}

bool
ratelimit_table_take(ratelimit_table *t, const char *key, uint64_t now_ns, unsigned *retry_after_s)
{
	return ratelimit_take(slot(t, key, now_ns), now_ns, retry_after_s);
}
