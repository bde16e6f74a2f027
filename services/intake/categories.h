/*
 * categories.h: report categories, which are Open311 services.
 *
 * Each category has an Open311 service_code, a name and description, a
 * focus area, a default severity (1-5), a response target in minutes (0 =
 * at once) and a sensitivity flag; sensitive categories never reach crews
 * or public output. Categories may define Open311 attributes (extra
 * questions with a datatype and, for lists, allowed values); this module
 * validates a report's attribute values against them.
 *
 * The rows live in intake.categories (seeded by the migration); the
 * directory loads them into a category_set, which is immutable once built.
 */
#ifndef INTAKE_CATEGORIES_H
#define INTAKE_CATEGORIES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "json.h"
#include "util.h"

typedef enum attr_type {
	ATTR_STRING,
	ATTR_NUMBER,
	ATTR_DATETIME,
	ATTR_TEXT,
	ATTR_SINGLEVALUELIST,
	ATTR_MULTIVALUELIST,
} attr_type;

typedef struct category_attr {
	char *code;
	attr_type type;
	bool required;
	int order;
	char *description;
	char **keys;  /* allowed values of a list */
	char **names; /* their display names */
	size_t nvalues;
} category_attr;

typedef struct category {
	char *code;
	char *name;
	char *description;
	char *focus_area;
	char *keywords;
	int severity;
	int response_target_min;
	bool sensitive;
	category_attr *attrs;
	size_t nattrs;
} category;

typedef struct category_set {
	category *items;
	size_t n;
} category_set;

/* The Open311 name of an attribute datatype ("string", "singlevaluelist", ...). */
const char *attr_type_name(attr_type t);

/*
 * Adds a category; attributes_json is the Open311 attribute list (may be
 * NULL or "[]"). Returns 0, or TRYGG_EINVAL with the reason in err.
 */
int categories_add(category_set *s, const char *code, const char *name, const char *description,
    const char *focus_area, const char *keywords, int severity, int response_target_min,
    bool sensitive, const char *attributes_json, char *err, size_t errlen) TRYGG_MUSTCHECK;

/* The category with this service code, or NULL. */
const category *categories_find(const category_set *s, const char *code);

/*
 * Validates a report's attribute values (`in`: an object from the client,
 * may be NULL) against the category's definitions and returns, in *out, a
 * new normalised object (numbers as numbers, lists as arrays of keys) the
 * caller owns. Values may be JSON strings, numbers (number attributes) or
 * arrays of strings (multivaluelist). Errors name the field as
 * "attributes.<code>" (or "attribute[<code>]" when open311 is true):
 * unknown attribute, missing required one, wrong type, value not in the
 * list, over 1000 bytes.
 */
int category_check_attributes(const category *c, const json_t *in, bool open311, json_t **out,
    tjson_error *err) TRYGG_MUSTCHECK;

/* Frees every category. Accepts NULL. */
void categories_fini(category_set *s);

/*
 * Checks that v (NUL-terminated) holds only characters every output can
 * carry: valid UTF-8 without C0 controls (tab, LF and CR allowed when
 * multi_line), DEL, U+FFFE or U+FFFF. Returns 0, or TRYGG_EINVAL with err
 * naming `field` (400).
 */
int intake_text_check(const char *v, const char *field, bool multi_line, tjson_error *err);

#endif
