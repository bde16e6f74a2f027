/*
 * api.c: the HTTP handlers (see api.h). Each request is one statement:
 * the key check, the authorisation and the work happen in the same
 * query, and transitions in task_action() (sql/002_issue9.sql), which
 * refuses with SQLSTATEs of its own (TN...) that map to HTTP statuses here.
 * A statement that lost a deadlock or a serialization conflict (40P01,
 * 40001) is run again a few times before the client sees an error.
 */
#include "api.h"

#include <ctype.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "directory.h"
#include "json.h"
#include "log.h"
#include "sign.h"

#define NOTE_MAX 2000
#define LIST_DEFAULT 100
#define LIST_MAX 1000
#define API_PARAMS_MAX 7
#define API_TRIES 4 /* a statement that lost a deadlock runs this often at most */

static const char SQL_ACTION[] = "SELECT task_action($1::uuid, $2, $3, $4, $5, $6, $7)::text";

static const char SQL_LIST[] =
    "WITH me AS (SELECT * FROM key_unit($1) WHERE name IS NOT NULL)"
    " SELECT (SELECT count(*) FROM me),"
    " (SELECT coalesce(jsonb_agg(j ORDER BY created_at DESC), '[]')::text FROM"
    "  (SELECT task_json(t) AS j, t.created_at FROM tasks t, me"
    "    WHERE (me.kind = 'operator' OR t.unit = me.name)"
    "      AND ($2::text IS NULL OR t.status = $2) AND ($3::text IS NULL OR t.unit = $3)"
    "      AND ($4::text IS NULL OR t.place = $4 OR t.task_key = $4)"
    "      AND ($5::text IS NULL"
    "           OR t.id = (SELECT tr.task_id FROM task_reports tr WHERE tr.report_id = $5))"
    "      AND ($7::timestamptz IS NULL OR t.created_at < $7::timestamptz)"
    "    ORDER BY t.created_at DESC LIMIT $6::int) x)";

static const char SQL_GET[] =
    "WITH me AS (SELECT * FROM key_unit($1) WHERE name IS NOT NULL)"
    " SELECT (SELECT count(*) FROM me),"
    " (SELECT (task_json(t) || jsonb_build_object("
    "   'deliveries', (SELECT coalesce(jsonb_agg(delivery_json(d) ORDER BY d.created_at, d.id),"
    "     '[]') FROM deliveries d WHERE d.task_id = t.id),"
    "   'history', (SELECT coalesce(jsonb_agg(jsonb_build_object('at', h.at, 'event', h.event,"
    "     'actor', h.actor, 'detail', h.detail) ORDER BY h.id), '[]')"
    "     FROM task_history h WHERE h.task_id = t.id)))::text"
    "  FROM tasks t, me WHERE t.id = $2::uuid AND (me.kind = 'operator' OR t.unit = me.name))";

static const char SQL_DELIVERIES[] =
    "WITH me AS (SELECT * FROM key_unit($1) WHERE name IS NOT NULL)"
    " SELECT (SELECT count(*) FROM me), coalesce((SELECT bool_or(kind = 'operator') FROM me),"
    " false),"
    " (SELECT coalesce(jsonb_agg(j ORDER BY created_at DESC), '[]')::text FROM"
    "  (SELECT delivery_json(d) AS j, d.created_at FROM deliveries d"
    "    WHERE ($2::text IS NULL OR d.status = $2) AND ($3::text IS NULL OR d.unit = $3)"
    "      AND ($4::uuid IS NULL OR d.task_id = $4::uuid)"
    "    ORDER BY d.created_at DESC LIMIT $5::int) x)";

typedef struct req_kind req_kind;

typedef struct api_ctx {
	notifier *n;
	http_request *req;
	const req_kind *kind;
	char action[16];
	char task[37];
	/* the statement, kept to run it again after a deadlock */
	const char *sql;
	int nparams;
	char *values[API_PARAMS_MAX];
	int tries;
} api_ctx;

