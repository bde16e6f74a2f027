/*
 * metrics.h: a small Prometheus registry.
 *
 * A `metrics` registry holds metric families (one name, help text and
 * type) and, under each, one series per set of constant labels:
 *
 *   metric_counter *sent = metrics_counter(reg, "trygg_bus_published_total",
 *       "Messages published.", (const char *[]){"publisher", "intake", NULL});
 *   metric_counter_inc(sent);
 *
 * Registering the same name and labels twice returns the same series, so
 * modules need not coordinate. Invalid names, or one name registered with
 * two types, are programming errors and abort at registration with a log
 * line, like a failed assert; nothing at run time can fail.
 *
 * Threading: registration and rendering take a mutex; counter, gauge and
 * histogram updates are lock-free C11 atomics, safe from any thread (nng
 * callbacks run on nng's threads). Series live until metrics_free().
 *
 * metrics_render() writes the text exposition format 0.0.4.
 */
#ifndef TRYGG_METRICS_H
#define TRYGG_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct metrics metrics;
typedef struct metric_counter metric_counter;
typedef struct metric_gauge metric_gauge;
typedef struct metric_histogram metric_histogram;

/* Computes a gauge's value at render time, on the rendering thread. */
typedef double (*metric_gauge_fn)(void *arg);

metrics *metrics_new(void);
/* Frees the registry and every series in it. Accepts NULL. */
void metrics_free(metrics *m);

/*
 * Registration. `labels` is NULL or a NULL-terminated list of name, value
 * pairs: (const char *[]){"publisher", "intake", NULL}. Strings are copied.
 */
metric_counter *metrics_counter(metrics *m, const char *name, const char *help,
    const char *const *labels);
metric_gauge *metrics_gauge(metrics *m, const char *name, const char *help,
    const char *const *labels);
/* A gauge whose value is fn(arg) at each render. */
void metrics_gauge_fn(metrics *m, const char *name, const char *help, const char *const *labels,
    metric_gauge_fn fn, void *arg);
/*
 * A histogram with `nbuckets` finite upper bounds in strictly increasing
 * order (the +Inf bucket is implicit). Re-registering with the same name
 * and labels returns the existing one (its buckets win).
 */
metric_histogram *metrics_histogram(metrics *m, const char *name, const char *help,
    const char *const *labels, const double *buckets, size_t nbuckets);

/* Default latency buckets in seconds (5 ms .. 10 s), and their count. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_nbuckets;

/* Updates; all accept NULL (a no-op) so optional metrics need no checks. */
void metric_counter_inc(metric_counter *c);
void metric_counter_add(metric_counter *c, uint64_t n);
uint64_t metric_counter_get(const metric_counter *c);
void metric_gauge_set(metric_gauge *g, double v);
void metric_gauge_add(metric_gauge *g, double delta);
double metric_gauge_get(const metric_gauge *g);
void metric_histogram_observe(metric_histogram *h, double v);

/*
 * Renders every family in registration order, series in registration
 * order, into a malloc'd NUL-terminated buffer the caller frees; *len (if
 * not NULL) gets its length.
 */
char *metrics_render(metrics *m, size_t *len);

#endif
