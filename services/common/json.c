/*
 * json.c: bounded JSON parsing and typed field access on top of jansson.
 *
 * The depth limit is enforced by a linear pre-scan before jansson sees the
 * bytes, so a hostile "[[[[..." never makes jansson recurse deeply. The
 * pre-scan only counts brackets outside strings; everything else about
 * validity is left to jansson.
 */
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
tjson_error_set(tjson_error *err, const char *code, const char *field, const char *fmt, ...)
{
	if (err == NULL)
		return TRYGG_EINVAL;
	err->err = TRYGG_EINVAL;
	err->status = 400;
	err->code = code;
	/* Both texts are cut to their buffers at a character boundary, never
	 * inside one: they end up in JSON and XML error documents. */
	snprintf(err->field, sizeof(err->field), "%.*s",
	    (int)trygg_utf8_prefix(field ? field : "", sizeof(err->field) - 1), field ? field : "");
	err->message[0] = '\0';
	if (fmt != NULL) {
		va_list ap;
		va_start(ap, fmt);
		if (vsnprintf(err->message, sizeof(err->message), fmt, ap) >=
		    (int)sizeof(err->message))
			trygg_utf8_trim(err->message);
		va_end(ap);
	}
	trygg_utf8_scrub(err->field);
	trygg_utf8_scrub(err->message);
	return TRYGG_EINVAL;
}

/*
 * Returns the deepest nesting of arrays/objects in buf, stopping early (and
 * returning a value > limit) as soon as the limit is exceeded.
 */
static int
scan_depth(const char *buf, size_t len, int limit)
{
	int depth = 0, max = 0;
	bool in_str = false, esc = false;
	for (size_t i = 0; i < len; i++) {
		char c = buf[i];
		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
			continue;
		}
		switch (c) {
		case '"': in_str = true; break;
		case '[':
		case '{':
			if (++depth > max) {
				max = depth;
				if (max > limit)
					return max;
			}
			break;
		case ']':
		case '}':
			if (depth > 0)
				depth--;
			break;
		default: break;
		}
	}
	return max;
}

