/*
 * picture.c: audience, suppression, explanations and formats (picture.h).
 */
#include "picture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "suppress.h"
#include "util.h"

static const char *const columns[3] = {"value", "previous", "last_year"};

/* A count member of `obj` (a C object's column or a plain count) as a
 * cell; a missing or null member counts 0. */
static size_t
cell(suppress_table *t, json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return suppress_cell_add(t, json_is_integer(v) ? json_integer_value(v) : 0, obj, key);
}

static int64_t
num(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_integer(v) ? json_integer_value(v) : 0;
}

typedef struct idxv {
	size_t *v;
	size_t n, cap;
} idxv;

static void
push(idxv *x, size_t i)
{
	if (x->n == x->cap) {
		x->cap = x->cap ? x->cap * 2 : 16;
		x->v = xrealloc(x->v, x->cap * sizeof(size_t));
	}
	x->v[x->n++] = i;
}

/* idx first, then the others: one relation "first = sum(rest)". */
static void
group_total(suppress_table *t, size_t total, const idxv *parts)
{
	idxv g = {0};
	push(&g, total);
	for (size_t i = 0; i < parts->n; i++)
		push(&g, parts->v[i]);
	suppress_group(t, g.v, g.n);
	free(g.v);
}

static void
group3(suppress_table *t, size_t a, size_t b, size_t c)
{
	size_t g[3] = {a, b, c};
	suppress_group(t, g, 3);
}

static void
group2(suppress_table *t, size_t a, size_t b)
{
	size_t g[2] = {a, b};
	suppress_group(t, g, 2);
}

/* A place's cells in by_place, found by slug, for hotspots to pair with. */
typedef struct place_cells {
	const char *slug;
	size_t count, night;
} place_cells;

