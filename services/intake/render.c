/*
 * render.c: output documents (see render.h).
 */
#include "render.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"

void
render_xml_elem(strbuf *b, const char *tag, const char *text)
{
	if (text == NULL) {
		strbuf_appendf(b, "<%s/>", tag);
		return;
	}
	strbuf_appendf(b, "<%s>", tag);
	strbuf_append_xml(b, text);
	strbuf_appendf(b, "</%s>", tag);
}

bool
render_description_visible(bool sensitive, const partner *viewer)
{
	return !sensitive || (viewer != NULL && viewer->staff);
}

void
render_time(int64_t us, char *buf, size_t len)
{
	trygg_format_iso8601(us, buf, len);
}

static int64_t
expected_us(const category *c, int64_t created_us)
{
	return created_us + (int64_t)(c ? c->response_target_min : 0) * 60 * 1000000;
}

/*
 * ,"key":value. The keys are literals, so the text before the value is one
 * constant of known length (a list of 1,000 writes 23,000 of them). kv_raw:
 * the value is JSON text already (a number, or NULL for null); kv_str: a
 * string (NULL for null); kv_col: a text column of a report row, escaped
 * with the length Postgres gave.
 */
#define KV_KEY(key) ",\"" key "\":", sizeof(key) + 3
#define kv_raw(b, key, json) kv_raw_((b), KV_KEY(key), (json))
#define kv_str(b, key, s) kv_str_((b), KV_KEY(key), (s))
#define kv_col(b, key, res, row, c) kv_col_((b), KV_KEY(key), (res), (row), (c))

static void
kv_raw_(strbuf *b, const char *key, size_t klen, const char *json)
{
	strbuf_appendn(b, key, klen);
	strbuf_append(b, json ? json : "null");
}

static void
kv_str_(strbuf *b, const char *key, size_t klen, const char *s)
{
	strbuf_appendn(b, key, klen);
	strbuf_append_json(b, s);
}

static void
kv_col_(strbuf *b, const char *key, size_t klen, const PGresult *res, int row, int c)
{
	strbuf_appendn(b, key, klen);
	if (PQgetisnull(res, row, c))
		strbuf_appendn(b, "null", 4);
	else
		strbuf_append_jsonn(b, PQgetvalue(res, row, c), (size_t)PQgetlength(res, row, c));
}

/* ,"key":value for a column of a report row that is JSON text already (a
 * number, the attributes): as kv_col, not escaped. */
#define kv_rawcol(b, key, res, row, c) kv_rawcol_((b), KV_KEY(key), (res), (row), (c))
static void
kv_rawcol_(strbuf *b, const char *key, size_t klen, const PGresult *res, int row, int c)
{
	const char *v = PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
	strbuf_appendn(b, key, klen);
	strbuf_appendn(b, v ? v : "null", v ? (size_t)PQgetlength(res, row, c) : 4);
}

/*
 * ,"key":"text" for a text that never needs escaping (a UUID, decimal
 * digits, one of our ISO 8601 times): one copy, no scan for characters to
 * escape (a list of 1,000 writes 5,000 of them).
 */
#define kv_plain(b, key, s) kv_plain_((b), KV_KEY(key), (s))
static void
kv_plain_(strbuf *b, const char *key, size_t klen, const char *s)
{
	size_t n = strlen(s);
	strbuf_reserve(b, klen + n + 2);
	char *o = b->s + b->len;
	memcpy(o, key, klen);
	o += klen;
	*o++ = '"';
	memcpy(o, s, n);
	o += n;
	*o++ = '"';
	*o = '\0';
	b->len = (size_t)(o - b->s);
}

