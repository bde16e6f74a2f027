/*
 * metrics.c: Prometheus counters, gauges and histograms with lock-free
 * updates and text-format rendering.
 *
 * Doubles that are updated atomically (gauges, histogram sums) are kept as
 * their bit pattern in an _Atomic uint64_t and changed with a CAS loop,
 * since C11 offers no atomic floating-point add.
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "strbuf.h"

enum mtype { M_COUNTER, M_GAUGE, M_HISTOGRAM };

struct metric_counter {
	_Atomic uint64_t v;
};

struct metric_gauge {
	_Atomic uint64_t bits;
	metric_gauge_fn fn;
	void *arg;
};

struct metric_histogram {
	double *bounds;
	size_t n;                 /* finite buckets; counts has n + 1 slots */
	_Atomic uint64_t *counts; /* per bucket, not cumulative */
	_Atomic uint64_t sum_bits;
};

typedef struct series {
	char *labels; /* canonical 'a="x",b="y"', "" for none */
	struct series *next;
	metric_counter counter; /* only the member of the family's type is used */
	metric_gauge gauge;
	metric_histogram hist;
} series;

typedef struct family {
	char *name;
	char *help;
	enum mtype type;
	series *head, *tail;
	struct family *next;
} family;

struct metrics {
	pthread_mutex_t mtx;
	family *head, *tail;
};

const double metrics_latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const size_t metrics_latency_nbuckets = TRYGG_ARRAY_LEN(metrics_latency_buckets);

/* ---- helpers ---- */

static uint64_t
dbits(double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof(u));
	return u;
}

static double
bitsd(uint64_t u)
{
	double d;
	memcpy(&d, &u, sizeof(d));
	return d;
}

static void
atomic_add_double(_Atomic uint64_t *bits, double delta)
{
	uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(bits, &old, dbits(bitsd(old) + delta),
	    memory_order_relaxed, memory_order_relaxed)) {
	}
}

/* Formats a sample value the way Prometheus expects: shortest exact form,
 * +Inf, -Inf, NaN. */
static void
fmt_double(char *buf, size_t len, double v)
{
	if (isnan(v)) {
		snprintf(buf, len, "NaN");
	} else if (isinf(v)) {
		snprintf(buf, len, "%s", v > 0 ? "+Inf" : "-Inf");
	} else {
		snprintf(buf, len, "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, len, "%.17g", v);
	}
}

static bool
name_ok(const char *s, bool metric)
{
	if (s == NULL || *s == '\0')
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		    (metric && c == ':');
		if (!alpha && !(p > s && c >= '0' && c <= '9'))
			return false;
	}
	return metric || strncmp(s, "__", 2) != 0;
}

TRYGG_NORETURN static void
bad_registration(const char *name, const char *why)
{
	char nb[160];
	log_msg(LOG_FATAL, "metrics_bad_registration", "\"name\":%s,\"reason\":\"%s\"",
	    log_json_str(name, nb, sizeof(nb)), why);
	abort();
}

/* Builds the canonical label string, escaping values per the text format. */
static char *
labels_canon(const char *name, const char *const *labels, bool histogram)
{
	strbuf b = STRBUF_INIT;
	for (size_t i = 0; labels != NULL && labels[i] != NULL; i += 2) {
		if (labels[i + 1] == NULL)
			bad_registration(name, "labels must be name/value pairs");
		if (!name_ok(labels[i], false) || (histogram && strcmp(labels[i], "le") == 0))
			bad_registration(name, "invalid label name");
		if (i > 0)
			strbuf_appendc(&b, ',');
		strbuf_appendf(&b, "%s=\"", labels[i]);
		for (const char *p = labels[i + 1]; *p; p++) {
			if (*p == '\\')
				strbuf_append(&b, "\\\\");
			else if (*p == '"')
				strbuf_append(&b, "\\\"");
			else if (*p == '\n')
				strbuf_append(&b, "\\n");
			else
				strbuf_appendc(&b, *p);
		}
		strbuf_appendc(&b, '"');
	}
	return strbuf_steal(&b);
}

/*
 * Finds or creates the series `name`{labels} of type `type`. Called with
 * the registry mutex held. *created tells the caller to initialise it.
 */