/* The relations of one column (see docs/reporting.md, privacy). */
static size_t
suppress_column(json_t *pic, int col, int64_t threshold)
{
	suppress_table t;
	suppress_init(&t);
	const char *k = columns[col];
	json_t *tot = json_object_get(pic, "totals");
	size_t R = cell(&t, json_object_get(tot, "reports"), k);
	size_t D = cell(&t, json_object_get(tot, "day"), k);
	size_t N = cell(&t, json_object_get(tot, "night"), k);
	group3(&t, R, D, N);

	json_t *cats = json_object_get(pic, "by_category");
	idxv cs = {0}, ds = {0}, ns = {0};
	size_t i;
	json_t *e;
	json_array_foreach(cats, i, e)
	{
		size_t c = cell(&t, json_object_get(e, "count"), k);
		size_t d = cell(&t, json_object_get(e, "day"), k);
		size_t n = cell(&t, json_object_get(e, "night"), k);
		group3(&t, c, d, n);
		push(&cs, c);
		push(&ds, d);
		push(&ns, n);
	}
	group_total(&t, R, &cs);
	group_total(&t, D, &ds);
	group_total(&t, N, &ns);

	idxv fs = {0};
	json_array_foreach(json_object_get(pic, "by_focus_area"), i, e)
	{
		size_t f = cell(&t, json_object_get(e, "count"), k);
		push(&fs, f);
		idxv members = {0};
		const char *code = json_string_value(json_object_get(e, "focus_area"));
		size_t j;
		json_t *c;
		json_array_foreach(cats, j, c)
		{
			const char *fa = json_string_value(json_object_get(c, "focus_area"));
			if (code && fa && strcmp(code, fa) == 0)
				push(&members, cs.v[j]);
		}
		group_total(&t, f, &members);
		free(members.v);
	}
	group_total(&t, R, &fs);

	json_t *places = json_object_get(pic, "by_place");
	place_cells *pc = xmalloc((json_array_size(places) + 1) * sizeof(*pc));
	json_array_foreach(places, i, e)
	{
		size_t c = cell(&t, json_object_get(e, "count"), k);
		size_t d = cell(&t, json_object_get(e, "day"), k);
		size_t n = cell(&t, json_object_get(e, "night"), k);
		group3(&t, c, d, n);
		pc[i] = (place_cells){json_string_value(json_object_get(e, "place")), c, n};
		if (col == 0) {
			cell(&t, e, "repeat_reports");
			cell(&t, e, "reopened");
		}
	}
	json_array_foreach(json_object_get(pic, "survey"), i, e)
	    cell(&t, json_object_get(e, "reports"), k);

	if (col == 0) {
		/* The trend: buckets add up to the totals; a bucket's day count
		 * (count - night) is not shown but follows. */
		idxv bc = {0}, bn = {0};
		json_array_foreach(json_object_get(json_object_get(pic, "trend"), "series"), i, e)
		{
			size_t c = cell(&t, e, "count");
			size_t n = cell(&t, e, "night");
			group3(&t, c, n,
			    suppress_implicit_add(&t, num(e, "count") - num(e, "night")));
			push(&bc, c);
			push(&bn, n);
		}
		group_total(&t, R, &bc);
		group_total(&t, N, &bn);
		free(bc.v);
		free(bn.v);
		/* Hotspots repeat by_place's figures: the same cell twice. */
		json_array_foreach(json_object_get(pic, "hotspots"), i, e)
		{
			size_t c = cell(&t, e, "reports");
			size_t n = cell(&t, e, "night");
			group3(&t, c, n,
			    suppress_implicit_add(&t, num(e, "reports") - num(e, "night")));
			const char *slug = json_string_value(json_object_get(e, "place"));
			for (size_t j = 0; slug && j < json_array_size(places); j++) {
				if (pc[j].slug && strcmp(pc[j].slug, slug) == 0) {
					group2(&t, c, pc[j].count);
					group2(&t, n, pc[j].night);
				}
			}
			cell(&t, e, "repeat_reports");
			cell(&t, e, "reopened");
			cell(&t, e, "lighting");
		}
		/* Response times: n per unit and per category add up to the
		 * overall n; overdue per unit to overdue_now. */
		json_t *resp = json_object_get(pic, "response");
		const char *kinds[2] = {"ack", "done"};
		for (int kk = 0; kk < 2; kk++) {
			size_t all = cell(&t, json_object_get(resp, kinds[kk]), "n");
			idxv us = {0}, cs2 = {0};
			size_t j;
			json_t *u;
			json_array_foreach(json_object_get(resp, "by_unit"), j, u)
			    push(&us, cell(&t, json_object_get(u, kinds[kk]), "n"));
			json_array_foreach(json_object_get(resp, "by_category"), j, u)
			    push(&cs2, cell(&t, json_object_get(u, kinds[kk]), "n"));
			group_total(&t, all, &us);
			group_total(&t, all, &cs2);
			free(us.v);
			free(cs2.v);
		}
		size_t od = cell(&t, resp, "overdue_now");
		idxv os = {0};
		size_t j;
		json_t *u;
		json_array_foreach(json_object_get(resp, "by_unit"), j, u)
		    push(&os, cell(&t, u, "overdue_now"));
		group_total(&t, od, &os);
		free(os.v);
	}

	size_t hidden = suppress_run(&t, threshold);
	for (size_t c = 0; c < t.ncells; c++) {
		suppress_cell *sc = &t.cells[c];
		if (!sc->hidden || sc->implicit)
			continue;
		json_t *obj = sc->where;
		json_object_set_new(obj, sc->key, json_null());
		json_object_set_new(obj, "suppressed", json_true());
		if (strcmp(sc->key, "n") == 0) {
			/* a median of fewer than threshold tasks says too much */
			json_object_set_new(obj, "median_min", json_null());
			json_object_set_new(obj, "p90_min", json_null());
			json_object_set_new(obj, "within_target_share", json_null());
		}
	}
	free(cs.v);
	free(ds.v);
	free(ns.v);
	free(fs.v);
	free(pc);
	suppress_fini(&t);
	return hidden;
}

/* "14" or "<5" for a suppressed (null) count. */
static const char *
shown(const json_t *obj, const char *key, int64_t threshold, char *buf, size_t len)
{
	json_t *v = json_object_get(obj, key);
	if (json_is_integer(v))
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
	else
		snprintf(buf, len, "<%lld", (long long)threshold);
	return buf;
}