/* Place ids ("3,7") as a JSON array of slugs. */
static void
places_text(strbuf *b, const char *csv, directory *dir)
{
	if (csv == NULL || *csv == '\0') { /* most reports: no place */
		strbuf_appendn(b, ",\"places\":[]", sizeof(",\"places\":[]") - 1);
		return;
	}
	const place_set *ps = directory_places(dir);
	bool first = true;
	strbuf_append(b, ",\"places\":[");
	while (csv && *csv) {
		char *end;
		long id = strtol(csv, &end, 10);
		for (size_t i = 0; i < ps->n; i++) {
			if (ps->items[i].id == id) {
				if (!first)
					strbuf_append(b, ",");
				strbuf_append_json(b, ps->items[i].slug);
				first = false;
				break;
			}
		}
		csv = *end == ',' ? end + 1 : end + strlen(end);
	}
	strbuf_append(b, "]");
}

/*
 * The native representation of a row, written straight to text: a list of
 * 1,000 reports through jansson objects cost ~10 ms of the loop's time
 * (a hash table per object); this costs a fraction. The strings come from
 * Postgres (valid UTF-8) and are escaped here; numbers and the attributes
 * are Postgres's own JSON-compatible text.
 */
void
render_report_row(strbuf *b, const PGresult *res, int row, int c0, const partner *viewer,
    directory *dir)
{
	const char *code = query_col_text(res, row, c0 + RC_CATEGORY);
	const category *c = categories_find(directory_categories(dir), code);
	bool sensitive = query_col_bool(res, row, c0 + RC_SENSITIVE);
	const partner *owner =
	    directory_partner(dir, (int)query_col_int(res, row, c0 + RC_PARTNER_ID));
	int64_t created = query_col_us(res, row, c0 + RC_CREATED_US);
	int64_t updated = query_col_us(res, row, c0 + RC_UPDATED_US);
	char tc[32], tu[32], te[32], id[37], srid[24], sev[24];
	render_time(created, tc, sizeof(tc));
	if (updated == created) /* a report no crew has touched */
		memcpy(tu, tc, sizeof(tu));
	else
		render_time(updated, tu, sizeof(tu));
	render_time(expected_us(c, created), te, sizeof(te));
	/* The id, the numbers and the times go out as they are (kv_plain). */
	static const char first_key[] = "{\"id\":";
	kv_plain_(b, first_key, sizeof(first_key) - 1, query_col_uuid(res, row, c0 + RC_ID, id));
	kv_plain(b, "service_request_id", query_col_dec(res, row, c0 + RC_SRID, srid));
	kv_str(b, "category", code);
	kv_str(b, "category_name", c ? c->name : NULL);
	kv_str(b, "focus_area", c ? c->focus_area : NULL);
	kv_raw(b, "severity", query_col_dec(res, row, c0 + RC_SEVERITY, sev));
	kv_raw(b, "sensitive", sensitive ? "true" : "false");
	kv_col(b, "status", res, row, c0 + RC_STATUS);
	kv_col(b, "close_reason", res, row, c0 + RC_CLOSE_REASON);
	kv_col(b, "status_notes", res, row, c0 + RC_STATUS_NOTES);
	kv_rawcol(b, "lat", res, row, c0 + RC_LAT);
	kv_rawcol(b, "long", res, row, c0 + RC_LONG);
	kv_col(b, "address_string", res, row, c0 + RC_ADDRESS);
	if (render_description_visible(sensitive, viewer))
		kv_col(b, "description", res, row, c0 + RC_DESCRIPTION);
	else
		kv_raw(b, "description", NULL);
	kv_col(b, "media_url", res, row, c0 + RC_MEDIA_URL);
	kv_rawcol(b, "attributes", res, row, c0 + RC_ATTRIBUTES);
	places_text(b, query_col_text(res, row, c0 + RC_PLACES), dir);
	kv_str(b, "partner", owner ? owner->name : NULL);
	kv_plain(b, "created_at", tc);
	kv_plain(b, "updated_at", tu);
	kv_plain(b, "expected_at", te);
	strbuf_appendn(b, "}", 1);
}

/* A double as jansson writes it with JSON_REAL_PRECISION(10): "%.10g",
 * with ".0" added to an integral value so it reads back as a real. */
