/*
 * health.c: /metrics, /healthz and /readyz handlers on the http server.
 * All three answer synchronously inside the handler.
 */
#include "health.h"

#include <stdlib.h>
#include <string.h>

typedef struct check {
	char *name;
	health_check_fn fn;
	health_detail_fn detail;
	void *arg;
} check;

struct health {
	metrics *reg;
	check *checks;
	size_t nchecks;
	bool draining;
};

static void
on_metrics(http_request *req, void *arg)
{
	health *h = arg;
	size_t len = 0;
	char *text = h->reg ? metrics_render(h->reg, &len) : NULL;
	http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text ? text : "", len);
	free(text);
}

static void
on_healthz(http_request *req, void *arg)
{
	TRYGG_UNUSED(arg);
	http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void
on_readyz(http_request *req, void *arg)
{
	health *h = arg;
	bool ready = !h->draining;
	json_t *checks = json_object(), *detail = json_object();
	for (size_t i = 0; i < h->nchecks; i++) {
		const check *c = &h->checks[i];
		bool ok = c->fn(c->arg);
		ready = ready && ok;
		json_object_set_new(checks, c->name, json_boolean(ok));
		if (c->detail != NULL) {
			json_t *d = json_object();
			c->detail(c->arg, d);
			if (json_object_size(d) > 0)
				json_object_set_new(detail, c->name, d);
			else
				json_decref(d);
		}
	}
	json_t *body =
	    json_pack("{s:s,s:o}", "status", ready ? "ok" : "unavailable", "checks", checks);
	if (json_object_size(detail) > 0)
		json_object_set_new(body, "detail", detail);
	else
		json_decref(detail);
	if (h->draining)
		json_object_set_new(body, "draining", json_true());
	http_respond_json(req, ready ? 200 : 503, body);
}

int
health_new(http_server *srv, metrics *reg, health **out)
{
	health *h = xcalloc(1, sizeof(*h));
	h->reg = reg;
	int rv;
	if ((rv = http_server_route(srv, "GET /metrics", on_metrics, h)) < 0 ||
	    (rv = http_server_route(srv, "GET /healthz", on_healthz, h)) < 0 ||
	    (rv = http_server_route(srv, "GET /readyz", on_readyz, h)) < 0) {
		free(h);
		return rv;
	}
	*out = h;
	return 0;
}

void
health_free(health *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->nchecks; i++)
		free(h->checks[i].name);
	free(h->checks);
	free(h);
}

int
health_add_check(health *h, const char *name, health_check_fn fn, void *arg)
{
	return health_add_check_detail(h, name, fn, NULL, arg);
}

int
health_add_check_detail(health *h, const char *name, health_check_fn fn, health_detail_fn detail,
    void *arg)
{
	if (name == NULL || *name == '\0' || fn == NULL)
		return TRYGG_EINVAL;
	for (size_t i = 0; i < h->nchecks; i++) {
		if (strcmp(h->checks[i].name, name) == 0)
			return TRYGG_EEXIST;
	}
	h->checks = xrealloc(h->checks, (h->nchecks + 1) * sizeof(*h->checks));
	h->checks[h->nchecks].name = xstrdup(name);
	h->checks[h->nchecks].fn = fn;
	h->checks[h->nchecks].detail = detail;
	h->checks[h->nchecks].arg = arg;
	h->nchecks++;
	return 0;
}

void
health_set_draining(health *h, bool draining)
{
	h->draining = draining;
}
