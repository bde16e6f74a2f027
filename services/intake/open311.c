/*
 * open311.c: Open311 GeoReport v2 under /open311/v2/, in JSON and XML.
 *
 *   GET  discovery.{fmt}           the endpoint's description
 *   GET  services.{fmt}            the categories
 *   GET  services/{code}.{fmt}     one category's attributes
 *   POST requests.{fmt}            form-encoded, with api_key
 *   GET  requests.{fmt}            service_request_id, service_code,
 *                                  start_date, end_date, status; 90 days and
 *                                  1,000 requests at most
 *   GET  requests/{id}.{fmt}
 *   GET  tokens/{token}.{fmt}
 *
 * GETs are public, as the spec intends: without a staff api_key, reports
 * of sensitive categories are not listed (and GET one, by id or by token,
 * answers 404), and no contact detail is ever shown. A POST answers the
 * service_request_id (no token: the report is stored before the answer);
 * an unknown service_code is 404; empty fields count as absent. Errors use
 * the spec's document
 * ([{"code","description"}] / <errors>) with 400, 403, 404 (and 413, 415,
 * 429, 503 where the spec has nothing to say).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "form.h"
#include "intake.h"
#include "log.h"
#include "query.h"
#include "render.h"
#include "request.h"

#define O311_MAX_ROWS 1000
#define O311_MAX_WINDOW_US (90LL * 24 * 3600 * 1000000)
#define XML_HEAD "<?xml version=\"1.0\" encoding=\"utf-8\"?>"

/* Splits "name.json" / "name.xml"; no extension means JSON. Returns false
 * for another extension or an over-long name. */
static bool
split_ext(const char *seg, char *name, size_t len, api_format *fmt)
{
	const char *dot = strrchr(seg, '.');
	size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
	*fmt = FMT_O311_JSON;
	if (dot != NULL) {
		if (strcmp(dot, ".xml") == 0)
			*fmt = FMT_O311_XML;
		else if (strcmp(dot, ".json") != 0)
			return false;
	}
	if (n == 0 || n >= len)
		return false;
	memcpy(name, seg, n);
	name[n] = '\0';
	return true;
}

static void
respond_doc(http_request *req, api_format fmt, unsigned status, json_t *json, strbuf *xml)
{
	if (fmt == FMT_O311_XML) {
		json_decref(json);
		http_respond(req, status, "text/xml; charset=utf-8", xml->s, xml->len);
	} else {
		intake_respond_json(req, status, json);
	}
	strbuf_fini(xml);
}

/* ---- discovery and services ---- */

/*
 * The endpoint's URL comes from configuration (public_url), never from the
 * request's Host header: behind a proxy the client reached https://..., and
 * a Host header is whatever bytes the client chose. The changeset is the
 * time the directory last saw the categories change.
 */
