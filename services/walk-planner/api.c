/*
 * api.c: walk-planner's HTTP API (docs/walk-planner.md). Every route is
 * one call of the schema's api() function (sql/003_api.sql): the handler
 * turns the request into one JSON argument (operation, bearer key, path
 * and query parameters, parsed body, Idempotency-Key, the route settings,
 * the public base URL and, for a proposal, that date's sunset from sun.h),
 * and api() authorises, validates, changes state and writes the events in
 * one transaction. api() refuses with SQLSTATE TW<http status> and the
 * error object {code, field, message} as its message; those become the
 * usual error body. A statement that lost a deadlock, a serialization
 * conflict or a unique race (two requests with the same Idempotency-Key)
 * runs again a few times.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "json.h"
#include "log.h"
#include "sun.h"
#include "walk_planner.h"
#include "web_assets.h"

extern const struct web_file walk_planner_web[];

#define TRIES 4
#define KEY_MAX 256

enum route_flags {
	R_BODY = 1,   /* reads a JSON body */
	R_SUNSET = 2, /* needs the sunset of body.date */
	R_FORM = 4,   /* also takes an HTML form body */
	R_READ = 8,   /* reads only: no relay kick */
};

typedef struct route {
	const char *pattern;
	const char *op;
	const char *format; /* protocol: json, csv, html */
	unsigned flags;
	walk_planner *wp;
} route;

static route routes[] = {
    {"GET /v1/meta", "meta", NULL, R_READ, NULL},
    {"GET /v1/hotspots", "hotspots", NULL, R_READ, NULL},
    {"POST /v1/walks/proposals", "proposal", NULL, R_BODY | R_SUNSET | R_READ, NULL},
    {"POST /v1/walks", "walk_create", NULL, R_BODY, NULL},
    {"GET /v1/walks", "walk_list", NULL, R_READ, NULL},
    {"GET /v1/walks/{id}", "walk_get", NULL, R_READ, NULL},
    {"PATCH /v1/walks/{id}", "walk_patch", NULL, R_BODY, NULL},
    {"POST /v1/walks/{id}/status", "walk_status", NULL, R_BODY, NULL},
    {"POST /v1/walks/{id}/rewalk", "rewalk", NULL, R_BODY, NULL},
    {"POST /v1/walks/{id}/findings", "finding_create", NULL, R_BODY, NULL},
    {"GET /v1/walks/{id}/findings", "finding_list", NULL, R_READ, NULL},
    {"GET /v1/walks/{id}/protocol", "protocol", "json", R_READ, NULL},
    {"GET /v1/walks/{id}/protocol.csv", "protocol", "csv", R_READ, NULL},
    {"GET /v1/walks/{id}/protocol.html", "protocol", "html", R_READ, NULL},
    {"GET /v1/findings/{id}", "finding_get", NULL, R_READ, NULL},
    {"PATCH /v1/findings/{id}", "finding_patch", NULL, R_BODY, NULL},
    {"POST /v1/findings/{id}/verify", "finding_verify", NULL, R_BODY, NULL},
    {"GET /v1/findings/{id}/progress", "progress", NULL, 0, NULL},
    {"POST /v1/findings/{id}/progress", "progress", NULL, R_BODY | R_FORM, NULL},
    {"GET /v1/rsvp", "rsvp", NULL, 0, NULL},
};

/* The query parameters any route may read. */
static const char *const query_names[] = {"from", "to", "area", "limit", "public", "sig", "i", "w",
    "a", "format", NULL};

typedef struct call {
	walk_planner *wp;
	http_request *req;
	const route *rt;
	char *args;
	int tries;
} call;

static void
call_free(call *c)
{
	free(c->args);
	free(c);
}

static void
respond_unavailable(http_request *req)
{
	if (http_response_header(req, "Retry-After", "1") != 0)
		log_debug("header_refused", NULL);
	http_respond_error(req, 503, "unavailable", "the database is not reachable; retry shortly",
	    NULL);
}

static bool
retryable(const db_reply *rep)
{
	return rep->err == TRYGG_EDB && rep->sqlstate &&
	    (strcmp(rep->sqlstate, "40P01") == 0 || strcmp(rep->sqlstate, "40001") == 0 ||
	        strcmp(rep->sqlstate, "23505") == 0);
}

