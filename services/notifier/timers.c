/*
 * timers.c: the tick that fires due task timers (see timers.h).
 */
#include "timers.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"

#define FIRE_MAX 200 /* timers per transaction */

static const char SQL_FIRE[] = "SELECT fire_timers($1::int, $2::boolean)";

struct task_timers {
	notifier *n;
	uv_timer_t tick;
	bool busy, stopping, closed;
};

static void fire(task_timers *t);

static void
on_closed(uv_handle_t *h)
{
	free(h->data);
}

static void
maybe_close(task_timers *t)
{
	if (t->stopping && !t->busy && !t->closed) {
		t->closed = true;
		uv_close((uv_handle_t *)&t->tick, on_closed);
	}
}

static void
fired(void *arg, const db_reply *rep)
{
	task_timers *t = arg;
	t->busy = false;
	if (t->stopping) {
		maybe_close(t);
		return;
	}
	if (rep->err != 0) {
		log_warn("timers_failed", "\"error\":\"%s\"", trygg_strerror(rep->err));
		return;
	}
	int n = atoi(PQgetvalue(rep->results[0], 0, 0));
	if (n > 0) {
		log_info("timers_fired", "\"count\":%d", n);
		notifier_after_commit(t->n, true);
	}
	if (n >= FIRE_MAX)
		fire(t); /* more are due */
}

static void
fire(task_timers *t)
{
	if (t->busy || t->stopping)
		return;
	char limit[16];
	snprintf(limit, sizeof(limit), "%d", FIRE_MAX);
	const char *values[2] = {limit, notifier_email_enabled(t->n) ? "true" : "false"};
	db_batch *b = db_batch_new();
	db_batch_add(b, SQL_FIRE, 2, values);
	if (db_pool_submit(t->n->svc.pool, b, fired, t) != 0) {
		db_batch_free(b); /* Postgres is away: the next tick tries again */
		return;
	}
	t->busy = true;
}

static void
on_tick(uv_timer_t *h)
{
	fire(h->data);
}

int
task_timers_start(notifier *n, task_timers **out)
{
	task_timers *t = xcalloc(1, sizeof(*t));
	t->n = n;
	uv_timer_init(svc_uv(&n->svc), &t->tick);
	t->tick.data = t;
	uv_timer_start(&t->tick, on_tick, n->cfg.timer_interval_ms, n->cfg.timer_interval_ms);
	*out = t;
	return 0;
}

void
task_timers_stop(task_timers *t)
{
	if (t == NULL)
		return;
	t->stopping = true;
	uv_timer_stop(&t->tick);
	maybe_close(t);
}