#define kv_real(b, key, has, v) kv_real_((b), KV_KEY(key), (has), (v))
static void
kv_real_(strbuf *b, const char *key, size_t klen, bool has, double v)
{
	char t[40];
	if (!has || !isfinite(v)) {
		kv_raw_(b, key, klen, NULL);
		return;
	}
	int n = snprintf(t, sizeof(t) - 2, "%.10g", v);
	if (n > 0 && strpbrk(t, ".eE") == NULL)
		memcpy(t + n, ".0", 3);
	kv_raw_(b, key, klen, t);
}

/*
 * The 201 body of a report just stored, written straight to text like the
 * list rows (render_report_row), with the same members in the same order
 * and the same number formats as the jansson object it replaces: that cost
 * a hash table per object and a dump per report (issue 9). Only the
 * attributes, already a jansson object, are dumped.
 */
void
render_report_new(strbuf *b, const report_in *r, int64_t srid, const partner *viewer,
    directory *dir)
{
	const category *c = categories_find(directory_categories(dir), r->category);
	char tc[32], te[32], srid_s[24], sev[16];
	render_time(r->created_us, tc, sizeof(tc));
	render_time(r->created_us + (int64_t)r->response_target_min * 60 * 1000000, te, sizeof(te));
	snprintf(srid_s, sizeof(srid_s), "%lld", (long long)srid);
	snprintf(sev, sizeof(sev), "%d", r->severity);
	char *attrs = r->attributes
	    ? json_dumps(r->attributes, JSON_COMPACT | JSON_REAL_PRECISION(10))
	    : NULL;
	strbuf_append(b, "{\"id\":");
	strbuf_append_json(b, r->id);
	kv_str(b, "service_request_id", srid_s);
	kv_str(b, "category", r->category);
	kv_str(b, "category_name", c ? c->name : NULL);
	kv_str(b, "focus_area", r->focus_area);
	kv_raw(b, "severity", sev);
	kv_raw(b, "sensitive", r->sensitive ? "true" : "false");
	kv_str(b, "status", "open");
	kv_raw(b, "close_reason", NULL);
	kv_raw(b, "status_notes", NULL);
	kv_real(b, "lat", r->has_position, r->lat);
	kv_real(b, "long", r->has_position, r->lon);
	kv_str(b, "address_string", r->address);
	kv_str(b, "description",
	    render_description_visible(r->sensitive, viewer) ? r->description : NULL);
	kv_str(b, "media_url", r->media_url);
	kv_raw(b, "attributes", attrs ? attrs : "{}");
	strbuf_append(b, ",\"places\":[");
	for (size_t i = 0; i < r->nplaces; i++) {
		if (i > 0)
			strbuf_append(b, ",");
		strbuf_append_json(b, r->place_slugs[i]);
	}
	strbuf_append(b, "]");
	kv_str(b, "partner", r->partner ? r->partner->name : NULL);
	kv_str(b, "created_at", tc);
	kv_str(b, "updated_at", tc);
	kv_str(b, "expected_at", te);
	strbuf_append(b, "}");
	free(attrs);
}

/* The Open311 fields of a row, as name/value text pairs (NULL value = none). */
typedef struct o311 {
	const char *srid, *status, *notes, *service_name, *code, *description, *address, *lat, *lon,
	    *media;
	char requested[32], updated[32], expected[32], srid_buf[24];
} o311;