/* api()'s refusal: SQLSTATE TW<status>, message {code, field, message}. */
static bool
respond_refusal(http_request *req, const db_reply *rep)
{
	if (rep->err != TRYGG_EDB || rep->sqlstate == NULL || strncmp(rep->sqlstate, "TW", 2) != 0)
		return false;
	unsigned status = (unsigned)atoi(rep->sqlstate + 2);
	json_t *e = rep->message ? json_loads(rep->message, 0, NULL) : NULL;
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *field = json_string_value(json_object_get(e, "field"));
	if (status < 400 || status > 499)
		status = 400;
	if (status == 401 && http_response_header(req, "WWW-Authenticate", "Bearer") != 0)
		log_debug("header_refused", NULL);
	http_respond_error(req, status, code ? code : "invalid", msg ? msg : "refused", field);
	json_decref(e);
	return true;
}

static int submit_call(call *c);

static void
replied(void *arg, const db_reply *rep)
{
	call *c = arg;
	http_request *req = c->req;
	if (retryable(rep) && c->tries < TRIES) {
		if (submit_call(c) == 0)
			return;
		respond_unavailable(req);
		goto out;
	}
	if (rep->err == TRYGG_EDBCONN || rep->err == TRYGG_ECLOSED) {
		respond_unavailable(req);
		goto out;
	}
	if (respond_refusal(req, rep))
		goto out;
	if (rep->err != 0) {
		char mb[400];
		log_error("api_query_failed",
		    "\"request_id\":\"%s\",\"op\":\"%s\",\"sqlstate\":\"%s\",\"error\":%s",
		    http_request_id(req), c->rt->op, rep->sqlstate ? rep->sqlstate : "",
		    log_json_str(rep->message, mb, sizeof(mb)));
		http_respond_error(req, 500, "internal", "internal error", NULL);
		goto out;
	}
	if (!(c->rt->flags & R_READ))
		svc_relay_kick(&c->wp->svc);
	json_t *res = json_loads(PQgetvalue(rep->results[0], 0, 0), 0, NULL);
	unsigned status = (unsigned)json_integer_value(json_object_get(res, "status"));
	const char *text = json_string_value(json_object_get(res, "text"));
	if (res == NULL || status < 200) {
		http_respond_error(req, 500, "internal", "internal error", NULL);
	} else if (text != NULL) {
		const char *ct = json_string_value(json_object_get(res, "content_type"));
		if (http_response_header(req, "Cache-Control", "no-store") != 0 ||
		    http_response_header(req, "Referrer-Policy", "no-referrer") != 0)
			log_debug("header_refused", NULL);
		http_respond(req, status, ct, text, strlen(text));
	} else {
		http_respond_json(req, status, json_incref(json_object_get(res, "body")));
	}
	json_decref(res);
out:
	call_free(c);
}

static int
submit_call(call *c)
{
	const char *v[1] = {c->args};
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT api($1::jsonb)::text", 1, v);
	if (db_pool_submit(c->wp->svc.pool, b, replied, c) != 0) {
		db_batch_free(b);
		return TRYGG_EDBCONN;
	}
	c->tries++;
	return 0;
}

/* The bearer key, or NULL (none or malformed: api() answers 401 where one
 * is needed). */