static void
discovery(http_request *req, intake *in, api_format fmt)
{
	char url[600], changeset[32];
	if (in->cfg.public_url != NULL && in->cfg.public_url[0] != '\0') {
		size_t n = strlen(in->cfg.public_url);
		while (n > 0 && in->cfg.public_url[n - 1] == '/')
			n--;
		snprintf(url, sizeof(url), "%.*s/open311/v2",
		    (int)trygg_utf8_prefix(in->cfg.public_url, n > 500 ? 500 : n),
		    in->cfg.public_url);
	} else {
		const char *addr = in->cfg.common.http_addr;
		snprintf(url, sizeof(url), "http://%.200s:%d/open311/v2",
		    addr == NULL || addr[0] == '\0' || strcmp(addr, "0.0.0.0") == 0 ? "localhost"
		                                                                    : addr,
		    in->cfg.common.http_port);
	}
	int64_t changed = directory_categories_changed_us(in->dir);
	render_time(changed ? changed : trygg_wall_us(), changeset, sizeof(changeset));
	const char *contact = "Norrmalm district administration, Trygg team";
	const char *key_service = "API keys are issued by the district's operators; see "
	                          "docs/intake.md";
	strbuf x = {0};
	json_t *j = NULL;
	if (fmt == FMT_O311_XML) {
		strbuf_append(&x, XML_HEAD "<discovery>");
		render_xml_elem(&x, "changeset", changeset);
		render_xml_elem(&x, "contact", contact);
		render_xml_elem(&x, "key_service", key_service);
		strbuf_append(&x, "<endpoints><endpoint>");
		render_xml_elem(&x, "specification", "http://wiki.open311.org/GeoReport_v2");
		render_xml_elem(&x, "url", url);
		render_xml_elem(&x, "changeset", changeset);
		render_xml_elem(&x, "type", "production");
		strbuf_append(&x,
		    "<formats><format>text/xml</format><format>application/json</format>"
		    "</formats></endpoint></endpoints></discovery>");
	} else {
		j = json_pack("{s:s, s:s, s:s, s:[{s:s, s:s, s:s, s:s, s:[s,s]}]}", "changeset",
		    changeset, "contact", contact, "key_service", key_service, "endpoints",
		    "specification", "http://wiki.open311.org/GeoReport_v2", "url", url,
		    "changeset", changeset, "type", "production", "formats", "text/xml",
		    "application/json");
	}
	respond_doc(req, fmt, 200, j, &x);
}

static void
handle_discovery_json(http_request *req, void *arg)
{
	discovery(req, arg, FMT_O311_JSON);
}

static void
handle_discovery_xml(http_request *req, void *arg)
{
	discovery(req, arg, FMT_O311_XML);
}

static bool
ready(intake *in, http_request *req, api_format fmt)
{
	if (directory_loaded(in->dir))
		return true;
	intake_error(req, fmt, 503, "unavailable", "starting up; retry later", NULL, 1);
	return false;
}

static void
services(http_request *req, intake *in, api_format fmt)
{
	if (!ready(in, req, fmt))
		return;
	strbuf x = {0};
	json_t *j = NULL;
	if (fmt == FMT_O311_XML)
		render_services_xml(&x, directory_categories(in->dir));
	else
		j = render_services_json(directory_categories(in->dir));
	respond_doc(req, fmt, 200, j, &x);
}

static void
handle_services_json(http_request *req, void *arg)
{
	services(req, arg, FMT_O311_JSON);
}

static void
handle_services_xml(http_request *req, void *arg)
{
	services(req, arg, FMT_O311_XML);
}

static void
handle_definition(http_request *req, void *arg)
{
	intake *in = arg;
	char code[80];
	api_format fmt;
	if (!split_ext(http_request_param(req, "code"), code, sizeof(code), &fmt)) {
		intake_error(req, FMT_O311_JSON, 404, "not_found", "format must be .json or .xml",
		    NULL, 0);
		return;
	}
	if (!ready(in, req, fmt))
		return;
	const category *c = categories_find(directory_categories(in->dir), code);
	if (c == NULL) {
		intake_error(req, fmt, 404, "not_found", "no service with this service_code",
		    "service_code", 0);
		return;
	}
	strbuf x = {0};
	json_t *j = NULL;
	if (fmt == FMT_O311_XML)
		render_definition_xml(&x, c);
	else
		j = render_definition_json(c);
	respond_doc(req, fmt, 200, j, &x);
}

/* ---- POST requests ---- */

typedef struct o311_post {
	intake_call c;
	form f;
} o311_post;

static void
post_fini(intake_call *c)
{
	form_fini(&((o311_post *)c)->f);
}

