/*
 * api.c: the HTTP API of reporting (docs/reporting.md).
 *
 *   GET  /v1/picture[.csv|.geojson]  the picture for a period and an area
 *   GET  /v1/places                  the places as GeoJSON
 *   PUT  /v1/comments                staff/police: commentary per section
 *   POST /v1/versions                staff/police: publish (frozen, immutable)
 *   GET  /v1/versions, /v1/versions/{id}
 *   GET  /, /static/<file>           the page (services/reporting/web/)
 *
 * A request is at most three statements on the pool: the key (when one is
 * given: a wrong or revoked key is 401, never silently public), the
 * figures (the SQL function picture()), and for a version its insert.
 * Audience: a staff or police key sees everything, a partner key its own
 * reports' figures, no key the public picture (picture.c suppresses).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "log.h"
#include "picture.h"
#include "reporting.h"
#include "web_assets.h"

extern const struct web_file reporting_web[];

#define TEXT_MAX 20000
#define KEY_MAX 200

enum fmt { FMT_JSON, FMT_CSV, FMT_GEOJSON };

typedef struct ctx ctx;
typedef void (*step_fn)(ctx *c);

struct ctx {
	reporting *r;
	http_request *req;
	step_fn next; /* after the key is known */
	bool keyed;   /* a valid key was given */
	char role[16];
	char name[128];
	char partner[128];
	/* the period and area */
	char kind[16], at[16], from[16], to[16], area[160];
	bool has_at, has_from, has_to;
	enum fmt fmt;
	/* comments and versions */
	char section[160];
	char *text;
	char id[40];
	char *doc_staff, *doc_public;
	char vfrom[16], vto[16];
	/* a picture query in flight: its cache key and what comes next */
	char *cache_key;
	uint64_t generation; /* when the query was sent: what its rows can show */
	void (*pic_done)(ctx *c, const char *pic, const char *places);
};

static void
ctx_free(ctx *c)
{
	free(c->text);
	free(c->doc_staff);
	free(c->doc_public);
	free(c->cache_key);
	free(c);
}

static void
fail(ctx *c, unsigned status, const char *code, const char *msg, const char *field)
{
	http_respond_error(c->req, status, code, msg, field);
	ctx_free(c);
}

/* Our own failure: logged with the request id, 503 when Postgres is away. */
static void
fail_db(ctx *c, const db_reply *rep)
{
	if (rep->err == TRYGG_EDB && rep->sqlstate) {
		if (strcmp(rep->sqlstate, "RPPER") == 0)
			return fail(c, 400, "invalid_period", rep->message, "period");
		if (strcmp(rep->sqlstate, "RPARE") == 0)
			return fail(c, 404, "not_found", "no such area", "area");
	}
	char lb[300];
	log_error("request_db_failed", "\"request_id\":\"%s\",\"error\":%s",
	    http_request_id(c->req),
	    log_json_str(rep->message ? rep->message : "", lb, sizeof(lb)));
	if (rep->err == TRYGG_EDBCONN)
		return fail(c, 503, "unavailable", "the database is not reachable", NULL);
	fail(c, 500, "internal", "internal error", NULL);
}

static void
submit(ctx *c, const char *sql, int n, const char *const *v, db_cb cb)
{
	db_batch *b = db_batch_new();
	db_batch_add(b, sql, n, v);
	if (db_pool_submit(c->r->svc.pool, b, cb, c) != 0) {
		db_batch_free(b);
		fail(c, 503, "unavailable", "the database is not reachable", NULL);
	}
}

/* Answers 200 with the first column of the first row (a JSON document
 * made by Postgres), or 404 when there is no row. */
static void
on_document(void *arg, const db_reply *rep)
{
	ctx *c = arg;
	if (rep->err != 0)
		return fail_db(c, rep);
	if (PQntuples(rep->results[0]) != 1)
		return fail(c, 404, "not_found", "no such version", "id");
	const char *body = PQgetvalue(rep->results[0], 0, 0);
	http_respond(c->req, 200,
	    c->fmt == FMT_GEOJSON ? "application/geo+json" : "application/json", body,
	    strlen(body));
	ctx_free(c);
}

