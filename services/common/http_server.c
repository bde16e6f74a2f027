/*
 * http_server.c: libmicrohttpd driven by the libuv loop.
 *
 * MHD runs in external-epoll mode with suspend/resume: a uv_poll watches
 * MHD's epoll fd for readability and a uv_timer follows MHD_get_timeout;
 * both call run_mhd(), which calls MHD_run and re-arms the timer. Resuming
 * a suspended connection "kicks" the timer to 0 ms so MHD_run comes round
 * again on the next loop iteration.
 *
 * The access handler follows MHD's call pattern: the first call for a
 * request (with *con_cls == NULL) only creates our http_request, copies
 * what handlers need (method, path, headers, query, client address) so the
 * request never points into MHD's per-connection memory, matches the
 * route, and rejects an oversized Content-Length at once; the calls with
 * upload data accumulate the body; the last call (no data left) runs the
 * handler. If the handler has not answered when it returns, the connection
 * is suspended; http_respond* stores the response and resumes it, and MHD
 * calls the access handler again, which queues the stored response.
 *
 * A request is freed in exactly one place: by on_completed() when MHD is
 * done with it and nobody else holds it (it was answered, or never handed
 * to a handler), else by the http_respond* call that comes after
 * completion.
 *
 * Connections (against slowloris): MHD tells us when each connection
 * starts and closes (MHD_OPTION_NOTIFY_CONNECTION); we keep an `hconn` per
 * connection as its socket context. A connection waiting for a request
 * head sits in the `waiting` list, oldest first, from accept (or from the
 * end of its previous response) until the first access call of its next
 * request. A timer closes those whose head deadline passed; a new
 * connection over the per-address or global limit closes the oldest
 * waiting one instead. MHD 0.9.75 has no call to close a connection, so
 * "close" is shutdown(2) on its socket: MHD sees the EOF on its next run
 * and closes it as if the client had gone. MHD's own
 * PER_IP_CONNECTION_LIMIT is not used: it refuses a new connection at
 * accept, before anything is known about it, so one address's slow heads
 * would also lock out that address's health probe and its well-behaved
 * keep-alive connections.
 */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define MAX_SEGMENTS 32
#define MAX_REQUEST_ID 64
#define DISCARD_MIN ((size_t)4 << 20) /* an oversized chunked body read on for a 413 */

/* One connection (MHD's socket context). */
typedef struct hconn {
	struct MHD_Connection *conn;
	int fd;
	struct hconn *prev, *next;   /* all connections */
	struct hconn *wprev, *wnext; /* the waiting list, while waiting */
	uint64_t since_ns;           /* waiting for a head since */
	unsigned char addr[16];      /* client address, for the per-address limit */
	unsigned char addrlen;
	bool waiting, closing, reserve;
} hconn;

typedef struct renderer {
	char *prefix;
	size_t len;
	http_error_renderer fn;
	void *arg;
} renderer;

typedef struct kv {
	char *key;
	char *value;
} kv;

typedef struct kvlist {
	kv *items;
	size_t n, cap;
} kvlist;

typedef struct route {
	char *pattern; /* as registered, for logs */
	char *method;
	char **segs; /* literal text, or the parameter name */
	bool *is_param;
	size_t nsegs;
	size_t nparams;
	http_handler handler;
	void *arg;
	metric_counter *responses[5]; /* by status class 1xx..5xx; NULL without metrics */
	metric_histogram *latency;    /* seconds from request to response */
} route;

struct http_server {
	uv_loop_t *loop;
	struct MHD_Daemon *daemon;
	uv_poll_t poll;
	uv_timer_t timer;
	bool poll_inited;
	int open_handles; /* handles whose close callback is pending */
	bool in_run;      /* inside MHD_run: defer kicks and close */
	bool kick_pending;
	bool stopping, closing, close_pending;
	struct sockaddr_storage addr;
	http_server_options opts;
	char *bind_address;
	char *name;
	uint16_t port;
	route *routes;
	size_t nroutes;
	route unmatched;    /* metrics for requests no route took (404, 405, 413...) */
	http_request *reqs; /* live requests, doubly linked */
	renderer *renderers;
	size_t nrenderers;
	uv_timer_t head_timer;       /* closes connections past their head deadline */
	hconn *conns;                /* every connection MHD has open */
	hconn *whead, *wtail;        /* waiting for a head, oldest first */
	unsigned nconns;             /* open and not being closed by us */
	metric_counter *m_closed[3]; /* by reason: head_timeout, per_addr, full */
};

struct http_request {
	http_server *srv; /* NULL once MHD has completed the request */
	struct MHD_Connection *conn;
	http_request *prev, *next;
	char *method;
	char *path;
	kvlist headers, query, params, resp_headers;
	char *body;
	size_t body_len, body_cap;
	char id[MAX_REQUEST_ID + 1];
	char client[INET6_ADDRSTRLEN];
	const route *route;     /* matched route, or NULL */
	unsigned reject_status; /* 404/405 decided at routing */
	char allow[96];         /* Allow header for a 405 */
	struct MHD_Response *response;
	unsigned status;
	uint64_t start_ns;
	size_t discarded; /* body bytes thrown away after a 413 */
	bool reserve;     /* on a reserve connection: ops paths only */
	bool dispatched, responded, queued, suspended, completed;
};

static void run_mhd(http_server *srv);
static void on_timer(uv_timer_t *t);

