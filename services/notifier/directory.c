/*
 * directory.c: loading and refreshing the routing table and the link
 * secret (see directory.h).
 */
#include "directory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct directory {
	notifier *n;
	void (*on_ready)(notifier *n);
	routing_table *routes;
	char *link_secret;
	uv_timer_t timer;
	bool loading, again, ready, stopping;
};

static const char SQL_SECRET[] = "SELECT value FROM settings WHERE name = 'link_secret'";

static void load(directory *d);
static void on_timer(uv_timer_t *t);

static void
on_closed(uv_handle_t *h)
{
	directory *d = h->data;
	routing_table_free(d->routes);
	free(d->link_secret);
	free(d);
}

static void
maybe_free(directory *d)
{
	if (d->stopping && !d->loading)
		uv_close((uv_handle_t *)&d->timer, on_closed);
}

static void
loaded(void *arg, const db_reply *rep)
{
	directory *d = arg;
	d->loading = false;
	if (d->stopping) {
		maybe_free(d);
		return;
	}
	routing_table *t = NULL;
	if (rep->err != 0 || rep->nresults != 3 ||
	    routing_table_from_results(rep->results[0], rep->results[1], &t) != 0) {
		log_warn("routing_load_failed", "\"error\":\"%s\"",
		    rep->err ? trygg_strerror(rep->err) : "unexpected result");
		/* Retry soon when nothing is loaded yet; else the timer will. */
		if (!d->ready)
			uv_timer_start(&d->timer, on_timer, 500, 0);
		return;
	}
	routing_table_free(d->routes);
	d->routes = t;
	if (d->link_secret == NULL) {
		const char *cfg = d->n->cfg.link_secret;
		if (cfg && cfg[0])
			d->link_secret = xstrdup(cfg);
		else if (PQntuples(rep->results[2]) == 1)
			d->link_secret = xstrdup(PQgetvalue(rep->results[2], 0, 0));
	}
	log_info("routing_loaded", "\"units\":%zu,\"rules\":%zu,\"default\":%s", t->nunits,
	    t->nrules, t->default_unit ? "true" : "false");
	if (!d->ready) {
		d->ready = true;
		uv_timer_start(&d->timer, on_timer, d->n->cfg.routing_refresh_ms,
		    d->n->cfg.routing_refresh_ms);
		d->on_ready(d->n);
	}
	if (d->again) {
		d->again = false;
		load(d);
	}
}

static void
load(directory *d)
{
	if (d->stopping)
		return;
	if (d->loading) {
		d->again = true;
		return;
	}
	db_batch *b = db_batch_new();
	db_batch_add(b, ROUTING_SQL_UNITS, 0, NULL);
	db_batch_add(b, ROUTING_SQL_RULES, 0, NULL);
	db_batch_add(b, SQL_SECRET, 0, NULL);
	if (db_submit(d->n->svc.db, b, loaded, d) != 0) {
		db_batch_free(b);
		if (!d->ready)
			uv_timer_start(&d->timer, on_timer, 500, 0);
		return;
	}
	d->loading = true;
}

static void
on_timer(uv_timer_t *t)
{
	load(t->data);
}

int
directory_start(notifier *n, void (*on_ready)(notifier *n), directory **out)
{
	/* The rules' windows are local time: a mistyped zone must stop the
	 * service, not quietly route by UTC. */
	if (!routing_timezone_ok(n->cfg.timezone)) {
		char tb[200];
		log_error("timezone_unknown",
		    "\"timezone\":%s,\"error\":\"TRYGG_TIMEZONE names no zone in the time zone"
		    " database (e.g. Europe/Stockholm; see /usr/share/zoneinfo)\"",
		    log_json_str(n->cfg.timezone, tb, sizeof(tb)));
		fprintf(stderr,
		    "trygg-notifier: TRYGG_TIMEZONE '%s' is not a known time zone (e.g."
		    " Europe/Stockholm; see /usr/share/zoneinfo)\n",
		    n->cfg.timezone);
		return TRYGG_EINVAL;
	}
	directory *d = xcalloc(1, sizeof(*d));
	d->n = n;
	d->on_ready = on_ready;
	uv_timer_init(svc_uv(&n->svc), &d->timer);
	d->timer.data = d;
	uv_timer_start(&d->timer, on_timer, 0, 0);
	*out = d;
	return 0;
}

void
directory_reload(directory *d)
{
	if (d)
		load(d);
}

void
directory_stop(directory *d)
{
	if (d == NULL)
		return;
	d->stopping = true;
	uv_timer_stop(&d->timer);
	maybe_free(d);
}

const routing_table *
directory_routes(const directory *d)
{
	return d ? d->routes : NULL;
}

const char *
directory_link_secret(const directory *d)
{
	return d && d->link_secret ? d->link_secret : "";
}
