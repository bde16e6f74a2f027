/*
 * test_web_assets.c: unit tests for web_assets.c, the files a service embeds
 * (its pages, scripts and styles) served over its HTTP port.
 *
 * A server on 127.0.0.1 port 0 serves a small array of files the way the
 * reporting service does (its files under /static/, index.html also at
 * /static/ and, through web_assets_respond, at /); raw sockets read the
 * answers byte for byte, headers included, while the loop runs. Each test
 * ends by closing the server, running the loop dry and asserting
 * uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_server.h"
#include "log.h"
#include "web_assets.h"

/* The SHA-256 of "hello" starts 2cf24dba5fb0a30e: the ETag is its first
 * eight bytes in hex, quoted. */
static const unsigned char hello[] = "hello";
static const unsigned char page[] = "<!doctype html><title>t</title>";
static const unsigned char script[] = "console.log(1);\n";
static const unsigned char style[] = "body{margin:0}";
/* Bytes with a NUL inside: the length counts, not strlen. */
static const unsigned char image[] = {0x89, 'P', 'N', 'G', 0x00, 0x01, 0x02, 0x00};

static const web_file files[] = {
    {"index.html", page, sizeof(page) - 1},
    {"picture.js", script, sizeof(script) - 1},
    {"picture.css", style, sizeof(style) - 1},
    {"hello.txt", hello, sizeof(hello) - 1},
    {"pixel.png", image, sizeof(image)},
    {NULL, NULL, 0},
};

typedef struct fx {
	uv_loop_t loop;
	http_server *srv;
	uint16_t port;
} fx;

static void
h_root(http_request *req, void *arg)
{
	(void)arg;
	web_assets_respond(req, web_file_find(files, "index.html"));
}

static void
h_missing(http_request *req, void *arg)
{
	(void)arg;
	web_assets_respond(req, web_file_find(files, "nope.html"));
}

static int
setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	assert_int_equal(uv_loop_init(&f->loop), 0);
	http_server_options o = {.bind_address = "127.0.0.1",
	    .port = 0,
	    .max_body_bytes = 1024,
	    .max_header_bytes = 8192,
	    .idle_timeout_s = 5,
	    .name = "test"};
	assert_int_equal(http_server_new(&f->loop, &o, &f->srv), 0);
	assert_int_equal(web_assets_register(f->srv, "/static/", files, "index.html"), 0);
	assert_int_equal(http_server_route(f->srv, "GET /", h_root, f), 0);
	assert_int_equal(http_server_route(f->srv, "GET /gone", h_missing, f), 0);
	assert_int_equal(http_server_start(f->srv), 0);
	f->port = http_server_port(f->srv);
	assert_true(f->port > 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	fx *f = *state;
	http_server_close(f->srv);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

/* ---- one request on a raw socket ---- */

typedef struct answer {
	int status;
	char head[4096]; /* status line and headers, NUL-terminated */
	unsigned char body[4096];
	size_t body_len;
} answer;

/* The value of header `name` in a's head (case-insensitive), or "". */
static const char *
header(const answer *a, const char *name, char *out, size_t cap)
{
	char pat[128];
	snprintf(pat, sizeof(pat), "\r\n%s:", name);
	const char *p = strcasestr(a->head, pat);
	out[0] = '\0';
	if (p == NULL)
		return out;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	size_t n = strcspn(p, "\r\n");
	snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
	return out;
}

/* Sends `method path` with an optional If-None-Match and reads the whole
 * answer (headers and Content-Length body) while running the loop. */
static void
get(fx *f, const char *method, const char *path, const char *inm, answer *a)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	char req[512];
	int n = snprintf(req, sizeof(req),
	    "%s %s HTTP/1.1\r\nHost: x\r\n%s%s%sConnection: close\r\n\r\n", method, path,
	    inm ? "If-None-Match: " : "", inm ? inm : "", inm ? "\r\n" : "");
	assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);

	char buf[8192];
	size_t got = 0;
	int closed = 0;
	uint64_t end = uv_hrtime() / 1000000 + 5000;
	while (!closed && uv_hrtime() / 1000000 < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		ssize_t r = recv(fd, buf + got, sizeof(buf) - got, MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			closed = 1;
		else if (r < 0)
			usleep(500);
		else
			got += (size_t)r;
	}
	close(fd);
	assert_true(closed);
	char *hend = memmem(buf, got, "\r\n\r\n", 4);
	assert_non_null(hend);
	size_t hlen = (size_t)(hend - buf);
	assert_true(hlen < sizeof(a->head));
	memcpy(a->head, buf, hlen);
	a->head[hlen] = '\0';
	a->body_len = got - hlen - 4;
	memcpy(a->body, hend + 4, a->body_len);
	assert_int_equal(sscanf(a->head, "HTTP/1.%*d %d", &a->status), 1);
	char cl[32];
	if (header(a, "Content-Length", cl, sizeof(cl))[0] != '\0' && strcmp(method, "HEAD") != 0)
		assert_int_equal(strtoul(cl, NULL, 10), a->body_len);
}