/* ---- small containers ---- */

static void
kvlist_add(kvlist *l, const char *key, const char *value)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->items = xrealloc(l->items, l->cap * sizeof(*l->items));
	}
	l->items[l->n].key = xstrdup(key);
	l->items[l->n].value = xstrdup(value ? value : "");
	l->n++;
}

static const char *
kvlist_get(const kvlist *l, const char *key, bool nocase)
{
	for (size_t i = 0; i < l->n; i++) {
		if ((nocase ? strcasecmp(l->items[i].key, key) : strcmp(l->items[i].key, key)) == 0)
			return l->items[i].value;
	}
	return NULL;
}

static void
kvlist_fini(kvlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].key);
		free(l->items[i].value);
	}
	free(l->items);
	memset(l, 0, sizeof(*l));
}

/* ---- routes ---- */

static void
route_fini(route *r)
{
	for (size_t i = 0; i < r->nsegs; i++)
		free(r->segs[i]);
	free(r->segs);
	free(r->is_param);
	free(r->method);
	free(r->pattern);
}

/*
 * Splits a path into segments: "/" has none, "/a/b" has "a" and "b", "/a/"
 * has "a" and "". Returns the count, or -1 if the path does not start with
 * '/' or has more than MAX_SEGMENTS segments.
 */
static int
split_path(const char *path, const char *starts[], size_t lens[])
{
	if (path[0] != '/')
		return -1;
	if (path[1] == '\0')
		return 0;
	int n = 0;
	const char *p = path + 1;
	for (;;) {
		if (n == MAX_SEGMENTS)
			return -1;
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		starts[n] = p;
		lens[n] = len;
		n++;
		if (slash == NULL)
			break;
		p = slash + 1;
	}
	return n;
}

/* Registers a route's response counters and latency histogram, labelled
 * with its pattern, when the server has a metrics registry. */
static void
route_metrics(http_server *srv, route *r, const char *pattern)
{
	static const char *const classes[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
	metrics *m = srv->opts.metrics;
	if (m == NULL)
		return;
	for (int i = 0; i < 5; i++) {
		const char *labels[] = {"server", srv->name, "route", pattern, "code", classes[i],
		    NULL};
		r->responses[i] = metrics_counter(m, "trygg_http_responses_total",
		    "HTTP responses by route and status class", labels);
	}
	const char *labels[] = {"server", srv->name, "route", pattern, NULL};
	r->latency = metrics_histogram(m, "trygg_http_request_duration_seconds",
	    "Time from request to response, by route", labels, metrics_latency_buckets,
	    metrics_latency_nbuckets);
}

int
http_server_route(http_server *srv, const char *pattern, http_handler handler, void *arg)
{
	const char *sp = strchr(pattern, ' ');
	if (sp == NULL || sp == pattern || handler == NULL)
		return TRYGG_EINVAL;
	const char *starts[MAX_SEGMENTS];
	size_t lens[MAX_SEGMENTS];
	int n = split_path(sp + 1, starts, lens);
	if (n < 0)
		return TRYGG_EINVAL;
	route r = {0};
	r.pattern = xstrdup(pattern);
	r.method = xstrndup(pattern, (size_t)(sp - pattern));
	r.segs = xcalloc((size_t)n + 1, sizeof(char *));
	r.is_param = xcalloc((size_t)n + 1, sizeof(bool));
	r.nsegs = (size_t)n;
	r.handler = handler;
	r.arg = arg;
	for (int i = 0; i < n; i++) {
		if (lens[i] >= 3 && starts[i][0] == '{' && starts[i][lens[i] - 1] == '}') {
			r.is_param[i] = true;
			r.segs[i] = xstrndup(starts[i] + 1, lens[i] - 2);
			r.nparams++;
		} else {
			if (memchr(starts[i], '{', lens[i]) || memchr(starts[i], '}', lens[i])) {
				route_fini(&r);
				return TRYGG_EINVAL;
			}
			r.segs[i] = xstrndup(starts[i], lens[i]);
		}
	}
	route_metrics(srv, &r, pattern);
	srv->routes = xrealloc(srv->routes, (srv->nroutes + 1) * sizeof(route));
	srv->routes[srv->nroutes++] = r;
	return 0;
}

static bool
route_matches_path(const route *r, int n, const char *starts[], const size_t lens[])
{
	if ((size_t)n != r->nsegs)
		return false;
	for (int i = 0; i < n; i++) {
		if (r->is_param[i]) {
			if (lens[i] == 0)
				return false;
		} else if (strlen(r->segs[i]) != lens[i] ||
		    memcmp(r->segs[i], starts[i], lens[i]) != 0) {
			return false;
		}
	}
	return true;
}

static void
allow_add(char *allow, size_t size, const char *method)
{
	/* Skip duplicates: look for the method as a whole list item. */
	size_t ml = strlen(method);
	for (const char *p = allow; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == ml && memcmp(p, method, ml) == 0)
			return;
		p = e ? e + 2 : p + len;
	}
	size_t o = strlen(allow);
	snprintf(allow + o, size - o, "%s%s", o ? ", " : "", method);
}

/*
 * Picks the route for req (fewest parameters wins, HEAD falls back to GET)
 * and fills its path parameters; otherwise sets reject_status to 404 or 405
 * (with the Allow list).
 */
