/*
 * http_client.c: the libcurl multi interface on the libuv loop.
 *
 * This is curl's "multi_socket" integration: CURLMOPT_SOCKETFUNCTION asks
 * us to watch a socket (we keep one uv_poll per socket, attached to curl's
 * socket with curl_multi_assign) and CURLMOPT_TIMERFUNCTION asks for a
 * wake-up (one uv_timer). Both feed curl_multi_socket_action(), after which
 * check_multi_info() collects finished transfers and runs their callbacks.
 *
 * Freeing follows libuv's rule: the client is freed in the close callback
 * of its last handle (the timer plus any socket polls still open).
 */
#include "http_client.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

#define MAX_HEADER_BYTES (64 * 1024)

typedef struct transfer transfer;
typedef struct sock_ctx sock_ctx;

struct transfer {
	http_client *c;
	CURL *easy;
	struct curl_slist *headers; /* ours, for http_client_request */
	char errbuf[CURL_ERROR_SIZE];
	char *body;
	size_t body_len, body_cap;
	bool too_big;
	char *hdrs;
	size_t hdrs_len, hdrs_cap;
	http_client_cb cb;
	void *arg;
	transfer *prev, *next;
};

struct sock_ctx {
	uv_poll_t poll;
	curl_socket_t fd;
	http_client *c;
	sock_ctx *prev, *next;
};

struct http_client {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	transfer *xfers;
	sock_ctx *socks;
	int open_handles; /* timer + socket polls not yet closed */
	int dispatching;  /* depth of check_multi_info */
	bool closing, close_pending;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void
curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void
handle_closed(http_client *c)
{
	if (--c->open_handles == 0)
		free(c);
}

static void
on_timer_closed(uv_handle_t *h)
{
	handle_closed(h->data);
}

static void
on_sock_closed(uv_handle_t *h)
{
	sock_ctx *sc = h->data;
	http_client *c = sc->c;
	free(sc);
	handle_closed(c);
}

static void
sock_close(sock_ctx *sc)
{
	http_client *c = sc->c;
	if (sc->prev)
		sc->prev->next = sc->next;
	else
		c->socks = sc->next;
	if (sc->next)
		sc->next->prev = sc->prev;
	uv_poll_stop(&sc->poll);
	uv_close((uv_handle_t *)&sc->poll, on_sock_closed);
}

/* Builds the response for a finished transfer, runs its callback, frees it. */
static void
finish(transfer *t, CURLcode rc, int forced_err)
{
	http_client *c = t->c;
	http_client_response r = {0};
	long status = 0;
	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	if (forced_err)
		r.err = forced_err;
	else if (rc == CURLE_OK)
		r.err = 0;
	else if (rc == CURLE_OPERATION_TIMEDOUT)
		r.err = TRYGG_ETIMEDOUT;
	else if (rc == CURLE_WRITE_ERROR && t->too_big)
		r.err = TRYGG_ETOOBIG;
	else
		r.err = TRYGG_EIO;
	if (r.err != 0 && t->errbuf[0] == '\0')
		snprintf(t->errbuf, sizeof(t->errbuf), "%s",
		    forced_err ? trygg_strerror(forced_err) : curl_easy_strerror(rc));
	r.error = r.err ? t->errbuf : "";
	r.status = status;
	r.body = t->body ? t->body : "";
	r.body_len = t->body_len;
	r.headers = t->hdrs ? t->hdrs : "";

	if (t->prev)
		t->prev->next = t->next;
	else
		c->xfers = t->next;
	if (t->next)
		t->next->prev = t->prev;

	t->cb(t->arg, &r);
	curl_easy_cleanup(t->easy);
	curl_slist_free_all(t->headers);
	free(t->body);
	free(t->hdrs);
	free(t);
}

static void do_close(http_client *c);

static void
check_multi_info(http_client *c)
{
	CURLMsg *msg;
	int pending;
	c->dispatching++;
	while (!c->closing && (msg = curl_multi_info_read(c->multi, &pending)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		/* msg is invalid after remove_handle: copy what we need first. */
		CURL *e = msg->easy_handle;
		CURLcode rc = msg->data.result;
		transfer *t = NULL;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&t);
		curl_multi_remove_handle(c->multi, e);
		finish(t, rc, 0);
	}
	c->dispatching--;
	if (c->close_pending && c->dispatching == 0)
		do_close(c);
}

static void
on_poll(uv_poll_t *p, int status, int events)
{
	sock_ctx *sc = p->data;
	http_client *c = sc->c;
	int flags = 0;
	if (status < 0) {
		/* libuv reports POLLERR (e.g. after a RST) as an error and stops the
		 * handle. Let curl try the socket itself instead of failing blind:
		 * a response may already be waiting in the buffer (a server that
		 * answers 413 and resets still gets its answer through). */
		flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
	}
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	int running;
	curl_multi_socket_action(c->multi, sc->fd, flags, &running);
	check_multi_info(c);
}

static void
on_timeout(uv_timer_t *t)
{
	http_client *c = t->data;
	int running;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi_info(c);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching one socket. */
static int
on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	TRYGG_UNUSED(easy);
	http_client *c = userp;
	sock_ctx *sc = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (sc != NULL) {
			curl_multi_assign(c->multi, s, NULL);
			sock_close(sc);
		}
		return 0;
	}
	if (sc == NULL) {
		sc = xcalloc(1, sizeof(*sc));
		if (uv_poll_init_socket(c->loop, &sc->poll, s) != 0) {
			free(sc);
			return -1;
		}
		sc->fd = s;
		sc->c = c;
		sc->poll.data = sc;
		sc->next = c->socks;
		if (c->socks)
			c->socks->prev = sc;
		c->socks = sc;
		c->open_handles++;
		curl_multi_assign(c->multi, s, sc);
	}
	int ev = 0;
	if (what & CURL_POLL_IN)
		ev |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		ev |= UV_WRITABLE;
	uv_poll_start(&sc->poll, ev, on_poll);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 cancels, 0 means "as soon as possible". */
static int
on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
	TRYGG_UNUSED(multi);
	http_client *c = userp;
	if (timeout_ms < 0)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
	return 0;
}