static const char *
bearer(http_request *req)
{
	const char *h = http_request_header(req, "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	size_t n = strlen(h);
	return n == 0 || n > KEY_MAX ? NULL : h;
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* application/x-www-form-urlencoded into an object of strings; NULL if
 * the bytes do not decode to UTF-8. */
static json_t *
form_object(const char *body, size_t len)
{
	json_t *o = json_object();
	char *buf = xmalloc(len + 1);
	size_t i = 0;
	while (i < len) {
		char *key = NULL;
		size_t n = 0;
		for (; i < len && body[i] != '&'; i++) {
			char ch = body[i];
			if (ch == '+')
				ch = ' ';
			else if (ch == '%' && i + 2 < len && hexval(body[i + 1]) >= 0 &&
			    hexval(body[i + 2]) >= 0) {
				ch = (char)(hexval(body[i + 1]) * 16 + hexval(body[i + 2]));
				i += 2;
			} else if (ch == '=' && key == NULL) {
				buf[n] = '\0';
				key = xstrdup(buf);
				n = 0;
				continue;
			}
			buf[n++] = ch;
		}
		buf[n] = '\0';
		i++;
		if (key != NULL && trygg_utf8_valid(key, strlen(key)) && trygg_utf8_valid(buf, n) &&
		    json_object_get(o, key) == NULL)
			json_object_set_new(o, key, json_string(buf));
		free(key);
	}
	free(buf);
	return o;
}

/* The sunset (UTC µs) at the district's centre on body.date, or 0. */
static int64_t
sunset_of(json_t *body)
{
	const char *d = json_string_value(json_object_get(body, "date"));
	struct tm tm = {0};
	if (d == NULL || strlen(d) != 10 ||
	    sscanf(d, "%4d-%2d-%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) != 3)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	tm.tm_hour = 12;
	time_t t = timegm(&tm);
	int64_t rise, set;
	sun_times(WP_CENTRE_LAT, WP_CENTRE_LONG, (int64_t)t * 1000000, &rise, &set);
	return set;
}

static void
handle(http_request *req, void *arg)
{
	route *rt = arg;
	walk_planner *wp = rt->wp;
	json_t *a =
	    json_pack("{s:s, s:s, s:s, s:o}", "op", rt->op, "method", http_request_method(req),
	        "base_url", wp->cfg.public_url, "cfg", json_loads(wp->cfg_json, 0, NULL));
	if (rt->format)
		json_object_set_new(a, "format", json_string(rt->format));
	const char *key = bearer(req);
	if (key)
		json_object_set_new(a, "key", json_string(key));
	const char *idem = http_request_header(req, "Idempotency-Key");
	if (idem && trygg_utf8_valid(idem, strlen(idem)))
		json_object_set_new(a, "idem", json_string(idem));
	json_t *params = json_object();
	const char *id = http_request_param(req, "id");
	if (id && trygg_utf8_valid(id, strlen(id)))
		json_object_set_new(params, "id", json_string(id));
	json_object_set_new(a, "params", params);
	json_t *q = json_object();
	for (size_t i = 0; query_names[i]; i++) {
		const char *v = http_request_query(req, query_names[i]);
		if (v && trygg_utf8_valid(v, strlen(v)))
			json_object_set_new(q, query_names[i], json_string(v));
	}
	json_object_set_new(a, "query", q);
	if (rt->flags & R_BODY) {
		size_t len;
		const char *body = http_request_body(req, &len);
		const char *ct = http_request_header(req, "Content-Type");
		json_t *obj = NULL;
		if ((rt->flags & R_FORM) && ct &&
		    strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0) {
			obj = form_object(body, len);
			json_object_set_new(a, "form", json_string("true"));
		} else if (len == 0) {
			obj = json_object();
		} else {
			tjson_error e;
			if (tjson_parse(body, len, wp->cfg.common.http_max_body, 0, &obj, &e) !=
			    0) {
				json_decref(a);
				http_respond_error(req, (unsigned)e.status, e.code, e.message,
				    e.field);
				return;
			}
		}
		if (rt->flags & R_SUNSET)
			json_object_set_new(a, "sunset_us", json_integer(sunset_of(obj)));
		json_object_set_new(a, "body", obj);
	}
	call *c = xcalloc(1, sizeof(*c));
	c->wp = wp;
	c->req = req;
	c->rt = rt;
	c->args = tjson_dump(a, NULL);
	json_decref(a);
	if (c->args == NULL || submit_call(c) != 0) {
		call_free(c);
		respond_unavailable(req);
	}
}

int
wp_api_register(walk_planner *wp)
{
	double detour = wp->cfg.detour_percent / 100.0;
	json_t *cfg = json_pack("{s:f, s:f, s:i, s:i, s:i, s:I, s:I, s:s}", "detour", detour,
	    "speed_kmh", wp->cfg.speed_m_per_h / 1000.0, "max_length_m", wp->cfg.max_length_m,
	    "max_minutes", wp->cfg.max_minutes, "stop_minutes", wp->cfg.stop_minutes,
	    "after_sunset_min", (json_int_t)(wp->cfg.after_sunset_ms / 60000), "day_start_min",
	    (json_int_t)(wp->cfg.day_start_ms / 60000), "organizer_email", wp->cfg.organizer_email);
	wp->cfg_json = tjson_dump(cfg, NULL);
	json_decref(cfg);
	for (size_t i = 0; i < TRYGG_ARRAY_LEN(routes); i++) {
		routes[i].wp = wp;
		int rv = http_server_route(wp->svc.http, routes[i].pattern, handle, &routes[i]);
		if (rv != 0)
			return rv;
	}
	/* The phone page (walk-planner-phone's files, embedded). */
	if (walk_planner_web[0].name != NULL)
		return web_assets_register(wp->svc.http, "/phone/", walk_planner_web, "index.html");
	return 0;
}
