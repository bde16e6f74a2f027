/*
 * request.h: the request plumbing both of intake's APIs share, the native
 * /v1 API (api.c) and Open311 (open311.c): errors in the request's format,
 * response helpers, the Idempotency-Key header, rate limits, and the
 * asynchronous call that authenticates a partner and submits a report.
 *
 * Ownership: an intake_call is the handler's until it is answered; every
 * intake_call_* function that answers the request also frees the call.
 */
#ifndef INTAKE_REQUEST_H
#define INTAKE_REQUEST_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "http_server.h"
#include "intake.h"
#include "query.h"
#include "report.h"
#include "strbuf.h"

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
void intake_respond_text(http_request *req, unsigned status, strbuf *body);

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

/* A new batch that runs the finished query `q` planned for its own
 * parameters (never a cached generic plan: request.c says why). Its rows
 * are the batch's last result (QUERY_ROWS). The caller owns the batch.
 * (Here, not in query.c: query.c only writes SQL and links without db.c,
 * as the fuzz target does.) */
db_batch *query_batch(const query *q);

#endif