/* ---- tests ---- */

static void
test_content_types(void **state)
{
	(void)state;
	assert_string_equal(web_content_type("index.html"), "text/html; charset=utf-8");
	assert_string_equal(web_content_type("picture.js"), "text/javascript; charset=utf-8");
	assert_string_equal(web_content_type("picture.css"), "text/css; charset=utf-8");
	assert_string_equal(web_content_type("a.json"), "application/json; charset=utf-8");
	assert_string_equal(web_content_type("manifest.webmanifest"),
	    "application/manifest+json; charset=utf-8");
	assert_string_equal(web_content_type("map.svg"), "image/svg+xml; charset=utf-8");
	assert_string_equal(web_content_type("pixel.png"), "image/png");
	assert_string_equal(web_content_type("favicon.ico"), "image/x-icon");
	assert_string_equal(web_content_type("notes.txt"), "text/plain; charset=utf-8");
	/* The last extension decides; none, or an unknown one, is bytes. */
	assert_string_equal(web_content_type("bundle.min.js"), "text/javascript; charset=utf-8");
	assert_string_equal(web_content_type("page.html.bak"), "application/octet-stream");
	assert_string_equal(web_content_type("Makefile"), "application/octet-stream");
	assert_string_equal(web_content_type("archive.tar.gz"), "application/octet-stream");
	assert_string_equal(web_content_type(".js.map"), "application/octet-stream");
}

static void
test_find(void **state)
{
	(void)state;
	assert_ptr_equal(web_file_find(files, "picture.css"), &files[2]);
	assert_ptr_equal(web_file_find(files, "index.html"), &files[0]);
	assert_null(web_file_find(files, "picture"));
	assert_null(web_file_find(files, "/static/picture.css"));
	assert_null(web_file_find(NULL, "index.html"));
	static const web_file none[] = {{NULL, NULL, 0}};
	assert_null(web_file_find(none, "index.html"));
}

static void
test_serves_files(void **state)
{
	fx *f = *state;
	answer a;
	char v[256];

	get(f, "GET", "/static/picture.js", NULL, &a);
	assert_int_equal(a.status, 200);
	assert_string_equal(header(&a, "Content-Type", v, sizeof(v)),
	    "text/javascript; charset=utf-8");
	assert_string_equal(header(&a, "Cache-Control", v, sizeof(v)), "no-cache");
	assert_string_equal(header(&a, "X-Content-Type-Options", v, sizeof(v)), "nosniff");
	assert_int_equal(a.body_len, sizeof(script) - 1);
	assert_memory_equal(a.body, script, sizeof(script) - 1);

	get(f, "GET", "/static/picture.css", NULL, &a);
	assert_int_equal(a.status, 200);
	assert_string_equal(header(&a, "Content-Type", v, sizeof(v)), "text/css; charset=utf-8");
	assert_memory_equal(a.body, style, sizeof(style) - 1);

	/* A binary file comes whole, NUL bytes and all. */
	get(f, "GET", "/static/pixel.png", NULL, &a);
	assert_int_equal(a.status, 200);
	assert_string_equal(header(&a, "Content-Type", v, sizeof(v)), "image/png");
	assert_int_equal(a.body_len, sizeof(image));
	assert_memory_equal(a.body, image, sizeof(image));

	/* HEAD answers the headers of GET. */
	get(f, "HEAD", "/static/hello.txt", NULL, &a);
	assert_int_equal(a.status, 200);
	assert_string_equal(header(&a, "ETag", v, sizeof(v)), "\"2cf24dba5fb0a30e\"");
	assert_int_equal(a.body_len, 0);
}

