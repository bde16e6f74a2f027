/*
 * http_server.h: an HTTP/1.1 server on the libuv loop.
 *
 * libmicrohttpd does the protocol work (parsing, limits, keep-alive, 431 on
 * oversized headers) in external-epoll mode: we poll MHD's epoll fd with a
 * uv_poll, drive its timeouts with a uv_timer and call MHD_run on the loop
 * thread, so handlers run on the loop thread like every other callback and
 * MHD starts no threads.
 *
 * Routes are "METHOD /path/{param}/..." patterns. Unknown paths get a JSON
 * 404, a known path with the wrong method a JSON 405 with Allow; an API
 * with its own error format can render these (and every other error the
 * server produces itself) under its path prefix, see
 * http_server_set_error_renderer(). A handler
 * may answer at once, or return without answering and answer later (say
 * from a db callback): the connection is then suspended until one of the
 * http_respond* functions is called.
 *
 * Ownership of an http_request: the server creates it and hands it to the
 * handler. From then until the handler (or code it started) calls exactly
 * one http_respond* function, the handler side may use it; after that call
 * it must not touch req again (it may already be freed). The server frees
 * it once the response is given and MHD has finished with the connection.
 * If the client goes away first, the request stays valid until the
 * http_respond* call, which then just frees it; http_request_is_gone()
 * tells a handler that answering is pointless (but it must still call an
 * http_respond* function to release the request).
 *
 * Hostile clients (slowloris): a connection must deliver each request head
 * (request line and headers) within head_timeout_ms of being accepted, or
 * of the end of its previous response; this is a deadline, not an idle
 * timer, so trickling a byte at a time does not extend it. Past it the
 * connection is closed. At most max_waiting_per_addr connections from one
 * address may wait for their head at once: a new one closes the oldest
 * waiting one from that address. When max_connections are open, a new
 * connection closes the oldest connection still waiting for its head; if
 * none is waiting, the new connection is one of `reserved_connections`
 * extra slots that serve only the ops paths (/healthz, /readyz,
 * /metrics); other requests on them get 503 with Connection: close. So
 * the ops paths answer while slow heads hold every ordinary slot.
 *
 * Threading: every function must be called on the loop thread.
 */
#ifndef TRYGG_HTTP_SERVER_H
#define TRYGG_HTTP_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "metrics.h"
#include "util.h"

typedef struct http_server http_server;
typedef struct http_request http_request;

typedef void (*http_handler)(http_request *req, void *arg);

typedef struct http_server_options {
	const char *bind_address;      /* IPv4 or IPv6 literal; default "127.0.0.1" */
	uint16_t port;                 /* 0 = an ephemeral port, see http_server_port() */
	size_t max_body_bytes;         /* request body cap, default 1 MiB. A Content-Length
	                             over it is answered 413 before any body is read;
	                             a chunked body that grows over it is read on and
	                             discarded (MHD 0.9.75 cannot answer in the middle
	                             of a body), then answered 413; past 4 times the
	                             cap (at least 4 MiB) the connection is closed */
	size_t max_header_bytes;       /* request line and headers, default 32 KiB; over
	                             it -> 431 (rendered like every server error).
	                             libmicrohttpd gets twice this as per-connection
	                             memory; a head over even that gets its own
	                             plain 431 */
	unsigned max_connections;      /* ordinary connections, default 1000 */
	unsigned reserved_connections; /* extra ones for the ops paths, default 16 */
	unsigned head_timeout_ms;      /* deadline for each request head, default 10 s */
	unsigned max_waiting_per_addr; /* connections one address may have waiting
	                                  for their head, default 32 */
	unsigned idle_timeout_s;       /* idle timeout while reading a body or sending,
	                             default 30 */
	const char *name;              /* tag in log lines, default "http" */
	metrics *metrics;              /* optional: per-route response counts and latency */
	bool reuse_port;               /* SO_REUSEPORT: share the port with another process
	                             on purpose (the kernel splits connections between
	                             them); false by default, so a second instance on a
	                             port in use fails to start instead */
} http_server_options;

/*
 * Creates a server on `loop` (not yet listening). The options are copied;
 * NULL means all defaults. Returns 0 or TRYGG_EINVAL for a bad bind address.
 */
int http_server_new(uv_loop_t *loop, const http_server_options *opts,
    http_server **out) TRYGG_MUSTCHECK;

