/*
 * report.h: a report as a partner submits it, and its validation.
 *
 * Both APIs feed the same checks: the native API from a JSON object
 * (intake_report_from_json), Open311 from form fields
 * (intake_report_from_form). Every field is checked and every error names
 * the field in the caller's API ("category" or "service_code", "long",
 * "attributes.x" or "attribute[x]"), with the HTTP status to answer: 400
 * for a bad value, 403 for a category the partner may not report.
 *
 * A validated report_in carries everything the store needs, copied (no
 * pointers into the directory's category or place sets, which a reload may
 * replace while the report waits for its commit).
 */
#ifndef INTAKE_REPORT_H
#define INTAKE_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "categories.h"
#include "form.h"
#include "json.h"
#include "partner.h"
#include "places.h"
#include "util.h"

#define REPORT_DESCRIPTION_MAX 4000 /* characters */
#define REPORT_ADDRESS_MAX 250
#define REPORT_URL_MAX 2048
#define REPORT_NAME_MAX 100
#define REPORT_EMAIL_MAX 254
#define REPORT_PHONE_MAX 32
#define REPORT_IDEM_KEY_MAX 255

/* What validation needs to know. */
typedef struct report_ctx {
	const category_set *categories;
	const place_set *places;
	const double *district_box; /* used when no district polygon is loaded */
	const partner *partner;
} report_ctx;

typedef struct report_in {
	char id[37]; /* UUID chosen by intake */
	const partner *partner;
	char *category;
	char *focus_area;
	int severity;
	bool sensitive;
	int response_target_min;
	bool has_position;
	double lat, lon;
	char *address;
	char *description;
	char *media_url;
	json_t *attributes; /* normalised; owned */
	char *first_name, *last_name, *email, *phone, *device_id, *account_id;
	bool has_contact;
	char *idem_key;                      /* NULL: none */
	uint8_t request_hash[AUTH_HASH_LEN]; /* of the request, for idempotency */
	size_t nplaces;
	int place_ids[PLACES_MATCH_MAX];
	char *place_slugs[PLACES_MATCH_MAX];
	int64_t created_us; /* wall clock when accepted */
	/* History import (admin.c): the original times and where it came
	 * from. Zero / NULL for live reports: the event then says
	 * reported_at = created_us and source "partner". */
	bool imported;
	int64_t reported_us; /* 0: created_us */
	int64_t closed_us;   /* 0: open or unknown */
	const char *source;  /* NULL: "partner"; static storage */
} report_in;

/* The district's centre (Sergels torg), where day or night is judged for
 * a report without a position. */
#define INTAKE_CENTRE_LAT 59.3326
#define INTAKE_CENTRE_LONG 18.0649

/*
 * Validates a native API body (a JSON object with category, lat, long,
 * address_string, description, media_url, attributes, contact{first_name,
 * last_name, email, phone}; unknown members are errors). On success fills
 * *out (the caller calls report_in_fini) and returns 0; on error returns
 * TRYGG_EINVAL with err filled and *out empty.
 */
int intake_report_from_json(const json_t *body, const report_ctx *ctx, report_in *out,
    tjson_error *err) TRYGG_MUSTCHECK;

/* The same for Open311 form fields (service_code, lat, long,
 * address_string, address_id, description, media_url, attribute[code],
 * attribute[code][], email, first_name, last_name, phone, device_id,
 * account_id, api_key, jurisdiction_id). */
int intake_report_from_form(const form *f, const report_ctx *ctx, report_in *out,
    tjson_error *err) TRYGG_MUSTCHECK;

/* Checks an Idempotency-Key header value (1..255 printable ASCII). */
bool intake_idem_key_ok(const char *key);

/* True for an absolute http(s) URL without blanks or control characters. */
bool intake_media_url_ok(const char *url);

/* Frees what the report owns. Accepts NULL. */
void report_in_fini(report_in *r);

#endif