static void
open311_fields(const PGresult *res, int row, const partner *viewer, directory *dir, o311 *f)
{
	f->code = query_col_text(res, row, RC_CATEGORY);
	const category *c = categories_find(directory_categories(dir), f->code);
	bool sensitive = query_col_bool(res, row, RC_SENSITIVE);
	f->srid = query_col_dec(res, row, RC_SRID, f->srid_buf);
	f->status = strcmp(query_col_text(res, row, RC_STATUS), "closed") == 0 ? "closed" : "open";
	f->notes = query_col_text(res, row, RC_STATUS_NOTES);
	f->service_name = c ? c->name : f->code;
	f->description = render_description_visible(sensitive, viewer)
	    ? query_col_text(res, row, RC_DESCRIPTION)
	    : NULL;
	f->address = query_col_text(res, row, RC_ADDRESS);
	f->lat = query_col_text(res, row, RC_LAT);
	f->lon = query_col_text(res, row, RC_LONG);
	f->media = query_col_text(res, row, RC_MEDIA_URL);
	int64_t created = query_col_us(res, row, RC_CREATED_US);
	render_time(created, f->requested, sizeof(f->requested));
	render_time(query_col_us(res, row, RC_UPDATED_US), f->updated, sizeof(f->updated));
	render_time(expected_us(c, created), f->expected, sizeof(f->expected));
}

#define AGENCY "Norrmalm district administration"

void
render_open311_row_json(strbuf *b, const PGresult *res, int row, const partner *viewer,
    directory *dir)
{
	o311 f;
	open311_fields(res, row, viewer, dir, &f);
	strbuf_append(b, "{\"service_request_id\":");
	strbuf_append_json(b, f.srid);
	kv_str(b, "status", f.status);
	kv_str(b, "status_notes", f.notes);
	kv_str(b, "service_name", f.service_name);
	kv_str(b, "service_code", f.code);
	kv_str(b, "description", f.description);
	kv_str(b, "agency_responsible", AGENCY);
	kv_raw(b, "service_notice", NULL);
	kv_str(b, "requested_datetime", f.requested);
	kv_str(b, "updated_datetime", f.updated);
	kv_str(b, "expected_datetime", f.expected);
	kv_str(b, "address", f.address);
	kv_raw(b, "address_id", NULL);
	kv_raw(b, "zipcode", NULL);
	kv_raw(b, "lat", f.lat);
	kv_raw(b, "long", f.lon);
	kv_str(b, "media_url", f.media);
	strbuf_append(b, "}");
}

void
render_open311_row_xml(strbuf *b, const PGresult *res, int row, const partner *viewer,
    directory *dir)
{
	o311 f;
	open311_fields(res, row, viewer, dir, &f);
	strbuf_append(b, "<request>");
	render_xml_elem(b, "service_request_id", f.srid);
	render_xml_elem(b, "status", f.status);
	render_xml_elem(b, "status_notes", f.notes);
	render_xml_elem(b, "service_name", f.service_name);
	render_xml_elem(b, "service_code", f.code);
	render_xml_elem(b, "description", f.description);
	render_xml_elem(b, "agency_responsible", AGENCY);
	render_xml_elem(b, "service_notice", NULL);
	render_xml_elem(b, "requested_datetime", f.requested);
	render_xml_elem(b, "updated_datetime", f.updated);
	render_xml_elem(b, "expected_datetime", f.expected);
	render_xml_elem(b, "address", f.address);
	render_xml_elem(b, "address_id", NULL);
	render_xml_elem(b, "zipcode", NULL);
	render_xml_elem(b, "lat", f.lat);
	render_xml_elem(b, "long", f.lon);
	render_xml_elem(b, "media_url", f.media);
	strbuf_append(b, "</request>");
}

static const char *
group_of(const category *c)
{
	return c->focus_area;
}

json_t *
render_services_json(const category_set *cats)
{
	json_t *a = json_array();
	for (size_t i = 0; i < cats->n; i++) {
		const category *c = &cats->items[i];
		json_array_append_new(a,
		    json_pack("{s:s, s:s, s:s, s:b, s:s, s:s, s:s}", "service_code", c->code,
		        "service_name", c->name, "description", c->description, "metadata",
		        c->nattrs > 0, "type", "realtime", "keywords", c->keywords, "group",
		        group_of(c)));
	}
	return a;
}

