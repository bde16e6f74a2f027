/*
 * intake.h: the intake service's shared state and the pieces main.c wires
 * together.
 *
 * intake is the gateway partners post reports to: the native JSON API
 * (api.c) and Open311 GeoReport v2 (open311.c) on one HTTP port, both
 * validating with report.c, authenticating through the directory
 * (directory.c) and writing through the group-committing store (store.c),
 * which adds a ReportReceived event to the outbox in the same transaction.
 * notifier_events.c follows the notifier's task events to move report
 * status; purge.c purges contact details after their retention period.
 * request.c holds the plumbing both APIs share.
 */
#ifndef INTAKE_INTAKE_H
#define INTAKE_INTAKE_H

#include "directory.h"
#include "inbox.h"
#include "outbox.h"
#include "store.h"
#include "svc.h"

typedef struct intake_config {
	svc_config common;
	svc_stream_urls notifier; /* TRYGG_BUS_NOTIFIER_SUB_URL, _REQ_URL */
	char *district_box;
	uint64_t directory_refresh_ms;
	uint64_t contact_retention_ms;
	uint64_t idempotency_retention_ms;
	uint64_t purge_interval_ms;
	int commit_batch_max;
	int commit_parallel;
	int list_limit_max;
	int public_rate_per_min;
	int auth_fail_per_min;
	char *public_url;
} intake_config;

typedef struct intake {
	intake_config cfg;
	svc svc;
	directory *dir;
	store *store;
	outbox_relay *relay; /* svc's, for the store's kicks */
	uv_timer_t purge_timer;
	bool purge_running;
	double district_box[4];
	bool has_district_box;
	metric_counter *m_rejected, *m_rate_limited;
	ratelimit_table *public_rl;    /* anonymous Open311 clients, by address */
	ratelimit_table *auth_fail_rl; /* failed authentications, by address (request.c) */
} intake;

/* Registers the routes of each API. */
int api_register(intake *in) TRYGG_MUSTCHECK;
int open311_register(intake *in) TRYGG_MUSTCHECK;

/* The purge of contact details and idempotency keys (purge.c): a timer
 * started by purge_start, closed by purge_stop. */
int purge_start(intake *in) TRYGG_MUSTCHECK;
void purge_stop(intake *in);

/* The effect of the notifier's task events on reports
 * (notifier_events.c): the inbox's apply function on the stream main.c
 * consumes (exposed for tests). */
int notifier_events_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev);
/* Copies a crew's note into out (len bytes) as public text: valid UTF-8,
 * controls as spaces, what XML cannot carry as U+FFFD, cut at a character
 * boundary (exposed for tests). */
void notifier_events_clean_note(const char *in, char *out, size_t len);

/* `trygg-intake admin ...`: returns the process exit code. */
int admin_main(int argc, char **argv);

#endif
