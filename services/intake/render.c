/*
 * render.c: output documents (see render.h).
 */
#include "render.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"

/* Makes room for n more bytes and a NUL. */
static void
sb_reserve(strbuf *b, size_t n)
{
	if (b->len + n + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + n + 1)
		cap *= 2;
	b->s = xrealloc(b->s, cap);
	b->cap = cap;
}

static void
sb_appendn(strbuf *b, const char *s, size_t n)
{
	sb_reserve(b, n);
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void
sb_append(strbuf *b, const char *s)
{
	sb_appendn(b, s, strlen(s));
}

void
sb_appendf(strbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s;
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	sb_append(b, s);
	free(s);
}

/* U+FFFD, written for anything a document cannot carry. */
#define REPLACEMENT "\xef\xbf\xbd"

/*
 * Text from the database or a peer is expected to be valid UTF-8 that XML
 * can carry (validation refuses the rest), but one bad row must never make
 * the public feed unparsable for everyone: bytes that are not UTF-8 and
 * characters XML 1.0 cannot carry (C0 controls but tab, LF and CR; U+FFFE,
 * U+FFFF) are written as U+FFFD.
 */
void
sb_append_xml(strbuf *b, const char *s)
{
	size_t n = strlen(s);
	/* Worst case every byte becomes "&quot;" or U+FFFD. */
	sb_reserve(b, n * 6);
	char *o = b->s + b->len;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t len = trygg_utf8_decode(s + i, n - i, &cp);
		const char *rep = NULL;
		if (len == 0 || !trygg_xml_char(cp)) {
			rep = REPLACEMENT;
			len = len ? len : 1;
		} else {
			switch (cp) {
			case '&': rep = "&amp;"; break;
			case '<': rep = "&lt;"; break;
			case '>': rep = "&gt;"; break;
			case '"': rep = "&quot;"; break;
			case '\'': rep = "&apos;"; break;
			default: break;
			}
		}
		if (rep != NULL) {
			size_t rl = strlen(rep);
			memcpy(o, rep, rl);
			o += rl;
		} else {
			memcpy(o, s + i, len);
			o += len;
		}
		i += len;
	}
	*o = '\0';
	b->len = (size_t)(o - b->s);
}

void
sb_xml_elem(strbuf *b, const char *tag, const char *text)
{
	if (text == NULL) {
		sb_appendf(b, "<%s/>", tag);
		return;
	}
	sb_appendf(b, "<%s>", tag);
	sb_append_xml(b, text);
	sb_appendf(b, "</%s>", tag);
}

void
sb_free(strbuf *b)
{
	free(b->s);
	memset(b, 0, sizeof(*b));
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

/* A column's text, or NULL for SQL NULL. */
static const char *
col(const PGresult *res, int row, int c)
{
	return PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
}

static json_t *
str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static int64_t
expected_us(const category *c, int64_t created_us)
{
	return created_us + (int64_t)(c ? c->response_target_min : 0) * 60 * 1000000;
}

/* Like sb_append_xml: bytes that are not UTF-8 become U+FFFD, so the
 * document is always valid JSON (which can carry every other character). */
void
sb_append_json(strbuf *b, const char *s)
{
	if (s == NULL) {
		sb_appendn(b, "null", 4);
		return;
	}
	static const char hex[] = "0123456789abcdef";
	size_t n = strlen(s);
	/* Worst case every byte becomes \u00XX: written in place, no copies. */
	sb_reserve(b, n * 6 + 2);
	char *o = b->s + b->len;
	*o++ = '"';
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		uint32_t cp;
		size_t len;
		if (c < 0x80) {
			if (c == '"' || c == '\\') {
				*o++ = '\\';
				*o++ = (char)c;
			} else if (c < 0x20) {
				memcpy(o, "\\u00", 4);
				o[4] = hex[c >> 4];
				o[5] = hex[c & 15];
				o += 6;
			} else {
				*o++ = (char)c;
			}
			i++;
		} else if ((len = trygg_utf8_decode(s + i, n - i, &cp)) != 0) {
			memcpy(o, s + i, len);
			o += len;
			i += len;
		} else {
			memcpy(o, REPLACEMENT, 3);
			o += 3;
			i++;
		}
	}
	*o++ = '"';
	*o = '\0';
	b->len = (size_t)(o - b->s);
}