static void
route_request(http_request *req)
{
	http_server *srv = req->srv;
	const char *starts[MAX_SEGMENTS];
	size_t lens[MAX_SEGMENTS];
	int n = split_path(req->path, starts, lens);
	const route *best = NULL, *best_get = NULL;
	bool path_known = false;

	req->allow[0] = '\0';
	for (size_t i = 0; n >= 0 && i < srv->nroutes; i++) {
		const route *r = &srv->routes[i];
		if (!route_matches_path(r, n, starts, lens))
			continue;
		path_known = true;
		allow_add(req->allow, sizeof(req->allow), r->method);
		if (strcmp(r->method, "GET") == 0)
			allow_add(req->allow, sizeof(req->allow), "HEAD");
		if (strcmp(r->method, req->method) == 0) {
			if (best == NULL || r->nparams < best->nparams)
				best = r;
		} else if (strcmp(r->method, "GET") == 0 && strcmp(req->method, "HEAD") == 0) {
			if (best_get == NULL || r->nparams < best_get->nparams)
				best_get = r;
		}
	}
	if (best == NULL)
		best = best_get;
	if (best == NULL) {
		req->reject_status = path_known ? 405 : 404;
		return;
	}
	req->route = best;
	for (int i = 0; i < n; i++) {
		if (best->is_param[i]) {
			char *v = xstrndup(starts[i], lens[i]);
			kvlist_add(&req->params, best->segs[i], v);
			free(v);
		}
	}
}

/* ---- requests ---- */

static bool
request_id_ok(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++) {
		char c = s[n];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':';
		if (!ok || n >= MAX_REQUEST_ID)
			return false;
	}
	return n > 0;
}

static enum MHD_Result
collect_kv(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	TRYGG_UNUSED(kind);
	if (key != NULL)
		kvlist_add(cls, key, value);
	return MHD_YES;
}

static void
client_address(struct MHD_Connection *conn, char *buf, size_t len)
{
	snprintf(buf, len, "unknown");
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || ci->client_addr == NULL)
		return;
	const struct sockaddr *sa = ci->client_addr;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf,
		    (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		    buf, (socklen_t)len);
}

/* Creates the request for a connection's new request and links it in. */
static http_request *
request_new(http_server *srv, struct MHD_Connection *conn, const char *url, const char *method)
{
	http_request *req = xcalloc(1, sizeof(*req));
	req->srv = srv;
	req->conn = conn;
	req->start_ns = trygg_now_ns();
	req->method = xstrdup(method ? method : "");
	req->path = xstrdup(url ? url : "/");
	MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_kv, &req->headers);
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_kv, &req->query);
	client_address(conn, req->client, sizeof(req->client));
	const char *rid = kvlist_get(&req->headers, "X-Request-Id", true);
	if (rid != NULL && request_id_ok(rid))
		snprintf(req->id, sizeof(req->id), "%s", rid);
	else
		trygg_uuid4(req->id);
	req->next = srv->reqs;
	if (srv->reqs)
		srv->reqs->prev = req;
	srv->reqs = req;
	return req;
}

static void
request_unlink(http_request *req)
{
	http_server *srv = req->srv;
	if (srv == NULL)
		return;
	if (req->prev)
		req->prev->next = req->next;
	else
		srv->reqs = req->next;
	if (req->next)
		req->next->prev = req->prev;
	req->prev = req->next = NULL;
}

static void
request_free(http_request *req)
{
	if (req->response)
		MHD_destroy_response(req->response);
	kvlist_fini(&req->headers);
	kvlist_fini(&req->query);
	kvlist_fini(&req->params);
	kvlist_fini(&req->resp_headers);
	free(req->body);
	free(req->method);
	free(req->path);
	free(req);
}

const char *
http_request_method(const http_request *req)
{
	return req->method;
}

const char *
http_request_path(const http_request *req)
{
	return req->path;
}

const char *
http_request_param(const http_request *req, const char *name)
{
	return kvlist_get(&req->params, name, false);
}

const char *
http_request_query(const http_request *req, const char *name)
{
	return kvlist_get(&req->query, name, false);
}

const char *
http_request_header(const http_request *req, const char *name)
{
	return kvlist_get(&req->headers, name, true);
}

const char *
http_request_body(const http_request *req, size_t *len)
{
	if (len)
		*len = req->body_len;
	return req->body ? req->body : "";
}

const char *
http_request_client_addr(const http_request *req)
{
	return req->client;
}

const char *
http_request_id(const http_request *req)
{
	return req->id;
}

/*
 * A suspended connection is not watched by MHD, so a vanished client is
 * only noticed here by peeking at the socket: EOF or a socket error means
 * gone. (A client that half-closes after sending counts as gone too.)
 */
bool
http_request_is_gone(http_request *req)
{
	if (req->completed)
		return true;
	if (!req->suspended || req->conn == NULL)
		return false;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci == NULL)
		return false;
	char c;
	ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return true;
	return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

static bool
header_text_ok(const char *s, bool is_name)
{
	if (s == NULL || (is_name && *s == '\0'))
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return false;
		if (is_name && (*p == ':' || *p == ' '))
			return false;
	}
	return true;
}

int
http_response_header(http_request *req, const char *name, const char *value)
{
	if (!header_text_ok(name, true) || !header_text_ok(value, false))
		return TRYGG_EINVAL;
	if (req->responded)
		return TRYGG_EINVAL;
	kvlist_add(&req->resp_headers, name, value);
	return 0;
}