static void
post_created(intake_call *c, const report_in *r, int64_t srid, const PGresult *replay)
{
	char srid_s[24];
	(void)r;
	if (replay != NULL)
		snprintf(srid_s, sizeof(srid_s), "%s", PQgetvalue(replay, 0, 1 + RC_SRID));
	else
		snprintf(srid_s, sizeof(srid_s), "%" PRId64, srid);
	const char *notice = "Thank you. The district handles reports within its response targets.";
	strbuf x = {0};
	json_t *j = NULL;
	/* The spec: a token only when the service_request_id is not known yet.
	 * Ours is known at once (the report is committed before we answer). */
	if (c->fmt == FMT_O311_XML) {
		strbuf_append(&x, XML_HEAD "<service_requests><request>");
		render_xml_elem(&x, "service_request_id", srid_s);
		render_xml_elem(&x, "service_notice", notice);
		render_xml_elem(&x, "account_id", NULL);
		strbuf_append(&x, "</request></service_requests>");
	} else {
		j = json_pack("[{s:s, s:s, s:n}]", "service_request_id", srid_s, "service_notice",
		    notice, "account_id");
	}
	respond_doc(c->req, c->fmt, 201, j, &x);
}

static int
cmp_fields(const void *a, const void *b)
{
	const form_field *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->value, y->value);
}

/* The idempotency fingerprint of a form: its fields sorted, without the
 * key (a partner may rotate keys between retries). */
static void
form_hash(const form *f, uint8_t out[AUTH_HASH_LEN])
{
	form_field *sorted = xmalloc((f->n + 1) * sizeof(*sorted));
	memcpy(sorted, f->fields, f->n * sizeof(*sorted));
	qsort(sorted, f->n, sizeof(*sorted), cmp_fields);
	strbuf b = {0};
	strbuf_append(&b, "");
	for (size_t i = 0; i < f->n; i++) {
		if (strcmp(sorted[i].name, "api_key") == 0)
			continue;
		strbuf_appendf(&b, "%zu:%s%zu:%s", strlen(sorted[i].name), sorted[i].name,
		    strlen(sorted[i].value), sorted[i].value);
	}
	crypto_sha256(b.s, b.len, out);
	strbuf_fini(&b);
	free(sorted);
}

static void
post_authed(intake_call *c)
{
	o311_post *op = (o311_post *)c;
	report_ctx ctx;
	report_in r;
	tjson_error e;
	intake_report_ctx(c->in, c->p, &ctx);
	if (intake_report_from_form(&op->f, &ctx, &r, &e) != 0) {
		intake_call_fail(c, (unsigned)e.status, e.code, e.message, e.field, 0);
		return;
	}
	form_hash(&op->f, r.request_hash);
	const char *idem = http_request_header(c->req, "Idempotency-Key");
	r.idem_key = idem ? xstrdup(idem) : NULL;
	intake_call_submit(c, &r, post_created);
}

static void
post_requests(http_request *req, intake *in, api_format fmt)
{
	if (!intake_content_type_is(req, "application/x-www-form-urlencoded")) {
		metric_counter_inc(in->m_rejected);
		intake_error(req, fmt, 415, "unsupported_media_type",
		    "send the request as application/x-www-form-urlencoded", "Content-Type", 0);
		return;
	}
	const char *idem;
	if (!intake_idem_header(req, fmt, &idem))
		return;
	o311_post *op = xcalloc(1, sizeof(*op));
	op->c =
	    (intake_call){.in = in, .req = req, .fmt = fmt, .next = post_authed, .fini = post_fini};
	size_t len;
	const char *body = http_request_body(req, &len);
	tjson_error e;
	if (form_parse(body, len, &op->f, &e) != 0) {
		intake_call_fail(&op->c, 400, e.code, e.message, e.field, 0);
		return;
	}
	const char *key = form_get(&op->f, "api_key");
	if (key == NULL)
		key = http_request_query(req, "api_key");
	if (key == NULL || key[0] == '\0') {
		intake_call_fail(&op->c, 403, "missing_key", "api_key is required", "api_key", 0);
		return;
	}
	intake_call_auth(&op->c, key, strlen(key));
}

static void
handle_post_json(http_request *req, void *arg)
{
	post_requests(req, arg, FMT_O311_JSON);
}

