/*
 * health.h: the operational endpoints every service exposes.
 *
 * health_new() registers three routes on an http_server:
 *   GET /metrics  the registry in Prometheus text format 0.0.4
 *   GET /healthz  200 {"status":"ok"} whenever the loop is serving at all
 *                 (liveness: if this fails, restart the process)
 *   GET /readyz   200 {"status":"ok","checks":{...}} when every registered
 *                 readiness check passes, else 503
 *                 {"status":"unavailable","checks":{"postgres":false,...}}
 *                 (readiness: send traffic here or not); a check with a
 *                 detail callback adds "detail":{"<check>":{...}}, what an
 *                 operator needs to see why (e.g. set-aside events)
 *
 * Readiness checks are cheap callbacks (e.g. db_is_connected) evaluated on
 * every /readyz request on the loop thread. While draining (SIGTERM),
 * health_set_draining() makes /readyz answer 503 with "draining":true so
 * load balancers stop sending new work before the server stops accepting.
 *
 * Ownership: the routes point at the health object, so free it only after
 * http_server_close(). The metrics registry is borrowed and must outlive
 * it. Threading: loop thread only.
 */
#ifndef TRYGG_HEALTH_H
#define TRYGG_HEALTH_H

#include <stdbool.h>

#include "http_server.h"
#include "metrics.h"
#include "util.h"

typedef struct health health;

typedef bool (*health_check_fn)(void *arg);

/*
 * Creates the health endpoints and registers their routes on srv.
 * `reg` may be NULL (then /metrics serves an empty body). Returns 0 or the
 * error from http_server_route.
 */
int health_new(http_server *srv, metrics *reg, health **out) TRYGG_MUSTCHECK;

/* Frees the object. Accepts NULL. */
void health_free(health *h);

/*
 * Adds a named readiness check; the name is copied and appears as a key in
 * the /readyz body. Returns TRYGG_EEXIST for a duplicate name, TRYGG_EINVAL
 * for a missing name or callback.
 */
int health_add_check(health *h, const char *name, health_check_fn fn, void *arg) TRYGG_MUSTCHECK;

/*
 * Fills `obj` (an empty JSON object, borrowed) with detail about a check,
 * e.g. {"failed_pending":3,"halted":"epoch_changed"}; an object left empty
 * is not shown. Runs on every /readyz request, so it must be cheap.
 */
typedef void (*health_detail_fn)(void *arg, json_t *obj);

/* As health_add_check, with a detail callback (may be NULL). */
int health_add_check_detail(health *h, const char *name, health_check_fn fn,
    health_detail_fn detail, void *arg) TRYGG_MUSTCHECK;

/* While true, /readyz answers 503 whatever the checks say. */
void health_set_draining(health *h, bool draining);

#endif