/* task_action's refusals (sql/002_issue9.sql). */
static const struct action_error {
	const char *sqlstate;
	unsigned status;
	const char *code;
} action_errors[] = {
    {"TNKEY", 401, "unauthorized"},
    {"TNNOT", 404, "not_found"},
    {"TNACT", 400, "invalid_action"},
    {"TNDON", 409, "conflict"},
    {"TNDEC", 409, "conflict"},
};

static const struct action_error *
action_error(const char *sqlstate)
{
	for (size_t i = 0; sqlstate && i < TRYGG_ARRAY_LEN(action_errors); i++)
		if (strcmp(sqlstate, action_errors[i].sqlstate) == 0)
			return &action_errors[i];
	return NULL;
}

/* A deadlock or serialization failure: the statement may simply run again. */
static bool
retryable(const db_reply *rep)
{
	return rep->err == TRYGG_EDB && rep->sqlstate &&
	    (strcmp(rep->sqlstate, "40P01") == 0 || strcmp(rep->sqlstate, "40001") == 0);
}

static void
ctx_free(api_ctx *c)
{
	for (int i = 0; i < c->nparams; i++)
		free(c->values[i]);
	free(c);
}

static int submit_ctx(api_ctx *c);

/* The SHA-256 of the bearer key, or false (and a 401 sent). */
static bool
auth_key(http_request *req, char hash[SIGN_HEX_LEN])
{
	const char *h = http_request_header(req, "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
		if (http_response_header(req, "WWW-Authenticate", "Bearer") != 0)
			log_debug("header_refused", NULL);
		http_respond_error(req, 401, "unauthorized",
		    "an Authorization: Bearer key is required", NULL);
		return false;
	}
	const char *key = h + 7;
	while (*key == ' ')
		key++;
	size_t len = strlen(key);
	if (len == 0 || len > 256) {
		http_respond_error(req, 401, "unauthorized", "malformed key", NULL);
		return false;
	}
	crypto_sha256_hex(key, len, hash);
	return true;
}

static void
respond_unavailable(http_request *req)
{
	if (http_response_header(req, "Retry-After", "1") != 0)
		log_debug("header_refused", NULL);
	http_respond_error(req, 503, "unavailable", "the database is not reachable; retry shortly",
	    NULL);
}

static const char PAGE_HEAD[] =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width\"><title>Trygg task</title>"
    "<style>body{font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em}"
    "button{font-size:1.2em;padding:.5em 1.5em}</style></head><body>";

static void respond_page(http_request *req, unsigned status, const char *fmt, ...)
    TRYGG_PRINTF(3, 4);

