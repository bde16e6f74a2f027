/*
 * form.c: the urlencoded form parser (see form.h).
 */
#include "form.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes n bytes into a new string; NULL for a bad escape, a NUL byte or
 * invalid UTF-8. */
static char *
decode(const char *s, size_t n)
{
	char *out = xmalloc(n + 1);
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
			if (hi < 0 || lo < 0) {
				free(out);
				return NULL;
			}
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		if (c == '\0') {
			free(out);
			return NULL;
		}
		out[o++] = c;
	}
	out[o] = '\0';
	if (!trygg_utf8_valid(out, o)) {
		free(out);
		return NULL;
	}
	return out;
}

static bool
is_list_name(const char *name)
{
	size_t n = strlen(name);
	return n >= 2 && strcmp(name + n - 2, "[]") == 0;
}

int
form_parse(const char *body, size_t len, form *out, tjson_error *err)
{
	memset(out, 0, sizeof(*out));
	size_t i = 0;
	while (i < len) {
		size_t j = i;
		while (j < len && body[j] != '&')
			j++;
		if (j > i) {
			const char *eq = memchr(body + i, '=', j - i);
			size_t nlen = eq ? (size_t)(eq - (body + i)) : j - i;
			char *name = decode(body + i, nlen);
			char *value =
			    eq ? decode(eq + 1, (size_t)(body + j - (eq + 1))) : xstrdup("");
			if (name == NULL || value == NULL || name[0] == '\0') {
				tjson_error_set(err, "invalid_form", name ? name : "",
				    "form data is malformed (bad %%-escape, NUL or invalid UTF-8)");
				free(name);
				free(value);
				goto fail;
			}
			if (out->n == FORM_MAX_FIELDS) {
				tjson_error_set(err, "invalid_form", "", "more than %d form fields",
				    FORM_MAX_FIELDS);
				free(name);
				free(value);
				goto fail;
			}
			if (!is_list_name(name) && form_get(out, name) != NULL) {
				tjson_error_set(err, "duplicate_field", name,
				    "field '%.*s' appears twice", (int)trygg_utf8_prefix(name, 100),
				    name);
				free(name);
				free(value);
				goto fail;
			}
			out->fields = xrealloc(out->fields, (out->n + 1) * sizeof(*out->fields));
			out->fields[out->n].name = name;
			out->fields[out->n].value = value;
			out->n++;
		}
		i = j + 1;
	}
	return 0;
fail:
	form_fini(out);
	return TRYGG_EINVAL;
}

const char *
form_get(const form *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++) {
		if (strcmp(f->fields[i].name, name) == 0)
			return f->fields[i].value;
	}
	return NULL;
}

void
form_fini(form *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->n; i++) {
		free(f->fields[i].name);
		free(f->fields[i].value);
	}
	free(f->fields);
	memset(f, 0, sizeof(*f));
}
