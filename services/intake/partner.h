/*
 * partner.h: an organisation that sends reports, as intake holds it in
 * memory.
 *
 * Partners are never deleted (only deactivated), so a partner object lives
 * as long as the directory and code holding a pointer across an async call
 * stays safe. Its rate limiter lives here too and survives reloads.
 */
#ifndef INTAKE_PARTNER_H
#define INTAKE_PARTNER_H

#include <stdbool.h>
#include <stddef.h>

#include "ratelimit.h"

typedef struct partner {
	int id;
	char *name;
	char *role;          /* police, housing, school, resident_app, staff */
	bool staff;          /* reads every report, sees sensitive descriptions */
	bool all_categories; /* allowed_categories was NULL */
	char **allowed;      /* service codes it may report */
	size_t nallowed;
	int rate_per_min;
	bool active;
	ratelimit rl;
} partner;

/* True if the partner may report this category. */
bool partner_may_report(const partner *p, const char *code);

/* Replaces the allowed list with a comma-separated one (NULL = all). */
void partner_set_allowed(partner *p, const char *csv);

/* Frees the strings (not p). Accepts NULL. */
void partner_fini(partner *p);

#endif