static void
respond_page(http_request *req, unsigned status, const char *fmt, ...)
{
	char body[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	char *page = xasprintf("%s%s</body></html>", PAGE_HEAD, body);
	if (http_response_header(req, "Cache-Control", "no-store") != 0 ||
	    http_response_header(req, "Referrer-Policy", "no-referrer") != 0)
		log_debug("header_refused", NULL);
	http_respond(req, status, "text/html; charset=utf-8", page, strlen(page));
	free(page);
}

static const char *
action_word(const char *action)
{
	return strcmp(action, "ack") == 0 ? "acknowledged" : "marked done";
}

/*
 * What each kind of request does with its statement's outcome: one small
 * function per kind, chosen by the handler that submits the statement.
 * replied() handles what all share (retries, Postgres away, failures).
 */
struct req_kind {
	/* Answers a refusal of task_action (its own SQLSTATE); NULL for a
	 * statement that is not task_action. */
	void (*refused)(api_ctx *c, const struct action_error *e, const char *message);
	/* Answers an error that is the client's; false if rep is not one.
	 * May be NULL. */
	bool (*client_error)(api_ctx *c, const db_reply *rep);
	/* Answers the result of a statement that succeeded. */
	void (*answer)(api_ctx *c, const PGresult *r);
};

/* POST /v1/tasks/{id}/{ack,done,decline}: JSON in, JSON out. */
static void
action_refused(api_ctx *c, const struct action_error *e, const char *message)
{
	http_respond_error(c->req, e->status, e->code, message, NULL);
}

static void
action_answer(api_ctx *c, const PGresult *r)
{
	notifier_after_commit(c->n, true); /* an action may schedule deliveries */
	const char *body = PQgetvalue(r, 0, 0);
	http_respond(c->req, 200, "application/json", body, strlen(body));
}

/* GET /v1/links/...: the same action from a signed link, answered as a page. */
static void
link_refused(api_ctx *c, const struct action_error *e, const char *message)
{
	(void)message;
	respond_page(c->req, e->status == 404 ? 404 : 409,
	    "<h1>Not possible</h1><p>Task <code>%s</code> cannot be %s: %s.</p>", c->task,
	    action_word(c->action),
	    strcmp(e->sqlstate, "TNDON") == 0       ? "it is already done"
	        : strcmp(e->sqlstate, "TNDEC") == 0 ? "it was declined"
	                                            : "it is not known");
}

static void
link_answer(api_ctx *c, const PGresult *r)
{
	(void)r;
	notifier_after_commit(c->n, true); /* an action may schedule deliveries */
	respond_page(c->req, 200, "<h1>Task %s</h1><p>Task <code>%s</code> is %s. Thank you.</p>",
	    action_word(c->action), c->task, action_word(c->action));
}

/*
 * The reads answer one row: column 0 counts the keys that matched, then
 * (deliveries only) whether one is an operator's, then the JSON. Returns
 * the JSON at column col, or NULL after answering 401, 403 or 404.
 */
static const char *
read_json(api_ctx *c, const PGresult *r, int col, bool operator_only)
{
	if (strcmp(PQgetvalue(r, 0, 0), "0") == 0) {
		http_respond_error(c->req, 401, "unauthorized", "unknown or revoked key", NULL);
		return NULL;
	}
	if (operator_only && PQgetvalue(r, 0, 1)[0] != 't') {
		http_respond_error(c->req, 403, "forbidden", "an operator key is required", NULL);
		return NULL;
	}
	if (PQgetisnull(r, 0, col)) {
		http_respond_error(c->req, 404, "not_found", "no such task for this unit", NULL);
		return NULL;
	}
	return PQgetvalue(r, 0, col);
}

/* Responds {"<name>": json}. */
static void
respond_wrapped(api_ctx *c, const char *name, const char *json)
{
	char *body = xasprintf("{\"%s\":%s}", name, json);
	http_respond(c->req, 200, "application/json", body, strlen(body));
	free(body);
}

/* GET /v1/tasks. The only value it casts is `before`: a date Postgres
 * cannot read (22007) or that does not exist (22008) is the client's. */
static bool
list_client_error(api_ctx *c, const db_reply *rep)
{
	if (rep->sqlstate == NULL ||
	    (strcmp(rep->sqlstate, "22007") != 0 && strcmp(rep->sqlstate, "22008") != 0))
		return false;
	http_respond_error(c->req, 400, "invalid_value", "before must be a valid timestamp",
	    "before");
	return true;
}

static void
list_answer(api_ctx *c, const PGresult *r)
{
	const char *json = read_json(c, r, 1, false);
	if (json != NULL)
		respond_wrapped(c, "tasks", json);
}

/* GET /v1/tasks/{id}. */
static void
get_answer(api_ctx *c, const PGresult *r)
{
	const char *json = read_json(c, r, 1, false);
	if (json != NULL)
		http_respond(c->req, 200, "application/json", json, strlen(json));
}

/* GET /v1/deliveries: operators only. */
static void
deliveries_answer(api_ctx *c, const PGresult *r)
{
	const char *json = read_json(c, r, 2, true);
	if (json != NULL)
		respond_wrapped(c, "deliveries", json);
}

static const req_kind req_action = {.refused = action_refused, .answer = action_answer};
static const req_kind req_link = {.refused = link_refused, .answer = link_answer};
static const req_kind req_list = {.client_error = list_client_error, .answer = list_answer};
static const req_kind req_get = {.answer = get_answer};
static const req_kind req_deliveries = {.answer = deliveries_answer};

static void
replied(void *arg, const db_reply *rep)
{
	api_ctx *c = arg;
	http_request *req = c->req;
	if (retryable(rep) && c->tries < API_TRIES) {
		log_info("api_retry", "\"request_id\":\"%s\",\"sqlstate\":\"%s\",\"try\":%d",
		    http_request_id(req), rep->sqlstate, c->tries);
		if (submit_ctx(c) == 0)
			return;
		respond_unavailable(req);
		goto out;
	}
	if (rep->err == TRYGG_EDBCONN || rep->err == TRYGG_ECLOSED) {
		respond_unavailable(req);
		goto out;
	}
	const struct action_error *refused = NULL;
	if (rep->err == TRYGG_EDB && c->kind->refused != NULL &&
	    (refused = action_error(rep->sqlstate)) != NULL) {
		c->kind->refused(c, refused, rep->message ? rep->message : refused->code);
		goto out;
	}
	if (rep->err == TRYGG_EDB && c->kind->client_error != NULL && c->kind->client_error(c, rep))
		goto out;
	if (rep->err != 0) {
		char mb[300];
		log_error("api_query_failed",
		    "\"request_id\":\"%s\",\"sqlstate\":\"%s\",\"error\":%s", http_request_id(req),
		    rep->sqlstate ? rep->sqlstate : "", log_json_str(rep->message, mb, sizeof(mb)));
		http_respond_error(req, 500, "internal", "internal error", NULL);
		goto out;
	}
	c->kind->answer(c, rep->results[0]);
out:
	ctx_free(c);
}

/* Runs c's statement (again); 0, or an error with nothing submitted. */
static int
submit_ctx(api_ctx *c)
{
	db_batch *b = db_batch_new();
	db_batch_add(b, c->sql, c->nparams, (const char *const *)c->values);
	if (db_pool_submit(c->n->svc.pool, b, replied, c) != 0) {
		db_batch_free(b);
		return TRYGG_EDBCONN;
	}
	c->tries++;
	return 0;
}

/* Submits one statement for the request; answers 503 if Postgres is away. */
static void
submit(notifier *n, http_request *req, const req_kind *kind, const char *sql, int nparams,
    const char *const *values, const char *action, const char *task)
{
	api_ctx *c = xcalloc(1, sizeof(*c));
	c->n = n;
	c->req = req;
	c->kind = kind;
	c->sql = sql;
	c->nparams = nparams;
	for (int i = 0; i < nparams && i < API_PARAMS_MAX; i++)
		c->values[i] = values[i] ? xstrdup(values[i]) : NULL;
	snprintf(c->action, sizeof(c->action), "%s", action ? action : "");
	snprintf(c->task, sizeof(c->task), "%s", task ? task : "");
	if (submit_ctx(c) != 0) {
		ctx_free(c);
		respond_unavailable(req);
	}
}

static void
handle_action(http_request *req, notifier *n, const char *action)
{
	char hash[SIGN_HEX_LEN];
	const char *task = http_request_param(req, "id");
	if (!auth_key(req, hash))
		return;
	if (!trygg_uuid_valid(task)) {
		http_respond_error(req, 404, "not_found", "no such task", "id");
		return;
	}
	size_t len;
	const char *raw = http_request_body(req, &len);
	json_t *obj = NULL;
	tjson_error err;
	const char *note = NULL, *reason = NULL, *owner = NULL;
	if (len > 0 && tjson_parse(raw, len, 64 * 1024, 4, &obj, &err) != 0)
		goto bad;
	if (obj) {
		static const char *const allowed[] = {"note", "reason", "owner", NULL};
		if (tjson_check_fields(obj, allowed, &err) != 0 ||
		    tjson_get_string(obj, "note", false, NOTE_MAX, &note, &err) != 0 ||
		    tjson_get_string(obj, "reason", false, 32, &reason, &err) != 0 ||
		    tjson_get_string(obj, "owner", false, 200, &owner, &err) != 0)
			goto bad;
	}
	if (strcmp(action, "decline") == 0) {
		if (reason == NULL) {
			tjson_error_set(&err, "missing_field", "reason",
			    "reason is required: not_ours, duplicate or no_action");
			goto bad;
		}
		if (strcmp(reason, "not_ours") != 0 && strcmp(reason, "duplicate") != 0 &&
		    strcmp(reason, "no_action") != 0) {
			tjson_error_set(&err, "invalid_value", "reason",
			    "reason must be not_ours, duplicate or no_action");
			goto bad;
		}
		if (strcmp(reason, "not_ours") == 0 && (owner == NULL || owner[0] == '\0')) {
			tjson_error_set(&err, "missing_field", "owner",
			    "owner (who is responsible instead) is required with not_ours");
			goto bad;
		}
	} else if (reason || owner) {
		tjson_error_set(&err, "unknown_field", reason ? "reason" : "owner",
		    "only decline takes a reason and an owner");
		goto bad;
	}
	const char *values[7] = {task, action, hash, NULL, note, reason, owner};
	submit(n, req, &req_action, SQL_ACTION, 7, values, action, task);
	json_decref(obj);
	return;
bad:
	json_decref(obj);
	http_respond_error(req, 400, err.code, err.message, err.field[0] ? err.field : NULL);
}

static void
handle_ack(http_request *req, void *arg)
{
	handle_action(req, arg, "ack");
}

static void
handle_done(http_request *req, void *arg)
{
	handle_action(req, arg, "done");
}

static void
handle_decline(http_request *req, void *arg)
{
	handle_action(req, arg, "decline");
}

/* A query parameter from a fixed set (or absent); false after a 400. */
static bool
query_enum(http_request *req, const char *name, const char *const *allowed, const char **out)
{
	const char *v = http_request_query(req, name);
	*out = NULL;
	if (v == NULL || v[0] == '\0')
		return true;
	for (; *allowed; allowed++)
		if (strcmp(v, *allowed) == 0) {
			*out = v;
			return true;
		}
	char msg[128];
	snprintf(msg, sizeof(msg), "unknown value for %s", name);
	http_respond_error(req, 400, "invalid_value", msg, name);
	return false;
}

/* A short free-text query parameter (or absent); false after a 400. */
static bool
query_text(http_request *req, const char *name, size_t max, const char **out)
{
	const char *v = http_request_query(req, name);
	*out = v && v[0] ? v : NULL;
	if (*out && strlen(*out) > max) {
		http_respond_error(req, 400, "too_long", "parameter too long", name);
		return false;
	}
	return true;
}

static bool
query_limit(http_request *req, char *buf, size_t len)
{
	const char *v = http_request_query(req, "limit");
	long n = LIST_DEFAULT;
	if (v && v[0]) {
		char *end;
		n = strtol(v, &end, 10);
		if (*end != '\0' || n < 1 || n > LIST_MAX) {
			http_respond_error(req, 400, "out_of_range", "limit must be 1..1000",
			    "limit");
			return false;
		}
	}
	snprintf(buf, len, "%ld", n);
	return true;
}

static void
handle_list(http_request *req, void *arg)
{
	static const char *const statuses[] = {"open", "dispatched", "acknowledged", "done",
	    "declined", NULL};
	char hash[SIGN_HEX_LEN], limit[16];
	const char *status, *unit, *place, *report, *before;
	if (!auth_key(req, hash) || !query_enum(req, "status", statuses, &status) ||
	    !query_text(req, "unit", 64, &unit) || !query_text(req, "place", 160, &place) ||
	    !query_text(req, "report_id", 64, &report) || !query_text(req, "before", 40, &before) ||
	    !query_limit(req, limit, sizeof(limit)))
		return;
	if (before) {
		/* Only digits, '-', ':', 'T', '.', '+', 'Z': a timestamp. */
		for (const char *p = before; *p; p++)
			if (!isdigit((unsigned char)*p) && !strchr("-:T.+Z ", *p)) {
				http_respond_error(req, 400, "invalid_value",
				    "before must be a timestamp", "before");
				return;
			}
	}
	const char *values[7] = {hash, status, unit, place, report, limit, before};
	submit(arg, req, &req_list, SQL_LIST, 7, values, NULL, NULL);
}

static void
handle_get(http_request *req, void *arg)
{
	char hash[SIGN_HEX_LEN];
	const char *task = http_request_param(req, "id");
	if (!auth_key(req, hash))
		return;
	if (!trygg_uuid_valid(task)) {
		http_respond_error(req, 404, "not_found", "no such task", "id");
		return;
	}
	const char *values[2] = {hash, task};
	submit(arg, req, &req_get, SQL_GET, 2, values, NULL, task);
}

static void
handle_deliveries(http_request *req, void *arg)
{
	static const char *const statuses[] = {"pending", "delivered", "dead", NULL};
	char hash[SIGN_HEX_LEN], limit[16];
	const char *status, *unit, *task;
	if (!auth_key(req, hash) || !query_enum(req, "status", statuses, &status) ||
	    !query_text(req, "unit", 64, &unit) || !query_text(req, "task", 36, &task) ||
	    !query_limit(req, limit, sizeof(limit)))
		return;
	if (task && !trygg_uuid_valid(task)) {
		http_respond_error(req, 400, "invalid_value", "task must be a task id", "task");
		return;
	}
	const char *values[5] = {hash, status, unit, task, limit};
	submit(arg, req, &req_deliveries, SQL_DELIVERIES, 5, values, NULL, NULL);
}

/* Checks a signed link; answers 403/404 itself and returns false if bad. */
static bool
link_ok(http_request *req, notifier *n, const char **action, const char **task)
{
	*action = http_request_param(req, "action");
	*task = http_request_param(req, "id");
	const char *e = http_request_query(req, "e"), *s = http_request_query(req, "s");
	if ((strcmp(*action, "ack") != 0 && strcmp(*action, "done") != 0) ||
	    !trygg_uuid_valid(*task)) {
		respond_page(req, 404, "<h1>Unknown link</h1>");
		return false;
	}
	char *end = NULL;
	long long exp = e ? strtoll(e, &end, 10) : 0;
	const char *secret = directory_link_secret(n->dir);
	if (e == NULL || s == NULL || *end != '\0' || secret[0] == '\0' ||
	    !sign_link_verify(secret, *action, *task, exp, s, trygg_wall_us() / 1000000)) {
		respond_page(req, 403,
		    "<h1>Link not valid</h1><p>This link is invalid or has expired. Use the "
		    "newest message about the task, or the API.</p>");
		return false;
	}
	return true;
}

static void
handle_link_get(http_request *req, void *arg)
{
	const char *action, *task;
	if (!link_ok(req, arg, &action, &task))
		return;
	bool ack = strcmp(action, "ack") == 0;
	respond_page(req, 200,
	    "<h1>%s task</h1><p>Task <code>%s</code></p>"
	    "<form method=\"post\"><button type=\"submit\">%s</button></form>",
	    ack ? "Acknowledge" : "Complete", task,
	    ack ? "Acknowledge: we are on it" : "Mark done");
}

static void
handle_link_post(http_request *req, void *arg)
{
	const char *action, *task;
	if (!link_ok(req, arg, &action, &task))
		return;
	const char *values[7] = {task, action, NULL, "signed link", NULL, NULL, NULL};
	submit(arg, req, &req_link, SQL_ACTION, 7, values, action, task);
}

int
api_register(notifier *n)
{
	http_server *h = n->svc.http;
	int rv = 0;
	rv = rv ? rv : http_server_route(h, "POST /v1/tasks/{id}/ack", handle_ack, n);
	rv = rv ? rv : http_server_route(h, "POST /v1/tasks/{id}/done", handle_done, n);
	rv = rv ? rv : http_server_route(h, "POST /v1/tasks/{id}/decline", handle_decline, n);
	rv = rv ? rv : http_server_route(h, "GET /v1/tasks", handle_list, n);
	rv = rv ? rv : http_server_route(h, "GET /v1/tasks/{id}", handle_get, n);
	rv = rv ? rv : http_server_route(h, "GET /v1/deliveries", handle_deliveries, n);
	rv = rv ? rv : http_server_route(h, "GET /v1/links/{action}/{id}", handle_link_get, n);
	rv = rv ? rv : http_server_route(h, "POST /v1/links/{action}/{id}", handle_link_post, n);
	return rv;
}
