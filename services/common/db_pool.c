/*
 * db_pool.c: least-loaded dispatch over a few db clients. See db_pool.h.
 */
#include "db_pool.h"

#include <stdlib.h>

struct db_pool {
	unsigned size, reserved;
	db *dbs[];
};

int
db_pool_new(uv_loop_t *loop, const db_options *opts, unsigned size, unsigned reserved,
    db_pool **out)
{
	if (size == 0 || size > 64 || reserved >= size)
		return TRYGG_EINVAL;
	db_pool *p = xcalloc(1, sizeof(*p) + size * sizeof(p->dbs[0]));
	for (unsigned i = 0; i < size; i++) {
		int rv = db_new(loop, opts, &p->dbs[i]);
		if (rv != 0) {
			p->size = i;
			db_pool_close(p);
			return rv;
		}
	}
	p->size = size;
	p->reserved = reserved;
	*out = p;
	return 0;
}

void
db_pool_close(db_pool *p)
{
	if (p == NULL)
		return;
	for (unsigned i = 0; i < p->size; i++)
		db_close(p->dbs[i]);
	free(p); /* the clients free themselves from their close callbacks */
}

db *
db_pool_client(db_pool *p, unsigned i)
{
	return p->dbs[i < p->size ? i : 0];
}

/* The least-loaded connected client among [from, to), or NULL. */
static db *
least_loaded(db_pool *p, unsigned from, unsigned to)
{
	db *best = NULL;
	unsigned best_load = 0;
	for (unsigned i = from; i < to; i++) {
		if (!db_is_connected(p->dbs[i]))
			continue;
		db_stats st;
		db_get_stats(p->dbs[i], &st);
		if (best == NULL || st.in_flight < best_load) {
			best = p->dbs[i];
			best_load = st.in_flight;
		}
	}
	return best;
}

int
db_pool_submit(db_pool *p, db_batch *b, db_cb cb, void *arg)
{
	db *best = least_loaded(p, p->reserved, p->size);
	if (best == NULL)
		best = least_loaded(p, 0, p->reserved);
	if (best == NULL)
		return TRYGG_EDBCONN;
	return db_submit(best, b, cb, arg);
}

void
db_pool_get_stats(const db_pool *p, db_stats *out)
{
	db_stats sum = {0};
	for (unsigned i = 0; i < p->size; i++) {
		db_stats st;
		db_get_stats(p->dbs[i], &st);
		sum.batches_ok += st.batches_ok;
		sum.batches_failed += st.batches_failed;
		sum.reconnects += st.reconnects;
		sum.in_flight += st.in_flight;
	}
	*out = sum;
}