/* ---- the key ---- */

static const char SQL_KEY[] =
    "SELECT role, name, coalesce(partner, '') FROM keys"
    " WHERE key_hash = encode(sha256(convert_to($1, 'UTF8')), 'hex') AND revoked_at IS NULL";

static void
on_key(void *arg, const db_reply *rep)
{
	ctx *c = arg;
	if (rep->err != 0)
		return fail_db(c, rep);
	PGresult *res = rep->results[0];
	if (PQntuples(res) != 1) {
		if (http_response_header(c->req, "WWW-Authenticate", "Bearer") != 0)
			log_debug("header_refused", NULL);
		return fail(c, 401, "unauthorized", "unknown or revoked key", NULL);
	}
	c->keyed = true;
	snprintf(c->role, sizeof(c->role), "%s", PQgetvalue(res, 0, 0));
	snprintf(c->name, sizeof(c->name), "%s", PQgetvalue(res, 0, 1));
	snprintf(c->partner, sizeof(c->partner), "%s", PQgetvalue(res, 0, 2));
	c->next(c);
}

/* Looks the bearer key up (if any), then runs `next`. */
static void
with_key(ctx *c, step_fn next)
{
	c->next = next;
	const char *h = http_request_header(c->req, "Authorization");
	if (h == NULL) {
		snprintf(c->role, sizeof(c->role), "public");
		return next(c);
	}
	if (strncasecmp(h, "Bearer ", 7) != 0 || strlen(h + 7) == 0 || strlen(h + 7) > KEY_MAX)
		return fail(c, 401, "unauthorized", "expected Authorization: Bearer <key>", NULL);
	const char *v[1] = {h + 7};
	submit(c, SQL_KEY, 1, v, on_key);
}

static bool
is_editor(const ctx *c)
{
	return c->keyed && (strcmp(c->role, "staff") == 0 || strcmp(c->role, "police") == 0);
}

static ctx *
ctx_new(reporting *r, http_request *req)
{
	ctx *c = xmalloc(sizeof(*c));
	*c = (ctx){.r = r, .req = req};
	return c;
}

/* ---- parameters ---- */

static bool
valid_date(const char *s)
{
	int y, m, d;
	char extra;
	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' ||
	    sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3)
		return false;
	static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (y < 1900 || y > 2200 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return !(m == 2 && d == 29 && !leap);
}

static bool
valid_slug(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 100)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-' ||
		        s[i] == '_'))
			return false;
	return true;
}

static bool
valid_area(const char *a)
{
	if (strcmp(a, "district") == 0)
		return true;
	if (strncmp(a, "place:", 6) == 0)
		return valid_slug(a + 6);
	if (strncmp(a, "survey:", 7) == 0)
		return valid_slug(a + 7);
	return false;
}

/* Copies one period/area parameter after checking it; a message names the
 * field on failure. */
static const char *
set_params(ctx *c, const char *kind, const char *at, const char *from, const char *to,
    const char *area, const char **field)
{
	*field = "period";
	if (kind == NULL || kind[0] == '\0')
		kind = "month";
	if (strcmp(kind, "month") != 0 && strcmp(kind, "quarter") != 0 &&
	    strcmp(kind, "year") != 0 && strcmp(kind, "custom") != 0)
		return "period is month, quarter, year or custom";
	snprintf(c->kind, sizeof(c->kind), "%s", kind);
	const char *names[3] = {"at", "from", "to"};
	const char *vals[3] = {at, from, to};
	char *dst[3] = {c->at, c->from, c->to};
	bool *has[3] = {&c->has_at, &c->has_from, &c->has_to};
	for (int i = 0; i < 3; i++) {
		if (vals[i] == NULL || vals[i][0] == '\0')
			continue;
		if (!valid_date(vals[i])) {
			*field = names[i];
			return "a date is YYYY-MM-DD";
		}
		snprintf(dst[i], 16, "%s", vals[i]);
		*has[i] = true;
	}
	if (strcmp(kind, "custom") == 0 && (!c->has_from || !c->has_to)) {
		*field = c->has_from ? "to" : "from";
		return "a custom period needs from and to (to exclusive)";
	}
	*field = "area";
	if (area == NULL || area[0] == '\0')
		area = "district";
	if (!valid_area(area))
		return "area is district, place:<slug> or survey:<slug>";
	snprintf(c->area, sizeof(c->area), "%s", area);
	return NULL;
}