/* Makes sure MHD_run comes round soon (after a resume). */
static void
kick(http_server *srv)
{
	if (srv->in_run) {
		srv->kick_pending = true;
		return;
	}
	if (!srv->closing)
		uv_timer_start(&srv->timer, on_timer, 0, 0);
}

static void
log_5xx(const http_request *req, unsigned status, const void *body, size_t len)
{
	char m[48], p[256], id[96], b[512], tmp[400];
	size_t n = body ? (len < sizeof(tmp) - 1 ? len : sizeof(tmp) - 1) : 0;
	memcpy(tmp, body ? body : "", n);
	tmp[n] = '\0';
	/* 503 is an expected answer while a dependency is down (readiness
	 * probes, Postgres restarting): a warning, not an error. */
	log_msg(status == 503 ? LOG_WARN : LOG_ERROR, "http_server_error",
	    "\"status\":%u,\"method\":%s,\"path\":%s,\"request_id\":%s,\"body\":%s", status,
	    log_json_str(req->method, m, sizeof(m)), log_json_str(req->path, p, sizeof(p)),
	    log_json_str(req->id, id, sizeof(id)), log_json_str(tmp, b, sizeof(b)));
}

void
http_respond(http_request *req, unsigned status, const char *content_type, const void *body,
    size_t len)
{
	if (req->responded) {
		char id[96];
		log_warn("http_double_respond", "\"request_id\":%s",
		    log_json_str(req->id, id, sizeof(id)));
		return;
	}
	req->responded = true;
	if (status < 100 || status > 599)
		status = 500;
	if (req->srv != NULL) {
		route *r = req->route ? (route *)req->route : &req->srv->unmatched;
		metric_counter_inc(r->responses[status / 100 - 1]);
		metric_histogram_observe(r->latency,
		    (double)(trygg_now_ns() - req->start_ns) / 1e9);
	}
	if (status >= 500)
		log_5xx(req, status, body, len);
	if (req->completed) {
		/* The client went away while we were working: nothing to send. */
		request_free(req);
		return;
	}
	struct MHD_Response *resp = MHD_create_response_from_buffer(len,
	    (void *)(uintptr_t)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		abort(); /* only on out of memory; see util.h */
	if (content_type != NULL && header_text_ok(content_type, false))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(resp, "X-Request-Id", req->id);
	for (size_t i = 0; i < req->resp_headers.n; i++)
		MHD_add_response_header(resp, req->resp_headers.items[i].key,
		    req->resp_headers.items[i].value);
	if (req->srv->stopping || req->reserve)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	req->response = resp;
	req->status = status;
	if (req->suspended) {
		req->suspended = false;
		MHD_resume_connection(req->conn);
		kick(req->srv);
	}
}

void
http_respond_json(http_request *req, unsigned status, json_t *body)
{
	char *s = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	json_decref(body);
	if (s == NULL) {
		http_respond_error(req, 500, "internal", "could not encode the response", NULL);
		return;
	}
	http_respond(req, status, "application/json", s, strlen(s));
	free(s);
}

void
http_respond_error(http_request *req, unsigned status, const char *code, const char *message,
    const char *field)
{
	json_t *err = json_object();
	/* json_string() refuses invalid UTF-8; fall back rather than lose the error. */
	json_t *c = json_string(code ? code : "error");
	json_t *m = json_string(message ? message : "");
	json_object_set_new(err, "code", c ? c : json_string("error"));
	json_object_set_new(err, "message", m ? m : json_string("(unprintable)"));
	json_t *f = field ? json_string(field) : NULL;
	json_object_set_new(err, "field", f ? f : json_null());
	json_object_set_new(err, "request_id", json_string(req->id));
	json_t *doc = json_object();
	json_object_set_new(doc, "error", err);
	char *s = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (s == NULL)
		abort(); /* only on out of memory */
	http_respond(req, status, "application/json", s, strlen(s));
	free(s);
}

/* ---- connections: head deadline, per-address and global limits ---- */

enum close_reason { CLOSE_HEAD_TIMEOUT, CLOSE_PER_ADDR, CLOSE_FULL };

static void on_head_timer(uv_timer_t *t);

static uint64_t
head_timeout_ns(const http_server *srv)
{
	return (uint64_t)srv->opts.head_timeout_ms * 1000000u;
}

/* Arms the head timer for the oldest waiting connection's deadline. */
static void
head_timer_arm(http_server *srv)
{
	if (srv->closing)
		return;
	if (srv->whead == NULL) {
		uv_timer_stop(&srv->head_timer);
		return;
	}
	uint64_t due = srv->whead->since_ns + head_timeout_ns(srv), now = trygg_now_ns();
	uint64_t ms = due > now ? (due - now + 999999) / 1000000 : 0;
	uv_timer_start(&srv->head_timer, on_head_timer, ms, 0);
}

/* The connection now waits for a request head: its deadline starts. */
static void
wait_start(http_server *srv, hconn *hc)
{
	if (hc->waiting || hc->closing)
		return;
	hc->waiting = true;
	hc->since_ns = trygg_now_ns();
	hc->wnext = NULL;
	hc->wprev = srv->wtail;
	if (srv->wtail)
		srv->wtail->wnext = hc;
	else
		srv->whead = hc;
	srv->wtail = hc;
	if (hc == srv->whead)
		head_timer_arm(srv);
}

static void
wait_stop(http_server *srv, hconn *hc)
{
	if (!hc->waiting)
		return;
	hc->waiting = false;
	if (hc->wprev)
		hc->wprev->wnext = hc->wnext;
	else
		srv->whead = hc->wnext;
	if (hc->wnext)
		hc->wnext->wprev = hc->wprev;
	else
		srv->wtail = hc->wprev;
	hc->wprev = hc->wnext = NULL;
}

/*
 * Closes a connection that is waiting for its head: shutdown(2) on the
 * socket, so MHD finds EOF on its next run and closes it itself (MHD
 * 0.9.75 has no call for this). From here on it no longer counts.
 */
static void
conn_evict(http_server *srv, hconn *hc, enum close_reason why)
{
	wait_stop(srv, hc);
	if (hc->closing)
		return;
	hc->closing = true;
	srv->nconns--;
	metric_counter_inc(srv->m_closed[why]);
	if (hc->fd >= 0)
		shutdown(hc->fd, SHUT_RDWR);
}

static void
on_head_timer(uv_timer_t *t)
{
	http_server *srv = t->data;
	uint64_t now = trygg_now_ns(), limit = head_timeout_ns(srv);
	while (srv->whead != NULL && now - srv->whead->since_ns >= limit)
		conn_evict(srv, srv->whead, CLOSE_HEAD_TIMEOUT);
	head_timer_arm(srv);
	run_mhd(srv); /* let MHD see the EOFs now */
}

static hconn *
conn_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    conn ? MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT) : NULL;
	return ci ? ci->socket_context : NULL;
}