static void
handle_post_xml(http_request *req, void *arg)
{
	post_requests(req, arg, FMT_O311_XML);
}

/* ---- GET requests, requests/{id}, tokens/{token} ---- */

typedef struct o311_get {
	intake_call c;
	int kind; /* 0 list, 1 one, 2 token */
	char id[80];
} o311_get;

static void
got_rows(void *arg, const db_reply *rep)
{
	o311_get *g = arg;
	intake_call *c = &g->c;
	if (rep->err != 0) {
		intake_call_unavailable(c);
		return;
	}
	const PGresult *res = QUERY_ROWS(rep);
	int n = PQntuples(res);
	bool staff = c->p != NULL && c->p->staff;
	/* A token reveals no more than requests/{id}: sensitive reports are
	 * staff-only through both. */
	if (g->kind != 0 && (n != 1 || (!staff && PQgetvalue(res, 0, RC_SENSITIVE)[0] == 't'))) {
		intake_call_fail(c, 404, "not_found", "no such service request", NULL, 0);
		return;
	}
	strbuf x = {0};
	json_t *j = NULL;
	if (g->kind == 2) {
		const char *srid = PQgetvalue(res, 0, RC_SRID);
		if (c->fmt == FMT_O311_XML) {
			strbuf_append(&x, XML_HEAD "<service_requests><request>");
			render_xml_elem(&x, "service_request_id", srid);
			render_xml_elem(&x, "token", g->id);
			strbuf_append(&x, "</request></service_requests>");
		} else {
			j = json_pack("[{s:s, s:s}]", "service_request_id", srid, "token", g->id);
		}
	} else if (c->fmt == FMT_O311_XML) {
		strbuf_append(&x, XML_HEAD "<service_requests>");
		for (int i = 0; i < n; i++)
			render_open311_row_xml(&x, res, i, c->p, c->in->dir);
		strbuf_append(&x, "</service_requests>");
	} else {
		strbuf_append(&x, "[");
		for (int i = 0; i < n; i++) {
			if (i > 0)
				strbuf_append(&x, ",");
			render_open311_row_json(&x, res, i, c->p, c->in->dir);
		}
		strbuf_append(&x, "]");
		intake_respond_text(c->req, 200, &x);
		intake_call_free(c);
		return;
	}
	respond_doc(c->req, c->fmt, 200, j, &x);
	intake_call_free(c);
}

static void
submit_batch(intake_call *c, db_batch *b)
{
	if (db_pool_submit(c->in->svc.pool, b, got_rows, c) != 0) {
		db_batch_free(b);
		intake_call_unavailable(c);
	}
}

/* One report by one key (a prepared statement whose plan never varies). */
static void
submit_one(intake_call *c, const char *sql, const char *const *values)
{
	db_batch *b = db_batch_new();
	db_batch_add(b, sql, 1, values);
	submit_batch(c, b);
}

/* Checks "1,2,3": at most 100 positive ids. */
static bool
id_list_ok(const char *s)
{
	int count = 0;
	size_t digits = 0;
	for (; *s; s++) {
		if (*s == ',') {
			if (digits == 0)
				return false;
			digits = 0;
		} else if (*s >= '0' && *s <= '9') {
			if (digits++ == 0)
				count++;
			if (digits > 18)
				return false;
		} else {
			return false;
		}
	}
	return digits > 0 && count <= 100;
}

