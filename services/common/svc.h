/*
 * svc.h: what every Trygg program does the same way, in one place.
 *
 * A service declares its config struct (embedding svc_config as `common`)
 * and option table (starting with SVC_CONFIG_OPTIONS), then:
 *
 *   svc s;
 *   if (svc_init(&s, &(svc_options){.name = "intake", .schema = "intake",
 *           .options = table, .config = &cfg, .common = &cfg.common,
 *           .migrations = intake_migrations, .argc = argc, .argv = argv}) != 0)
 *       return 1;                       // config/migration errors are logged
 *   ... routes on s.http, outbox/inbox on s.db, svc_set_drain(&s, ...) ...
 *   return svc_run(&s);                 // serves until SIGTERM, then drains
 *
 * svc_init: loads and validates the config (--help prints the options),
 * sets up JSON logging, applies the schema's migrations (waiting for
 * Postgres up to db_wait), opens the loop, a pool of async db clients and the
 * HTTP server with /metrics, /healthz and /readyz (ready = Postgres
 * connected, not draining, and every extra check the service adds).
 *
 * Drain on SIGTERM: the HTTP server stops accepting, the service's drain
 * callback runs (stop producing, flush, close its sockets) and calls
 * svc_drain_done() when finished; then the db client and HTTP server close
 * and the loop ends. SIGHUP reloads the reloadable options (log level).
 */
#ifndef TRYGG_SVC_H
#define TRYGG_SVC_H

#include "config.h"
#include "db.h"
#include "db_pool.h"
#include "health.h"
#include "http_server.h"
#include "loop.h"
#include "metrics.h"
#include "migrate.h"

/* The options every service has; embed as the first member `common`. */
typedef struct svc_config {
	char *database_url;
	char *http_addr;
	int http_port;
	enum log_level log_level;
	uint64_t drain_timeout_ms;
	uint64_t db_wait_ms;
	size_t http_max_body;
	int http_max_connections;
	int db_connections;
	uint64_t http_head_timeout_ms;
	int http_max_waiting_per_addr;
	uint64_t db_statement_timeout_ms;
	uint64_t db_batch_timeout_ms;
} svc_config;

/* The table rows for svc_config; `port` is the default HTTP port string. */
#define SVC_CONFIG_OPTIONS(st, port) \
	CONFIG_OPT_URL("database_url", st, common.database_url, NULL, \
	    CONFIG_REQUIRED | CONFIG_SECRET, "Postgres URL of this service's role"), \
	    CONFIG_OPT_STRING("http_addr", st, common.http_addr, "127.0.0.1", 0, \
	        "address the HTTP port binds to (0.0.0.0 in containers)"), \
	    CONFIG_OPT_INT("http_port", st, common.http_port, port, 1, 65535, 0, \
	        "HTTP port: API, /metrics, /healthz, /readyz"), \
	    CONFIG_OPT_LOGLEVEL("log_level", st, common.log_level, "info", CONFIG_RELOADABLE, \
	        "debug, info, warn or error"), \
	    CONFIG_OPT_DURATION("drain_timeout", st, common.drain_timeout_ms, "10s", 100, 600000, \
	        0, "how long SIGTERM waits for in-flight work"), \
	    CONFIG_OPT_DURATION("db_wait", st, common.db_wait_ms, "60s", 0, 3600000, 0, \
	        "how long start-up waits for Postgres"), \
	    CONFIG_OPT_SIZE("http_max_body", st, common.http_max_body, "1M", 1024, \
	        64 * 1024 * 1024, 0, "largest request body accepted (413 above)"), \
	    CONFIG_OPT_INT("http_max_connections", st, common.http_max_connections, "1000", 1, \
	        100000, 0, "concurrent HTTP connections"), \
	    CONFIG_OPT_INT("db_connections", st, common.db_connections, "8", 3, 64, 0, \
	        "Postgres connections: one for the relay, one for inboxes, the rest shared"), \
	    CONFIG_OPT_DURATION("http_head_timeout", st, common.http_head_timeout_ms, "10s", 500, \
	        600000, 0, "deadline for a request head, from accept (or the previous response)"), \
	    CONFIG_OPT_INT("http_max_waiting_per_addr", st, common.http_max_waiting_per_addr, \
	        "32", 1, 100000, 0, \
	        "connections one address may have waiting for a request head"), \
	    CONFIG_OPT_DURATION("db_statement_timeout", st, common.db_statement_timeout_ms, "10s", \
	        0, 3600000, 0, "Postgres statement_timeout of every connection (0: none)"), \
	    CONFIG_OPT_DURATION("db_batch_timeout", st, common.db_batch_timeout_ms, "15s", 500, \
	        3600000, 0, \
	        "a batch without an answer this long resets its connection (keep it above the " \
	        "statement timeout)")

typedef struct svc svc;
typedef void (*svc_drain_cb)(svc *s, void *arg);

typedef struct svc_options {
	const char *name;                   /* service name in logs and metrics */
	const char *schema;                 /* its Postgres schema */
	const config_option *options;       /* the whole table, CONFIG_END-terminated */
	void *config;                       /* the struct the table fills */
	svc_config *common;                 /* its svc_config member */
	const struct migration *migrations; /* its own, NULL-terminated; may be NULL */
	int argc;
	char **argv;
} svc_options;

struct svc {
	svc_options o;
	config cfg;
	loop loop;
	db_pool *pool; /* for independent transactions (requests) */
	db *db;        /* a dedicated client: LISTEN, the outbox relay, ordered work */
	db *inbox_db;  /* a dedicated client for the service's inboxes */
	http_server *http;
	metrics *metrics;
	health *health;
	svc_drain_cb on_drain;
	void *drain_arg;
	bool draining, closed;
};

/*
 * Does everything up to serving (see above). Returns 0, or a negative code
 * after logging why (bad config, Postgres unreachable, migration failed,
 * port taken); then the process should exit 1. --help prints the options
 * and returns TRYGG_ECLOSED (exit 0).
 */
int svc_init(svc *s, const svc_options *o) TRYGG_MUSTCHECK;

/* The loop to put the service's own handles on. */
uv_loop_t *svc_uv(svc *s);

/* Sets the callback that stops the service's own parts on SIGTERM. It must
 * call svc_drain_done() when they are stopped (possibly later). Without
 * one, the drain finishes at once. */
void svc_set_drain(svc *s, svc_drain_cb cb, void *arg);
void svc_drain_done(svc *s);

/* Runs until drained. Returns the exit code and frees everything. */
int svc_run(svc *s);

/* For a failure after svc_init (e.g. a socket that cannot listen): closes
 * and frees everything; returns 1, the exit code. The service must have
 * stopped its own parts first. */
int svc_abort(svc *s);

#endif
