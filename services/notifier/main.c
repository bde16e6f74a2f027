/*
 * trygg-notifier: routes reports to crews and units, delivers the work by
 * signed webhook and e-mail, takes acknowledgements, escalates, and closes
 * the loop with task events (issue 5; docs/notifier.md).
 *
 * main() only wires the parts together. The notifier publishes task
 * events, consumes intake's ReportReceived (intake_events.c) and walk-planner's
 * MailRequested and FindingTaskRequested (walk_planner_events.c) once routing is known
 * (directory.c), then runs the delivery worker (delivery.c) and the timers
 * (timers.c); it serves the crews' and staff's HTTP API (api.c).
 * `trygg-notifier admin ...` is the operator's command line instead
 * (admin.c).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "api.h"
#include "delivery.h"
#include "directory.h"
#include "intake_events.h"
#include "log.h"
#include "notifier.h"
#include "timers.h"
#include "walk_planner_events.h"

extern const struct migration notifier_migrations[];

static const config_option options[] = {
    SVC_CONFIG_OPTIONS(notifier_config, "8081"),
    SVC_PUBLISH_OPTIONS(notifier_config, "tcp://127.0.0.1:5572", "tcp://127.0.0.1:5573"),
    SVC_STREAM_OPTIONS(notifier_config, intake, "intake", "tcp://127.0.0.1:5570",
        "tcp://127.0.0.1:5571"),
    SVC_STREAM_OPTIONS(notifier_config, walk_planner, "walk_planner", "tcp://127.0.0.1:5574",
        "tcp://127.0.0.1:5575"),
    CONFIG_OPT_STRING("public_url", notifier_config, public_url, "http://127.0.0.1:8081", 0,
        "base URL of this service as crews reach it (links in messages)"),
    CONFIG_OPT_STRING("smtp_url", notifier_config, smtp_url, "", 0,
        "SMTP relay, e.g. smtp://127.0.0.1:25 (empty: no e-mail deliveries)"),
    CONFIG_OPT_STRING("smtp_from", notifier_config, smtp_from, "notifier@trygg.invalid", 0,
        "sender address of task e-mails"),
    CONFIG_OPT_STRING("timezone", notifier_config, timezone, "Europe/Stockholm", 0,
        "time zone of the routing rules' time-of-week windows"),
    CONFIG_OPT_STRING("link_secret", notifier_config, link_secret, "", CONFIG_SECRET,
        "signs e-mail links (empty: a secret generated once in the database)"),
    CONFIG_OPT_DURATION("webhook_timeout", notifier_config, webhook_timeout_ms, "5s", 100, 120000,
        0, "bound on one webhook attempt (an e-mail gets twice this)"),
    CONFIG_OPT_INT("max_attempts", notifier_config, max_attempts, "10", 1, 100, 0,
        "attempts per delivery before it becomes a dead letter"),
    CONFIG_OPT_DURATION("backoff_base", notifier_config, backoff_base_ms, "1s", 10, 3600000, 0,
        "delay after the first failed attempt (doubles per attempt, with jitter)"),
    CONFIG_OPT_DURATION("backoff_max", notifier_config, backoff_max_ms, "10m", 10, 86400000, 0,
        "longest delay between attempts"),
    CONFIG_OPT_INT("delivery_concurrency", notifier_config, delivery_concurrency, "64", 1, 10000, 0,
        "deliveries in flight at once, overall"),
    CONFIG_OPT_INT("endpoint_concurrency", notifier_config, endpoint_concurrency, "8", 1, 1000, 0,
        "deliveries in flight at once to one webhook URL or address"),
    CONFIG_OPT_DURATION("delivery_poll", notifier_config, delivery_poll_ms, "250ms", 10, 60000, 0,
        "fallback scan for due deliveries (retries wake no one)"),
    CONFIG_OPT_DURATION("timer_interval", notifier_config, timer_interval_ms, "1s", 10, 600000, 0,
        "how often due reminders and escalations are looked for"),
    CONFIG_OPT_DURATION("link_ttl", notifier_config, link_ttl_ms, "168h", 60000, 31536000000, 0,
        "how long acknowledge/done links in e-mails stay valid"),
    CONFIG_OPT_DURATION("routing_refresh", notifier_config, routing_refresh_ms, "30s", 100, 3600000,
        0, "periodic reload of units and rules (changes also notify)"),
    CONFIG_END,
};

/* LISTEN callbacks; the notifier outlives the db, so they never dangle. */
static void
on_deliveries_notify(void *arg, const char *channel, const char *payload)
{
	notifier *n = arg;
	TRYGG_UNUSED(channel);
	TRYGG_UNUSED(payload);
	if (!n->draining)
		delivery_worker_kick(n->deliveries);
}

