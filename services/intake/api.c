/*
 * api.c: the native JSON API under /v1/ (the plumbing it shares with
 * Open311 is request.c's).
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "intake.h"
#include "query.h"
#include "render.h"
#include "request.h"

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
	strbuf b = {0};
	render_report_new(&b, r, srid, c->p, c->in->dir);
	intake_respond_text(c->req, 201, &b);
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
	 * retry that serialises the same object differently still matches.
	 * Only a request with a key is ever compared (store.c). */
	if (pc->idem_key != NULL) {
		char *canon = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
		/* Never NULL for a parsed body, but no jansson NULL is dereferenced. */
		crypto_sha256(canon ? canon : "", canon ? strlen(canon) : 0, r.request_hash);
		free(canon);
	}
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
	const PGresult *res = QUERY_ROWS(rep);
	int n = PQntuples(res);
	strbuf b = {0};
	/* A row is ~500 bytes: one allocation instead of a dozen doublings,
	 * each copying the document so far. */
	strbuf_reserve(&b, (size_t)n * 512 + 64);
	strbuf_append(&b, "{\"reports\":[");
	for (int i = 0; i < n; i++) {
		if (i > 0)
			strbuf_append(&b, ",");
		render_report_row(&b, res, i, 0, c->p, c->in->dir);
	}
	strbuf_append(&b, "],\"next_cursor\":");
	char cursor[24];
	strbuf_append_json(&b,
	    n == g->limit && n > 0 ? query_col_dec(res, n - 1, RC_SRID, cursor) : NULL);
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
	/* The list is driven by the index of one equality filter (query.h):
	 * the category if given, else the partner, else the status; the
	 * others are checked on the rows it finds. */
	const char *cats = NULL, *status = NULL;
	char owner[32] = "";
	if (!c->p->staff) {
		snprintf(owner, sizeof(owner), "%d", c->p->id);
	} else if ((v = http_request_query(req, "partner")) != NULL) {
		const partner *p = directory_partner_by_name(c->in->dir, v);
		snprintf(owner, sizeof(owner), "%d", p ? p->id : -1);
	}
	if ((v = http_request_query(req, "category")) != NULL) {
		if (!csv_ok(v) || strlen(v) > 1000) {
			rv = tjson_error_set(&e, "invalid_value", "category",
			    "category must be a comma-separated list of service codes");
			goto bad;
		}
		cats = v;
	}
	if ((v = http_request_query(req, "status")) != NULL) {
		if (strcmp(v, "open") != 0 && strcmp(v, "acknowledged") != 0 &&
		    strcmp(v, "in_progress") != 0 && strcmp(v, "closed") != 0) {
			rv = tjson_error_set(&e, "invalid_value", "status",
			    "status must be open, acknowledged, in_progress or closed");
			goto bad;
		}
		status = v;
	}
	char arr[1100];
	if (cats != NULL) {
		snprintf(arr, sizeof(arr), "{%s}", cats);
		rv = query_drive(&q, "category", "text", arr);
	} else if (owner[0] != '\0') {
		snprintf(arr, sizeof(arr), "{%s}", owner);
		rv = query_drive(&q, "partner_id", "int", arr);
	} else if (status != NULL) {
		snprintf(arr, sizeof(arr), "{%s}", status);
		rv = query_drive(&q, "status", "text", arr);
	}
	if (rv == 0 && cats != NULL && owner[0] != '\0')
		rv = query_where(&q, "r.partner_id = $?", owner);
	if (rv == 0 && status != NULL && (cats != NULL || owner[0] != '\0'))
		rv = query_where(&q, "r.status = $?", status);
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
		rv = query_cursor(&q, v);
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
	query_finish(&q, QUERY_ORDER_SRID, g->limit);
	db_batch *b = query_batch(&q);
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
