/*
 * svc.h: what every Trygg program does the same way, in one place.
 *
 * A service declares its config struct (embedding svc_config as `common`)
 * and option table (starting with SVC_CONFIG_OPTIONS, plus
 * SVC_PUBLISH_OPTIONS if it publishes and one SVC_STREAM_OPTIONS per stream
 * it consumes), then says what it is:
 *
 *   svc s;
 *   if (svc_init(&s, &(svc_options){.name = "intake", .schema = "intake",
 *           .options = table, .config = &cfg, .common = &cfg.common,
 *           .migrations = intake_migrations, .argc = argc, .argv = argv}) != 0)
 *       return 1;                            // config/migration errors are logged
 *   svc_publish(&s, "intake");               // publishes ReportReceived
 *   svc_consume(&s, &(svc_stream){.publisher = "notifier",
 *       .urls = &cfg.notifier, .apply = notifier_events_apply, .arg = &in});
 *   ... its own parts, routes on s.http, svc_set_drain(&s, ...) ...
 *   return svc_run(&s);                      // serves until SIGTERM, then drains
 *
 * svc_init: loads and validates the config (--help prints the options),
 * sets up JSON logging, applies the schema's migrations (waiting for
 * Postgres up to db_wait), opens the loop, a pool of async db clients and the
 * HTTP server with /metrics, /healthz and /readyz (ready = Postgres
 * connected, not draining, every consumed stream applying, and every extra
 * check the service adds).
 *
 * Event plumbing (DESIGN.md section 2) belongs to the runtime:
 *   svc_publish  starts the outbox relay on the dedicated client s->db with
 *                TRYGG_BUS_PUB_URL / TRYGG_BUS_REP_URL, registers its
 *                metrics; the service calls svc_relay_kick() after each
 *                commit that wrote outbox rows; the drain flushes it.
 *   svc_consume  starts an inbox on the dedicated client s->inbox_db for one
 *                publisher's stream, TRYGG_BUS_<PUBLISHER>_SUB_URL /
 *                TRYGG_BUS_<PUBLISHER>_REQ_URL (each a comma-separated list:
 *                one URL per replica of that publisher), registers its
 *                metrics and a /readyz check "inbox_<publisher>" whose
 *                detail shows set-aside events and why a stream halted.
 *
 * Drain on SIGTERM, always in this order: the HTTP server stops accepting
 * (and /readyz says draining), every inbox stops, the service's drain
 * callback stops its own parts and calls svc_drain_done() when its
 * in-flight work is done, the relay flushes what is left in the outbox,
 * then the db clients and HTTP server close and the loop ends. SIGHUP
 * reloads the reloadable options (log level).
 */
#ifndef TRYGG_SVC_H
#define TRYGG_SVC_H

#include "config.h"
#include "db.h"
#include "db_pool.h"
#include "inbox.h"
#include "health.h"
#include "http_server.h"
#include "loop.h"
#include "metrics.h"
#include "migrate.h"
#include "outbox.h"

/* The options every service has; embed as the first member `common`. */
typedef struct svc_config {
	char *database_url;
	char *http_addr;
	int http_port;
	bool http_reuse_port;
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
	bool inbox_skip_purged;
	/* Set by SVC_PUBLISH_OPTIONS; NULL in a service that does not publish. */
	char *bus_pub_url;
	char *bus_rep_url;
	uint64_t outbox_retention_ms;
} svc_config;

/* Where one consumed stream comes from; a member of the service's config
 * struct, filled by SVC_STREAM_OPTIONS. Each may be a comma-separated list
 * of URLs, one per replica of the publisher. NULL: not configured. */
typedef struct svc_stream_urls {
	char *sub_url;
	char *req_url;
} svc_stream_urls;

/* The table rows for svc_config; `port` is the default HTTP port string. */
#define SVC_CONFIG_OPTIONS(st, port) \
	CONFIG_OPT_URL("database_url", st, common.database_url, NULL, \
	    CONFIG_REQUIRED | CONFIG_SECRET, "Postgres URL of this service's role"), \
	    CONFIG_OPT_STRING("http_addr", st, common.http_addr, "127.0.0.1", 0, \
	        "address the HTTP port binds to (0.0.0.0 in containers)"), \
	    CONFIG_OPT_INT("http_port", st, common.http_port, port, 1, 65535, 0, \
	        "HTTP port: API, /metrics, /healthz, /readyz"), \
	    CONFIG_OPT_BOOL("http_reuse_port", st, common.http_reuse_port, "false", 0, \
	        "share the HTTP port with other processes (SO_REUSEPORT) on purpose; " \
	        "otherwise a port in use stops the start"), \
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
	        "statement timeout)"), \
	    CONFIG_OPT_BOOL("inbox_skip_purged", st, common.inbox_skip_purged, "false", 0, \
	        "go past (and record) events a publisher purged instead of halting the stream")

/* The rows of a service that publishes: TRYGG_BUS_PUB_URL, TRYGG_BUS_REP_URL
 * (listen addresses: each replica needs its own) and the outbox retention. */
