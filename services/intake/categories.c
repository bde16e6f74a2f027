/*
 * categories.c: category definitions and attribute validation (see
 * categories.h).
 */
#include "categories.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTR_VALUE_MAX 1000
#define ATTR_MAX 32

static const char *const type_names[] = {"string", "number", "datetime", "text", "singlevaluelist",
    "multivaluelist"};

const char *
attr_type_name(attr_type t)
{
	return type_names[t];
}

static int
parse_type(const char *s, attr_type *t)
{
	for (size_t i = 0; s && i < TRYGG_ARRAY_LEN(type_names); i++) {
		if (strcmp(s, type_names[i]) == 0) {
			*t = (attr_type)i;
			return 0;
		}
	}
	return TRYGG_EINVAL;
}

static void
attr_fini(category_attr *a)
{
	free(a->code);
	free(a->description);
	for (size_t i = 0; i < a->nvalues; i++) {
		free(a->keys[i]);
		free(a->names[i]);
	}
	free(a->keys);
	free(a->names);
}

static void
category_fini(category *c)
{
	free(c->code);
	free(c->name);
	free(c->description);
	free(c->focus_area);
	free(c->keywords);
	for (size_t i = 0; i < c->nattrs; i++)
		attr_fini(&c->attrs[i]);
	free(c->attrs);
}

/* Reads the attribute list into c. */
static int
read_attrs(category *c, const char *text, char *err, size_t errlen)
{
	if (text == NULL || text[0] == '\0')
		return 0;
	json_error_t jerr;
	json_t *arr = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	int rv = 0;
	if (!json_is_array(arr) || json_array_size(arr) > ATTR_MAX) {
		snprintf(err, errlen, "attributes must be an array of at most %d objects",
		    ATTR_MAX);
		rv = TRYGG_EINVAL;
		goto out;
	}
	c->attrs = xcalloc(json_array_size(arr) + 1, sizeof(*c->attrs));
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o)
	{
		category_attr *a = &c->attrs[c->nattrs];
		const char *code = json_string_value(json_object_get(o, "code"));
		const char *dt = json_string_value(json_object_get(o, "datatype"));
		if (code == NULL || code[0] == '\0' || parse_type(dt, &a->type) != 0) {
			snprintf(err, errlen, "attribute %zu needs a code and a valid datatype", i);
			rv = TRYGG_EINVAL;
			goto out;
		}
		c->nattrs++;
		a->code = xstrdup(code);
		a->required = json_is_true(json_object_get(o, "required"));
		a->order = (int)json_integer_value(json_object_get(o, "order"));
		const char *d = json_string_value(json_object_get(o, "description"));
		a->description = xstrdup(d ? d : code);
		json_t *vals = json_object_get(o, "values");
		if (a->type == ATTR_SINGLEVALUELIST || a->type == ATTR_MULTIVALUELIST) {
			if (!json_is_array(vals) || json_array_size(vals) == 0) {
				snprintf(err, errlen, "list attribute %s needs values", code);
				rv = TRYGG_EINVAL;
				goto out;
			}
			size_t n = json_array_size(vals), j;
			json_t *v;
			a->keys = xcalloc(n, sizeof(char *));
			a->names = xcalloc(n, sizeof(char *));
			json_array_foreach(vals, j, v)
			{
				const char *k = json_string_value(json_object_get(v, "key"));
				const char *nm = json_string_value(json_object_get(v, "name"));
				if (k == NULL) {
					snprintf(err, errlen, "attribute %s: a value needs a key",
					    code);
					rv = TRYGG_EINVAL;
					goto out;
				}
				a->keys[a->nvalues] = xstrdup(k);
				a->names[a->nvalues] = xstrdup(nm ? nm : k);
				a->nvalues++;
			}
		}
	}
out:
	json_decref(arr);
	return rv;
}

int
categories_add(category_set *s, const char *code, const char *name, const char *description,
    const char *focus_area, const char *keywords, int severity, int response_target_min,
    bool sensitive, const char *attributes_json, char *err, size_t errlen)
{
	if (code == NULL || code[0] == '\0' || name == NULL || severity < 1 || severity > 5 ||
	    response_target_min < 0) {
		snprintf(err, errlen, "category needs a code, a name and a severity of 1-5");
		return TRYGG_EINVAL;
	}
	category c = {0};
	c.code = xstrdup(code);
	c.name = xstrdup(name);
	c.description = xstrdup(description ? description : "");
	c.focus_area = xstrdup(focus_area ? focus_area : "other");
	c.keywords = xstrdup(keywords ? keywords : "");
	c.severity = severity;
	c.response_target_min = response_target_min;
	c.sensitive = sensitive;
	int rv = read_attrs(&c, attributes_json, err, errlen);
	if (rv != 0) {
		category_fini(&c);
		return rv;
	}
	s->items = xrealloc(s->items, (s->n + 1) * sizeof(*s->items));
	s->items[s->n++] = c;
	return 0;
}

const category *
categories_find(const category_set *s, const char *code)
{
	for (size_t i = 0; code != NULL && i < s->n; i++) {
		if (strcmp(s->items[i].code, code) == 0)
			return &s->items[i];
	}
	return NULL;
}

static const category_attr *
find_attr(const category *c, const char *code)
{
	for (size_t i = 0; i < c->nattrs; i++) {
		if (strcmp(c->attrs[i].code, code) == 0)
			return &c->attrs[i];
	}
	return NULL;
}

static bool
in_list(const category_attr *a, const char *v)
{
	for (size_t i = 0; i < a->nvalues; i++) {
		if (strcmp(a->keys[i], v) == 0)
			return true;
	}
	return false;
}