static void
list_requests(intake_call *c)
{
	http_request *req = c->req;
	query q;
	tjson_error e = {0};
	query_init(&q);
	int rv = 0;
	const char *v;
	if (c->p == NULL || !c->p->staff)
		query_where_const(&q, "NOT r.sensitive");
	if ((v = http_request_query(req, "service_request_id")) != NULL && v[0] != '\0') {
		/* The spec: with ids given, the other filters are ignored. */
		if (!id_list_ok(v)) {
			rv = tjson_error_set(&e, "invalid_value", "service_request_id",
			    "a comma-separated list of at most 100 ids");
			goto bad;
		}
		char arr[1100];
		snprintf(arr, sizeof(arr), "{%s}", v);
		rv = query_where(&q, "r.service_request_id = ANY($?::bigint[])", arr);
		goto run;
	}
	if ((v = http_request_query(req, "service_code")) != NULL && v[0] != '\0') {
		if (strlen(v) > 1000 ||
		    strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_,") != strlen(v)) {
			rv = tjson_error_set(&e, "invalid_value", "service_code",
			    "a comma-separated list of service codes");
			goto bad;
		}
		char arr[1100];
		snprintf(arr, sizeof(arr), "{%s}", v);
		/* Found through reports_category_created (query.h). */
		rv = query_drive(&q, "category", "text", arr);
	}
	if ((v = http_request_query(req, "status")) != NULL && v[0] != '\0') {
		bool open = false, closed = false;
		char tmp[64];
		snprintf(tmp, sizeof(tmp), "%s", v);
		for (char *save, *t = strtok_r(tmp, ",", &save); t;
		     t = strtok_r(NULL, ",", &save)) {
			if (strcmp(t, "open") == 0)
				open = true;
			else if (strcmp(t, "closed") == 0)
				closed = true;
			else {
				rv = tjson_error_set(&e, "invalid_value", "status",
				    "status must be open, closed or both");
				goto bad;
			}
		}
		if (open && !closed)
			query_where_const(&q, "r.status <> 'closed'");
		else if (closed && !open)
			query_where_const(&q, "r.status = 'closed'");
	}
	int64_t start = 0, end = 0;
	/* An empty parameter is one not given (start_date=&end_date=). */
	const char *sv = http_request_query(req, "start_date");
	const char *ev = http_request_query(req, "end_date");
	if (sv != NULL && sv[0] == '\0')
		sv = NULL;
	if (ev != NULL && ev[0] == '\0')
		ev = NULL;
	if (sv && query_parse_time(sv, &start) != 0) {
		rv = tjson_error_set(&e, "invalid_value", "start_date",
		    "start_date must be an ISO 8601 date-time");
		goto bad;
	}
	if (ev && query_parse_time(ev, &end) != 0) {
		rv = tjson_error_set(&e, "invalid_value", "end_date",
		    "end_date must be an ISO 8601 date-time");
		goto bad;
	}
	if (sv && ev) {
		if (end < start || end - start > O311_MAX_WINDOW_US) {
			rv = tjson_error_set(&e, "invalid_value", "end_date",
			    "end_date must follow start_date by at most 90 days");
			goto bad;
		}
	} else if (sv) {
		end = start + O311_MAX_WINDOW_US;
	} else if (ev) {
		start = end - O311_MAX_WINDOW_US;
	} else {
		/* The spec's default window: the last 90 days. A small margin
		 * covers clocks that differ between us and Postgres. */
		end = trygg_wall_us() + 60LL * 1000000;
		start = end - O311_MAX_WINDOW_US;
	}
	char ts[32], te[32];
	trygg_format_iso8601(start, ts, sizeof(ts));
	trygg_format_iso8601(end, te, sizeof(te));
	if (rv == 0)
		rv = query_where(&q, "r.created_at >= $?::timestamptz", ts);
	if (rv == 0)
		rv = query_where(&q, "r.created_at <= $?::timestamptz", te);
run:
	if (rv != 0) {
		tjson_error_set(&e, "invalid_value", "", "too many filters");
		goto bad;
	}
	/* Newest first by time (requested_datetime): with the window's end as
	 * the start of an index range (reports_created, or
	 * reports_category_created), a window in the past costs what a recent
	 * one does; by service_request_id every newer report would be read and
	 * dropped first. */
	query_finish(&q, QUERY_ORDER_CREATED, O311_MAX_ROWS);
	submit_batch(c, query_batch(&q));
	return;
bad:
	intake_call_fail(c, 400, e.code, e.message, e.field, 0);
}