/* ---- the picture ---- */

static const char SQL_PICTURE[] =
    "SELECT picture($1, coalesce($2::date, (now() AT TIME ZONE 'Europe/Stockholm')::date),"
    " $3::date, $4::date, $5, $6, $7::boolean, $8)::text,"
    " CASE WHEN $9::boolean THEN places_geojson()::text END";

/*
 * The picture cache: a computed picture is served again while nothing it
 * shows has changed (reporting->generation, raised by every inbox commit
 * and comment) and for at most picture_cache_ms (so "overdue now" and
 * "today" move on). One process, one loop thread: a static table.
 */
#define CACHE_SLOTS 32

typedef struct cache_entry {
	char *key;
	char *pic, *places;
	uint64_t generation;
	uint64_t at_ms;
} cache_entry;

static cache_entry cache[CACHE_SLOTS];

void
reporting_changed(reporting *r)
{
	r->generation++;
}

static cache_entry *
cache_find(const reporting *r, const char *key)
{
	uint64_t now = uv_hrtime() / 1000000;
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		cache_entry *e = &cache[i];
		if (e->key && strcmp(e->key, key) == 0 && e->generation == r->generation &&
		    now - e->at_ms < r->cfg.picture_cache_ms)
			return e;
	}
	return NULL;
}

/* Keeps a picture computed from the data of `generation` (the one at the
 * time its query was sent: a commit while it ran makes it stale at once). */
static void
cache_put(const char *key, uint64_t generation, const char *pic, const char *places)
{
	cache_entry *slot = &cache[0];
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		cache_entry *e = &cache[i];
		if (e->key == NULL || strcmp(e->key, key) == 0) {
			slot = e;
			break;
		}
		if (e->at_ms < slot->at_ms)
			slot = e; /* the oldest goes */
	}
	free(slot->key);
	free(slot->pic);
	free(slot->places);
	*slot = (cache_entry){.key = xstrdup(key),
	    .pic = xstrdup(pic),
	    .places = places ? xstrdup(places) : NULL,
	    .generation = generation,
	    .at_ms = uv_hrtime() / 1000000};
}

static void
on_picture_rows(void *arg, const db_reply *rep)
{
	ctx *c = arg;
	if (rep->err != 0)
		return fail_db(c, rep);
	PGresult *res = rep->results[0];
	const char *pic = PQgetvalue(res, 0, 0);
	const char *places = PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1);
	if (c->r->cfg.picture_cache_ms > 0)
		cache_put(c->cache_key, c->generation, pic, places);
	c->pic_done(c, pic, places);
}

/* The raw picture for this request's parameters (from the cache when
 * nothing changed), then `done`. */
static void
picture_query(ctx *c, bool public_view, bool with_places,
    void (*done)(ctx *c, const char *pic, const char *places))
{
	bool partner = c->keyed && strcmp(c->role, "partner") == 0 && !public_view;
	bool pub = public_view || !c->keyed;
	const char *v[9] = {c->kind, c->has_at ? c->at : NULL, c->has_from ? c->from : NULL,
	    c->has_to ? c->to : NULL, c->area, partner ? c->partner : NULL, pub ? "true" : "false",
	    c->r->cfg.district_name, with_places ? "true" : "false"};
	free(c->cache_key);
	c->cache_key = xasprintf("%s|%s|%s|%s|%s|%s|%s|%s", v[0], v[1] ? v[1] : "",
	    v[2] ? v[2] : "", v[3] ? v[3] : "", v[4], v[5] ? v[5] : "", v[6], v[8]);
	c->pic_done = done;
	c->generation = c->r->generation;
	if (c->r->cfg.picture_cache_ms > 0) {
		cache_entry *e = cache_find(c->r, c->cache_key);
		if (e) {
			metric_counter_inc(c->r->m_cache_hits);
			return done(c, e->pic, e->places);
		}
	}
	submit(c, SQL_PICTURE, 9, v, on_picture_rows);
}