static void
on_routing_notify(void *arg, const char *channel, const char *payload)
{
	notifier *n = arg;
	TRYGG_UNUSED(channel);
	TRYGG_UNUSED(payload);
	if (!n->draining)
		directory_reload(n->dir);
}

/* A batch of reports committed its tasks, deliveries and events: wake the
 * relay and the delivery worker in-process (no NOTIFY on the hot path). */
static void
on_inbox_committed(void *arg, uint64_t last_seq)
{
	notifier *n = arg;
	TRYGG_UNUSED(last_seq);
	if (!n->draining)
		notifier_after_commit(n, true);
}

/* Routing is known: start consuming reports and working. */
static void
on_ready(notifier *n)
{
	if (n->draining)
		return;
	if (svc_consume_start(&n->svc) != 0) {
		exit(1); /* cannot serve without it (logged); a supervisor restarts us */
	}
	if (delivery_worker_start(n, &n->deliveries) != 0 ||
	    task_timers_start(n, &n->timers) != 0) {
		log_error("worker_start_failed", NULL);
		exit(1);
	}
	log_info("notifier_ready", NULL);
}

static void
on_worker_stopped(void *arg)
{
	notifier *n = arg;
	n->deliveries = NULL;
	http_client_close(n->http);
	n->http = NULL;
	svc_drain_done(&n->svc);
}

/* SIGTERM, after the HTTP server and the inbox stopped: stop the timers
 * and reference data, let the deliveries in flight finish; svc then
 * flushes the outbox. */
static void
on_drain(svc *s, void *arg)
{
	notifier *n = arg;
	TRYGG_UNUSED(s);
	n->draining = true;
	task_timers_stop(n->timers);
	n->timers = NULL;
	directory_stop(n->dir);
	n->dir = NULL;
	delivery_worker_stop(n->deliveries, on_worker_stopped, n);
}

static void
register_metrics(notifier *n)
{
	metrics *m = n->svc.metrics;
	n->m_reports = metrics_counter(m, "trygg_notifier_reports_total",
	    "ReportReceived events routed (including replays after a crash).", NULL);
	n->m_unmatched = metrics_counter(m, "trygg_notifier_unmatched_total",
	    "Reports no rule matched, routed to a default unit.", NULL);
	n->m_sent = metrics_counter(m, "trygg_notifier_delivery_success_total",
	    "Delivery attempts that succeeded.", NULL);
	n->m_failed = metrics_counter(m, "trygg_notifier_delivery_failure_total",
	    "Delivery attempts that failed.", NULL);
	n->m_dead = metrics_counter(m, "trygg_notifier_dead_letters_total",
	    "Deliveries that ran out of attempts (dead letters).", NULL);
	n->m_latency = metrics_histogram(m, "trygg_notifier_delivery_seconds",
	    "Duration of one delivery attempt.", NULL, metrics_latency_buckets,
	    metrics_latency_nbuckets);
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "admin") == 0)
		return admin_main(argc - 2, argv + 2);
	static notifier n;
	svc_options so = {.name = "notifier",
	    .schema = "notifier",
	    .options = options,
	    .config = &n.cfg,
	    .common = &n.cfg.common,
	    .migrations = notifier_migrations,
	    .argc = argc,
	    .argv = argv};
	int rv = svc_init(&n.svc, &so);
	if (rv != 0)
		return rv == TRYGG_ECLOSED ? 0 : 1;
	if (n.cfg.timezone[0]) {
		setenv("TZ", n.cfg.timezone, 1);
		tzset();
	}
	register_metrics(&n);
	if (http_client_new(svc_uv(&n.svc), &n.http) != 0 || svc_publish(&n.svc, "notifier") != 0 ||
	    svc_consume(&n.svc,
	        &(svc_stream){.publisher = "intake",
	            .urls = &n.cfg.intake,
	            .apply = intake_events_apply,
	            .on_committed = on_inbox_committed,
	            .flush = intake_events_flush,
	            .arg = &n,
	            .start_later = true}) != 0 ||
	    svc_consume(&n.svc,
	        &(svc_stream){.publisher = "walk-planner",
	            .urls = &n.cfg.walk_planner,
	            .apply = walk_planner_events_apply,
	            .on_committed = on_inbox_committed,
	            .arg = &n,
	            .start_later = true}) != 0)
		goto fail;
	n.relay = svc_relay(&n.svc);
	if (db_listen(n.svc.db, "notifier_deliveries", on_deliveries_notify, &n) != 0 ||
	    db_listen(n.svc.db, "notifier_routing", on_routing_notify, &n) != 0 ||
	    api_register(&n) != 0 || directory_start(&n, on_ready, &n.dir) != 0)
		goto fail;
	svc_set_drain(&n.svc, on_drain, &n);
	rv = svc_run(&n.svc);
	strbuf_fini(&n.ingest_rows);
	return rv;
fail:
	http_client_close(n.http);
	return svc_abort(&n.svc);
}