static size_t
on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	transfer *t = userdata;
	size_t n = size * nmemb;
	if (n > HTTP_CLIENT_MAX_BODY - t->body_len) {
		t->too_big = true;
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	}
	if (t->body_len + n + 1 > t->body_cap) {
		size_t cap = t->body_cap ? t->body_cap : 4096;
		while (cap < t->body_len + n + 1)
			cap *= 2;
		t->body = xrealloc(t->body, cap);
		t->body_cap = cap;
	}
	memcpy(t->body + t->body_len, ptr, n);
	t->body_len += n;
	t->body[t->body_len] = '\0';
	return n;
}

static size_t
on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	transfer *t = userdata;
	size_t n = size * nmemb;
	/* A new status line starts a new response (after 100 Continue, say). */
	if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0)
		t->hdrs_len = 0;
	if (t->hdrs_len + n + 1 > MAX_HEADER_BYTES)
		return n; /* keep what fits; headers are a convenience */
	if (t->hdrs_len + n + 1 > t->hdrs_cap) {
		size_t cap = t->hdrs_cap ? t->hdrs_cap : 1024;
		while (cap < t->hdrs_len + n + 1)
			cap *= 2;
		t->hdrs = xrealloc(t->hdrs, cap);
		t->hdrs_cap = cap;
	}
	memcpy(t->hdrs + t->hdrs_len, ptr, n);
	t->hdrs_len += n;
	t->hdrs[t->hdrs_len] = '\0';
	return n;
}

int
http_client_new(uv_loop_t *loop, http_client **out)
{
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return TRYGG_EIO;
	CURLM *multi = curl_multi_init();
	if (multi == NULL)
		return TRYGG_EIO;
	http_client *c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	c->multi = multi;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->open_handles = 1;
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
	curl_multi_setopt(multi, CURLMOPT_TIMERDATA, c);
	*out = c;
	return 0;
}