/* A loose ISO 8601 check: "YYYY-MM-DD" optionally followed by 'T' and a time. */
static bool
looks_iso8601(const char *s)
{
	size_t n = strlen(s);
	if (n < 10 || n > 40)
		return false;
	for (int i = 0; i < 10; i++) {
		bool digit = s[i] >= '0' && s[i] <= '9';
		if ((i == 4 || i == 7) ? s[i] != '-' : !digit)
			return false;
	}
	return n == 10 || s[10] == 'T' || s[10] == ' ';
}

/* Normalises one value; returns a new reference or NULL with err filled. */
int
intake_text_check(const char *v, const char *field, bool multi_line, tjson_error *err)
{
	size_t n = strlen(v);
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t len = trygg_utf8_decode(v + i, n - i, &cp);
		if (len == 0)
			return tjson_error_set(err, "invalid_utf8", field, "%s is not valid UTF-8",
			    field);
		bool blank = cp == '\n' || cp == '\r' || cp == '\t';
		if (cp == 0x7f || !trygg_xml_char(cp) || (blank && !multi_line))
			return tjson_error_set(err, "invalid_value", field,
			    "%s contains control characters or U+FFFE/U+FFFF, which cannot be "
			    "published",
			    field);
		i += len;
	}
	return 0;
}

static json_t *
check_value(const category_attr *a, const json_t *v, const char *field, tjson_error *err)
{
	if (a->type == ATTR_MULTIVALUELIST) {
		json_t *out = json_array();
		if (json_is_string(v)) {
			if (!in_list(a, json_string_value(v)))
				goto bad_value;
			json_array_append_new(out, json_string(json_string_value(v)));
			return out;
		}
		if (!json_is_array(v) || json_array_size(v) > a->nvalues) {
			json_decref(out);
			tjson_error_set(err, "wrong_type", field, "%s must be a list of values",
			    field);
			return NULL;
		}
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e)
		{
			if (!json_is_string(e) || !in_list(a, json_string_value(e)))
				goto bad_value;
			json_array_append_new(out, json_string(json_string_value(e)));
		}
		return out;
	bad_value:
		json_decref(out);
		tjson_error_set(err, "invalid_value", field,
		    "%s has a value that is not in its list", field);
		return NULL;
	}
	if (a->type == ATTR_NUMBER) {
		double d;
		if (json_is_number(v)) {
			d = json_number_value(v);
		} else if (json_is_string(v)) {
			char *end;
			const char *s = json_string_value(v);
			d = strtod(s, &end);
			if (end == s || *end != '\0')
				goto not_number;
		} else {
			goto not_number;
		}
		if (!isfinite(d) || fabs(d) > 1e12)
			goto not_number;
		return json_real(d);
	not_number:
		tjson_error_set(err, "wrong_type", field, "%s must be a number", field);
		return NULL;
	}
	if (!json_is_string(v)) {
		tjson_error_set(err, "wrong_type", field, "%s must be a string", field);
		return NULL;
	}
	const char *s = json_string_value(v);
	if (strlen(s) > ATTR_VALUE_MAX) {
		tjson_error_set(err, "too_long", field, "%s is longer than %d bytes", field,
		    ATTR_VALUE_MAX);
		return NULL;
	}
	if (intake_text_check(s, field, a->type == ATTR_TEXT, err) != 0)
		return NULL;
	if (a->type == ATTR_SINGLEVALUELIST && !in_list(a, s)) {
		tjson_error_set(err, "invalid_value", field, "%s must be one of its listed values",
		    field);
		return NULL;
	}
	if (a->type == ATTR_DATETIME && !looks_iso8601(s)) {
		tjson_error_set(err, "wrong_type", field, "%s must be an ISO 8601 date and time",
		    field);
		return NULL;
	}
	return json_string(s);
}

int
category_check_attributes(const category *c, const json_t *in, bool open311, json_t **out,
    tjson_error *err)
{
	char field[160];
	json_t *res = json_object();
	if (in != NULL && !json_is_object(in)) {
		json_decref(res);
		return tjson_error_set(err, "wrong_type", "attributes",
		    "attributes must be an object");
	}
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)in, key, v)
	{
		snprintf(field, sizeof(field), open311 ? "attribute[%.*s]" : "attributes.%.*s",
		    (int)trygg_utf8_prefix(key, 100), key);
		const category_attr *a = find_attr(c, key);
		if (a == NULL) {
			json_decref(res);
			return tjson_error_set(err, "unknown_field", field,
			    "%s is not an attribute of service %s", field, c->code);
		}
		if (json_is_null(v))
			continue;
		json_t *nv = check_value(a, v, field, err);
		if (nv == NULL) {
			json_decref(res);
			return TRYGG_EINVAL;
		}
		json_object_set_new(res, key, nv);
	}
	for (size_t i = 0; i < c->nattrs; i++) {
		if (c->attrs[i].required && json_object_get(res, c->attrs[i].code) == NULL) {
			snprintf(field, sizeof(field),
			    open311 ? "attribute[%.*s]" : "attributes.%.*s",
			    (int)trygg_utf8_prefix(c->attrs[i].code, 100), c->attrs[i].code);
			json_decref(res);
			return tjson_error_set(err, "missing_field", field, "%s is required",
			    field);
		}
	}
	*out = res;
	return 0;
}

void
categories_fini(category_set *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		category_fini(&s->items[i]);
	free(s->items);
	memset(s, 0, sizeof(*s));
}