/* ,"key":value where value is JSON text already (a number, or null). */
static void
kv_key(strbuf *b, const char *key)
{
	size_t n = strlen(key);
	sb_reserve(b, n + 4);
	char *o = b->s + b->len;
	o[0] = ',';
	o[1] = '"';
	memcpy(o + 2, key, n);
	o[n + 2] = '"';
	o[n + 3] = ':';
	o[n + 4] = '\0';
	b->len += n + 4;
}

static void
kv_raw(strbuf *b, const char *key, const char *json)
{
	kv_key(b, key);
	sb_append(b, json ? json : "null");
}

static void
kv_str(strbuf *b, const char *key, const char *s)
{
	kv_key(b, key);
	sb_append_json(b, s);
}

/* Place ids ("3,7") as a JSON array of slugs. */
static void
places_text(strbuf *b, const char *csv, directory *dir)
{
	const place_set *ps = directory_places(dir);
	bool first = true;
	sb_append(b, ",\"places\":[");
	while (csv && *csv) {
		char *end;
		long id = strtol(csv, &end, 10);
		for (size_t i = 0; i < ps->n; i++) {
			if (ps->items[i].id == id) {
				if (!first)
					sb_append(b, ",");
				sb_append_json(b, ps->items[i].slug);
				first = false;
				break;
			}
		}
		csv = *end == ',' ? end + 1 : end + strlen(end);
	}
	sb_append(b, "]");
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
	const char *code = col(res, row, c0 + RC_CATEGORY);
	const category *c = categories_find(directory_categories(dir), code);
	bool sensitive = col(res, row, c0 + RC_SENSITIVE)[0] == 't';
	const partner *owner = directory_partner(dir, atoi(col(res, row, c0 + RC_PARTNER_ID)));
	int64_t created = strtoll(col(res, row, c0 + RC_CREATED_US), NULL, 10);
	int64_t updated = strtoll(col(res, row, c0 + RC_UPDATED_US), NULL, 10);
	char tc[32], tu[32], te[32];
	render_time(created, tc, sizeof(tc));
	render_time(updated, tu, sizeof(tu));
	render_time(expected_us(c, created), te, sizeof(te));
	sb_append(b, "{\"id\":");
	sb_append_json(b, col(res, row, c0 + RC_ID));
	kv_str(b, "service_request_id", col(res, row, c0 + RC_SRID));
	kv_str(b, "category", code);
	kv_str(b, "category_name", c ? c->name : NULL);
	kv_str(b, "focus_area", c ? c->focus_area : NULL);
	kv_raw(b, "severity", col(res, row, c0 + RC_SEVERITY));
	kv_raw(b, "sensitive", sensitive ? "true" : "false");
	kv_str(b, "status", col(res, row, c0 + RC_STATUS));
	kv_str(b, "close_reason", col(res, row, c0 + RC_CLOSE_REASON));
	kv_str(b, "status_notes", col(res, row, c0 + RC_STATUS_NOTES));
	kv_raw(b, "lat", col(res, row, c0 + RC_LAT));
	kv_raw(b, "long", col(res, row, c0 + RC_LONG));
	kv_str(b, "address_string", col(res, row, c0 + RC_ADDRESS));
	kv_str(b, "description",
	    render_description_visible(sensitive, viewer) ? col(res, row, c0 + RC_DESCRIPTION)
	                                                  : NULL);
	kv_str(b, "media_url", col(res, row, c0 + RC_MEDIA_URL));
	kv_raw(b, "attributes", col(res, row, c0 + RC_ATTRIBUTES));
	places_text(b, col(res, row, c0 + RC_PLACES), dir);
	kv_str(b, "partner", owner ? owner->name : NULL);
	kv_str(b, "created_at", tc);
	kv_str(b, "updated_at", tu);
	kv_str(b, "expected_at", te);
	sb_append(b, "}");
}

