/*
 * report.c: report validation (see report.h).
 *
 * The two front ends only gather raw values (strings, numbers, an
 * attribute object); validate() does every check once, so both APIs
 * refuse exactly the same things.
 */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Raw values as sent; strings borrowed from the request. */
typedef struct raw {
	bool open311;
	const char *category;
	bool has_lat, has_long;
	double lat, lon;
	const char *address, *address_id, *description, *media_url;
	const json_t *attributes;
	const char *first_name, *last_name, *email, *phone, *device_id, *account_id;
} raw;

/* Counts UTF-8 characters (the input is known to be valid UTF-8). */
static size_t
utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++) {
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	}
	return n;
}

/* Checks a free-text value: valid UTF-8 (jansson and the form parser made
 * sure), at most max characters, and only characters XML can carry (the
 * public Open311 feed is XML): no control characters except tab and
 * newlines (multi_line) or none at all, no DEL, no U+FFFE or U+FFFF. */
static int
check_text(const char *v, const char *field, size_t max, bool multi_line, tjson_error *err)
{
	if (v == NULL)
		return 0;
	size_t n = strlen(v);
	if (!trygg_utf8_valid(v, n))
		return tjson_error_set(err, "invalid_utf8", field, "%s is not valid UTF-8", field);
	if (utf8_chars(v) > max)
		return tjson_error_set(err, "too_long", field, "%s is longer than %zu characters",
		    field, max);
	return intake_text_check(v, field, multi_line, err);
}

bool
intake_media_url_ok(const char *url)
{
	size_t n = strlen(url);
	const char *host;
	if (n > REPORT_URL_MAX)
		return false;
	if (strncmp(url, "https://", 8) == 0)
		host = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
		host = url + 7;
	else
		return false;
	if (*host == '\0' || *host == '/' || *host == ':' || *host == '?' || *host == '#')
		return false;
	for (const unsigned char *p = (const unsigned char *)url; *p; p++) {
		if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '<' || *p == '>' || *p == '\\')
			return false;
	}
	return true;
}

bool
intake_idem_key_ok(const char *key)
{
	size_t n = strlen(key);
	if (n == 0 || n > REPORT_IDEM_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (key[i] < 0x21 || key[i] > 0x7e)
			return false;
	}
	return true;
}

static char *
dup_or_null(const char *s)
{
	return s && s[0] ? xstrdup(s) : NULL;
}

static bool
email_ok(const char *s)
{
	const char *at = strchr(s, '@');
	return at != NULL && at != s && at[1] != '\0' && strchr(at + 1, '@') == NULL &&
	    strchr(s, ' ') == NULL;
}

static bool
phone_ok(const char *s)
{
	int digits = 0;
	for (; *s; s++) {
		if (*s >= '0' && *s <= '9')
			digits++;
		else if (strchr("+-() ", *s) == NULL)
			return false;
	}
	return digits >= 3;
}