static const char *
audience_of(const ctx *c)
{
	return c->keyed ? c->role : "public";
}

static void
on_picture(ctx *c, const char *text, const char *places_text)
{
	json_t *pic = json_loads(text, 0, NULL);
	if (pic == NULL)
		return fail(c, 500, "internal", "internal error", NULL);
	picture_finish(pic, audience_of(c), c->r->cfg.suppress_threshold);
	if (c->fmt == FMT_CSV) {
		size_t len;
		char *csv = picture_csv(pic, &len);
		char disp[200];
		snprintf(disp, sizeof(disp), "attachment; filename=\"picture-%s-%s.csv\"",
		    json_string_value(json_object_get(json_object_get(pic, "period"), "from")),
		    c->kind);
		if (http_response_header(c->req, "Content-Disposition", disp) != 0)
			log_debug("header_refused", NULL);
		http_respond(c->req, 200, "text/csv; charset=utf-8", csv, len);
		free(csv);
	} else if (c->fmt == FMT_GEOJSON) {
		json_t *places = places_text ? json_loads(places_text, 0, NULL) : NULL;
		json_t *fc = picture_geojson(pic, places);
		json_decref(places);
		size_t len;
		/* coordinates as loaded, not 17 digits of binary noise */
		char *body = json_dumps(fc, JSON_COMPACT | JSON_REAL_PRECISION(10));
		len = body ? strlen(body) : 0;
		json_decref(fc);
		http_respond(c->req, 200, "application/geo+json", body, len);
		free(body);
	} else {
		http_respond_json(c->req, 200, json_incref(pic));
	}
	json_decref(pic);
	ctx_free(c);
}

static void
picture_step(ctx *c)
{
	picture_query(c, false, c->fmt == FMT_GEOJSON, on_picture);
}

static void
handle_picture(http_request *req, void *arg)
{
	ctx *c = ctx_new(arg, req);
	const char *path = http_request_path(req);
	size_t n = strlen(path);
	c->fmt = n > 4 && strcmp(path + n - 4, ".csv") == 0  ? FMT_CSV
	    : n > 8 && strcmp(path + n - 8, ".geojson") == 0 ? FMT_GEOJSON
	                                                     : FMT_JSON;
	const char *field;
	const char *err = set_params(c, http_request_query(req, "period"),
	    http_request_query(req, "at"), http_request_query(req, "from"),
	    http_request_query(req, "to"), http_request_query(req, "area"), &field);
	if (err)
		return fail(c, 400, "invalid_parameter", err, field);
	with_key(c, picture_step);
}

/* ---- places ---- */

static void
handle_places(http_request *req, void *arg)
{
	ctx *c = ctx_new(arg, req);
	c->fmt = FMT_GEOJSON;
	submit(c, "SELECT places_geojson()::text", 0, NULL, on_document);
}

/* ---- bodies of PUT /v1/comments and POST /v1/versions ---- */

/* Reads period (a kind, or an object {kind, at|from, to} as in the
 * picture), at, from, to and area from a body. */
