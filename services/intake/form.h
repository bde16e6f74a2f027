/*
 * form.h: application/x-www-form-urlencoded bodies (Open311 POSTs).
 *
 * Parses "a=1&b=x+y&attribute[code]=v" into decoded name/value pairs:
 * '+' is a space, %XX a byte; a malformed escape, a decoded name or value
 * that is not valid UTF-8 or contains a NUL, more than FORM_MAX_FIELDS
 * pairs, or a repeated name (except names ending in "[]", which are lists)
 * is an error naming the field. Untrusted input: everything is bounded.
 */
#ifndef INTAKE_FORM_H
#define INTAKE_FORM_H

#include <stdbool.h>
#include <stddef.h>

#include "json.h"
#include "util.h"

#define FORM_MAX_FIELDS 256

typedef struct form_field {
	char *name;
	char *value;
} form_field;

typedef struct form {
	form_field *fields;
	size_t n;
} form;

/*
 * Parses len bytes. On success *out holds the fields (form_fini). On error
 * returns TRYGG_EINVAL with err filled (status 400) and *out empty.
 */
int form_parse(const char *body, size_t len, form *out, tjson_error *err) TRYGG_MUSTCHECK;

/* The value of the first field with this name, or NULL. */
const char *form_get(const form *f, const char *name);

void form_fini(form *f);

#endif