json_t *
render_report_new(const report_in *r, int64_t srid, const partner *viewer, directory *dir)
{
	const category *c = categories_find(directory_categories(dir), r->category);
	char tc[32], te[32], srid_s[24];
	render_time(r->created_us, tc, sizeof(tc));
	render_time(r->created_us + (int64_t)r->response_target_min * 60 * 1000000, te, sizeof(te));
	snprintf(srid_s, sizeof(srid_s), "%lld", (long long)srid);
	json_t *places = json_array();
	for (size_t i = 0; i < r->nplaces; i++)
		json_array_append_new(places, json_string(r->place_slugs[i]));
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(r->id));
	json_object_set_new(o, "service_request_id", json_string(srid_s));
	json_object_set_new(o, "category", json_string(r->category));
	json_object_set_new(o, "category_name", str_or_null(c ? c->name : NULL));
	json_object_set_new(o, "focus_area", json_string(r->focus_area));
	json_object_set_new(o, "severity", json_integer(r->severity));
	json_object_set_new(o, "sensitive", json_boolean(r->sensitive));
	json_object_set_new(o, "status", json_string("open"));
	json_object_set_new(o, "close_reason", json_null());
	json_object_set_new(o, "status_notes", json_null());
	json_object_set_new(o, "lat", r->has_position ? json_real(r->lat) : json_null());
	json_object_set_new(o, "long", r->has_position ? json_real(r->lon) : json_null());
	json_object_set_new(o, "address_string", str_or_null(r->address));
	json_object_set_new(o, "description",
	    render_description_visible(r->sensitive, viewer) ? str_or_null(r->description)
	                                                     : json_null());
	json_object_set_new(o, "media_url", str_or_null(r->media_url));
	json_object_set_new(o, "attributes", json_deep_copy(r->attributes));
	json_object_set_new(o, "places", places);
	json_object_set_new(o, "partner", str_or_null(r->partner ? r->partner->name : NULL));
	json_object_set_new(o, "created_at", json_string(tc));
	json_object_set_new(o, "updated_at", json_string(tc));
	json_object_set_new(o, "expected_at", json_string(te));
	return o;
}

/* The Open311 fields of a row, as name/value text pairs (NULL value = none). */
typedef struct o311 {
	const char *srid, *status, *notes, *service_name, *code, *description, *address, *lat, *lon,
	    *media;
	char requested[32], updated[32], expected[32];
} o311;

static void
open311_fields(const PGresult *res, int row, const partner *viewer, directory *dir, o311 *f)
{
	f->code = col(res, row, RC_CATEGORY);
	const category *c = categories_find(directory_categories(dir), f->code);
	bool sensitive = col(res, row, RC_SENSITIVE)[0] == 't';
	f->srid = col(res, row, RC_SRID);
	f->status = strcmp(col(res, row, RC_STATUS), "closed") == 0 ? "closed" : "open";
	f->notes = col(res, row, RC_STATUS_NOTES);
	f->service_name = c ? c->name : f->code;
	f->description =
	    render_description_visible(sensitive, viewer) ? col(res, row, RC_DESCRIPTION) : NULL;
	f->address = col(res, row, RC_ADDRESS);
	f->lat = col(res, row, RC_LAT);
	f->lon = col(res, row, RC_LONG);
	f->media = col(res, row, RC_MEDIA_URL);
	int64_t created = strtoll(col(res, row, RC_CREATED_US), NULL, 10);
	render_time(created, f->requested, sizeof(f->requested));
	render_time(strtoll(col(res, row, RC_UPDATED_US), NULL, 10), f->updated,
	    sizeof(f->updated));
	render_time(expected_us(c, created), f->expected, sizeof(f->expected));
}

#define AGENCY "Norrmalm district administration"

void
render_open311_row_json(strbuf *b, const PGresult *res, int row, const partner *viewer,
    directory *dir)
{
	o311 f;
	open311_fields(res, row, viewer, dir, &f);
	sb_append(b, "{\"service_request_id\":");
	sb_append_json(b, f.srid);
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
	sb_append(b, "}");
}