static const char *
body_params(ctx *c, json_t *body, const char **field)
{
	json_t *p = json_object_get(body, "period");
	const char *kind = NULL, *at = NULL, *from = NULL, *to = NULL;
	*field = "period";
	if (json_is_object(p)) {
		kind = json_string_value(json_object_get(p, "kind"));
		at = json_string_value(json_object_get(p, "at"));
		from = json_string_value(json_object_get(p, "from"));
		to = json_string_value(json_object_get(p, "to"));
		if (kind && strcmp(kind, "custom") != 0 && at == NULL)
			at = from; /* the picture's period object: from is in it */
	} else if (json_is_string(p)) {
		kind = json_string_value(p);
	} else if (p != NULL && !json_is_null(p)) {
		return "period is a string or an object";
	}
	if (at == NULL)
		at = json_string_value(json_object_get(body, "at"));
	if (from == NULL)
		from = json_string_value(json_object_get(body, "from"));
	if (to == NULL)
		to = json_string_value(json_object_get(body, "to"));
	json_t *a = json_object_get(body, "area");
	if (a != NULL && !json_is_string(a)) {
		*field = "area";
		return "area is a string";
	}
	return set_params(c, kind, at, from, to, json_string_value(a), field);
}

static json_t *
parse_body(ctx *c)
{
	size_t len;
	const char *raw = http_request_body(c->req, &len);
	json_t *body = NULL;
	tjson_error e;
	if (tjson_parse(raw, len, c->r->cfg.common.http_max_body, 0, &body, &e) != 0) {
		fail(c, (unsigned)e.status, e.code, e.message, e.field);
		return NULL;
	}
	return body;
}

/* ---- comments ---- */

static const char SQL_COMMENT[] =
    "WITH p AS (SELECT * FROM picture_period($1,"
    "  coalesce($2::date, (now() AT TIME ZONE 'Europe/Stockholm')::date), $3::date, $4::date)),"
    " del AS (DELETE FROM comments c USING p WHERE $7 = '' AND c.period_from = p.f"
    "  AND c.period_to = p.t AND c.area = $5 AND c.section = $6),"
    " ins AS (INSERT INTO comments (period_from, period_to, area, section, text, author)"
    "  SELECT p.f, p.t, $5, $6, $7, $8 FROM p WHERE $7 <> ''"
    "  ON CONFLICT (period_from, period_to, area, section) DO UPDATE"
    "  SET text = EXCLUDED.text, author = EXCLUDED.author, updated_at = now())"
    " SELECT jsonb_build_object('comment', jsonb_build_object('period', jsonb_build_object("
    "  'kind', $1, 'from', p.f, 'to', p.t, 'label', p.label), 'area', $5, 'section', $6,"
    "  'text', $7, 'author', $8, 'updated_at', now()))::text FROM p";

/* A comment is part of the picture: cached pictures are stale now. */
static void
on_comment(void *arg, const db_reply *rep)
{
	ctx *c = arg;
	if (rep->err == 0)
		reporting_changed(c->r);
	on_document(arg, rep);
}

static void
comment_step(ctx *c)
{
	if (!c->keyed)
		return fail(c, 401, "unauthorized", "a staff or police key is needed", NULL);
	if (!is_editor(c))
		return fail(c, 403, "forbidden", "only staff and police write commentary", NULL);
	const char *v[8] = {c->kind, c->has_at ? c->at : NULL, c->has_from ? c->from : NULL,
	    c->has_to ? c->to : NULL, c->area, c->section, c->text, c->name};
	submit(c, SQL_COMMENT, 8, v, on_comment);
}

static bool
valid_section(const char *s)
{
	if (strcmp(s, "summary") == 0)
		return true;
	if (strncmp(s, "focus_area:", 11) == 0)
		return valid_slug(s + 11);
	if (strncmp(s, "place:", 6) == 0)
		return valid_slug(s + 6);
	return false;
}