static void
conn_address(struct MHD_Connection *conn, hconn *hc)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;
	if (sa != NULL && sa->sa_family == AF_INET) {
		memcpy(hc->addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		hc->addrlen = 4;
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		memcpy(hc->addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
		hc->addrlen = 16;
	}
}

/*
 * A new connection: enforces the per-address limit on waiting connections
 * and the global limit by closing the oldest waiting connection (from the
 * same address, or any), so a newcomer always gets its chance to send a
 * head. With every ordinary slot busy and none waiting, it becomes a
 * reserve connection (ops paths only).
 */
static void
conn_started(http_server *srv, struct MHD_Connection *conn, void **socket_context)
{
	hconn *hc = xcalloc(1, sizeof(*hc));
	hc->conn = conn;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	hc->fd = ci ? ci->connect_fd : -1;
	conn_address(conn, hc);
	*socket_context = hc;
	hc->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = hc;
	srv->conns = hc;
	srv->nconns++;
	if (hc->addrlen > 0) {
		unsigned same = 0;
		hconn *oldest = NULL;
		for (hconn *w = srv->whead; w != NULL; w = w->wnext) {
			if (w->addrlen == hc->addrlen &&
			    memcmp(w->addr, hc->addr, hc->addrlen) == 0) {
				if (oldest == NULL)
					oldest = w;
				same++;
			}
		}
		if (same >= srv->opts.max_waiting_per_addr)
			conn_evict(srv, oldest, CLOSE_PER_ADDR);
	}
	if (srv->nconns > srv->opts.max_connections) {
		if (srv->whead != NULL)
			conn_evict(srv, srv->whead, CLOSE_FULL);
		else
			hc->reserve = true;
	}
	wait_start(srv, hc);
}

static void
conn_closed(http_server *srv, void **socket_context)
{
	hconn *hc = *socket_context;
	if (hc == NULL)
		return;
	*socket_context = NULL;
	wait_stop(srv, hc);
	if (!hc->closing)
		srv->nconns--;
	if (hc->prev)
		hc->prev->next = hc->next;
	else
		srv->conns = hc->next;
	if (hc->next)
		hc->next->prev = hc->prev;
	free(hc);
	head_timer_arm(srv);
	/* At its connection limit MHD takes the listening socket out of its
	 * epoll set, and puts it back only at the start of a later run: make
	 * sure that run comes, or new connections wait for unrelated events. */
	kick(srv);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
    enum MHD_ConnectionNotificationCode toe)
{
	http_server *srv = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		conn_started(srv, conn, socket_context);
	else
		conn_closed(srv, socket_context);
}

/* The paths a reserve connection serves. */
static bool
is_ops_path(const char *path)
{
	return strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
	    strcmp(path, "/metrics") == 0;
}

/* ---- errors the server produces itself ---- */

int
http_server_set_error_renderer(http_server *srv, const char *prefix, http_error_renderer fn,
    void *arg)
{
	if (prefix == NULL || *prefix == '\0' || fn == NULL)
		return TRYGG_EINVAL;
	srv->renderers = xrealloc(srv->renderers, (srv->nrenderers + 1) * sizeof(renderer));
	srv->renderers[srv->nrenderers++] =
	    (renderer){.prefix = xstrdup(prefix), .len = strlen(prefix), .fn = fn, .arg = arg};
	return 0;
}

/* Answers an error of the server's own through the renderer for the
 * request's path (the longest prefix that matches), or as standard JSON. */
static void
server_error(http_request *req, unsigned status, const char *code, const char *message)
{
	const renderer *best = NULL;
	http_server *srv = req->srv;
	for (size_t i = 0; srv != NULL && i < srv->nrenderers; i++) {
		const renderer *r = &srv->renderers[i];
		if (strncmp(req->path, r->prefix, r->len) == 0 &&
		    (best == NULL || r->len > best->len))
			best = r;
	}
	if (best != NULL)
		best->fn(req, status, code, message, best->arg);
	if (!req->responded)
		http_respond_error(req, status, code, message, NULL);
}

/* ---- MHD callbacks ---- */

/* Queues the stored response once; MHD keeps its own reference. */
static enum MHD_Result
queue_response(http_request *req)
{
	if (req->queued)
		return MHD_YES;
	req->queued = true;
	enum MHD_Result rv = MHD_queue_response(req->conn, req->status, req->response);
	MHD_destroy_response(req->response);
	req->response = NULL;
	return rv;
}

static void
reject_too_large(http_request *req)
{
	char msg[96];
	snprintf(msg, sizeof(msg), "request body is larger than %zu bytes",
	    req->srv->opts.max_body_bytes);
	server_error(req, 413, "body_too_large", msg);
}

/* The size of the request head as received: request line and headers. */
static size_t
head_size(const http_request *req)
{
	size_t n = strlen(req->method) + strlen(req->path) + 12;
	for (size_t i = 0; i < req->query.n; i++)
		n += strlen(req->query.items[i].key) + strlen(req->query.items[i].value) + 2;
	for (size_t i = 0; i < req->headers.n; i++)
		n += strlen(req->headers.items[i].key) + strlen(req->headers.items[i].value) + 4;
	return n;
}

/*
 * The checks on a request head before any handler sees it: a reserve
 * connection serves only the ops paths; the head's size; a Content-Length
 * over the body cap. Answers (and returns true) when one fails.
 */
static bool
reject_head(http_server *srv, http_request *req)
{
	if (req->reserve && !is_ops_path(req->path)) {
		(void)!http_response_header(req, "Retry-After", "1");
		server_error(req, 503, "busy",
		    "the server is at its connection limit; retry later");
		return true;
	}
	if (head_size(req) > srv->opts.max_header_bytes) {
		char msg[96];
		snprintf(msg, sizeof(msg), "the request line and headers are larger than %zu bytes",
		    srv->opts.max_header_bytes);
		server_error(req, 431, "header_too_large", msg);
		return true;
	}
	const char *cl = kvlist_get(&req->headers, "Content-Length", true);
	if (cl != NULL) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(cl, &end, 10);
		if (errno == 0 && *end == '\0' && n > srv->opts.max_body_bytes) {
			reject_too_large(req);
			return true;
		}
	}
	return false;
}