#define SVC_PUBLISH_OPTIONS(st, pub_default, rep_default) \
	CONFIG_OPT_URL("bus_pub_url", st, common.bus_pub_url, pub_default, 0, \
	    "where this service publishes its events (one per replica)"), \
	    CONFIG_OPT_URL("bus_rep_url", st, common.bus_rep_url, rep_default, 0, \
	        "where this service serves replays of its events (one per replica)"), \
	    CONFIG_OPT_DURATION("outbox_retention", st, common.outbox_retention_ms, "720h", 1000, \
	        INT64_C(315360000000), 0, "how long published events stay replayable")

/* The rows of one consumed stream: TRYGG_BUS_<PUB>_SUB_URL and
 * TRYGG_BUS_<PUB>_REQ_URL, where `pub` is the publisher's name as a string
 * literal ("intake") and `member` an svc_stream_urls in `st`. */
#define SVC_STREAM_OPTIONS(st, member, pub, sub_default, req_default) \
	CONFIG_OPT_URL("bus_" pub "_sub_url", st, member.sub_url, sub_default, 0, \
	    pub "'s event stream: one URL per replica, comma-separated"), \
	    CONFIG_OPT_URL("bus_" pub "_req_url", st, member.req_url, req_default, 0, \
	        pub "'s replay socket: one URL per replica, comma-separated")

typedef struct svc svc;
typedef void (*svc_drain_cb)(svc *s, void *arg);

/* One stream a service consumes (svc_consume). */
typedef struct svc_stream {
	const char *publisher;       /* e.g. "intake"; names the /readyz check */
	const svc_stream_urls *urls; /* from the config (SVC_STREAM_OPTIONS) */
	inbox_apply_fn apply;        /* the effect of one event (inbox.h) */
	/* Optional: after each committed batch of effects (inbox.h). */
	void (*on_committed)(void *arg, uint64_t last_seq);
	/* Optional: the batch-level hook, one set statement per batch (inbox.h). */
	void (*flush)(void *arg, db_batch *b);
	void *arg;              /* for apply, on_committed and flush */
	unsigned batch_max;     /* events per transaction; 0: the inbox's default */
	unsigned queue_max;     /* events held in memory; 0: the inbox's default */
	size_t queue_max_bytes; /* bytes held in memory; 0: the inbox's default */
	/* Declare now, start later with svc_consume_start() (e.g. once the
	 * service's reference data is loaded); /readyz fails meanwhile. */
	bool start_later;
} svc_stream;

#define SVC_MAX_STREAMS 8

typedef struct svc_inbox {
	svc *svc;
	svc_stream st;
	char *publisher;
	char *check_name; /* "inbox_<publisher>" */
	inbox *in;
} svc_inbox;

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
	outbox_relay *relay; /* set by svc_publish */
	svc_inbox streams[SVC_MAX_STREAMS];
	size_t nstreams;
	svc_drain_cb on_drain;
	void *drain_arg;
	bool draining, drain_done, closed;
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

/*
 * Declares that this service publishes as `publisher` (usually its name):
 * starts the outbox relay on s->db, listening on common.bus_pub_url and
 * common.bus_rep_url (the table needs SVC_PUBLISH_OPTIONS), with its
 * metrics; the drain flushes and stops it. Returns 0, TRYGG_EINVAL if the
 * URLs are not configured, or TRYGG_EBUS when a socket cannot listen
 * (logged); then svc_abort().
 */
int svc_publish(svc *s, const char *publisher) TRYGG_MUSTCHECK;

/* Wakes the relay: call after every commit that wrote outbox rows (what
 * keeps latency low; a timer and NOTIFY cover a missed kick). No-op in a
 * service that does not publish, or while closing. */
void svc_relay_kick(svc *s);

/* The relay, for parts that kick it themselves; NULL if not publishing. */
outbox_relay *svc_relay(svc *s);

/*
 * Declares a consumed stream and, unless st->start_later, starts its inbox
 * on s->inbox_db; registers its metrics and the /readyz check
 * "inbox_<publisher>". A stream whose URLs are unset is logged as off and
 * skipped (no check). The arrays are copied; st->arg must outlive the svc.
 * Returns 0, TRYGG_EINVAL (too many streams, missing publisher or apply),
 * or TRYGG_EBUS from the inbox (logged); then svc_abort().
 */
int svc_consume(svc *s, const svc_stream *st) TRYGG_MUSTCHECK;

/* Starts the streams declared with start_later. Returns as svc_consume. */
int svc_consume_start(svc *s) TRYGG_MUSTCHECK;

/* The inbox of a consumed stream, or NULL (not started, stopped, unknown). */
inbox *svc_inbox_of(svc *s, const char *publisher);

/*
 * Sets the callback that stops the service's own parts on SIGTERM, after
 * the HTTP server and the inboxes stopped. It must call svc_drain_done()
 * when its in-flight work is done (possibly later); svc then flushes the
 * relay and closes. Without one, that happens at once.
 */
void svc_set_drain(svc *s, svc_drain_cb cb, void *arg);
void svc_drain_done(svc *s);

/* Runs until drained. Returns the exit code and frees everything. */
int svc_run(svc *s);

/* For a failure after svc_init (e.g. a socket that cannot listen): stops
 * the relay and inboxes, closes and frees everything; returns 1, the exit
 * code. The service must have stopped its own parts first. */
int svc_abort(svc *s);

#endif