int
tjson_parse(const char *buf, size_t len, size_t max_bytes, int max_depth, json_t **out,
    tjson_error *err)
{
	if (max_bytes == 0)
		max_bytes = TJSON_DEFAULT_MAX_BYTES;
	if (max_depth <= 0)
		max_depth = TJSON_DEFAULT_MAX_DEPTH;
	if (len > max_bytes) {
		tjson_error_set(err, "body_too_large", NULL, "body is %zu bytes, limit is %zu", len,
		    max_bytes);
		err->err = TRYGG_ETOOBIG;
		err->status = 413;
		return TRYGG_ETOOBIG;
	}
	if (buf == NULL || len == 0)
		return tjson_error_set(err, "invalid_json", NULL,
		    "body is empty, expected a JSON object");
	if (scan_depth(buf, len, max_depth) > max_depth)
		return tjson_error_set(err, "too_deep", NULL, "JSON nested deeper than %d levels",
		    max_depth);

	json_error_t jerr;
	json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (v == NULL)
		return tjson_error_set(err, "invalid_json", NULL,
		    "invalid JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
	if (!json_is_object(v)) {
		json_decref(v);
		return tjson_error_set(err, "not_object", NULL, "body must be a JSON object");
	}
	*out = v;
	return 0;
}

/* Looks the field up; returns NULL for absent or null members. */
static json_t *
member(const json_t *obj, const char *field)
{
	json_t *v = json_object_get(obj, field);
	return json_is_null(v) ? NULL : v;
}

/* Common prologue of the getters: 1 = go on with *v, 0 = absent and
 * optional, <0 = error already filled. */
static int
lookup(const json_t *obj, const char *field, bool required, json_t **v, tjson_error *err)
{
	*v = json_is_object(obj) ? member(obj, field) : NULL;
	if (*v != NULL)
		return 1;
	if (!required)
		return 0;
	return tjson_error_set(err, "missing_field", field, "field '%s' is required", field);
}

int
tjson_get_string(const json_t *obj, const char *field, bool required, size_t max_len,
    const char **out, tjson_error *err)
{
	json_t *v;
	int rv = lookup(obj, field, required, &v, err);
	if (rv <= 0)
		return rv;
	if (!json_is_string(v))
		return tjson_error_set(err, "wrong_type", field, "field '%s' must be a string",
		    field);
	if (max_len > 0 && json_string_length(v) > max_len)
		return tjson_error_set(err, "too_long", field,
		    "field '%s' must be at most %zu bytes long", field, max_len);
	*out = json_string_value(v);
	return 0;
}

int
tjson_get_int(const json_t *obj, const char *field, bool required, int64_t min, int64_t max,
    int64_t *out, tjson_error *err)
{
	json_t *v;
	int rv = lookup(obj, field, required, &v, err);
	if (rv <= 0)
		return rv;
	if (!json_is_integer(v))
		return tjson_error_set(err, "wrong_type", field, "field '%s' must be an integer",
		    field);
	int64_t x = (int64_t)json_integer_value(v);
	if (x < min || x > max)
		return tjson_error_set(err, "out_of_range", field,
		    "field '%s' must be between %lld and %lld", field, (long long)min,
		    (long long)max);
	*out = x;
	return 0;
}

int
tjson_get_double(const json_t *obj, const char *field, bool required, double min, double max,
    double *out, tjson_error *err)
{
	json_t *v;
	int rv = lookup(obj, field, required, &v, err);
	if (rv <= 0)
		return rv;
	if (!json_is_number(v))
		return tjson_error_set(err, "wrong_type", field, "field '%s' must be a number",
		    field);
	double x = json_number_value(v);
	/* jansson refuses NaN and infinities in input, but be explicit. */
	if (!isfinite(x) || x < min || x > max)
		return tjson_error_set(err, "out_of_range", field,
		    "field '%s' must be between %g and %g", field, min, max);
	*out = x;
	return 0;
}

int
tjson_get_bool(const json_t *obj, const char *field, bool required, bool *out, tjson_error *err)
{
	json_t *v;
	int rv = lookup(obj, field, required, &v, err);
	if (rv <= 0)
		return rv;
	if (!json_is_boolean(v))
		return tjson_error_set(err, "wrong_type", field, "field '%s' must be true or false",
		    field);
	*out = json_is_true(v);
	return 0;
}

int
tjson_get_object(const json_t *obj, const char *field, bool required, json_t **out,
    tjson_error *err)
{
	json_t *v;
	int rv = lookup(obj, field, required, &v, err);
	if (rv <= 0)
		return rv;
	if (!json_is_object(v))
		return tjson_error_set(err, "wrong_type", field, "field '%s' must be an object",
		    field);
	*out = v;
	return 0;
}

int
tjson_get_array(const json_t *obj, const char *field, bool required, size_t max_items, json_t **out,
    tjson_error *err)
{
	json_t *v;
	int rv = lookup(obj, field, required, &v, err);
	if (rv <= 0)
		return rv;
	if (!json_is_array(v))
		return tjson_error_set(err, "wrong_type", field, "field '%s' must be an array",
		    field);
	if (max_items > 0 && json_array_size(v) > max_items)
		return tjson_error_set(err, "too_long", field,
		    "field '%s' must have at most %zu items", field, max_items);
	*out = v;
	return 0;
}

bool
tjson_has(const json_t *obj, const char *field)
{
	return json_is_object(obj) && member(obj, field) != NULL;
}

int
tjson_check_fields(const json_t *obj, const char *const *allowed, tjson_error *err)
{
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)obj, key, v)
	{
		bool ok = false;
		for (const char *const *a = allowed; a != NULL && *a != NULL; a++) {
			if (strcmp(*a, key) == 0) {
				ok = true;
				break;
			}
		}
		if (!ok)
			return tjson_error_set(err, "unknown_field", key, "unknown field '%s'",
			    key);
	}
	return 0;
}

char *
tjson_dump(const json_t *value, size_t *len)
{
	if (value == NULL)
		return NULL;
	char *s = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
	if (s != NULL && len != NULL)
		*len = strlen(s);
	return s;
}