static enum MHD_Result
on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
    const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	http_server *srv = cls;
	http_request *req = *con_cls;
	TRYGG_UNUSED(version);

	if (req == NULL) {
		/* First call: the head is in (its deadline is met), no body yet. */
		hconn *hc = conn_of(conn);
		if (hc != NULL)
			wait_stop(srv, hc);
		req = request_new(srv, conn, url, method);
		req->reserve = hc != NULL && hc->reserve;
		*con_cls = req;
		route_request(req);
		if (reject_head(srv, req))
			return queue_response(req);
		return MHD_YES;
	}

	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (req->responded) {
			/* Rejected: MHD 0.9.75 cannot answer in the middle of a
			 * body, so the rest is read and thrown away, and the 413
			 * goes out at its end; but not without bound. */
			req->discarded += n;
			size_t max = 4 * srv->opts.max_body_bytes;
			return req->discarded > (max > DISCARD_MIN ? max : DISCARD_MIN) ? MHD_NO
			                                                                : MHD_YES;
		}
		if (n > srv->opts.max_body_bytes - req->body_len) {
			/* A chunked body grew over the cap: the 413 waits for its end. */
			reject_too_large(req);
			req->discarded = n;
			return MHD_YES;
		}
		if (req->body_len + n + 1 > req->body_cap) {
			size_t cap = req->body_cap ? req->body_cap : 1024;
			while (cap < req->body_len + n + 1)
				cap *= 2;
			req->body = xrealloc(req->body, cap);
			req->body_cap = cap;
		}
		memcpy(req->body + req->body_len, upload_data, n);
		req->body_len += n;
		req->body[req->body_len] = '\0';
		return MHD_YES;
	}

	/* Last call for this request (or a call after a resume). */
	if (!req->dispatched && !req->responded) {
		req->dispatched = true;
		if (req->route != NULL) {
			req->route->handler(req, req->route->arg);
		} else if (req->reject_status == 405) {
			(void)!http_response_header(req, "Allow", req->allow);
			server_error(req, 405, "method_not_allowed",
			    "method not allowed for this path");
		} else {
			server_error(req, 404, "not_found", "no such path");
		}
	}
	if (req->responded)
		return queue_response(req);
	if (!req->suspended) {
		/* The handler answers later: park the connection until then. */
		req->suspended = true;
		MHD_suspend_connection(conn);
	}
	return MHD_YES;
}

static const char *
termination_name(enum MHD_RequestTerminationCode toe)
{
	switch (toe) {
	case MHD_REQUEST_TERMINATED_COMPLETED_OK: return "ok";
	case MHD_REQUEST_TERMINATED_WITH_ERROR: return "error";
	case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return "timeout";
	case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return "shutdown";
	case MHD_REQUEST_TERMINATED_READ_ERROR: return "read_error";
	case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return "client_abort";
	}
	return "unknown";
}

/*
 * MHD is done with the request (answered, or the connection died). Logs
 * the access line, then frees the request unless a handler still holds it
 * awaiting its http_respond* call.
 */
