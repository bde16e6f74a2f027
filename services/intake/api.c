/*
 * api.c: the native JSON API under /v1/, and the request plumbing both
 * APIs share (errors, authentication, rate limiting, submission).
 *
 *   POST /v1/reports         Authorization: Bearer <key>; Idempotency-Key
 *   GET  /v1/reports/{id}    by UUID or service_request_id
 *   GET  /v1/reports         ?category=&status=&place=&partner=&since=&until=
 *                            &limit=&cursor=
 *
 * A partner reads only its own reports; a staff key reads all. Errors are
 * {"error":{"code","message","field","request_id"}} with 400 (bad input),
 * 401 (no or unknown key), 403 (category not allowed), 404, 409
 * (idempotency key reused), 413, 415, 429 and 503 (with Retry-After).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "form.h"
#include "intake.h"
#include "log.h"
#include "query.h"
#include "render.h"

/* ---- shared plumbing ---- */

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

/* The bearer key of a native request, or NULL after answering 401. */
static const char *
native_bearer(http_request *req, size_t *len)
{
	const char *key = auth_parse_bearer(http_request_header(req, "Authorization"), len);
	if (key == NULL)
		intake_error(req, FMT_NATIVE, 401, "missing_key",
		    "send your API key as Authorization: Bearer <key>", "Authorization", 0);
	return key;
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

/* ---- POST /v1/reports ---- */

typedef struct post_call {
	intake_call c;
	char *idem_key;
} post_call;

static void
post_fini(intake_call *c)
{
	free(((post_call *)c)->idem_key);
}

static void
post_created(intake_call *c, const report_in *r, int64_t srid, const PGresult *replay)
{
	char loc[80];
	if (replay != NULL) {
		strbuf b = {0};
		render_report_row(&b, replay, 0, 1, c->p, c->in->dir);
		snprintf(loc, sizeof(loc), "/v1/reports/%s", PQgetvalue(replay, 0, 1 + RC_ID));
		intake_header(c->req, "Location", loc);
		intake_respond_text(c->req, 201, &b);
		return;
	}
	snprintf(loc, sizeof(loc), "/v1/reports/%s", r->id);
	intake_header(c->req, "Location", loc);
	intake_respond_json(c->req, 201, render_report_new(r, srid, c->p, c->in->dir));
}

/* Refines jansson's messages into codes clients can act on. */
static void
refine_json_error(const char *body, size_t len, tjson_error *e)
{
	if (!trygg_utf8_valid(body, len)) {
		e->code = "invalid_utf8";
		snprintf(e->message, sizeof(e->message), "the body is not valid UTF-8");
	} else if (strstr(e->message, "duplicate object key") != NULL) {
		e->code = "duplicate_key";
	}
}

static void
post_authed(intake_call *c)
{
	post_call *pc = (post_call *)c;
	size_t len;
	const char *body = http_request_body(c->req, &len);
	json_t *obj;
	tjson_error e;
	if (!trygg_utf8_valid(body, len)) {
		intake_call_fail(c, 400, "invalid_utf8", "the body is not valid UTF-8", NULL, 0);
		return;
	}
	if (tjson_parse(body, len, 0, 0, &obj, &e) != 0) {
		refine_json_error(body, len, &e);
		intake_call_fail(c, (unsigned)e.status, e.code, e.message, e.field, 0);
		return;
	}
	report_ctx ctx;
	report_in r;
	intake_report_ctx(c->in, c->p, &ctx);
	if (intake_report_from_json(obj, &ctx, &r, &e) != 0) {
		json_decref(obj);
		intake_call_fail(c, (unsigned)e.status, e.code, e.message, e.field, 0);
		return;
	}
	/* The idempotency fingerprint: the body with its keys sorted, so a
	 * retry that serialises the same object differently still matches. */
	char *canon = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	/* Never NULL for a parsed body, but no jansson NULL is dereferenced. */
	crypto_sha256(canon ? canon : "", canon ? strlen(canon) : 0, r.request_hash);
	free(canon);
	json_decref(obj);
	r.idem_key = pc->idem_key;
	pc->idem_key = NULL;
	intake_call_submit(c, &r, post_created);
}

static void
handle_post(http_request *req, void *arg)
{
	intake *in = arg;
	if (!intake_content_type_is(req, "application/json")) {
		metric_counter_inc(in->m_rejected);
		intake_error(req, FMT_NATIVE, 415, "unsupported_media_type",
		    "send the report as Content-Type: application/json", "Content-Type", 0);
		return;
	}
	const char *idem;
	if (!intake_idem_header(req, FMT_NATIVE, &idem))
		return;
	size_t klen = 0;
	const char *key = native_bearer(req, &klen);
	if (key == NULL)
		return;
	post_call *pc = xcalloc(1, sizeof(*pc));
	pc->c = (intake_call){.in = in,
	    .req = req,
	    .fmt = FMT_NATIVE,
	    .next = post_authed,
	    .fini = post_fini};
	pc->idem_key = idem ? xstrdup(idem) : NULL;
	intake_call_auth(&pc->c, key, klen);
}

/* ---- GET /v1/reports/{id} and GET /v1/reports ---- */

typedef struct get_call {
	intake_call c;
	char id[40];
	bool list;
	int limit;
} get_call;

static bool
may_read(const partner *p, const PGresult *res, int row)
{
	return p->staff || atoi(PQgetvalue(res, row, RC_PARTNER_ID)) == p->id;
}

static void
got_one(void *arg, const db_reply *rep)
{
	intake_call *c = arg;
	if (rep->err != 0) {
		intake_call_unavailable(c);
		return;
	}
	const PGresult *res = rep->results[0];
	if (PQntuples(res) != 1 || !may_read(c->p, res, 0)) {
		intake_call_fail(c, 404, "not_found", "no such report", NULL, 0);
		return;
	}
	strbuf b = {0};
	render_report_row(&b, res, 0, 0, c->p, c->in->dir);
	intake_respond_text(c->req, 200, &b);
	intake_call_free(c);
}

static void
got_list(void *arg, const db_reply *rep)
{
	get_call *g = arg;
	intake_call *c = &g->c;
	if (rep->err != 0) {
		intake_call_unavailable(c);
		return;
	}
	const PGresult *res = rep->results[0];
	int n = PQntuples(res);
	strbuf b = {0};
	strbuf_append(&b, "{\"reports\":[");
	for (int i = 0; i < n; i++) {
		if (i > 0)
			strbuf_append(&b, ",");
		render_report_row(&b, res, i, 0, c->p, c->in->dir);
	}
	strbuf_append(&b, "],\"next_cursor\":");
	strbuf_append_json(&b, n == g->limit && n > 0 ? PQgetvalue(res, n - 1, RC_SRID) : NULL);
	strbuf_append(&b, "}");
	intake_respond_text(c->req, 200, &b);
	intake_call_free(c);
}

static void
one_authed(intake_call *c)
{
	get_call *g = (get_call *)c;
	int64_t srid;
	const char *sql;
	if (trygg_uuid_valid(g->id)) {
		sql = QUERY_BY_ID;
	} else if (query_parse_srid(g->id, &srid) == 0) {
		sql = QUERY_BY_SRID;
	} else {
		intake_call_fail(c, 404, "not_found", "no such report", NULL, 0);
		return;
	}
	const char *v[1] = {g->id};
	db_batch *b = db_batch_new();
	db_batch_add(b, sql, 1, v);
	if (db_pool_submit(c->in->svc.pool, b, got_one, c) != 0) {
		db_batch_free(b);
		intake_call_unavailable(c);
	}
}

/* Checks a comma-separated list: each item 1-64 bytes of [a-z0-9_]. */
static bool
csv_ok(const char *s)
{
	size_t item = 0;
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (*s == ',') {
			if (item == 0)
				return false;
			item = 0;
		} else if ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_') {
			if (++item > 64)
				return false;
		} else {
			return false;
		}
	}
	return item > 0;
}