void
render_open311_row_xml(strbuf *b, const PGresult *res, int row, const partner *viewer,
    directory *dir)
{
	o311 f;
	open311_fields(res, row, viewer, dir, &f);
	sb_append(b, "<request>");
	sb_xml_elem(b, "service_request_id", f.srid);
	sb_xml_elem(b, "status", f.status);
	sb_xml_elem(b, "status_notes", f.notes);
	sb_xml_elem(b, "service_name", f.service_name);
	sb_xml_elem(b, "service_code", f.code);
	sb_xml_elem(b, "description", f.description);
	sb_xml_elem(b, "agency_responsible", AGENCY);
	sb_xml_elem(b, "service_notice", NULL);
	sb_xml_elem(b, "requested_datetime", f.requested);
	sb_xml_elem(b, "updated_datetime", f.updated);
	sb_xml_elem(b, "expected_datetime", f.expected);
	sb_xml_elem(b, "address", f.address);
	sb_xml_elem(b, "address_id", NULL);
	sb_xml_elem(b, "zipcode", NULL);
	sb_xml_elem(b, "lat", f.lat);
	sb_xml_elem(b, "long", f.lon);
	sb_xml_elem(b, "media_url", f.media);
	sb_append(b, "</request>");
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
	sb_append(b, "<?xml version=\"1.0\" encoding=\"utf-8\"?><services>");
	for (size_t i = 0; i < cats->n; i++) {
		const category *c = &cats->items[i];
		sb_append(b, "<service>");
		sb_xml_elem(b, "service_code", c->code);
		sb_xml_elem(b, "service_name", c->name);
		sb_xml_elem(b, "description", c->description);
		sb_xml_elem(b, "metadata", c->nattrs > 0 ? "true" : "false");
		sb_xml_elem(b, "type", "realtime");
		sb_xml_elem(b, "keywords", c->keywords);
		sb_xml_elem(b, "group", group_of(c));
		sb_append(b, "</service>");
	}
	sb_append(b, "</services>");
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
	sb_append(b, "<?xml version=\"1.0\" encoding=\"utf-8\"?><service_definition>");
	sb_xml_elem(b, "service_code", c->code);
	sb_append(b, "<attributes>");
	for (size_t i = 0; i < c->nattrs; i++) {
		const category_attr *a = &c->attrs[i];
		char order[16];
		snprintf(order, sizeof(order), "%d", a->order ? a->order : (int)i + 1);
		sb_append(b, "<attribute>");
		sb_xml_elem(b, "variable", "true");
		sb_xml_elem(b, "code", a->code);
		sb_xml_elem(b, "datatype", attr_type_name(a->type));
		sb_xml_elem(b, "required", a->required ? "true" : "false");
		sb_xml_elem(b, "datatype_description", NULL);
		sb_xml_elem(b, "order", order);
		sb_xml_elem(b, "description", a->description);
		if (a->nvalues > 0) {
			sb_append(b, "<values>");
			for (size_t j = 0; j < a->nvalues; j++) {
				sb_append(b, "<value>");
				sb_xml_elem(b, "key", a->keys[j]);
				sb_xml_elem(b, "name", a->names[j]);
				sb_append(b, "</value>");
			}
			sb_append(b, "</values>");
		}
		sb_append(b, "</attribute>");
	}
	sb_append(b, "</attributes></service_definition>");
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
		sb_append(&b, "<?xml version=\"1.0\" encoding=\"utf-8\"?><errors><error>");
		sb_xml_elem(&b, "code", c);
		sb_xml_elem(&b, "description", description ? description : "");
		sb_append(&b, "</error></errors>");
	} else {
		sb_append(&b, "[{\"code\":");
		sb_append(&b, c);
		sb_append(&b, ",\"description\":");
		sb_append_json(&b, description ? description : "");
		sb_append(&b, "}]");
	}
	*len = b.len;
	return b.s;
}