static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	TRYGG_UNUSED(cls);
	http_request *req = *con_cls;
	if (req == NULL)
		return;
	*con_cls = NULL;
	if (log_get_level() <= LOG_DEBUG) {
		char m[48], p[512], id[96], cl[64];
		log_debug("http_access",
		    "\"method\":%s,\"path\":%s,\"status\":%u,\"ms\":%.3f,\"request_id\":%s,"
		    "\"client\":%s,\"end\":\"%s\"",
		    log_json_str(req->method, m, sizeof(m)), log_json_str(req->path, p, sizeof(p)),
		    req->queued ? req->status : 0, (double)(trygg_now_ns() - req->start_ns) / 1e6,
		    log_json_str(req->id, id, sizeof(id)),
		    log_json_str(req->client, cl, sizeof(cl)), termination_name(toe));
	}
	/* A connection that stays open waits for its next head from now on. */
	hconn *hc = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? conn_of(conn) : NULL;
	if (hc != NULL && req->srv != NULL && !req->reserve)
		wait_start(req->srv, hc);
	request_unlink(req);
	req->srv = NULL;
	req->conn = NULL;
	req->completed = true;
	req->suspended = false;
	if (req->responded || !req->dispatched)
		request_free(req);
}

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	http_server *srv = cls;
	char msg[512], esc[600], nm[80];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	/* MHD also reports client misbehaviour here: keep that out of warn level
	 * once we are serving, or a client could flood the logs. */
	if (srv->daemon == NULL)
		log_warn("http_mhd", "\"server\":%s,\"detail\":%s",
		    log_json_str(srv->name, nm, sizeof(nm)), log_json_str(msg, esc, sizeof(esc)));
	else
		log_debug("http_mhd", "\"server\":%s,\"detail\":%s",
		    log_json_str(srv->name, nm, sizeof(nm)), log_json_str(msg, esc, sizeof(esc)));
}

/* ---- loop integration ---- */

static void do_close(http_server *srv);

static void
on_timer(uv_timer_t *t)
{
	run_mhd(t->data);
}

static void
on_poll(uv_poll_t *p, int status, int events)
{
	TRYGG_UNUSED(status);
	TRYGG_UNUSED(events);
	run_mhd(p->data);
}

/*
 * Runs MHD once, then arms the timer for MHD's next deadline (0 ms if a
 * resume happened meanwhile, so the resumed connection is served next).
 */
static void
run_mhd(http_server *srv)
{
	if (srv->daemon == NULL || srv->closing)
		return;
	srv->in_run = true;
	srv->kick_pending = false;
	MHD_run(srv->daemon);
	srv->in_run = false;
	if (srv->close_pending) {
		do_close(srv);
		return;
	}
	MHD_UNSIGNED_LONG_LONG ms = 0;
	if (srv->kick_pending)
		uv_timer_start(&srv->timer, on_timer, 0, 0);
	else if (MHD_get_timeout(srv->daemon, &ms) == MHD_YES)
		uv_timer_start(&srv->timer, on_timer, (uint64_t)ms, 0);
	else
		uv_timer_stop(&srv->timer);
}

int
http_server_new(uv_loop_t *loop, const http_server_options *opts, http_server **out)
{
	http_server_options o = {0};
	if (opts)
		o = *opts;
	if (o.bind_address == NULL)
		o.bind_address = "127.0.0.1";
	if (o.max_body_bytes == 0)
		o.max_body_bytes = (size_t)1 << 20;
	if (o.max_header_bytes == 0)
		o.max_header_bytes = 32 * 1024;
	if (o.max_header_bytes < 4096)
		o.max_header_bytes = 4096; /* MHD needs room for its buffers */
	if (o.max_connections == 0)
		o.max_connections = 1000;
	if (o.reserved_connections == 0)
		o.reserved_connections = 16;
	if (o.head_timeout_ms == 0)
		o.head_timeout_ms = 10000;
	if (o.max_waiting_per_addr == 0)
		o.max_waiting_per_addr = 32;
	if (o.idle_timeout_s == 0)
		o.idle_timeout_s = 30;
	if (o.name == NULL)
		o.name = "http";

	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (uv_ip4_addr(o.bind_address, o.port, (struct sockaddr_in *)&ss) != 0 &&
	    uv_ip6_addr(o.bind_address, o.port, (struct sockaddr_in6 *)&ss) != 0)
		return TRYGG_EINVAL;

	http_server *srv = xcalloc(1, sizeof(*srv));
	srv->loop = loop;
	srv->addr = ss;
	srv->bind_address = xstrdup(o.bind_address);
	srv->name = xstrdup(o.name);
	o.bind_address = srv->bind_address;
	o.name = srv->name;
	srv->opts = o;
	route_metrics(srv, &srv->unmatched, "(unmatched)");
	if (o.metrics != NULL) {
		static const char *const reasons[3] = {"head_timeout", "per_addr", "full"};
		for (int i = 0; i < 3; i++) {
			const char *labels[] = {"server", srv->name, "reason", reasons[i], NULL};
			srv->m_closed[i] =
			    metrics_counter(o.metrics, "trygg_http_connections_closed_total",
			        "Connections closed while waiting for a request head", labels);
		}
	}
	uv_timer_init(loop, &srv->timer);
	srv->timer.data = srv;
	uv_timer_init(loop, &srv->head_timer);
	srv->head_timer.data = srv;
	srv->open_handles = 2;
	*out = srv;
	return 0;
}