static void
handle_comment(http_request *req, void *arg)
{
	ctx *c = ctx_new(arg, req);
	json_t *body = parse_body(c);
	if (body == NULL)
		return;
	tjson_error e;
	const char *section = NULL, *text = NULL, *field;
	static const char *const allowed[] = {"period", "at", "from", "to", "area", "section",
	    "text", NULL};
	if (tjson_check_fields(body, allowed, &e) != 0 ||
	    tjson_get_string(body, "section", true, 150, &section, &e) != 0 ||
	    tjson_get_string(body, "text", true, TEXT_MAX, &text, &e) != 0) {
		json_decref(body);
		return fail(c, (unsigned)e.status, e.code, e.message, e.field);
	}
	if (!valid_section(section)) {
		json_decref(body);
		return fail(c, 400, "invalid_parameter",
		    "section is summary, focus_area:<code> or place:<slug>", "section");
	}
	const char *err = body_params(c, body, &field);
	if (err) {
		json_decref(body);
		return fail(c, 400, "invalid_parameter", err, field);
	}
	snprintf(c->section, sizeof(c->section), "%s", section);
	c->text = xstrdup(text);
	json_decref(body);
	with_key(c, comment_step);
}

/* ---- versions ---- */

static const char SQL_VERSION_INSERT[] =
    "WITH v AS (SELECT jsonb_build_object('id', $1::text, 'published_by', $6::text,"
    "  'published_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')) j)"
    " INSERT INTO versions (id, period_kind, period_from, period_to, area, published_by,"
    "  document, public_document)"
    " SELECT $1::uuid, $2, $3::date, $4::date, $5, $6,"
    "  $7::jsonb || jsonb_build_object('version', v.j),"
    "  $8::jsonb || jsonb_build_object('version', v.j) FROM v"
    " RETURNING jsonb_build_object('version', jsonb_build_object('id', id, 'period',"
    "  document->'period', 'area', area, 'published_by', published_by, 'published_at',"
    "  document->'version'->'published_at'))::text";

static void
on_version_inserted(void *arg, const db_reply *rep)
{
	ctx *c = arg;
	if (rep->err != 0)
		return fail_db(c, rep);
	const char *body = PQgetvalue(rep->results[0], 0, 0);
	char loc[80];
	snprintf(loc, sizeof(loc), "/v1/versions/%s", c->id);
	if (http_response_header(c->req, "Location", loc) != 0)
		log_debug("header_refused", NULL);
	http_respond(c->req, 201, "application/json", body, strlen(body));
	ctx_free(c);
}

/* The staff picture is in; now the public one (suppressed), then insert. */
static void
on_version_public(ctx *c, const char *text, const char *places)
{
	TRYGG_UNUSED(places);
	json_t *pic = json_loads(text, 0, NULL);
	if (pic == NULL)
		return fail(c, 500, "internal", "internal error", NULL);
	picture_finish(pic, "public", c->r->cfg.suppress_threshold);
	c->doc_public = tjson_dump(pic, NULL);
	json_decref(pic);
	trygg_uuid4(c->id);
	const char *v[8] = {c->id, c->kind, c->vfrom, c->vto, c->area, c->name, c->doc_staff,
	    c->doc_public};
	submit(c, SQL_VERSION_INSERT, 8, v, on_version_inserted);
}

static void
on_version_staff(ctx *c, const char *text, const char *places)
{
	TRYGG_UNUSED(places);
	json_t *pic = json_loads(text, 0, NULL);
	if (pic == NULL)
		return fail(c, 500, "internal", "internal error", NULL);
	picture_finish(pic, c->role, c->r->cfg.suppress_threshold);
	json_t *per = json_object_get(pic, "period");
	snprintf(c->vfrom, sizeof(c->vfrom), "%s", json_string_value(json_object_get(per, "from")));
	snprintf(c->vto, sizeof(c->vto), "%s", json_string_value(json_object_get(per, "to")));
	c->doc_staff = tjson_dump(pic, NULL);
	json_decref(pic);
	picture_query(c, true, false, on_version_public);
}

static void
version_step(ctx *c)
{
	if (!c->keyed)
		return fail(c, 401, "unauthorized", "a staff or police key is needed", NULL);
	if (!is_editor(c))
		return fail(c, 403, "forbidden", "only staff and police publish versions", NULL);
	picture_query(c, false, false, on_version_staff);
}

