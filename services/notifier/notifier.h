/*
 * notifier.h: the notifier service's configuration and its top-level
 * object, shared by its modules.
 *
 * The notifier turns ReportReceived events from intake into tasks for
 * crews and units (intake_events.c, routing.c), delivers them by signed webhook
 * and e-mail (delivery.c, mail.c, sign.c, backoff.c), takes
 * acknowledgements and completions over HTTP and signed links (api.c),
 * reminds and escalates on timers kept in the database (timers.c), and
 * publishes every task transition through its outbox. The task state
 * machine itself is in sql/001_init.sql, so that a transition and its
 * event always commit together.
 *
 * Threading: everything runs on the service's loop thread.
 */
#ifndef NOTIFIER_NOTIFIER_H
#define NOTIFIER_NOTIFIER_H

#include <stdbool.h>
#include <stdint.h>

#include "http_client.h"
#include "inbox.h"
#include "metrics.h"
#include "outbox.h"
#include "routing.h"
#include "strbuf.h"
#include "svc.h"

typedef struct notifier_config {
	svc_config common;
	svc_stream_urls intake;       /* TRYGG_BUS_INTAKE_SUB_URL, _REQ_URL */
	svc_stream_urls walk_planner; /* TRYGG_BUS_WALK_PLANNER_SUB_URL, _REQ_URL */
	char *public_url;
	char *smtp_url;
	char *smtp_from;
	char *timezone;
	char *link_secret;
	uint64_t webhook_timeout_ms;
	int max_attempts;
	uint64_t backoff_base_ms;
	uint64_t backoff_max_ms;
	int delivery_concurrency;
	int endpoint_concurrency;
	uint64_t delivery_poll_ms;
	uint64_t timer_interval_ms;
	uint64_t link_ttl_ms;
	uint64_t routing_refresh_ms;
} notifier_config;

typedef struct directory directory;
typedef struct delivery_worker delivery_worker;
typedef struct task_timers task_timers;

typedef struct notifier {
	notifier_config cfg;
	svc svc;
	outbox_relay *relay; /* svc's (svc_publish), kicked after commits */
	http_client *http;
	directory *dir;
	delivery_worker *deliveries;
	task_timers *timers;
	bool draining;
	/* The intake inbox's run being built: its routed reports as a JSON
	 * array (intake_events_apply appends, intake_events_flush sends). */
	strbuf ingest_rows;
	unsigned ingest_count;
	/* metrics */
	metric_counter *m_reports;   /* ReportReceived events routed */
	metric_counter *m_unmatched; /* of which no rule matched (default unit) */
	metric_counter *m_sent;      /* delivery attempts that succeeded */
	metric_counter *m_failed;    /* delivery attempts that failed */
	metric_counter *m_dead;      /* deliveries that became dead letters */
	metric_histogram *m_latency; /* webhook/e-mail attempt duration (s) */
} notifier;

/* True when e-mail deliveries are configured (smtp_url set). */
bool notifier_email_enabled(const notifier *n);

/* The current routing snapshot (NULL until first loaded). */
const routing_table *notifier_routes(const notifier *n);

/* The secret that signs e-mail links ("" until loaded). */
const char *notifier_link_secret(const notifier *n);

/* Everything that must happen after a commit that may have written task
 * events or deliveries: kicks the outbox relay and the delivery worker. */
void notifier_after_commit(notifier *n, bool deliveries);

#endif