/*
 * Adds a route. `pattern` is "METHOD /literal/{name}/..."; a {name}
 * segment matches one non-empty path segment, readable with
 * http_request_param(req, "name"). When several routes match a path, the
 * one with the fewest parameters wins (so /v1/reports/search beats
 * /v1/reports/{id}); HEAD falls back to GET routes. Routes may be added
 * before or after start. Returns TRYGG_EINVAL for a malformed pattern.
 */
int http_server_route(http_server *srv, const char *pattern, http_handler handler,
    void *arg) TRYGG_MUSTCHECK;

/*
 * Renders the errors the server produces itself (404, 405, 413, 431, 503
 * when out of connections) for paths that start with `prefix`, in an API's
 * own format; the longest matching prefix wins, other paths get the
 * standard JSON error. The renderer must answer with an http_respond*
 * function (headers such as Allow or Retry-After are already added). The
 * prefix is copied. Returns TRYGG_EINVAL for an empty prefix or NULL fn.
 */
typedef void (*http_error_renderer)(http_request *req, unsigned status, const char *code,
    const char *message, void *arg);
int http_server_set_error_renderer(http_server *srv, const char *prefix, http_error_renderer fn,
    void *arg) TRYGG_MUSTCHECK;

/*
 * Binds, listens and starts serving on the loop. Returns 0, TRYGG_EIO if
 * the daemon could not start (e.g. port in use; logged), or TRYGG_EINVAL
 * if already started.
 */
int http_server_start(http_server *srv) TRYGG_MUSTCHECK;

/* The port actually bound (useful after asking for port 0); 0 if not started. */
uint16_t http_server_port(const http_server *srv);

/*
 * Stops accepting new connections (MHD_quiesce_daemon) and closes the
 * listening socket, so new clients are refused at once. Requests in
 * progress finish; their responses carry "Connection: close" so keep-alive
 * clients go away. Safe to call more than once.
 */
void http_server_stop(http_server *srv);

/*
 * Closes every connection and frees the server from its handles' close
 * callbacks: run the loop afterwards. Requests still waiting for an async
 * response stay valid until their http_respond* call, which frees them.
 * Accepts NULL.
 */
void http_server_close(http_server *srv);

/* Request accessors. Returned strings live as long as the request. */
const char *http_request_method(const http_request *req);
const char *http_request_path(const http_request *req);
/* A {name} path parameter, or NULL. */
const char *http_request_param(const http_request *req, const char *name);
/* A query parameter (first occurrence, decoded; "" for "?flag"), or NULL. */
const char *http_request_query(const http_request *req, const char *name);
/* A request header, name matched case-insensitively, or NULL. */
const char *http_request_header(const http_request *req, const char *name);
/* The request body (NUL-terminated for convenience; may contain NULs). */
const char *http_request_body(const http_request *req, size_t *len);
/* The client address as text ("127.0.0.1"), never NULL. */
const char *http_request_client_addr(const http_request *req);
/* The request id: the client's X-Request-Id if sane, else a fresh UUID. */
const char *http_request_id(const http_request *req);
/*
 * True once the client is known to have gone: the connection was closed,
 * or (for a suspended request) the peer has closed its side.
 */
bool http_request_is_gone(http_request *req);

/*
 * Adds a response header (e.g. Retry-After, Location, Allow) to the
 * response that will be given. Call before an http_respond* function.
 * Names or values with control characters are refused with TRYGG_EINVAL.
 */
int http_response_header(http_request *req, const char *name, const char *value) TRYGG_MUSTCHECK;

/*
 * Gives the response, from inside the handler or later. The body is
 * copied. After this call the caller must not touch req. A second call on
 * the same request is a programming error: it is logged and ignored.
 * content_type may be NULL for no Content-Type.
 */
void http_respond(http_request *req, unsigned status, const char *content_type, const void *body,
    size_t len);

/*
 * Responds with a JSON body. Steals the reference to `body` (so
 * http_respond_json(req, 200, json_pack(...)) is fine); a NULL body is
 * answered with a 500 error.
 */
void http_respond_json(http_request *req, unsigned status, json_t *body);

/*
 * Responds with the standard error body
 *   {"error":{"code":..., "message":..., "field":..., "request_id":...}}
 * `field` may be NULL (encoded as null).
 */
void http_respond_error(http_request *req, unsigned status, const char *code, const char *message,
    const char *field);

#endif