static series *
lookup(metrics *m, const char *name, const char *help, const char *const *labels, enum mtype type,
    bool *created)
{
	if (!name_ok(name, true))
		bad_registration(name, "invalid metric name");
	char *canon = labels_canon(name, labels, type == M_HISTOGRAM);
	family *f = m->head;
	while (f != NULL && strcmp(f->name, name) != 0)
		f = f->next;
	if (f == NULL) {
		f = xcalloc(1, sizeof(*f));
		f->name = xstrdup(name);
		f->help = xstrdup(help ? help : "");
		f->type = type;
		if (m->tail)
			m->tail->next = f;
		else
			m->head = f;
		m->tail = f;
	} else if (f->type != type) {
		bad_registration(name, "registered twice with different types");
	}
	for (series *s = f->head; s != NULL; s = s->next) {
		if (strcmp(s->labels, canon) == 0) {
			free(canon);
			*created = false;
			return s;
		}
	}
	series *s = xcalloc(1, sizeof(*s));
	s->labels = canon;
	if (f->tail)
		f->tail->next = s;
	else
		f->head = s;
	f->tail = s;
	*created = true;
	return s;
}

/* ---- registry ---- */

metrics *
metrics_new(void)
{
	metrics *m = xcalloc(1, sizeof(*m));
	pthread_mutex_init(&m->mtx, NULL);
	return m;
}

void
metrics_free(metrics *m)
{
	if (m == NULL)
		return;
	for (family *f = m->head, *fn; f != NULL; f = fn) {
		fn = f->next;
		for (series *s = f->head, *sn; s != NULL; s = sn) {
			sn = s->next;
			free(s->labels);
			free(s->hist.bounds);
			free((void *)s->hist.counts);
			free(s);
		}
		free(f->name);
		free(f->help);
		free(f);
	}
	pthread_mutex_destroy(&m->mtx);
	free(m);
}

metric_counter *
metrics_counter(metrics *m, const char *name, const char *help, const char *const *labels)
{
	bool created;
	pthread_mutex_lock(&m->mtx);
	series *s = lookup(m, name, help, labels, M_COUNTER, &created);
	pthread_mutex_unlock(&m->mtx);
	return &s->counter;
}

metric_gauge *
metrics_gauge(metrics *m, const char *name, const char *help, const char *const *labels)
{
	bool created;
	pthread_mutex_lock(&m->mtx);
	series *s = lookup(m, name, help, labels, M_GAUGE, &created);
	pthread_mutex_unlock(&m->mtx);
	return &s->gauge;
}

void
metrics_gauge_fn(metrics *m, const char *name, const char *help, const char *const *labels,
    metric_gauge_fn fn, void *arg)
{
	bool created;
	pthread_mutex_lock(&m->mtx);
	series *s = lookup(m, name, help, labels, M_GAUGE, &created);
	s->gauge.fn = fn;
	s->gauge.arg = arg;
	pthread_mutex_unlock(&m->mtx);
}

metric_histogram *
metrics_histogram(metrics *m, const char *name, const char *help, const char *const *labels,
    const double *buckets, size_t nbuckets)
{
	for (size_t i = 0; i < nbuckets; i++) {
		if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
			bad_registration(name, "histogram buckets must be finite and increasing");
	}
	bool created;
	pthread_mutex_lock(&m->mtx);
	series *s = lookup(m, name, help, labels, M_HISTOGRAM, &created);
	if (created) {
		s->hist.n = nbuckets;
		s->hist.bounds = xcalloc(nbuckets + 1, sizeof(double));
		if (nbuckets > 0)
			memcpy(s->hist.bounds, buckets, nbuckets * sizeof(double));
		s->hist.counts = xcalloc(nbuckets + 1, sizeof(_Atomic uint64_t));
		for (size_t i = 0; i <= nbuckets; i++)
			atomic_init(&s->hist.counts[i], 0);
	}
	pthread_mutex_unlock(&m->mtx);
	return &s->hist;
}

/* ---- updates ---- */

void
metric_counter_inc(metric_counter *c)
{
	metric_counter_add(c, 1);
}

