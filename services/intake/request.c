/*
 * request.c: the request plumbing both APIs share (see request.h): errors
 * in the request's format, response helpers, authentication with its
 * failure limit, rate limiting, and submission with idempotency.
 */
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "log.h"
#include "query.h"
#include "render.h"

/* Open311 clients want the charset said (and JSON is UTF-8 anyway). */
#define JSON_TYPE "application/json; charset=utf-8"

void
intake_header(http_request *req, const char *name, const char *value)
{
	/* Our header names and values are constants or digits: a refusal
	 * would be a bug, logged by the server; the response still goes out. */
	if (http_response_header(req, name, value) != 0)
		log_warn("header_refused", "\"name\":\"%s\"", name);
}

void
intake_error(http_request *req, api_format fmt, unsigned status, const char *code,
    const char *message, const char *field, unsigned retry_after_s)
{
	char ra[16];
	if (retry_after_s > 0) {
		snprintf(ra, sizeof(ra), "%u", retry_after_s);
		intake_header(req, "Retry-After", ra);
	}
	if (status == 401 && fmt == FMT_NATIVE)
		intake_header(req, "WWW-Authenticate", "Bearer realm=\"trygg\"");
	if (fmt == FMT_NATIVE) {
		http_respond_error(req, status, code, message, field && field[0] ? field : NULL);
		return;
	}
	char text[512];
	if (field && field[0])
		snprintf(text, sizeof(text), "%s: %s", field, message);
	else
		snprintf(text, sizeof(text), "%s", message);
	size_t len;
	char *body = render_open311_error(fmt == FMT_O311_XML, status, text, &len);
	http_respond(req, status, fmt == FMT_O311_XML ? "text/xml; charset=utf-8" : JSON_TYPE, body,
	    len);
	free(body);
}

void
intake_respond_json(http_request *req, unsigned status, json_t *body)
{
	/* Ten significant digits: positions to about a centimetre, without
	 * the binary noise of %.17g (18.063700000000001). */
	char *s = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
	json_decref(body);
	if (s == NULL) {
		http_respond_error(req, 500, "internal", "could not encode the response", NULL);
		return;
	}
	http_respond(req, status, JSON_TYPE, s, strlen(s));
	free(s);
}

void
intake_respond_text(http_request *req, unsigned status, strbuf *body)
{
	http_respond(req, status, JSON_TYPE, body->s ? body->s : "", body->len);
	strbuf_fini(body);
}

bool
intake_idem_header(http_request *req, api_format fmt, const char **out)
{
	*out = http_request_header(req, "Idempotency-Key");
	if (*out != NULL && !intake_idem_key_ok(*out)) {
		intake_error(req, fmt, 400, "invalid_value",
		    "Idempotency-Key must be 1-255 printable ASCII characters", "Idempotency-Key",
		    0);
		return false;
	}
	return true;
}