static void
handle_version_post(http_request *req, void *arg)
{
	ctx *c = ctx_new(arg, req);
	json_t *body = parse_body(c);
	if (body == NULL)
		return;
	tjson_error e;
	const char *field;
	static const char *const allowed[] = {"period", "at", "from", "to", "area", NULL};
	if (tjson_check_fields(body, allowed, &e) != 0) {
		json_decref(body);
		return fail(c, (unsigned)e.status, e.code, e.message, e.field);
	}
	const char *err = body_params(c, body, &field);
	json_decref(body);
	if (err)
		return fail(c, 400, "invalid_parameter", err, field);
	with_key(c, version_step);
}

static const char SQL_VERSIONS[] =
    "SELECT jsonb_build_object('versions', coalesce(jsonb_agg(jsonb_build_object('id', id,"
    " 'period', document->'period', 'area', area, 'area_name', document->'area'->>'name',"
    " 'published_by', published_by, 'published_at', document->'version'->'published_at')"
    " ORDER BY published_at DESC, id), '[]'))::text FROM versions"
    " WHERE ($1::text IS NULL OR area = $1)";

static void
versions_step(ctx *c)
{
	const char *v[1] = {c->area[0] ? c->area : NULL};
	submit(c, SQL_VERSIONS, 1, v, on_document);
}

static void
handle_versions(http_request *req, void *arg)
{
	ctx *c = ctx_new(arg, req);
	const char *area = http_request_query(req, "area");
	if (area) {
		if (!valid_area(area))
			return fail(c, 400, "invalid_parameter",
			    "area is district, place:<slug> or survey:<slug>", "area");
		snprintf(c->area, sizeof(c->area), "%s", area);
	}
	with_key(c, versions_step);
}

static const char SQL_VERSION_GET[] =
    "SELECT CASE WHEN $2::boolean THEN document ELSE public_document END::text"
    " FROM versions WHERE id = $1::uuid";

static void
version_get_step(ctx *c)
{
	const char *v[2] = {c->id, is_editor(c) ? "true" : "false"};
	submit(c, SQL_VERSION_GET, 2, v, on_document);
}

static bool
is_uuid(const char *s)
{
	if (s == NULL || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

static void
handle_version_get(http_request *req, void *arg)
{
	ctx *c = ctx_new(arg, req);
	const char *id = http_request_param(req, "id");
	if (!is_uuid(id))
		return fail(c, 404, "not_found", "no such version", "id");
	snprintf(c->id, sizeof(c->id), "%s", id);
	with_key(c, version_get_step);
}

/* ---- the page ---- */

static void
handle_root(http_request *req, void *arg)
{
	TRYGG_UNUSED(arg);
	web_assets_respond(req, web_file_find(reporting_web, "index.html"));
}

int
api_register(reporting *r)
{
	http_server *h = r->svc.http;
	int rv;
	if ((rv = http_server_route(h, "GET /v1/picture", handle_picture, r)) != 0 ||
	    (rv = http_server_route(h, "GET /v1/picture.csv", handle_picture, r)) != 0 ||
	    (rv = http_server_route(h, "GET /v1/picture.geojson", handle_picture, r)) != 0 ||
	    (rv = http_server_route(h, "GET /v1/places", handle_places, r)) != 0 ||
	    (rv = http_server_route(h, "PUT /v1/comments", handle_comment, r)) != 0 ||
	    (rv = http_server_route(h, "POST /v1/versions", handle_version_post, r)) != 0 ||
	    (rv = http_server_route(h, "GET /v1/versions", handle_versions, r)) != 0 ||
	    (rv = http_server_route(h, "GET /v1/versions/{id}", handle_version_get, r)) != 0 ||
	    (rv = http_server_route(h, "GET /", handle_root, r)) != 0 ||
	    (rv = web_assets_register(h, "/static/", reporting_web, NULL)) != 0)
		return rv;
	return 0;
}