static int
validate(const raw *in, const report_ctx *ctx, report_in *out, tjson_error *err)
{
	const char *f_cat = in->open311 ? "service_code" : "category";
	memset(out, 0, sizeof(*out));
	out->partner = ctx->partner;

	if (in->category == NULL || in->category[0] == '\0')
		return tjson_error_set(err, "missing_field", f_cat, "%s is required", f_cat);
	const category *c = categories_find(ctx->categories, in->category);
	if (c == NULL) {
		tjson_error_set(err, "unknown_category", f_cat,
		    "%s '%.*s' is not a known service; see /open311/v2/services.json", f_cat,
		    (int)trygg_utf8_prefix(in->category, 64), in->category);
		/* GeoReport v2: a service_code that does not exist is a 404. */
		if (in->open311)
			err->status = 404;
		return TRYGG_EINVAL;
	}
	if (ctx->partner != NULL && !partner_may_report(ctx->partner, c->code)) {
		tjson_error_set(err, "category_not_allowed", f_cat,
		    "this key may not report %s '%s'", f_cat, c->code);
		err->status = 403;
		return TRYGG_EINVAL;
	}

	if (in->has_lat != in->has_long)
		return tjson_error_set(err, "missing_field", in->has_lat ? "long" : "lat",
		    "lat and long must be given together");
	bool has_address = in->address != NULL && in->address[0] != '\0';
	bool has_address_id = in->address_id != NULL && in->address_id[0] != '\0';
	if (!in->has_lat && !has_address && !has_address_id)
		return tjson_error_set(err, "missing_field", "lat",
		    in->open311
		        ? "a location is required: lat and long, address_string or address_id"
		        : "a location is required: lat and long, or address_string");
	if (in->has_lat) {
		if (!isfinite(in->lat) || in->lat < -90 || in->lat > 90)
			return tjson_error_set(err, "out_of_range", "lat",
			    "lat must be a latitude between -90 and 90");
		if (!isfinite(in->lon) || in->lon < -180 || in->lon > 180)
			return tjson_error_set(err, "out_of_range", "long",
			    "long must be a longitude between -180 and 180");
	}

	int rv;
	if ((rv = check_text(in->address, "address_string", REPORT_ADDRESS_MAX, false, err)) ||
	    (rv = check_text(in->address_id, "address_id", REPORT_ADDRESS_MAX, false, err)) ||
	    (rv = check_text(in->description, "description", REPORT_DESCRIPTION_MAX, true, err)) ||
	    (rv = check_text(in->first_name, in->open311 ? "first_name" : "contact.first_name",
	         REPORT_NAME_MAX, false, err)) ||
	    (rv = check_text(in->last_name, in->open311 ? "last_name" : "contact.last_name",
	         REPORT_NAME_MAX, false, err)) ||
	    (rv = check_text(in->device_id, "device_id", REPORT_NAME_MAX, false, err)) ||
	    (rv = check_text(in->account_id, "account_id", REPORT_NAME_MAX, false, err)))
		return rv;
	if (in->media_url && in->media_url[0] && !intake_media_url_ok(in->media_url))
		return tjson_error_set(err, "invalid_url", "media_url",
		    "media_url must be an http or https URL of at most %d bytes", REPORT_URL_MAX);
	if (in->email && in->email[0] &&
	    (strlen(in->email) > REPORT_EMAIL_MAX || !email_ok(in->email) ||
	        intake_text_check(in->email, "email", false, err) != 0))
		return tjson_error_set(err, "invalid_value",
		    in->open311 ? "email" : "contact.email", "email must be an e-mail address");
	if (in->phone && in->phone[0] &&
	    (strlen(in->phone) > REPORT_PHONE_MAX || !phone_ok(in->phone)))
		return tjson_error_set(err, "invalid_value",
		    in->open311 ? "phone" : "contact.phone",
		    "phone may hold digits, spaces and + - ( ) only");

	json_t *attrs;
	if ((rv = category_check_attributes(c, in->attributes, in->open311, &attrs, err)) != 0)
		return rv;

	/* Position last: it is the most expensive check. */
	size_t idx[PLACES_MATCH_MAX], n = 0;
	if (in->has_lat) {
		bool inside;
		places_match(ctx->places, in->lat, in->lon, ctx->district_box, &inside, idx, &n);
		if (!inside) {
			json_decref(attrs);
			return tjson_error_set(err, "outside_district", "lat",
			    "the position %.5f, %.5f is outside the district of Norrmalm; "
			    "reports from elsewhere go to the city's other districts",
			    in->lat, in->lon);
		}
	}

	out->category = xstrdup(c->code);
	out->focus_area = xstrdup(c->focus_area);
	out->severity = c->severity;
	out->sensitive = c->sensitive;
	out->response_target_min = c->response_target_min;
	out->has_position = in->has_lat;
	out->lat = in->lat;
	out->lon = in->lon;
	/* Open311's address_id alone is a location: without an address_string
	 * it is kept as the address (the report's only place for it). */
	out->address = dup_or_null(has_address ? in->address : in->address_id);
	out->description = dup_or_null(in->description);
	out->media_url = dup_or_null(in->media_url);
	out->attributes = attrs;
	out->first_name = dup_or_null(in->first_name);
	out->last_name = dup_or_null(in->last_name);
	out->email = dup_or_null(in->email);
	out->phone = dup_or_null(in->phone);
	out->device_id = dup_or_null(in->device_id);
	out->account_id = dup_or_null(in->account_id);
	out->has_contact = out->first_name || out->last_name || out->email || out->phone ||
	    out->device_id || out->account_id;
	for (size_t i = 0; i < n; i++) {
		out->place_ids[i] = ctx->places->items[idx[i]].id;
		out->place_slugs[i] = xstrdup(ctx->places->items[idx[i]].slug);
	}
	out->nplaces = n;
	out->created_us = trygg_wall_us();
	/* Time-ordered: the report's btrees (primary key, report_places,
	 * report_contacts) grow at their right edge instead of each insert
	 * dirtying a random leaf (and a full-page image of it in the WAL
	 * after every checkpoint). */
	trygg_uuid7(out->id, out->created_us / 1000);
	return 0;
}

int
intake_report_from_json(const json_t *body, const report_ctx *ctx, report_in *out, tjson_error *err)
{
	static const char *const allowed[] = {"category", "lat", "long", "address_string",
	    "description", "media_url", "attributes", "contact", NULL};
	static const char *const contact_allowed[] = {"first_name", "last_name", "email", "phone",
	    NULL};
	raw in = {0};
	json_t *contact = NULL, *attrs = NULL;
	memset(out, 0, sizeof(*out));
	if (tjson_check_fields(body, allowed, err) != 0 ||
	    tjson_get_string(body, "category", true, 64, &in.category, err) != 0 ||
	    tjson_get_double(body, "lat", false, -90, 90, &in.lat, err) != 0 ||
	    tjson_get_double(body, "long", false, -180, 180, &in.lon, err) != 0 ||
	    tjson_get_string(body, "address_string", false, 0, &in.address, err) != 0 ||
	    tjson_get_string(body, "description", false, 0, &in.description, err) != 0 ||
	    tjson_get_string(body, "media_url", false, 0, &in.media_url, err) != 0 ||
	    tjson_get_object(body, "attributes", false, &attrs, err) != 0 ||
	    tjson_get_object(body, "contact", false, &contact, err) != 0)
		return TRYGG_EINVAL;
	in.has_lat = tjson_has(body, "lat");
	in.has_long = tjson_has(body, "long");
	in.attributes = attrs;
	if (contact != NULL) {
		if (tjson_check_fields(contact, contact_allowed, err) != 0 ||
		    tjson_get_string(contact, "first_name", false, 0, &in.first_name, err) != 0 ||
		    tjson_get_string(contact, "last_name", false, 0, &in.last_name, err) != 0 ||
		    tjson_get_string(contact, "email", false, 0, &in.email, err) != 0 ||
		    tjson_get_string(contact, "phone", false, 0, &in.phone, err) != 0) {
			/* Name the member inside contact the way the client wrote it. */
			char field[sizeof(err->field)];
			snprintf(field, sizeof(field), "contact.%.*s",
			    (int)trygg_utf8_prefix(err->field, 100), err->field);
			snprintf(err->field, sizeof(err->field), "%s", field);
			return TRYGG_EINVAL;
		}
	}
	return validate(&in, ctx, out, err);
}