static int
add_time(query *q, http_request *req, const char *name, const char *cond, tjson_error *e)
{
	const char *v = http_request_query(req, name);
	int64_t us;
	if (v == NULL)
		return 0;
	if (query_parse_time(v, &us) != 0)
		return tjson_error_set(e, "invalid_value", name, "%s must be an ISO 8601 date-time",
		    name);
	char t[32];
	trygg_format_iso8601(us, t, sizeof(t));
	return query_where(q, cond, t);
}

static void
list_authed(intake_call *c)
{
	get_call *g = (get_call *)c;
	http_request *req = c->req;
	query q;
	tjson_error e;
	char buf[32];
	query_init(&q);
	int rv = 0;
	const char *v;
	int64_t n;
	if (!c->p->staff) {
		snprintf(buf, sizeof(buf), "%d", c->p->id);
		rv = query_where(&q, "r.partner_id = $?", buf);
	} else if ((v = http_request_query(req, "partner")) != NULL) {
		const partner *p = directory_partner_by_name(c->in->dir, v);
		snprintf(buf, sizeof(buf), "%d", p ? p->id : -1);
		rv = query_where(&q, "r.partner_id = $?", buf);
	}
	if (rv == 0 && (v = http_request_query(req, "category")) != NULL) {
		if (!csv_ok(v) || strlen(v) > 1000) {
			rv = tjson_error_set(&e, "invalid_value", "category",
			    "category must be a comma-separated list of service codes");
			goto bad;
		}
		char arr[1100];
		snprintf(arr, sizeof(arr), "{%s}", v);
		/* One value as "=", so the plan can use reports_category_srid. */
		rv = strchr(v, ',') ? query_where(&q, "r.category = ANY($?::text[])", arr)
		                    : query_where(&q, "r.category = $?", v);
	}
	if (rv == 0 && (v = http_request_query(req, "status")) != NULL) {
		if (strcmp(v, "open") != 0 && strcmp(v, "acknowledged") != 0 &&
		    strcmp(v, "in_progress") != 0 && strcmp(v, "closed") != 0) {
			rv = tjson_error_set(&e, "invalid_value", "status",
			    "status must be open, acknowledged, in_progress or closed");
			goto bad;
		}
		rv = query_where(&q, "r.status = $?", v);
	}
	if (rv == 0 && (v = http_request_query(req, "place")) != NULL) {
		const place_set *ps = directory_places(c->in->dir);
		int pid = -1;
		for (size_t i = 0; i < ps->n; i++) {
			if (strcmp(ps->items[i].slug, v) == 0)
				pid = ps->items[i].id;
		}
		snprintf(buf, sizeof(buf), "%d", pid);
		rv = query_where(&q,
		    "EXISTS (SELECT 1 FROM report_places rp WHERE "
		    "rp.report_id = r.id AND rp.place_id = $?)",
		    buf);
	}
	if (rv == 0)
		rv = add_time(&q, req, "since", "r.created_at >= $?::timestamptz", &e);
	if (rv == TRYGG_EINVAL)
		goto bad;
	if (rv == 0)
		rv = add_time(&q, req, "until", "r.created_at < $?::timestamptz", &e);
	if (rv == TRYGG_EINVAL)
		goto bad;
	if (rv == 0 && (v = http_request_query(req, "cursor")) != NULL) {
		if (query_parse_srid(v, &n) != 0) {
			rv = tjson_error_set(&e, "invalid_value", "cursor",
			    "cursor must be a next_cursor value from a previous page");
			goto bad;
		}
		rv = query_where(&q, "r.service_request_id < $?::bigint", v);
	}
	g->limit = 100;
	if (rv == 0 && (v = http_request_query(req, "limit")) != NULL) {
		if (query_parse_srid(v, &n) != 0 || n > c->in->cfg.list_limit_max) {
			rv = tjson_error_set(&e, "out_of_range", "limit",
			    "limit must be between 1 and %d", c->in->cfg.list_limit_max);
			goto bad;
		}
		g->limit = (int)n;
	}
	if (rv != 0) {
		tjson_error_set(&e, "invalid_value", "", "too many filters");
		goto bad;
	}
	query_finish(&q, g->limit);
	db_batch *b = db_batch_new();
	db_batch_add(b, q.sql, q.n, q.values);
	if (db_pool_submit(c->in->svc.pool, b, got_list, g) != 0) {
		db_batch_free(b);
		intake_call_unavailable(c);
	}
	return;
bad:
	intake_call_fail(c, 400, e.code, e.message, e.field, 0);
}

static void
start_get(http_request *req, intake *in, bool list)
{
	size_t klen = 0;
	const char *key = native_bearer(req, &klen);
	if (key == NULL)
		return;
	get_call *g = xcalloc(1, sizeof(*g));
	g->c = (intake_call){.in = in,
	    .req = req,
	    .fmt = FMT_NATIVE,
	    .next = list ? list_authed : one_authed};
	g->list = list;
	if (!list) {
		const char *id = http_request_param(req, "id");
		snprintf(g->id, sizeof(g->id), "%s", id && strlen(id) < sizeof(g->id) ? id : "");
	}
	intake_call_auth(&g->c, key, klen);
}

static void
handle_get_one(http_request *req, void *arg)
{
	start_get(req, arg, false);
}

static void
handle_list(http_request *req, void *arg)
{
	start_get(req, arg, true);
}

int
api_register(intake *in)
{
	int rv;
	if ((rv = http_server_route(in->svc.http, "POST /v1/reports", handle_post, in)) != 0 ||
	    (rv = http_server_route(in->svc.http, "GET /v1/reports", handle_list, in)) != 0 ||
	    (rv = http_server_route(in->svc.http, "GET /v1/reports/{id}", handle_get_one, in)) != 0)
		return rv;
	return 0;
}