/* Adds an easy handle to the multi handle; takes `headers` on success. */
static int
start_transfer(http_client *c, CURL *easy, struct curl_slist *headers, http_client_cb cb, void *arg)
{
	if (c->closing)
		return TRYGG_ECLOSED;
	if (cb == NULL)
		return TRYGG_EINVAL;
	transfer *t = xcalloc(1, sizeof(*t));
	t->c = c;
	t->easy = easy;
	t->cb = cb;
	t->arg = arg;
	curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)t);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
	if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
		curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
		curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
		free(t);
		return TRYGG_EIO;
	}
	t->headers = headers;
	t->next = c->xfers;
	if (c->xfers)
		c->xfers->prev = t;
	c->xfers = t;
	return 0;
}

int
http_client_submit(http_client *c, CURL *easy, http_client_cb cb, void *arg)
{
	if (easy == NULL)
		return TRYGG_EINVAL;
	return start_transfer(c, easy, NULL, cb, arg);
}

static bool
method_ok(const char *m)
{
	if (m == NULL || *m == '\0' || strlen(m) > 16)
		return false;
	for (; *m; m++) {
		if (!((*m >= 'A' && *m <= 'Z') || *m == '-'))
			return false;
	}
	return true;
}

int
http_client_request(http_client *c, const char *method, const char *url, const char *const *headers,
    const void *body, size_t len, unsigned timeout_ms, http_client_cb cb, void *arg)
{
	if (c->closing)
		return TRYGG_ECLOSED;
	if (!method_ok(method) || url == NULL || cb == NULL || (body == NULL && len > 0))
		return TRYGG_EINVAL;
	CURL *easy = curl_easy_init();
	if (easy == NULL)
		return TRYGG_EIO;
	if (timeout_ms == 0)
		timeout_ms = 30000;
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(timeout_ms < 10000 ? timeout_ms : 10000));
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "GET") != 0 || body != NULL) {
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
		if (body != NULL || strcmp(method, "POST") == 0) {
			curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
			curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS,
			    body ? (const char *)body : "");
		}
	}
	struct curl_slist *sl = NULL;
	for (const char *const *h = headers; h != NULL && *h != NULL; h++) {
		struct curl_slist *n = curl_slist_append(sl, *h);
		if (n == NULL)
			abort(); /* out of memory */
		sl = n;
	}
	if (sl != NULL)
		curl_easy_setopt(easy, CURLOPT_HTTPHEADER, sl);
	int rv = start_transfer(c, easy, sl, cb, arg);
	if (rv < 0) {
		curl_easy_cleanup(easy);
		curl_slist_free_all(sl);
	}
	return rv;
}

/*
 * Fails every transfer with TRYGG_ECLOSED, tears the multi handle down and
 * closes the handles; the client is freed when the last one has closed.
 */
static void
do_close(http_client *c)
{
	c->close_pending = false;
	while (c->xfers != NULL) {
		transfer *t = c->xfers;
		curl_multi_remove_handle(c->multi, t->easy);
		finish(t, CURLE_OK, TRYGG_ECLOSED);
	}
	curl_multi_cleanup(c->multi);
	c->multi = NULL;
	while (c->socks != NULL)
		sock_close(c->socks);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

void
http_client_close(http_client *c)
{
	if (c == NULL || c->closing)
		return;
	c->closing = true;
	if (c->dispatching > 0) {
		/* Inside a completion callback: finish the dispatch loop first. */
		c->close_pending = true;
		return;
	}
	do_close(c);
}

const char *
http_client_response_header(const http_client_response *resp, const char *name, char *buf,
    size_t len)
{
	size_t nl = strlen(name);
	const char *p = resp->headers;
	while (p != NULL && *p) {
		const char *eol = strchr(p, '\n');
		size_t ll = eol ? (size_t)(eol - p) : strlen(p);
		if (ll > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
			const char *v = p + nl + 1;
			const char *e = p + ll;
			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
				e--;
			size_t vl = (size_t)(e - v);
			if (len == 0)
				return NULL;
			if (vl >= len)
				vl = len - 1;
			memcpy(buf, v, vl);
			buf[vl] = '\0';
			return buf;
		}
		p = eol ? eol + 1 : NULL;
	}
	return NULL;
}