void
render_services_xml(strbuf *b, const category_set *cats)
{
	strbuf_append(b, "<?xml version=\"1.0\" encoding=\"utf-8\"?><services>");
	for (size_t i = 0; i < cats->n; i++) {
		const category *c = &cats->items[i];
		strbuf_append(b, "<service>");
		render_xml_elem(b, "service_code", c->code);
		render_xml_elem(b, "service_name", c->name);
		render_xml_elem(b, "description", c->description);
		render_xml_elem(b, "metadata", c->nattrs > 0 ? "true" : "false");
		render_xml_elem(b, "type", "realtime");
		render_xml_elem(b, "keywords", c->keywords);
		render_xml_elem(b, "group", group_of(c));
		strbuf_append(b, "</service>");
	}
	strbuf_append(b, "</services>");
}

json_t *
render_definition_json(const category *c)
{
	json_t *attrs = json_array();
	for (size_t i = 0; i < c->nattrs; i++) {
		const category_attr *a = &c->attrs[i];
		json_t *o = json_pack("{s:b, s:s, s:s, s:b, s:s, s:i, s:s}", "variable", true,
		    "code", a->code, "datatype", attr_type_name(a->type), "required", a->required,
		    "datatype_description", "", "order", a->order ? a->order : (int)i + 1,
		    "description", a->description);
		if (a->nvalues > 0) {
			json_t *vals = json_array();
			for (size_t j = 0; j < a->nvalues; j++)
				json_array_append_new(vals,
				    json_pack("{s:s, s:s}", "key", a->keys[j], "name",
				        a->names[j]));
			json_object_set_new(o, "values", vals);
		}
		json_array_append_new(attrs, o);
	}
	return json_pack("{s:s, s:o}", "service_code", c->code, "attributes", attrs);
}

void
render_definition_xml(strbuf *b, const category *c)
{
	strbuf_append(b, "<?xml version=\"1.0\" encoding=\"utf-8\"?><service_definition>");
	render_xml_elem(b, "service_code", c->code);
	strbuf_append(b, "<attributes>");
	for (size_t i = 0; i < c->nattrs; i++) {
		const category_attr *a = &c->attrs[i];
		char order[16];
		snprintf(order, sizeof(order), "%d", a->order ? a->order : (int)i + 1);
		strbuf_append(b, "<attribute>");
		render_xml_elem(b, "variable", "true");
		render_xml_elem(b, "code", a->code);
		render_xml_elem(b, "datatype", attr_type_name(a->type));
		render_xml_elem(b, "required", a->required ? "true" : "false");
		render_xml_elem(b, "datatype_description", NULL);
		render_xml_elem(b, "order", order);
		render_xml_elem(b, "description", a->description);
		if (a->nvalues > 0) {
			strbuf_append(b, "<values>");
			for (size_t j = 0; j < a->nvalues; j++) {
				strbuf_append(b, "<value>");
				render_xml_elem(b, "key", a->keys[j]);
				render_xml_elem(b, "name", a->names[j]);
				strbuf_append(b, "</value>");
			}
			strbuf_append(b, "</values>");
		}
		strbuf_append(b, "</attribute>");
	}
	strbuf_append(b, "</attributes></service_definition>");
}

char *
render_open311_error(bool xml, unsigned code, const char *description, size_t *len)
{
	/* Written by hand, not with jansson: an error must always render,
	 * whatever bytes its description holds (json_pack refuses invalid
	 * UTF-8 with NULL). */
	strbuf b = {0};
	char c[16];
	snprintf(c, sizeof(c), "%u", code);
	if (xml) {
		strbuf_append(&b, "<?xml version=\"1.0\" encoding=\"utf-8\"?><errors><error>");
		render_xml_elem(&b, "code", c);
		render_xml_elem(&b, "description", description ? description : "");
		strbuf_append(&b, "</error></errors>");
	} else {
		strbuf_append(&b, "[{\"code\":");
		strbuf_append(&b, c);
		strbuf_append(&b, ",\"description\":");
		strbuf_append_json(&b, description ? description : "");
		strbuf_append(&b, "}]");
	}
	*len = b.len;
	return b.s;
}
