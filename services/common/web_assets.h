/*
 * web_assets.h: static files (pages, scripts, styles) compiled into a
 * service's binary and served over its HTTP port.
 *
 * A service keeps its files in services/<name>/web/; the build embeds them
 * (tools/embed-files.sh) as `const struct web_file <name>_web[]`, where
 * <name> has '-' replaced by '_' (walk_planner_web). The array is empty
 * when the service has no web/ folder. web_assets_register() then serves
 * `GET <prefix><file>` for each of them with its content type, a strong
 * ETag (304 on If-None-Match) and Cache-Control: no-cache, so a browser
 * revalidates and an upgraded binary's files are picked up at once.
 *
 * Ownership: the arrays are static; the routes point into them.
 */
#ifndef TRYGG_WEB_ASSETS_H
#define TRYGG_WEB_ASSETS_H

#include <stddef.h>

#include "http_server.h"
#include "util.h"

struct web_file {
	const char *name;          /* base name, e.g. "phone.html" */
	const unsigned char *data; /* NUL-terminated for convenience */
	size_t len;
};
typedef struct web_file web_file;

/* The file called `name` in a NULL-terminated array, or NULL. */
const web_file *web_file_find(const web_file *files, const char *name);

/* The Content-Type for a file name by its extension (UTF-8 for text). */
const char *web_content_type(const char *name);

/*
 * Serves every file of `files` at GET <prefix><name> (prefix like "/phone/"),
 * and `index` (a file name, or NULL) also at GET <prefix> itself. Returns 0
 * or the error of http_server_route.
 */
int web_assets_register(http_server *srv, const char *prefix, const web_file *files,
    const char *index) TRYGG_MUSTCHECK;

/*
 * Answers `req` with file `f` (or 404 when NULL), honouring If-None-Match.
 * For services that serve a file under a route of their own.
 */
void web_assets_respond(http_request *req, const web_file *f);

#endif