bool
intake_content_type_is(http_request *req, const char *media_type)
{
	const char *ct = http_request_header(req, "Content-Type");
	if (ct == NULL)
		return false;
	while (*ct == ' ')
		ct++;
	size_t n = strlen(media_type);
	return strncasecmp(ct, media_type, n) == 0 &&
	    (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

void
intake_report_ctx(intake *in, const partner *p, report_ctx *ctx)
{
	ctx->categories = directory_categories(in->dir);
	ctx->places = directory_places(in->dir);
	ctx->district_box = in->has_district_box ? in->district_box : NULL;
	ctx->partner = p;
}

bool
intake_rate_limit(intake *in, http_request *req, api_format fmt, partner *p)
{
	unsigned retry;
	if (ratelimit_take(&p->rl, trygg_now_ns(), &retry))
		return true;
	metric_counter_inc(in->m_rate_limited);
	char msg[160];
	snprintf(msg, sizeof(msg), "rate limit of %d requests per minute exceeded; retry in %u s",
	    p->rate_per_min, retry);
	intake_error(req, fmt, 429, "rate_limited", msg, NULL, retry);
	return false;
}

bool
intake_rate_limit_public(intake *in, http_request *req, api_format fmt)
{
	unsigned retry;
	if (ratelimit_table_take(in->public_rl, http_request_client_addr(req), trygg_now_ns(),
	        &retry))
		return true;
	metric_counter_inc(in->m_rate_limited);
	char msg[160];
	snprintf(msg, sizeof(msg),
	    "rate limit of %d requests per minute per address exceeded; retry in %u s, or use "
	    "an api_key",
	    in->cfg.public_rate_per_min, retry);
	intake_error(req, fmt, 429, "rate_limited", msg, NULL, retry);
	return false;
}

void
intake_call_free(intake_call *c)
{
	if (c->fini)
		c->fini(c);
	free(c);
}

void
intake_call_fail(intake_call *c, unsigned status, const char *code, const char *message,
    const char *field, unsigned retry_after_s)
{
	if (status >= 400 && status < 500)
		metric_counter_inc(c->in->m_rejected);
	intake_error(c->req, c->fmt, status, code, message, field, retry_after_s);
	intake_call_free(c);
}

void
intake_call_unavailable(intake_call *c)
{
	intake_call_fail(c, 503, "unavailable", "the database is unavailable; retry later", NULL,
	    2);
}

/* Failed authentications per client address: the table is made on first
 * use (main.c only wires options). */
static ratelimit_table *
auth_fail_table(intake *in)
{
	if (in->auth_fail_rl == NULL) {
		double per_min = in->cfg.auth_fail_per_min > 0 ? in->cfg.auth_fail_per_min : 60;
		in->auth_fail_rl = xcalloc(1, sizeof(*in->auth_fail_rl));
		ratelimit_table_init(in->auth_fail_rl, per_min / 60.0,
		    per_min / 10.0 < 10 ? 10 : per_min / 10.0);
	}
	return in->auth_fail_rl;
}

/* Answers 429 for an address whose failed authentications ran out. */
static void
auth_fail_limited(intake_call *c, unsigned retry)
{
	metric_counter_inc(c->in->m_rate_limited);
	char msg[160];
	snprintf(msg, sizeof(msg),
	    "too many failed authentications from this address (%d a minute); retry in %u s",
	    c->in->cfg.auth_fail_per_min, retry);
	intake_call_fail(c, 429, "rate_limited", msg, NULL, retry);
}

static void
auth_done(void *arg, enum directory_auth result, partner *p)
{
	intake_call *c = arg;
	if (result == DIRECTORY_AUTH_UNAVAILABLE) {
		intake_call_unavailable(c);
		return;
	}
	if (result == DIRECTORY_AUTH_NOT_ASKED) {
		unsigned retry = 1;
		ratelimit_table_peek(auth_fail_table(c->in), http_request_client_addr(c->req),
		    trygg_now_ns(), &retry);
		auth_fail_limited(c, retry);
		return;
	}
	if (result != DIRECTORY_AUTH_OK) {
		unsigned retry;
		/* The failure spends one of the address's tokens. */
		(void)ratelimit_table_take(auth_fail_table(c->in), http_request_client_addr(c->req),
		    trygg_now_ns(), &retry);
		/* Open311 answers an invalid api_key with 403, as the spec says. */
		bool o311 = c->fmt != FMT_NATIVE;
		intake_call_fail(c, o311 ? 403 : 401, "invalid_key",
		    "the API key is unknown or revoked", o311 ? "api_key" : "Authorization", 0);
		return;
	}
	if (!intake_rate_limit(c->in, c->req, c->fmt, p)) {
		intake_call_free(c);
		return;
	}
	c->p = p;
	c->next(c);
}

void
intake_call_auth(intake_call *c, const char *key, size_t len)
{
	if (!directory_loaded(c->in->dir)) {
		intake_call_fail(c, 503, "unavailable", "starting up; retry later", NULL, 1);
		return;
	}
	/* An address out of failed authentications may still use a key intake
	 * knows, but no unknown key costs a query. */
	unsigned retry;
	bool may_query = ratelimit_table_peek(auth_fail_table(c->in),
	    http_request_client_addr(c->req), trygg_now_ns(), &retry);
	directory_authenticate(c->in->dir, key, len, may_query, auth_done, c);
}

/* ---- submission and idempotency ---- */

typedef struct submit_call {
	intake_call *c;
	intake_created_fn created;
	uint8_t hash[AUTH_HASH_LEN];
} submit_call;

static void
idem_done(void *arg, const db_reply *rep)
{
	submit_call *s = arg;
	intake_call *c = s->c;
	if (rep->err != 0) {
		intake_call_unavailable(c);
	} else if (PQntuples(rep->results[0]) != 1) {
		/* The key's first use has not committed: it is in flight in
		 * another transaction. The client should retry. */
		intake_call_fail(c, 409, "idempotency_in_progress",
		    "a request with this Idempotency-Key is still being processed; retry",
		    "Idempotency-Key", 1);
	} else {
		char hex[2 * AUTH_HASH_LEN + 1];
		crypto_hex(s->hash, AUTH_HASH_LEN, hex);
		const PGresult *res = rep->results[0];
		if (strcmp(PQgetvalue(res, 0, 0), hex) != 0) {
			intake_call_fail(c, 409, "idempotency_key_reused",
			    "this Idempotency-Key was used with a different request body",
			    "Idempotency-Key", 0);
		} else {
			intake_header(c->req, "Idempotent-Replayed", "true");
			s->created(c, NULL, 0, res);
			intake_call_free(c);
		}
	}
	free(s);
}

static void
stored(void *arg, store_outcome outcome, const report_in *r, int64_t srid)
{
	submit_call *s = arg;
	intake_call *c = s->c;
	switch (outcome) {
	case STORE_CREATED:
		s->created(c, r, srid, NULL);
		intake_call_free(c);
		free(s);
		return;
	case STORE_DUPLICATE: {
		char pid[16];
		snprintf(pid, sizeof(pid), "%d", c->p->id);
		const char *v[2] = {pid, r->idem_key};
		memcpy(s->hash, r->request_hash, AUTH_HASH_LEN);
		db_batch *b = db_batch_new();
		db_batch_add(b, QUERY_IDEMPOTENCY, 2, v);
		if (db_pool_submit(c->in->svc.pool, b, idem_done, s) != 0) {
			db_batch_free(b);
			intake_call_unavailable(c);
			free(s);
		}
		return;
	}
	case STORE_UNAVAILABLE:
		intake_header(c->req, "Trygg-Outcome", "not-stored");
		intake_call_fail(c, 503, "unavailable",
		    "the database is unavailable; the report was not stored, retry later", NULL, 2);
		break;
	case STORE_UNKNOWN:
		/* The connection broke after the report was sent and no
		 * connection could tell whether it committed (docs/intake.md). */
		intake_header(c->req, "Trygg-Outcome", "unknown");
		intake_header(c->req, "Trygg-Report-Id", r->id);
		intake_call_fail(c, 503, "outcome_unknown",
		    "the database connection broke after the report was sent, so it may or may not "
		    "be stored; retry with the same Idempotency-Key (a retry without one may store "
		    "it twice), or look it up later by its Trygg-Report-Id",
		    NULL, 2);
		break;
	case STORE_FAILED:
	default:
		intake_call_fail(c, 500, "internal", "the report could not be stored", NULL, 0);
		break;
	}
	free(s);
}

void
intake_call_submit(intake_call *c, report_in *r, intake_created_fn created)
{
	submit_call *s = xcalloc(1, sizeof(*s));
	s->c = c;
	s->created = created;
	store_submit(c->in->store, r, stored, s);
}

/*
 * A list's batch: its plan made for its own parameters (or not, below),
 * then the query.
 * With a cached generic plan (Postgres's choice from the sixth execution
 * of a prepared statement on a connection) a date window is a guessed
 * 0.5% of the table, so "this category, these 90 days, newest first" was
 * planned as "read the whole window by reports_created and sort it" (1.5-4
 * s at 1,000,000 reports, issue 9); planned with the real dates and the
 * statistics, it reads 1,000 entries of reports_category_created. A
 * plan costs 0.5-1 ms of Postgres CPU here (a list of 1,000 about 3), so
 * the plain shape whose only plan is the driving index's range (one
 * value, at most a cursor: query_custom_plan) keeps its generic plan.
 */
db_batch *
query_batch(const query *q)
{
	db_batch *b = db_batch_new();
	db_batch_add(b,
	    query_custom_plan(q)
	        ? "SELECT set_config('plan_cache_mode', 'force_custom_plan', true)"
	        : "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)",
	    0, NULL);
	db_batch_add(b, q->sql, q->n, q->values);
	db_batch_binary_results(b); /* REPORT_COLUMNS_BINARY (query.h) */
	return b;
}