static void
get_authed(intake_call *c)
{
	o311_get *g = (o311_get *)c;
	const char *v[1] = {g->id};
	int64_t srid;
	if (g->kind == 0) {
		list_requests(c);
	} else if (g->kind == 1) {
		if (query_parse_srid(g->id, &srid) != 0)
			intake_call_fail(c, 404, "not_found", "no such service request", NULL, 0);
		else
			submit_one(c, QUERY_BY_SRID, v);
	} else {
		if (!trygg_uuid_valid(g->id))
			intake_call_fail(c, 404, "not_found", "no such token", NULL, 0);
		else
			submit_one(c, QUERY_BY_ID, v);
	}
}

static void
get_requests(http_request *req, intake *in, api_format fmt, int kind, const char *param)
{
	o311_get *g = xcalloc(1, sizeof(*g));
	g->c = (intake_call){.in = in, .req = req, .fmt = fmt, .next = get_authed};
	g->kind = kind;
	if (param != NULL && !split_ext(param, g->id, sizeof(g->id), &g->c.fmt)) {
		intake_call_fail(&g->c, 404, "not_found", "format must be .json or .xml", NULL, 0);
		return;
	}
	if (!ready(in, req, g->c.fmt)) {
		free(g);
		return;
	}
	const char *key = http_request_query(req, "api_key");
	if (key != NULL && key[0] != '\0') {
		intake_call_auth(&g->c, key, strlen(key));
		return;
	}
	if (!intake_rate_limit_public(in, req, g->c.fmt)) {
		free(g);
		return;
	}
	get_authed(&g->c);
}

static void
handle_list_json(http_request *req, void *arg)
{
	get_requests(req, arg, FMT_O311_JSON, 0, NULL);
}

static void
handle_list_xml(http_request *req, void *arg)
{
	get_requests(req, arg, FMT_O311_XML, 0, NULL);
}

static void
handle_get_one(http_request *req, void *arg)
{
	get_requests(req, arg, FMT_O311_JSON, 1, http_request_param(req, "id"));
}

static void
handle_token(http_request *req, void *arg)
{
	get_requests(req, arg, FMT_O311_JSON, 2, http_request_param(req, "token"));
}

/* Errors the HTTP server answers itself (404, 405, 413, 431, 503) in the
 * Open311 document, XML for a .xml path. */
static void
server_error(http_request *req, unsigned status, const char *code, const char *message, void *arg)
{
	(void)arg;
	const char *path = http_request_path(req);
	size_t n = strlen(path);
	api_format fmt = n > 4 && strcmp(path + n - 4, ".xml") == 0 ? FMT_O311_XML : FMT_O311_JSON;
	intake_error(req, fmt, status, code, message, NULL, 0);
}

int
open311_register(intake *in)
{
	static const struct {
		const char *pattern;
		http_handler h;
	} routes[] = {
	    {"GET /open311/v2/discovery.json", handle_discovery_json},
	    {"GET /open311/v2/discovery.xml", handle_discovery_xml},
	    {"GET /open311/v2/services.json", handle_services_json},
	    {"GET /open311/v2/services.xml", handle_services_xml},
	    {"GET /open311/v2/services/{code}", handle_definition},
	    {"POST /open311/v2/requests.json", handle_post_json},
	    {"POST /open311/v2/requests.xml", handle_post_xml},
	    {"GET /open311/v2/requests.json", handle_list_json},
	    {"GET /open311/v2/requests.xml", handle_list_xml},
	    {"GET /open311/v2/requests/{id}", handle_get_one},
	    {"GET /open311/v2/tokens/{token}", handle_token},
	};
	for (size_t i = 0; i < TRYGG_ARRAY_LEN(routes); i++) {
		int rv = http_server_route(in->svc.http, routes[i].pattern, routes[i].h, in);
		if (rv != 0)
			return rv;
	}
	return http_server_set_error_renderer(in->svc.http, "/open311/v2/", server_error, in);
}