/* Parses a decimal coordinate from a form field. */
static int
form_number(const form *f, const char *name, bool *has, double *out, tjson_error *err)
{
	const char *v = form_get(f, name);
	*has = v != NULL && v[0] != '\0';
	if (!*has)
		return 0;
	char *end;
	errno = 0;
	*out = strtod(v, &end);
	if (end == v || *end != '\0' || !isfinite(*out) || strlen(v) > 32)
		return tjson_error_set(err, "wrong_type", name, "%s must be a decimal number",
		    name);
	return 0;
}

int
intake_report_from_form(const form *f, const report_ctx *ctx, report_in *out, tjson_error *err)
{
	static const char *const known[] = {"service_code", "lat", "long", "address_string",
	    "address_id", "description", "media_url", "email", "first_name", "last_name", "phone",
	    "device_id", "account_id", "api_key", "jurisdiction_id", NULL};
	raw in = {.open311 = true};
	memset(out, 0, sizeof(*out));
	json_t *attrs = json_object();
	int rv = 0;
	for (size_t i = 0; i < f->n; i++) {
		const char *name = f->fields[i].name, *value = f->fields[i].value;
		if (strncmp(name, "attribute[", 10) == 0) {
			/* attribute[code]=v or attribute[code][]=v (a list) */
			const char *close = strchr(name + 10, ']');
			if (close == NULL || close == name + 10 || close - (name + 10) > 64 ||
			    (close[1] != '\0' && strcmp(close + 1, "[]") != 0)) {
				rv = tjson_error_set(err, "invalid_form", name,
				    "attributes are sent as attribute[code]=value");
				goto out;
			}
			/* An empty value is an attribute not given (Open311 clients,
			 * FixMyStreet among them, send every attribute they know). */
			if (value[0] == '\0')
				continue;
			char *code = xstrndup(name + 10, (size_t)(close - (name + 10)));
			if (close[1] == '\0') {
				json_object_set_new(attrs, code, json_string(value));
			} else {
				json_t *list = json_object_get(attrs, code);
				if (!json_is_array(list)) {
					list = json_array();
					json_object_set_new(attrs, code, list);
				}
				if (json_array_size(list) < 64)
					json_array_append_new(list, json_string(value));
			}
			free(code);
			continue;
		}
		bool ok = false;
		for (size_t k = 0; known[k]; k++)
			ok = ok || strcmp(name, known[k]) == 0;
		if (!ok) {
			rv = tjson_error_set(err, "unknown_field", name, "unknown field '%.*s'",
			    (int)trygg_utf8_prefix(name, 100), name);
			goto out;
		}
	}
	in.category = form_get(f, "service_code");
	if ((rv = form_number(f, "lat", &in.has_lat, &in.lat, err)) != 0 ||
	    (rv = form_number(f, "long", &in.has_long, &in.lon, err)) != 0)
		goto out;
	in.address = form_get(f, "address_string");
	in.address_id = form_get(f, "address_id");
	in.description = form_get(f, "description");
	in.media_url = form_get(f, "media_url");
	in.attributes = attrs;
	in.first_name = form_get(f, "first_name");
	in.last_name = form_get(f, "last_name");
	in.email = form_get(f, "email");
	in.phone = form_get(f, "phone");
	in.device_id = form_get(f, "device_id");
	in.account_id = form_get(f, "account_id");
	rv = validate(&in, ctx, out, err);
out:
	json_decref(attrs);
	return rv;
}

void
report_in_fini(report_in *r)
{
	if (r == NULL)
		return;
	free(r->category);
	free(r->focus_area);
	free(r->address);
	free(r->description);
	free(r->media_url);
	json_decref(r->attributes);
	free(r->first_name);
	free(r->last_name);
	free(r->email);
	free(r->phone);
	free(r->device_id);
	free(r->account_id);
	free(r->idem_key);
	for (size_t i = 0; i < r->nplaces; i++)
		free(r->place_slugs[i]);
	memset(r, 0, sizeof(*r));
}
