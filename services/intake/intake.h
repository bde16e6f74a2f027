/*
 * intake.h: the intake service's shared state and the pieces main.c wires
 * together.
 *
 * intake is the gateway partners post reports to: the native JSON API
 * (api.c) and Open311 GeoReport v2 (open311.c) on one HTTP port, both
 * validating with report.c, authenticating through the directory
 * (directory.c) and writing through the group-committing store (store.c),
 * which adds a ReportReceived event to the outbox in the same transaction.
 * status.c follows the notifier's task events to move report status, and
 * purges contact details after their retention period.
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
	ratelimit_table *auth_fail_rl; /* failed authentications, by address (api.c) */
} intake;

/* How a response is formatted. */
typedef enum api_format {
	FMT_NATIVE, /* /v1: {"error":{code,message,field,request_id}} */
	FMT_O311_JSON,
	FMT_O311_XML,
} api_format;

/* Answers an error in the request's format; Retry-After is added for 429
 * and 503 when retry_after_s > 0. */
void intake_error(http_request *req, api_format fmt, unsigned status, const char *code,
    const char *message, const char *field, unsigned retry_after_s);

/* Adds a response header whose value we made (so cannot be refused). */
void intake_header(http_request *req, const char *name, const char *value);

/* Like http_respond_json, with numbers at 10 significant digits; steals body. */
void intake_respond_json(http_request *req, unsigned status, json_t *body);

/* Responds with JSON text built in body (application/json) and frees it. */
struct strbuf;
void intake_respond_text(http_request *req, unsigned status, struct strbuf *body);

/* Checks the Content-Type's media type (parameters ignored). */
bool intake_content_type_is(http_request *req, const char *media_type);

/*
 * Reads the optional Idempotency-Key header into *out (NULL when absent).
 * Returns false after answering 400 in `fmt` when it is malformed.
 */
bool intake_idem_header(http_request *req, api_format fmt, const char **out);

/* The validation context for a partner. */
void intake_report_ctx(intake *in, const partner *p, report_ctx *ctx);

/* Takes a rate-limit token for p; on false the request was answered 429. */
bool intake_rate_limit(intake *in, http_request *req, api_format fmt, partner *p);

/* The same for a request without a key, by client address. */
bool intake_rate_limit_public(intake *in, http_request *req, api_format fmt);

/* Registers the routes of each API. */
int api_register(intake *in) TRYGG_MUSTCHECK;
int open311_register(intake *in) TRYGG_MUSTCHECK;

/* The purge timer (status_start/stop); status_apply is the effect of the
 * notifier's task events, the stream main.c consumes. */
int status_start(intake *in) TRYGG_MUSTCHECK;
void status_stop(intake *in);
/* The inbox's apply function (exposed for tests). */
int status_apply(void *arg, db_batch *b, const Trygg__Bus__Envelope *ev);
/* Copies a crew's note into out (len bytes) as public text: valid UTF-8,
 * controls as spaces, what XML cannot carry as U+FFFD, cut at a character
 * boundary (exposed for tests). */
void status_clean_note(const char *in, char *out, size_t len);

/* `trygg-intake admin ...`: returns the process exit code. */
int admin_main(int argc, char **argv);

#endif

/*
 * An asynchronous request in either API. Handler-specific call structs
 * start with this member, are allocated with xcalloc and freed with
 * free() by whoever answers the request last.
 */
typedef struct intake_call intake_call;
struct intake_call {
	intake *in;
	http_request *req;
	api_format fmt;
	partner *p;                   /* the authenticated partner, or NULL */
	void (*next)(intake_call *c); /* continues after authentication */
	void (*fini)(intake_call *c); /* frees what the call holds (may be NULL) */
};

/* Answers an error and frees the call. */
void intake_call_fail(intake_call *c, unsigned status, const char *code, const char *message,
    const char *field, unsigned retry_after_s);
/* Answers 503 with Retry-After: 2 (Postgres unreachable) and frees c. */
void intake_call_unavailable(intake_call *c);

/* Frees the call (after it was answered). */
void intake_call_free(intake_call *c);

/*
 * Authenticates `key` (not NULL, len bytes) and takes a rate-limit token,
 * then calls c->next with c->p set. On failure answers (401/403 for an
 * unknown key, 429, 503) and frees the call.
 */
void intake_call_auth(intake_call *c, const char *key, size_t len);

/* Renders a created report (or, with replay, the first report of an
 * idempotent retry: a row whose REPORT_COLUMNS start at column 1). */
typedef void (
    *intake_created_fn)(intake_call *c, const report_in *r, int64_t srid, const PGresult *replay);

/*
 * Sends a validated report to the store (taking ownership of *r) and, once
 * its outcome is known, calls created() or answers 409 (idempotency key
 * reused with another request), 503 or 500 and frees the call.
 */
void intake_call_submit(intake_call *c, report_in *r, intake_created_fn created);