static void
explain_hotspots(json_t *pic, int64_t threshold)
{
	size_t i;
	json_t *h;
	json_array_foreach(json_object_get(pic, "hotspots"), i, h)
	{
		char a[24], b[24], c[24], text[400];
		size_t o = (size_t)snprintf(text, sizeof(text), "%s reports, %s after dark",
		    shown(h, "reports", threshold, a, sizeof(a)),
		    shown(h, "night", threshold, b, sizeof(b)));
		json_t *l = json_object_get(h, "lighting");
		if (!json_is_integer(l) || json_integer_value(l) > 0)
			o += (size_t)snprintf(text + o, sizeof(text) - o, ", lighting %s",
			    shown(h, "lighting", threshold, c, sizeof(c)));
		json_t *r = json_object_get(h, "repeat_reports");
		if (!json_is_integer(r) || json_integer_value(r) > 0)
			o += (size_t)snprintf(text + o, sizeof(text) - o, ", %s repeat reports",
			    shown(h, "repeat_reports", threshold, c, sizeof(c)));
		json_t *ro = json_object_get(h, "reopened");
		if (!json_is_integer(ro) || json_integer_value(ro) > 0)
			o += (size_t)snprintf(text + o, sizeof(text) - o, ", reopened %s",
			    shown(h, "reopened", threshold, c, sizeof(c)));
		json_t *w = json_object_get(h, "survey_worry");
		if (json_is_number(w))
			snprintf(text + o, sizeof(text) - o, "; survey: worry late evening %.0f %%",
			    json_number_value(w));
		json_object_set_new(h, "explanation", json_string(text));
		/* The score is made of the counts: hide it with any of them. */
		if (json_is_null(json_object_get(h, "reports")) ||
		    json_is_null(json_object_get(h, "night")) || json_is_null(r) ||
		    json_is_null(ro))
			json_object_set_new(h, "score", json_null());
		json_object_del(h, "lighting");
		json_object_del(h, "survey_worry");
	}
}

