/*
 * svc.c: the start-up, serving and drain sequence shared by every service
 * (see svc.h). Keeping it here means each service's main.c only wires its
 * own parts together.
 */
#include "svc.h"

#include <stdio.h>
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
	http_server_close(s->http);
	db_pool_close(s->pool);
	s->http = NULL;
	s->pool = NULL;
	s->db = NULL;
	s->inbox_db = NULL;
}

void
svc_drain_done(svc *s)
{
	svc_close_all(s);
	loop_drain_done(&s->loop);
}

int
svc_run(svc *s)
{
	int code = loop_run(&s->loop);
	svc_close_all(s);
	if (loop_fini(&s->loop) != 0)
		log_warn("loop_not_clean", "\"service\":\"%s\"", s->o.name);
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
	health_free(s->health);
	metrics_free(s->metrics);
	config_fini(&s->cfg);
	return 1;
}
