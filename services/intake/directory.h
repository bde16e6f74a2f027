/*
 * directory.h: what intake knows about partners, keys, categories and
 * places, held in memory and refreshed from its schema.
 *
 * Every request needs its partner, the category and the places; asking
 * Postgres each time would double the statements per report. The
 * directory loads them all in one batch at start, again on NOTIFY
 * intake_directory (sent by `trygg-intake admin` after each change), and
 * on a timer as a fallback (notifications are not durable). A key that is
 * not in memory (issued since the last load) is looked up once, by its
 * hash. Revoking a key takes effect at the next load: at once with the
 * NOTIFY, at worst after refresh_ms.
 *
 * Category and place sets are replaced whole on reload; partner objects
 * are updated in place and never freed before the directory, so a pointer
 * to a partner stays valid across async work.
 */
#ifndef INTAKE_DIRECTORY_H
#define INTAKE_DIRECTORY_H

#include <stdbool.h>
#include <uv.h>

#include "categories.h"
#include "db.h"
#include "partner.h"
#include "places.h"
#include "util.h"

typedef struct directory directory;

/* The channel `trygg-intake admin` notifies after changing anything. */
#define DIRECTORY_CHANNEL "intake_directory"

/* Creates the directory and starts loading on `d` (shared, not owned). */
int directory_new(uv_loop_t *loop, db *d, unsigned refresh_ms, directory **out) TRYGG_MUSTCHECK;

/* Stops the timer and frees everything from its close callback (after any
 * db callback still pending). Accepts NULL. */
void directory_free(directory *dir);

/* True once the first load succeeded (readiness). */
bool directory_loaded(const directory *dir);

/* Loads again now (also after a NOTIFY). */
void directory_reload(directory *dir);

const category_set *directory_categories(const directory *dir);

/* Wall-clock time (us) of the load in which the categories last differed
 * from the previous load (the first load counts): Open311's changeset. */
int64_t directory_categories_changed_us(const directory *dir);
const place_set *directory_places(const directory *dir);

/* The partner with this id or name, or NULL. */
partner *directory_partner(directory *dir, int id);
partner *directory_partner_by_name(directory *dir, const char *name);

enum directory_auth {
	DIRECTORY_AUTH_OK,
	DIRECTORY_AUTH_UNKNOWN,     /* no such key, revoked, or partner inactive: 401 */
	DIRECTORY_AUTH_UNAVAILABLE, /* not in memory and Postgres is down: 503 */
	DIRECTORY_AUTH_NOT_ASKED,   /* would need a query and the caller forbade it */
};

/* How many unknown keys are remembered, and for how long (ms). */
#define DIRECTORY_MISS_SLOTS 4096
#define DIRECTORY_MISS_TTL_MS 60000

typedef void (*directory_auth_cb)(void *arg, enum directory_auth result, partner *p);

/*
 * Finds the partner a key belongs to. Calls cb exactly once: at once (from
 * inside this call) when the answer is in memory, else after a lookup.
 *
 * A key that is neither loaded nor known to be unknown costs one query;
 * its miss is then remembered (DIRECTORY_MISS_SLOTS keys, each for
 * DIRECTORY_MISS_TTL_MS, all forgotten at the next load) so that repeating
 * an unknown key costs nothing. With may_query false, such a key is
 * answered DIRECTORY_AUTH_NOT_ASKED instead of being looked up (the
 * caller's limit on failed authentications is exhausted).
 */
void directory_authenticate(directory *dir, const char *key, size_t len, bool may_query,
    directory_auth_cb cb, void *arg);

#endif
