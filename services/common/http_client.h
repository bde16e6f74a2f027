/*
 * http_client.h: outgoing HTTP (and later SMTP) on the libuv loop.
 *
 * One http_client is one libcurl multi handle driven by the loop: curl
 * tells us which sockets to watch (one uv_poll each) and when to wake it
 * (one uv_timer), and we feed events back with curl_multi_socket_action.
 * Transfers run concurrently and reuse connections; each ends with exactly
 * one callback on the loop thread.
 *
 * http_client_request() covers webhooks and tests. http_client_submit()
 * takes any prepared CURL easy handle (an SMTP transfer, say) and runs it
 * on the same multi handle.
 *
 * Threading: every function must be called on the loop thread.
 */
#ifndef TRYGG_HTTP_CLIENT_H
#define TRYGG_HTTP_CLIENT_H

#include <curl/curl.h>
#include <stddef.h>
#include <uv.h>

#include "util.h"

typedef struct http_client http_client;

#define HTTP_CLIENT_MAX_BODY ((size_t)1 << 20) /* response bodies are capped at 1 MiB */

/*
 * The outcome of one transfer, valid only during the callback. err is 0
 * when an HTTP response arrived (whatever its status), else
 * TRYGG_ETIMEDOUT, TRYGG_ETOOBIG (body over the cap), TRYGG_ECLOSED (the
 * client was closed first) or TRYGG_EIO (anything else: DNS, connect,
 * TLS...), with curl's explanation in `error`.
 */
typedef struct http_client_response {
	int err;
	const char *error; /* curl's error text, "" when err == 0 */
	long status;       /* HTTP status, 0 if none was received */
	const char *body;  /* NUL-terminated, body_len bytes (may contain NULs) */
	size_t body_len;
	const char *headers; /* the final response's header block, raw "Name: value\r\n" lines */
} http_client_response;

typedef void (*http_client_cb)(void *arg, const http_client_response *resp);

/* Creates a client on `loop`. Returns 0 or TRYGG_EIO if curl fails to start. */
int http_client_new(uv_loop_t *loop, http_client **out) TRYGG_MUSTCHECK;

/*
 * Completes every transfer still running with TRYGG_ECLOSED (their
 * callbacks run before this returns), then frees the client from its
 * handles' close callbacks: run the loop afterwards. Safe to call from a
 * completion callback. Accepts NULL.
 */
void http_client_close(http_client *c);

/*
 * Starts a request. `headers` is a NULL-terminated list of "Name: value"
 * strings (or NULL); `body` of `len` bytes is copied (may be NULL).
 * timeout_ms bounds the whole transfer (0 = 30 s). Redirects are not
 * followed; only http and https URLs are allowed.
 *
 * Returns 0 and calls cb exactly once later, or a negative code
 * (TRYGG_EINVAL for a bad argument, TRYGG_ECLOSED after close) without
 * ever calling cb.
 */
int http_client_request(http_client *c, const char *method, const char *url,
    const char *const *headers, const void *body, size_t len, unsigned timeout_ms,
    http_client_cb cb, void *arg) TRYGG_MUSTCHECK;

/*
 * Runs a caller-prepared easy handle (e.g. SMTP with CURLOPT_MAIL_RCPT and
 * a read callback). The client sets CURLOPT_PRIVATE, CURLOPT_ERRORBUFFER,
 * CURLOPT_NOSIGNAL and its write/header functions; everything else is the
 * caller's. On success the client owns `easy` and cleans it up after cb;
 * whatever the caller attached to it (slists, read state) must stay valid
 * until cb runs and may be freed there. On error the caller still owns it.
 */
int http_client_submit(http_client *c, CURL *easy, http_client_cb cb, void *arg) TRYGG_MUSTCHECK;

/*
 * Looks a header up in a response's header block (case-insensitive) and
 * copies its value, trimmed, into buf. Returns buf, or NULL if absent.
 */
const char *http_client_response_header(const http_client_response *resp, const char *name,
    char *buf, size_t len);

#endif
