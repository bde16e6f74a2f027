/*
 * json.h: the one place where request bodies become JSON values and JSON
 * values become bytes.
 *
 * Jansson is the JSON library for the whole project. This module wraps it
 * with the rules every service wants for untrusted input: a size cap, a
 * nesting depth limit checked before jansson recurses, duplicate keys
 * rejected (JSON_REJECT_DUPLICATES), invalid UTF-8 rejected (jansson always
 * does), and an object at the top level. The typed getters turn "the field
 * is missing / has the wrong type / is out of range" into a tjson_error
 * that names the field, ready for an HTTP 4xx body:
 *
 *   tjson_error e;
 *   const char *desc = NULL;
 *   if (tjson_get_string(obj, "description", true, 2000, &desc, &e) < 0)
 *           return http_respond_error(req, e.status, e.code, e.message, e.field);
 *
 * The prefix is tjson_ so nothing here clashes with jansson's json_* names.
 * Values returned through getters are borrowed from the object (jansson's
 * rules): they live as long as the caller holds its reference to it.
 */
#ifndef TRYGG_JSON_H
#define TRYGG_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Defaults used when a limit is passed as 0. */
#define TJSON_DEFAULT_MAX_BYTES ((size_t)1 << 20) /* 1 MiB */
#define TJSON_DEFAULT_MAX_DEPTH 32

/*
 * Why a parse or a getter failed. `code` is a stable snake_case string for
 * API clients ("invalid_json", "body_too_large", "too_deep", "not_object",
 * "missing_field", "wrong_type", "out_of_range", "too_long",
 * "unknown_field"); `message` is a sentence for humans; `field` names the
 * offending member ("" when the whole body is at fault); `status` is the
 * HTTP status to answer with (400 or 413). `err` is the TRYGG_E* value the
 * function returned.
 */
typedef struct tjson_error {
	int err;
	int status;
	const char *code;
	char message[256];
	char field[128];
} tjson_error;

/*
 * Parses `len` bytes at `buf` (need not be NUL-terminated) as one JSON
 * object. max_bytes and max_depth of 0 mean the defaults above; depth counts
 * nested objects and arrays, the top-level object being depth 1.
 *
 * On success *out holds a new reference the caller must json_decref().
 * Errors (*out untouched, err filled): TRYGG_ETOOBIG over max_bytes
 * (status 413), TRYGG_EINVAL for anything else (status 400): bad syntax,
 * invalid UTF-8, duplicate keys, too deep, or not an object.
 */
int tjson_parse(const char *buf, size_t len, size_t max_bytes, int max_depth, json_t **out,
    tjson_error *err) TRYGG_MUSTCHECK;

/*
 * Typed getters. Each looks up `field` in the object `obj`.
 *
 * A member that is absent or JSON null counts as missing: when `required`
 * is false the getter returns 0 and leaves *out unchanged (so the caller
 * can preset a default); when true it fails with code "missing_field".
 * A present member of the wrong type fails with "wrong_type"; a value
 * outside the bounds fails with "out_of_range" (numbers) or "too_long"
 * (strings). Every failure returns TRYGG_EINVAL, fills err (status 400)
 * and names the field.
 */

/* A string of at most max_len bytes of UTF-8 (0 = no limit). *out is
 * borrowed from obj. */
int tjson_get_string(const json_t *obj, const char *field, bool required, size_t max_len,
    const char **out, tjson_error *err) TRYGG_MUSTCHECK;

/* A JSON integer (no fraction, no exponent) in [min, max]. */
int tjson_get_int(const json_t *obj, const char *field, bool required, int64_t min, int64_t max,
    int64_t *out, tjson_error *err) TRYGG_MUSTCHECK;

/* Any JSON number (integer or real) in [min, max]. */
int tjson_get_double(const json_t *obj, const char *field, bool required, double min, double max,
    double *out, tjson_error *err) TRYGG_MUSTCHECK;

/* true or false. */
int tjson_get_bool(const json_t *obj, const char *field, bool required, bool *out,
    tjson_error *err) TRYGG_MUSTCHECK;

/* A nested object; *out is borrowed from obj. */
int tjson_get_object(const json_t *obj, const char *field, bool required, json_t **out,
    tjson_error *err) TRYGG_MUSTCHECK;

/* An array of at most max_items elements (0 = no limit); *out is borrowed. */
int tjson_get_array(const json_t *obj, const char *field, bool required, size_t max_items,
    json_t **out, tjson_error *err) TRYGG_MUSTCHECK;

/* True if obj has `field` with a value other than null. */
bool tjson_has(const json_t *obj, const char *field);

/*
 * Fails with "unknown_field" naming the first member of obj whose key is
 * not in the NULL-terminated list `allowed`. For APIs that want typos in
 * field names reported rather than silently ignored.
 */
int tjson_check_fields(const json_t *obj, const char *const *allowed,
    tjson_error *err) TRYGG_MUSTCHECK;

/*
 * Fills err by hand, for checks the getters cannot express (e.g. "ends
 * before starts"). Always returns TRYGG_EINVAL so it can be returned
 * directly. `field` may be NULL.
 */
int tjson_error_set(tjson_error *err, const char *code, const char *field, const char *fmt, ...)
    TRYGG_PRINTF(4, 5);

/*
 * Serialises any JSON value compactly into a malloc'd, NUL-terminated
 * buffer the caller frees with free(); *len (if not NULL) gets its length
 * without the NUL. Returns NULL only for a NULL value or a value jansson
 * cannot encode (e.g. a string that is not valid UTF-8, which cannot occur
 * for strings made with json_string()).
 */
char *tjson_dump(const json_t *value, size_t *len);

#endif
