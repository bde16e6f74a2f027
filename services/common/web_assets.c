/*
 * web_assets.c: serving the files a service embeds (see web_assets.h).
 */
#include "web_assets.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

const web_file *
web_file_find(const web_file *files, const char *name)
{
	for (const web_file *f = files; f != NULL && f->name != NULL; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

const char *
web_content_type(const char *name)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
	    {".html", "text/html; charset=utf-8"},
	    {".js", "text/javascript; charset=utf-8"},
	    {".css", "text/css; charset=utf-8"},
	    {".json", "application/json; charset=utf-8"},
	    {".webmanifest", "application/manifest+json; charset=utf-8"},
	    {".svg", "image/svg+xml; charset=utf-8"},
	    {".png", "image/png"},
	    {".ico", "image/x-icon"},
	    {".txt", "text/plain; charset=utf-8"},
	};
	const char *dot = strrchr(name, '.');
	for (size_t i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

/* A strong validator: the first 8 bytes of the content's SHA-256. */
static void
make_etag(const web_file *f, char out[24])
{
	uint8_t md[CRYPTO_SHA256_LEN];
	crypto_sha256(f->data, f->len, md);
	snprintf(out, 24, "\"%02x%02x%02x%02x%02x%02x%02x%02x\"", md[0], md[1], md[2], md[3], md[4],
	    md[5], md[6], md[7]);
}

static void
respond_file(http_request *req, const web_file *f, const char *etag)
{
	const char *inm = http_request_header(req, "If-None-Match");
	if (http_response_header(req, "ETag", etag) != 0 ||
	    http_response_header(req, "Cache-Control", "no-cache") != 0 ||
	    http_response_header(req, "X-Content-Type-Options", "nosniff") != 0) {
		http_respond_error(req, 500, "internal", "could not set headers", NULL);
		return;
	}
	if (inm != NULL && strcmp(inm, etag) == 0) {
		http_respond(req, 304, NULL, "", 0);
		return;
	}
	http_respond(req, 200, web_content_type(f->name), f->data, f->len);
}

void
web_assets_respond(http_request *req, const web_file *f)
{
	if (f == NULL) {
		http_respond_error(req, 404, "not_found", "no such file", NULL);
		return;
	}
	char etag[24];
	make_etag(f, etag);
	respond_file(req, f, etag);
}

/* The route's argument is the file itself (static), so nothing is
 * allocated per route; the ETag is computed per request (a SHA-256 of a few
 * kilobytes, microseconds). */
static void
on_get(http_request *req, void *arg)
{
	web_assets_respond(req, arg);
}

static int
add_route(http_server *srv, const char *path, const web_file *f)
{
	char *pattern = xasprintf("GET %s", path);
	int rv = http_server_route(srv, pattern, on_get, (void *)f);
	free(pattern);
	return rv;
}

int
web_assets_register(http_server *srv, const char *prefix, const web_file *files, const char *index)
{
	int rv = 0;
	for (const web_file *f = files; rv == 0 && f != NULL && f->name != NULL; f++) {
		char *path = xasprintf("%s%s", prefix, f->name);
		rv = add_route(srv, path, f);
		free(path);
	}
	if (rv == 0 && index != NULL) {
		const web_file *f = web_file_find(files, index);
		rv = f != NULL ? add_route(srv, prefix, f) : TRYGG_EINVAL;
	}
	return rv;
}
