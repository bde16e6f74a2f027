/*
 * reporting.h: the reporting service's configuration and top-level object,
 * shared by its modules.
 *
 * trygg-reporting follows the streams of intake (reports, places), the
 * notifier (tasks) and walk-planner (walks, findings, survey figures) and
 * keeps aggregates of them in its schema (one consumer file per stream:
 * intake_events.c, notifier_events.c, walk_planner_events.c; the SQL
 * functions of sql/001_init.sql do the arithmetic in the inbox's
 * transaction). It
 * serves the situation picture (picture.c, api.c) as JSON, CSV and
 * GeoJSON, suppressed for the public (suppress.c), with commentary and
 * published versions. It publishes nothing.
 *
 * Threading: everything runs on the service's loop thread.
 */
#ifndef REPORTING_REPORTING_H
#define REPORTING_REPORTING_H

#include "svc.h"

typedef struct reporting_config {
	svc_config common;
	svc_stream_urls intake;   /* TRYGG_BUS_INTAKE_SUB_URL, _REQ_URL */
	svc_stream_urls notifier; /* TRYGG_BUS_NOTIFIER_SUB_URL, _REQ_URL */
	svc_stream_urls walks;    /* TRYGG_BUS_WALK_PLANNER_SUB_URL, _REQ_URL */
	char *district_name;
	char *district_place;
	int suppress_threshold;
	uint64_t picture_cache_ms;
} reporting_config;

typedef struct reporting {
	reporting_config cfg;
	svc svc;
	metric_counter *m_reports;
	metric_counter *m_tasks;
	metric_counter *m_walks;
	metric_counter *m_cache_hits;
	/* Raised by every commit that changes figures or comments: a cached
	 * picture of an older generation is never served (api.c). */
	uint64_t generation;
} reporting;

/* Something the picture shows changed (an inbox batch, a comment). */
void reporting_changed(reporting *r);

/* Inbox apply callbacks (inbox.h), one per stream, each in the file named
 * after the stream; arg is the reporting. */
int intake_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev);
int notifier_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev);
int walk_planner_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev);

/* Registers the HTTP routes (api.c). Returns 0 or the route error. */
int api_register(reporting *r) TRYGG_MUSTCHECK;

/* `trygg-reporting admin ...` (admin.c); returns the exit code. */
int admin_main(int argc, char **argv);

#endif