static void
test_index_routes(void **state)
{
	fx *f = *state;
	answer a;
	char v[256];

	/* The index file at the prefix itself, as at its own name. */
	get(f, "GET", "/static/", NULL, &a);
	assert_int_equal(a.status, 200);
	assert_string_equal(header(&a, "Content-Type", v, sizeof(v)), "text/html; charset=utf-8");
	assert_int_equal(a.body_len, sizeof(page) - 1);
	assert_memory_equal(a.body, page, sizeof(page) - 1);
	char etag[64];
	header(&a, "ETag", etag, sizeof(etag));

	get(f, "GET", "/static/index.html", NULL, &a);
	assert_int_equal(a.status, 200);
	assert_string_equal(header(&a, "ETag", v, sizeof(v)), etag);

	/* And at / through web_assets_respond, as the reporting page is. */
	get(f, "GET", "/", NULL, &a);
	assert_int_equal(a.status, 200);
	assert_string_equal(header(&a, "Content-Type", v, sizeof(v)), "text/html; charset=utf-8");
	assert_string_equal(header(&a, "ETag", v, sizeof(v)), etag);
	assert_memory_equal(a.body, page, sizeof(page) - 1);
}

static void
test_etag_and_304(void **state)
{
	fx *f = *state;
	answer a;
	char v[256], etag[64];

	get(f, "GET", "/static/hello.txt", NULL, &a);
	assert_int_equal(a.status, 200);
	assert_string_equal(header(&a, "ETag", etag, sizeof(etag)), "\"2cf24dba5fb0a30e\"");
	assert_memory_equal(a.body, "hello", 5);

	/* The browser's revalidation: same tag, 304 with no body. */
	get(f, "GET", "/static/hello.txt", etag, &a);
	assert_int_equal(a.status, 304);
	assert_int_equal(a.body_len, 0);
	assert_string_equal(header(&a, "ETag", v, sizeof(v)), etag);
	assert_string_equal(header(&a, "Cache-Control", v, sizeof(v)), "no-cache");

	/* Another file's tag, or the tag unquoted, is not a match. */
	get(f, "GET", "/static/picture.js", NULL, &a);
	char js_etag[64];
	header(&a, "ETag", js_etag, sizeof(js_etag));
	assert_string_not_equal(js_etag, etag);
	assert_int_equal(strlen(js_etag), 18);
	get(f, "GET", "/static/hello.txt", js_etag, &a);
	assert_int_equal(a.status, 200);
	assert_memory_equal(a.body, "hello", 5);
	get(f, "GET", "/static/hello.txt", "2cf24dba5fb0a30e", &a);
	assert_int_equal(a.status, 200);
}

static void
test_not_found(void **state)
{
	fx *f = *state;
	answer a;
	char v[256];

	/* A name that is not embedded, a path around the prefix, a path that
	 * climbs out: none is served from anywhere. */
	const char *paths[] = {"/static/nope.js", "/static/picture.js/", "/static/../index.html",
	    "/static/sub/picture.js", "/static", "/picture.js"};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		get(f, "GET", paths[i], NULL, &a);
		if (a.status != 404)
			fail_msg("%s answered %d", paths[i], a.status);
		assert_non_null(strstr((const char *)a.body, "\"not_found\""));
	}

	/* web_assets_respond with no file is a JSON 404, never a crash. */
	get(f, "GET", "/gone", NULL, &a);
	assert_int_equal(a.status, 404);
	assert_string_equal(header(&a, "ETag", v, sizeof(v)), "");
	a.body[a.body_len] = '\0';
	assert_non_null(strstr((const char *)a.body, "\"not_found\""));
}

static void
test_register_errors(void **state)
{
	fx *f = *state;
	/* An index that is not among the files is refused. */
	assert_int_equal(web_assets_register(f->srv, "/other/", files, "missing.html"),
	    TRYGG_EINVAL);
	/* No files and no index: nothing to do, no error. */
	static const web_file none[] = {{NULL, NULL, 0}};
	assert_int_equal(web_assets_register(f->srv, "/empty/", none, NULL), 0);
	answer a;
	get(f, "GET", "/empty/", NULL, &a);
	assert_int_equal(a.status, 404);
}

int
main(void)
{
	log_init("test", LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_content_types),
	    cmocka_unit_test(test_find),
	    cmocka_unit_test_setup_teardown(test_serves_files, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_index_routes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_etag_and_304, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_register_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
