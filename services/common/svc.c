/*
 * svc.c: the start-up, serving and drain sequence shared by every service
 * (see svc.h). Keeping it here means each service's main.c only wires its
 * own parts together.
 */
#include "svc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static void svc_close_all(svc *s);

static bool
check_postgres(void *arg)
{
	return db_is_connected(((svc *)arg)->db);
}

static double
gauge_db_connected(void *arg)
{
	return db_is_connected(((svc *)arg)->db) ? 1.0 : 0.0;
}

#define DB_STAT(field) \
	static double gauge_db_##field(void *arg) \
	{ \
		db_stats st; \
		db_pool_get_stats(((svc *)arg)->pool, &st); \
		return (double)st.field; \
	}
DB_STAT(batches_ok)
DB_STAT(batches_failed)
DB_STAT(reconnects)
DB_STAT(in_flight)

/* Resident set size from /proc: the "idles under 20 MB" target is watched
 * through this. */
static double
gauge_rss(void *arg)
{
	(void)arg;
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = 0;
	fclose(f);
	return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

static void
register_metrics(svc *s)
{
	const char *l[] = {"service", s->o.name, NULL};
	metrics_gauge_fn(s->metrics, "trygg_db_connected", "1 while Postgres is connected", l,
	    gauge_db_connected, s);
	metrics_gauge_fn(s->metrics, "trygg_db_batches_ok_total", "Database batches committed", l,
	    gauge_db_batches_ok, s);
	metrics_gauge_fn(s->metrics, "trygg_db_batches_failed_total", "Database batches failed", l,
	    gauge_db_batches_failed, s);
	metrics_gauge_fn(s->metrics, "trygg_db_reconnects_total", "Postgres reconnections", l,
	    gauge_db_reconnects, s);
	metrics_gauge_fn(s->metrics, "trygg_db_in_flight", "Database batches in flight", l,
	    gauge_db_in_flight, s);
	metrics_gauge_fn(s->metrics, "process_resident_memory_bytes", "Resident memory size", l,
	    gauge_rss, s);
}

/* ---- event plumbing ---- */

/* Stops every running inbox. An inbox frees itself after its last
 * database callback, so this may run while a batch is in flight. */
static void
stop_inboxes(svc *s)
{
	for (size_t i = 0; i < s->nstreams; i++) {
		inbox_stop(s->streams[i].in);
		s->streams[i].in = NULL;
	}
}

int
svc_publish(svc *s, const char *publisher)
{
	svc_config *c = s->o.common;
	if (publisher == NULL || c->bus_pub_url == NULL || c->bus_rep_url == NULL) {
		log_error("publish_unconfigured",
		    "\"service\":\"%s\",\"error\":\"TRYGG_BUS_PUB_URL and TRYGG_BUS_REP_URL "
		    "must be set\"",
		    s->o.name);
		return TRYGG_EINVAL;
	}
	uint64_t retention_s = c->outbox_retention_ms / 1000;
	outbox_options oo = {.publisher = publisher,
	    .schema = s->o.schema,
	    .pub_url = c->bus_pub_url,
	    .rep_url = c->bus_rep_url,
	    .retention_s = retention_s > UINT32_MAX ? UINT32_MAX : (unsigned)retention_s,
	    /* Replay and purge on a shared client of the pool, so a
	     * far-behind subscriber never delays live sequencing on s->db. */
	    .replay_db = db_pool_client(s->pool, 2)};
	int rv = outbox_relay_start(svc_uv(s), s->db, &oo, &s->relay);
	if (rv != 0)
		return rv;
	outbox_relay_register_metrics(s->relay, s->metrics);
	return 0;
}

void
svc_relay_kick(svc *s)
{
	if (s->relay != NULL)
		outbox_relay_kick(s->relay);
}

outbox_relay *
svc_relay(svc *s)
{
	return s->relay;
}

static bool
check_inbox(void *arg)
{
	return inbox_ready(((svc_inbox *)arg)->in);
}

/* What an operator needs in /readyz: why a stream is not ready, and how
 * many of its events are set aside (`trygg-<svc> admin events failed`). */
static void
detail_inbox(void *arg, json_t *obj)
{
	svc_inbox *si = arg;
	if (si->in == NULL) {
		json_object_set_new(obj, "state",
		    json_string(si->svc->draining ? "stopped" : "not_started"));
		return;
	}
	inbox_stats st;
	inbox_get_stats(si->in, &st);
	json_object_set_new(obj, "applied_seq", json_integer((json_int_t)st.applied_seq));
	json_object_set_new(obj, "known_seq", json_integer((json_int_t)st.known_seq));
	json_object_set_new(obj, "failed_pending", json_integer((json_int_t)st.failed_pending));
	if (st.halted != NULL)
		json_object_set_new(obj, "halted", json_string(st.halted));
}

static int
start_stream(svc *s, svc_inbox *si)
{
	inbox_options io = {.publisher = si->publisher,
	    .sub_url = si->st.urls->sub_url,
	    .req_url = si->st.urls->req_url,
	    .batch_max = si->st.batch_max,
	    .queue_max = si->st.queue_max,
	    .queue_max_bytes = si->st.queue_max_bytes,
	    /* LISTEN <schema>_inbox: the operator's retry, accept-epoch, continue */
	    .schema = s->o.schema,
	    .on_committed = si->st.on_committed,
	    .flush = si->st.flush,
	    .skip_purged = s->o.common->inbox_skip_purged};
	int rv = inbox_start(svc_uv(s), s->inbox_db, &io, si->st.apply, si->st.arg, &si->in);
	if (rv != 0) {
		log_error("inbox_start_failed", "\"service\":\"%s\",\"publisher\":\"%s\"",
		    s->o.name, si->publisher);
		return rv;
	}
	inbox_register_metrics(si->in, s->metrics);
	si->st.start_later = false;
	return 0;
}

int
svc_consume(svc *s, const svc_stream *st)
{
	if (st->publisher == NULL || st->apply == NULL || st->urls == NULL ||
	    s->nstreams == SVC_MAX_STREAMS)
		return TRYGG_EINVAL;
	if (st->urls->sub_url == NULL || st->urls->req_url == NULL) {
		log_info("stream_off",
		    "\"service\":\"%s\",\"publisher\":\"%s\",\"reason\":\"its sub or req "
		    "URL is unset\"",
		    s->o.name, st->publisher);
		return 0;
	}
	svc_inbox *si = &s->streams[s->nstreams];
	memset(si, 0, sizeof(*si));
	si->svc = s;
	si->st = *st;
	si->publisher = xstrdup(st->publisher);
	si->st.publisher = si->publisher;
	si->check_name = xmalloc(strlen(st->publisher) + 7);
	sprintf(si->check_name, "inbox_%s", st->publisher);
	s->nstreams++;
	int rv = health_add_check_detail(s->health, si->check_name, check_inbox, detail_inbox, si);
	if (rv != 0)
		return rv;
	return st->start_later ? 0 : start_stream(s, si);
}

int
svc_consume_start(svc *s)
{
	if (s->draining || s->closed)
		return 0;
	for (size_t i = 0; i < s->nstreams; i++) {
		int rv;
		if (s->streams[i].st.start_later && (rv = start_stream(s, &s->streams[i])) != 0)
			return rv;
	}
	return 0;
}

inbox *
svc_inbox_of(svc *s, const char *publisher)
{
	for (size_t i = 0; i < s->nstreams; i++)
		if (strcmp(s->streams[i].publisher, publisher) == 0)
			return s->streams[i].in;
	return NULL;
}

static void
free_streams(svc *s)
{
	for (size_t i = 0; i < s->nstreams; i++) {
		free(s->streams[i].publisher);
		free(s->streams[i].check_name);
	}
	s->nstreams = 0;
}

/* SIGTERM: stop taking requests, then let the service stop its parts. */
static void
on_loop_drain(loop *l, void *arg)
{
	svc *s = arg;
	(void)l;
	if (s->draining)
		return;
	s->draining = true;
	log_info("draining", "\"service\":\"%s\"", s->o.name);
	health_set_draining(s->health, true);
	http_server_stop(s->http);
	stop_inboxes(s);
	if (s->on_drain != NULL)
		s->on_drain(s, s->drain_arg);
	else
		svc_drain_done(s);
}

static void
on_loop_reload(loop *l, void *arg)
{
	svc *s = arg;
	(void)l;
	if (config_reload(&s->cfg) == 0)
		log_set_level(s->o.common->log_level);
}

int
svc_init(svc *s, const svc_options *o)
{
	int rv;
	memset(s, 0, sizeof(*s));
	s->o = *o;
	log_init(o->name, LOG_INFO);
	for (int i = 1; i < o->argc; i++) {
		if (strcmp(o->argv[i], "--help") == 0 || strcmp(o->argv[i], "-h") == 0) {
			printf("trygg-%s: configured by environment variables "
			       "(or a file named by TRYGG_CONFIG_FILE)\n\n",
			    o->name);
			config_print_help(o->options, stdout);
			return TRYGG_ECLOSED;
		}
		log_error("usage", "\"error\":\"unknown argument; try --help\"");
		return TRYGG_EINVAL;
	}
	if ((rv = config_load(&s->cfg, o->options, o->config)) != 0) {
		char buf[1100];
		log_error("config_invalid", "\"error\":%s",
		    log_json_str(config_error(&s->cfg), buf, sizeof(buf)));
		config_fini(&s->cfg);
		return rv;
	}
	svc_config *c = o->common;
	log_set_level(c->log_level);
	config_log(&s->cfg);

	if ((rv = migrate_apply(c->database_url, o->schema, o->migrations,
	         (unsigned)c->db_wait_ms)) != 0)
		goto fail_config;

	loop_options lo = {.drain_timeout_ms = c->drain_timeout_ms,
	    .on_drain = on_loop_drain,
	    .on_reload = on_loop_reload,
	    .arg = s};
	if ((rv = loop_init(&s->loop, &lo)) != 0)
		goto fail_config;
	db_options dbo = {.conninfo = c->database_url,
	    .search_path = o->schema,
	    .name = o->name,
	    .statement_timeout_ms = (unsigned)c->db_statement_timeout_ms,
	    .batch_timeout_ms = (unsigned)c->db_batch_timeout_ms};
	/* Clients 0 and 1 are dedicated: the relay's sequential rounds and
	 * the inboxes' sequential batches each commit on their own backend,
	 * never queued behind each other or behind requests. */
	if ((rv = db_pool_new(loop_uv(&s->loop), &dbo, (unsigned)c->db_connections, 2, &s->pool)) !=
	    0)
		goto fail;
	s->db = db_pool_client(s->pool, 0);
	s->inbox_db = db_pool_client(s->pool, 1);
	s->metrics = metrics_new();
	register_metrics(s);
	http_server_options ho = {.bind_address = c->http_addr,
	    .port = (uint16_t)c->http_port,
	    .reuse_port = c->http_reuse_port,
	    .max_body_bytes = c->http_max_body,
	    .max_connections = (unsigned)c->http_max_connections,
	    .head_timeout_ms = (unsigned)c->http_head_timeout_ms,
	    .max_waiting_per_addr = (unsigned)c->http_max_waiting_per_addr,
	    .name = o->name,
	    .metrics = s->metrics};
	if ((rv = http_server_new(loop_uv(&s->loop), &ho, &s->http)) != 0)
		goto fail;
	if ((rv = health_new(s->http, s->metrics, &s->health)) != 0 ||
	    (rv = health_add_check(s->health, "postgres", check_postgres, s)) != 0)
		goto fail;
	if ((rv = http_server_start(s->http)) != 0) {
		log_error("http_listen_failed", "\"addr\":\"%s\",\"port\":%d", c->http_addr,
		    c->http_port);
		goto fail;
	}
	log_info("listening", "\"service\":\"%s\",\"http\":\"http://%s:%u\"", o->name, c->http_addr,
	    http_server_port(s->http));
	return 0;

fail:
	svc_close_all(s);
	loop_fini(&s->loop);
	metrics_free(s->metrics);
	health_free(s->health);
fail_config:
	config_fini(&s->cfg);
	return rv;
}

uv_loop_t *
svc_uv(svc *s)
{
	return loop_uv(&s->loop);
}

void
svc_set_drain(svc *s, svc_drain_cb cb, void *arg)
{
	s->on_drain = cb;
	s->drain_arg = arg;
}

/* Closes the runtime's own parts; their memory goes in close callbacks. */
static void
svc_close_all(svc *s)
{
	if (s->closed)
		return;
	s->closed = true;
	stop_inboxes(s);
	outbox_relay_stop(s->relay);
	s->relay = NULL;
	http_server_close(s->http);
	db_pool_close(s->pool);
	s->http = NULL;
	s->pool = NULL;
	s->db = NULL;
	s->inbox_db = NULL;
}

static void
on_relay_flushed(void *arg)
{
	svc *s = arg;
	svc_close_all(s);
	loop_drain_done(&s->loop);
}

void
svc_drain_done(svc *s)
{
	if (s->drain_done)
		return;
	s->drain_done = true;
	/* The service's parts are stopped: nothing writes outbox rows any
	 * more, so publish what is left, then close. */
	if (s->relay != NULL && !s->closed)
		outbox_relay_flush(s->relay, on_relay_flushed, s);
	else
		on_relay_flushed(s);
}

int
svc_run(svc *s)
{
	int code = loop_run(&s->loop);
	svc_close_all(s);
	if (loop_fini(&s->loop) != 0)
		log_warn("loop_not_clean", "\"service\":\"%s\"", s->o.name);
	free_streams(s);
	health_free(s->health);
	metrics_free(s->metrics);
	config_fini(&s->cfg);
	log_info("stopped", "\"service\":\"%s\",\"exit_code\":%d", s->o.name, code);
	return code;
}

int
svc_abort(svc *s)
{
	log_error("start_failed", "\"service\":\"%s\"", s->o.name);
	svc_close_all(s);
	loop_fini(&s->loop);
	free_streams(s);
	health_free(s->health);
	metrics_free(s->metrics);
	config_fini(&s->cfg);
	return 1;
}