size_t
picture_finish(json_t *pic, const char *audience, int64_t threshold)
{
	size_t hidden = 0;
	if (strcmp(audience, "public") == 0) {
		for (int col = 0; col < 3; col++)
			hidden += suppress_column(pic, col, threshold);
	}
	explain_hotspots(pic, threshold);
	json_object_set_new(pic, "audience", json_string(audience));
	char at[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(pic, "generated_at", json_string(at));
	json_object_set_new(pic, "suppression",
	    json_pack("{s:I,s:I}", "threshold", (json_int_t)threshold, "suppressed_cells",
	        (json_int_t)hidden));
	return hidden;
}

/* ---- CSV ---- */

typedef struct sbuf {
	char *p;
	size_t len, cap;
} sbuf;

static void
sb_add(sbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		while (b->len + n + 1 > b->cap)
			b->cap = b->cap ? b->cap * 2 : 4096;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* A quoted field; a leading = + - @ is defused for spreadsheets. */
static void
sb_field(sbuf *b, const char *s)
{
	sb_add(b, "\"", 1);
	if (s && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@'))
		sb_add(b, "'", 1);
	for (; s && *s; s++)
		sb_add(b, *s == '"' ? "\"\"" : s, 1 + (*s == '"'));
	sb_add(b, "\"", 1);
}

static void
sb_num(sbuf *b, const json_t *v)
{
	char buf[40];
	if (json_is_integer(v))
		snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, sizeof(buf), "%g", json_real_value(v));
	else
		buf[0] = '\0';
	sb_add(b, buf, strlen(buf));
}

/* section,key,name then value,previous,last_year of C object `c` (or a
 * plain number in `value` with empty others). */
static void
row(sbuf *b, const char *section, const char *key, const char *name, const json_t *c)
{
	sb_field(b, section);
	sb_add(b, ",", 1);
	sb_field(b, key);
	sb_add(b, ",", 1);
	sb_field(b, name ? name : "");
	for (int i = 0; i < 3; i++) {
		sb_add(b, ",", 1);
		if (json_is_object(c))
			sb_num(b, json_object_get(c, columns[i]));
		else if (i == 0)
			sb_num(b, c);
	}
	sb_add(b, "\r\n", 2);
}

static const char *
str(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

char *
picture_csv(const json_t *pic, size_t *len)
{
	sbuf b = {0};
	sb_add(&b, "section,key,name,value,previous,last_year\r\n", 43);
	json_t *tot = json_object_get(pic, "totals");
	row(&b, "totals", "reports", "Reports", json_object_get(tot, "reports"));
	row(&b, "totals", "day", "Day", json_object_get(tot, "day"));
	row(&b, "totals", "night", "Night", json_object_get(tot, "night"));
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(pic, "by_category"), i, e)
	{
		row(&b, "category", str(e, "category"), str(e, "name"),
		    json_object_get(e, "count"));
		row(&b, "category_night", str(e, "category"), str(e, "name"),
		    json_object_get(e, "night"));
	}
	json_array_foreach(json_object_get(pic, "by_focus_area"), i, e) row(&b, "focus_area",
	    str(e, "focus_area"), str(e, "name"), json_object_get(e, "count"));
	json_array_foreach(json_object_get(pic, "by_place"), i, e)
	{
		row(&b, "place", str(e, "place"), str(e, "name"), json_object_get(e, "count"));
		row(&b, "place_night", str(e, "place"), str(e, "name"),
		    json_object_get(e, "night"));
	}
	json_array_foreach(json_object_get(pic, "hotspots"), i, e)
	    row(&b, "hotspot", str(e, "place"), str(e, "explanation"), json_object_get(e, "rank"));
	json_array_foreach(json_object_get(json_object_get(pic, "trend"), "series"), i, e)
	{
		row(&b, "trend", str(e, "start"), "", json_object_get(e, "count"));
		row(&b, "trend_night", str(e, "start"), "", json_object_get(e, "night"));
	}
	json_t *resp = json_object_get(pic, "response");
	const char *kinds[2] = {"ack", "done"};
	const char *stats[4] = {"n", "median_min", "p90_min", "within_target_share"};
	for (int k = 0; k < 2; k++) {
		char key[160];
		for (int s = 0; s < 4; s++) {
			snprintf(key, sizeof(key), "%s.%s", kinds[k], stats[s]);
			row(&b, "response", key, "",
			    json_object_get(json_object_get(resp, kinds[k]), stats[s]));
		}
		json_array_foreach(json_object_get(resp, "by_unit"), i, e) for (int s = 0; s < 4;
		                                                                s++)
		{
			snprintf(key, sizeof(key), "unit:%s.%s.%s", str(e, "unit"), kinds[k],
			    stats[s]);
			row(&b, "response", key, "",
			    json_object_get(json_object_get(e, kinds[k]), stats[s]));
		}
		json_array_foreach(json_object_get(resp, "by_category"), i, e) for (int s = 0;
		                                                                    s < 4; s++)
		{
			snprintf(key, sizeof(key), "category:%s.%s.%s", str(e, "category"),
			    kinds[k], stats[s]);
			row(&b, "response", key, "",
			    json_object_get(json_object_get(e, kinds[k]), stats[s]));
		}
	}
	row(&b, "response", "overdue_now", "", json_object_get(resp, "overdue_now"));
	json_t *w = json_object_get(pic, "walks");
	row(&b, "walks", "walks", "", json_object_get(w, "walks"));
	row(&b, "walks", "findings", "", json_object_get(w, "findings"));
	row(&b, "walks", "overdue", "", json_object_get(w, "overdue"));
	row(&b, "walks", "done_within_6_months_share", "",
	    json_object_get(w, "done_within_6_months_share"));
	json_array_foreach(json_object_get(w, "declined"), i, e)
	    row(&b, "walks_declined", str(e, "owner"), "", json_object_get(e, "count"));
	json_array_foreach(json_object_get(pic, "survey"), i, e)
	{
		row(&b, "survey_reports", str(e, "area"), str(e, "name"),
		    json_object_get(e, "reports"));
		size_t j;
		json_t *ind;
		json_array_foreach(json_object_get(e, "indicators"), j, ind)
		{
			char key[200];
			snprintf(key, sizeof(key), "%s:%s", str(e, "area"), str(ind, "indicator"));
			row(&b, "survey", key, str(e, "survey"), json_object_get(ind, "value"));
		}
	}
	if (len)
		*len = b.len;
	return b.p;
}

/* ---- GeoJSON ---- */

json_t *
picture_geojson(const json_t *pic, const json_t *places)
{
	json_t *features = json_array();
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(places, "features"), i, f)
	{
		const char *slug = str(json_object_get(f, "properties"), "slug");
		json_t *p = NULL, *e;
		size_t j;
		json_array_foreach(json_object_get(pic, "by_place"), j,
		    e) if (strcmp(str(e, "place"), slug) == 0) p = e;
		if (p == NULL)
			continue; /* not in the area (or the district boundary) */
		json_t *rank = json_null();
		json_array_foreach(json_object_get(pic, "hotspots"), j,
		    e) if (strcmp(str(e, "place"), slug) == 0) rank =
		    json_incref(json_object_get(e, "rank"));
		json_t *c = json_object_get(p, "count");
		json_t *props = json_pack("{s:s,s:s,s:O,s:O,s:O,s:O,s:o}", "slug", slug, "name",
		    str(p, "name"), "count", json_object_get(c, "value"), "night",
		    json_object_get(json_object_get(p, "night"), "value"), "previous",
		    json_object_get(c, "previous"), "last_year", json_object_get(c, "last_year"),
		    "rank", rank);
		if (json_is_true(json_object_get(c, "suppressed")))
			json_object_set_new(props, "suppressed", json_true());
		json_array_append_new(features,
		    json_pack("{s:s,s:O,s:o}", "type", "Feature", "geometry",
		        json_object_get(f, "geometry"), "properties", props));
	}
	return json_pack("{s:s,s:o}", "type", "FeatureCollection", "features", features);
}