int
http_server_start(http_server *srv)
{
	if (srv->daemon != NULL || srv->closing)
		return TRYGG_EINVAL;
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (srv->addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* The logger must be the first option to catch every message. */
	struct MHD_Daemon *d = MHD_start_daemon(flags, srv->opts.port, NULL, NULL, on_access, srv,
	    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv, MHD_OPTION_SOCK_ADDR,
	    (struct sockaddr *)&srv->addr, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    2 * srv->opts.max_header_bytes, MHD_OPTION_CONNECTION_LIMIT,
	    srv->opts.max_connections + srv->opts.reserved_connections,
	    MHD_OPTION_CONNECTION_TIMEOUT, srv->opts.idle_timeout_s, MHD_OPTION_NOTIFY_COMPLETED,
	    on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
	    /* SO_REUSEPORT only when asked: MHD's default (SO_REUSEADDR alone)
	     * still rebinds at once after a restart but refuses a port another
	     * process listens on. Passing 0 instead would drop SO_REUSEADDR
	     * too, so without reuse the option list simply ends here. */
	    srv->opts.reuse_port ? MHD_OPTION_LISTENING_ADDRESS_REUSE : MHD_OPTION_END, (unsigned)1,
	    MHD_OPTION_END);
	if (d == NULL) {
		char a[96], nm[80];
		log_error("http_start_failed", "\"server\":%s,\"address\":%s,\"port\":%u",
		    log_json_str(srv->name, nm, sizeof(nm)),
		    log_json_str(srv->bind_address, a, sizeof(a)), (unsigned)srv->opts.port);
		return TRYGG_EIO;
	}
	const union MHD_DaemonInfo *ei = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
	const union MHD_DaemonInfo *pi = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (ei == NULL || uv_poll_init(srv->loop, &srv->poll, ei->epoll_fd) != 0) {
		MHD_stop_daemon(d);
		return TRYGG_EIO;
	}
	srv->daemon = d;
	srv->port = pi ? pi->port : srv->opts.port;
	srv->poll.data = srv;
	srv->poll_inited = true;
	srv->open_handles++;
	uv_poll_start(&srv->poll, UV_READABLE, on_poll);
	run_mhd(srv);
	char a[96], nm[80];
	log_info("http_listening", "\"server\":%s,\"address\":%s,\"port\":%u",
	    log_json_str(srv->name, nm, sizeof(nm)), log_json_str(srv->bind_address, a, sizeof(a)),
	    (unsigned)srv->port);
	return 0;
}

uint16_t
http_server_port(const http_server *srv)
{
	return srv->daemon ? srv->port : 0;
}

void
http_server_stop(http_server *srv)
{
	if (srv == NULL || srv->daemon == NULL || srv->stopping)
		return;
	srv->stopping = true;
	/* In external polling mode the listening socket can be closed at once,
	 * so new clients are refused instead of waiting in the backlog. */
	MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

static void
on_handle_closed(uv_handle_t *h)
{
	http_server *srv = h->data;
	if (--srv->open_handles > 0)
		return;
	for (size_t i = 0; i < srv->nroutes; i++)
		route_fini(&srv->routes[i]);
	free(srv->routes);
	for (size_t i = 0; i < srv->nrenderers; i++)
		free(srv->renderers[i].prefix);
	free(srv->renderers);
	free(srv->bind_address);
	free(srv->name);
	free(srv);
}

/*
 * Tears the daemon down: the poll on MHD's epoll fd goes first (the fd
 * must not be closed under libuv), suspended connections are resumed
 * because MHD refuses to stop with any, then MHD closes every connection,
 * calling on_completed for each request.
 */
static void
do_close(http_server *srv)
{
	srv->close_pending = false;
	if (srv->poll_inited)
		uv_poll_stop(&srv->poll);
	if (srv->daemon != NULL) {
		for (http_request *r = srv->reqs; r != NULL; r = r->next) {
			if (r->suspended) {
				r->suspended = false;
				MHD_resume_connection(r->conn);
			}
		}
		MHD_stop_daemon(srv->daemon);
		srv->daemon = NULL;
	}
	/* Requests that MHD never completed cannot be left pointing at us. */
	for (http_request *r = srv->reqs, *next; r != NULL; r = next) {
		next = r->next;
		r->prev = r->next = NULL;
		r->srv = NULL;
		r->conn = NULL;
		r->completed = true;
		if (r->responded || !r->dispatched)
			request_free(r);
	}
	srv->reqs = NULL;
	/* MHD reports every close; this only guards against one it did not. */
	for (hconn *h = srv->conns, *next; h != NULL; h = next) {
		next = h->next;
		free(h);
	}
	srv->conns = srv->whead = srv->wtail = NULL;
	if (srv->poll_inited)
		uv_close((uv_handle_t *)&srv->poll, on_handle_closed);
	uv_close((uv_handle_t *)&srv->timer, on_handle_closed);
	uv_close((uv_handle_t *)&srv->head_timer, on_handle_closed);
}

void
http_server_close(http_server *srv)
{
	if (srv == NULL || srv->closing)
		return;
	srv->closing = true;
	if (srv->in_run) {
		/* Called from a handler: MHD_stop_daemon inside MHD_run is not allowed. */
		srv->close_pending = true;
		return;
	}
	do_close(srv);
}