void
metric_counter_add(metric_counter *c, uint64_t n)
{
	if (c != NULL)
		atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

uint64_t
metric_counter_get(const metric_counter *c)
{
	return c ? atomic_load_explicit(&((metric_counter *)c)->v, memory_order_relaxed) : 0;
}

void
metric_gauge_set(metric_gauge *g, double v)
{
	if (g != NULL)
		atomic_store_explicit(&g->bits, dbits(v), memory_order_relaxed);
}

void
metric_gauge_add(metric_gauge *g, double delta)
{
	if (g != NULL)
		atomic_add_double(&g->bits, delta);
}

double
metric_gauge_get(const metric_gauge *g)
{
	if (g == NULL)
		return 0;
	if (g->fn != NULL)
		return g->fn(g->arg);
	return bitsd(atomic_load_explicit(&((metric_gauge *)g)->bits, memory_order_relaxed));
}

void
metric_histogram_observe(metric_histogram *h, double v)
{
	if (h == NULL)
		return;
	size_t i = 0;
	while (i < h->n && !(v <= h->bounds[i]))
		i++;
	atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
	atomic_add_double(&h->sum_bits, v);
}

/* ---- rendering ---- */

static void
put_sample(strbuf *b, const char *name, const char *suffix, const char *labels, const char *extra,
    const char *value)
{
	strbuf_append(b, name);
	strbuf_append(b, suffix);
	bool any = labels[0] != '\0' || extra != NULL;
	if (any) {
		strbuf_appendc(b, '{');
		strbuf_append(b, labels);
		if (extra != NULL) {
			if (labels[0] != '\0')
				strbuf_appendc(b, ',');
			strbuf_append(b, extra);
		}
		strbuf_appendc(b, '}');
	}
	strbuf_appendc(b, ' ');
	strbuf_append(b, value);
	strbuf_appendc(b, '\n');
}

static void
render_help(strbuf *b, const family *f)
{
	static const char *types[] = {"counter", "gauge", "histogram"};
	strbuf_appendf(b, "# HELP %s ", f->name);
	for (const char *p = f->help; *p; p++) {
		if (*p == '\\')
			strbuf_append(b, "\\\\");
		else if (*p == '\n')
			strbuf_append(b, "\\n");
		else
			strbuf_appendc(b, *p);
	}
	strbuf_appendf(b, "\n# TYPE %s %s\n", f->name, types[f->type]);
}

char *
metrics_render(metrics *m, size_t *len)
{
	strbuf b = STRBUF_INIT;
	char v[64], le[80];
	pthread_mutex_lock(&m->mtx);
	for (const family *f = m->head; f != NULL; f = f->next) {
		render_help(&b, f);
		for (const series *s = f->head; s != NULL; s = s->next) {
			switch (f->type) {
			case M_COUNTER:
				snprintf(v, sizeof(v), "%llu",
				    (unsigned long long)metric_counter_get(&s->counter));
				put_sample(&b, f->name, "", s->labels, NULL, v);
				break;
			case M_GAUGE:
				fmt_double(v, sizeof(v), metric_gauge_get(&s->gauge));
				put_sample(&b, f->name, "", s->labels, NULL, v);
				break;
			case M_HISTOGRAM: {
				const metric_histogram *h = &s->hist;
				uint64_t cum = 0;
				for (size_t i = 0; i <= h->n; i++) {
					cum += atomic_load_explicit(&h->counts[i],
					    memory_order_relaxed);
					if (i < h->n) {
						char bound[40];
						fmt_double(bound, sizeof(bound), h->bounds[i]);
						snprintf(le, sizeof(le), "le=\"%s\"", bound);
					} else {
						snprintf(le, sizeof(le), "le=\"+Inf\"");
					}
					snprintf(v, sizeof(v), "%llu", (unsigned long long)cum);
					put_sample(&b, f->name, "_bucket", s->labels, le, v);
				}
				fmt_double(v, sizeof(v),
				    bitsd(atomic_load_explicit(&((metric_histogram *)h)->sum_bits,
				        memory_order_relaxed)));
				put_sample(&b, f->name, "_sum", s->labels, NULL, v);
				/* _count is the +Inf bucket, so the two always agree. */
				snprintf(v, sizeof(v), "%llu", (unsigned long long)cum);
				put_sample(&b, f->name, "_count", s->labels, NULL, v);
				break;
			}
			}
		}
	}
	pthread_mutex_unlock(&m->mtx);
	if (len)
		*len = b.len;
	return strbuf_steal(&b);
}
