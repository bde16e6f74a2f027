/*
 * directory.c: the in-memory directory and its loading (see directory.h).
 */
#include "directory.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "log.h"
#include "render.h"

typedef struct key_entry {
	uint8_t hash[AUTH_HASH_LEN];
	int partner_id;
} key_entry;

struct directory {
	uv_loop_t *loop;
	db *db;
	uv_timer_t timer;
	unsigned refresh_ms;
	bool loaded, loading, again, closing;
	unsigned pending; /* db callbacks not yet run */
	partner **partners;
	size_t npartners;
	key_entry *keys;
	size_t nkeys;
	category_set cats;
	place_set places;
	uint8_t cats_digest[AUTH_HASH_LEN]; /* of the categories' rows, to see changes */
	int64_t cats_changed_us;
	/* Keys looked up and not found: a direct-mapped cache by hash, bounded
	 * and expiring, emptied by every load (a key issued since then must
	 * work at once after the admin command's NOTIFY). */
	struct {
		uint8_t hash[AUTH_HASH_LEN];
		uint64_t expires_ms; /* 0: empty slot */
	} misses[DIRECTORY_MISS_SLOTS];
	uint64_t generation; /* loads completed */
};

static const char SQL_PARTNERS[] =
    "SELECT id, name, role, array_to_string(allowed_categories, ','),"
    " allowed_categories IS NULL, rate_per_min, active FROM partners";
static const char SQL_KEYS[] =
    "SELECT encode(key_hash, 'hex'), partner_id FROM api_keys WHERE revoked_at IS NULL";
static const char SQL_CATEGORIES[] =
    "SELECT service_code, name, description, focus_area, keywords, default_severity,"
    " response_target_min, sensitive, attributes::text FROM categories WHERE active"
    " ORDER BY service_code";
static const char SQL_PLACES[] =
    "SELECT id, slug, name, kind, geometry::text FROM places ORDER BY id";
static const char SQL_KEY_ONE[] =
    "SELECT k.partner_id, p.name, p.role, array_to_string(p.allowed_categories, ','),"
    " p.allowed_categories IS NULL, p.rate_per_min, p.active"
    " FROM api_keys k JOIN partners p ON p.id = k.partner_id"
    " WHERE k.key_hash = decode($1, 'hex') AND k.revoked_at IS NULL";

static void maybe_free(directory *dir);
static void on_timer(uv_timer_t *t);

static void
free_all(directory *dir)
{
	for (size_t i = 0; i < dir->npartners; i++) {
		partner_fini(dir->partners[i]);
		free(dir->partners[i]);
	}
	free(dir->partners);
	free(dir->keys);
	categories_fini(&dir->cats);
	places_fini(&dir->places);
	free(dir);
}

partner *
directory_partner(directory *dir, int id)
{
	for (size_t i = 0; i < dir->npartners; i++) {
		if (dir->partners[i]->id == id)
			return dir->partners[i];
	}
	return NULL;
}

partner *
directory_partner_by_name(directory *dir, const char *name)
{
	for (size_t i = 0; i < dir->npartners; i++) {
		if (strcmp(dir->partners[i]->name, name) == 0)
			return dir->partners[i];
	}
	return NULL;
}

/* Creates or updates a partner from a row laid out as SQL_PARTNERS (from
 * column `c`, id first). */
static partner *
upsert_partner(directory *dir, const PGresult *r, int row, int c)
{
	int id = atoi(PQgetvalue(r, row, c));
	partner *p = directory_partner(dir, id);
	int rate = atoi(PQgetvalue(r, row, c + 5));
	if (rate < 1)
		rate = 1;
	double per_s = rate / 60.0, burst = rate / 10.0 < 10.0 ? 10.0 : rate / 10.0;
	if (p == NULL) {
		p = xcalloc(1, sizeof(*p));
		p->id = id;
		ratelimit_init(&p->rl, per_s, burst, trygg_now_ns());
		dir->partners = xrealloc(dir->partners, (dir->npartners + 1) * sizeof(partner *));
		dir->partners[dir->npartners++] = p;
	} else {
		free(p->name);
		free(p->role);
		ratelimit_set(&p->rl, per_s, burst);
	}
	p->name = xstrdup(PQgetvalue(r, row, c + 1));
	p->role = xstrdup(PQgetvalue(r, row, c + 2));
	p->staff = strcmp(p->role, "staff") == 0;
	bool all = PQgetvalue(r, row, c + 4)[0] == 't';
	partner_set_allowed(p, all ? NULL : PQgetvalue(r, row, c + 3));
	p->rate_per_min = rate;
	p->active = PQgetvalue(r, row, c + 6)[0] == 't';
	return p;
}

static int
hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
	if (strlen(hex) != 2 * n)
		return TRYGG_EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return TRYGG_EINVAL;
		out[i] = (uint8_t)v;
	}
	return 0;
}

/* Notes the time when the category rows differ from the last load's. */
static void
categories_changed(directory *dir, const PGresult *rc)
{
	strbuf b = {0};
	for (int i = 0; i < PQntuples(rc); i++) {
		for (int k = 0; k < PQnfields(rc); k++)
			strbuf_appendf(&b, "%zu:%s", strlen(PQgetvalue(rc, i, k)),
			    PQgetvalue(rc, i, k));
		strbuf_append(&b, ";");
	}
	uint8_t digest[AUTH_HASH_LEN];
	crypto_sha256(b.s ? b.s : "", b.len, digest);
	strbuf_fini(&b);
	if (dir->cats_changed_us == 0 || memcmp(digest, dir->cats_digest, AUTH_HASH_LEN) != 0) {
		memcpy(dir->cats_digest, digest, AUTH_HASH_LEN);
		dir->cats_changed_us = trygg_wall_us();
	}
}

static void
load_done(void *arg, const db_reply *rep)
{
	directory *dir = arg;
	dir->pending--;
	dir->loading = false;
	if (dir->closing) {
		maybe_free(dir);
		return;
	}
	if (rep->err != 0) {
		log_warn("directory_load_failed", "\"error\":\"%s\"", trygg_strerror(rep->err));
		/* Until the first load, try again soon: the service is not ready. */
		if (!dir->loaded)
			uv_timer_start(&dir->timer, on_timer, 500, dir->refresh_ms);
		return;
	}
	const PGresult *rp = rep->results[0], *rk = rep->results[1], *rc = rep->results[2],
	               *rl = rep->results[3];
	for (int i = 0; i < PQntuples(rp); i++)
		upsert_partner(dir, rp, i, 0);

	key_entry *keys = xcalloc((size_t)PQntuples(rk) + 1, sizeof(*keys));
	size_t nkeys = 0;
	for (int i = 0; i < PQntuples(rk); i++) {
		if (hex_to_bytes(PQgetvalue(rk, i, 0), keys[nkeys].hash, AUTH_HASH_LEN) == 0) {
			keys[nkeys].partner_id = atoi(PQgetvalue(rk, i, 1));
			nkeys++;
		}
	}
	free(dir->keys);
	dir->keys = keys;
	dir->nkeys = nkeys;

	category_set cats = {0};
	char err[256];
	for (int i = 0; i < PQntuples(rc); i++) {
		if (categories_add(&cats, PQgetvalue(rc, i, 0), PQgetvalue(rc, i, 1),
		        PQgetvalue(rc, i, 2), PQgetvalue(rc, i, 3), PQgetvalue(rc, i, 4),
		        atoi(PQgetvalue(rc, i, 5)), atoi(PQgetvalue(rc, i, 6)),
		        PQgetvalue(rc, i, 7)[0] == 't', PQgetvalue(rc, i, 8), err,
		        sizeof(err)) != 0) {
			char b1[128], b2[300];
			log_warn("category_invalid", "\"code\":%s,\"error\":%s",
			    log_json_str(PQgetvalue(rc, i, 0), b1, sizeof(b1)),
			    log_json_str(err, b2, sizeof(b2)));
		}
	}
	categories_fini(&dir->cats);
	dir->cats = cats;
	categories_changed(dir, rc);
	memset(dir->misses, 0, sizeof(dir->misses));
	dir->generation++;

	place_set places = {0};
	for (int i = 0; i < PQntuples(rl); i++) {
		if (places_add(&places, atoi(PQgetvalue(rl, i, 0)), PQgetvalue(rl, i, 1),
		        PQgetvalue(rl, i, 2), strcmp(PQgetvalue(rl, i, 3), "district") == 0,
		        PQgetvalue(rl, i, 4), err, sizeof(err)) != 0) {
			char b1[128], b2[300];
			log_warn("place_invalid", "\"slug\":%s,\"error\":%s",
			    log_json_str(PQgetvalue(rl, i, 1), b1, sizeof(b1)),
			    log_json_str(err, b2, sizeof(b2)));
		}
	}
	places_fini(&dir->places);
	dir->places = places;

	if (!dir->loaded)
		log_info("directory_loaded",
		    "\"partners\":%zu,\"keys\":%zu,\"categories\":%zu,"
		    "\"places\":%zu",
		    dir->npartners, dir->nkeys, dir->cats.n, dir->places.n);
	dir->loaded = true;
	if (dir->again) {
		dir->again = false;
		directory_reload(dir);
	}
}

void
directory_reload(directory *dir)
{
	if (dir->closing)
		return;
	if (dir->loading) {
		dir->again = true; /* a change may have committed after our SELECTs */
		return;
	}
	db_batch *b = db_batch_new();
	db_batch_add(b, SQL_PARTNERS, 0, NULL);
	db_batch_add(b, SQL_KEYS, 0, NULL);
	db_batch_add(b, SQL_CATEGORIES, 0, NULL);
	db_batch_add(b, SQL_PLACES, 0, NULL);
	if (db_submit(dir->db, b, load_done, dir) != 0) {
		db_batch_free(b);
		/* Not connected yet: until the first load, retry soon. */
		if (!dir->loaded)
			uv_timer_start(&dir->timer, on_timer, 200, dir->refresh_ms);
		return;
	}
	dir->loading = true;
	dir->pending++;
}

static void
on_timer(uv_timer_t *t)
{
	directory_reload(t->data);
}

static void
on_notify(void *arg, const char *channel, const char *payload)
{
	(void)channel;
	(void)payload;
	directory_reload(arg);
}

int
directory_new(uv_loop_t *loop, db *d, unsigned refresh_ms, directory **out)
{
	directory *dir = xcalloc(1, sizeof(*dir));
	dir->loop = loop;
	dir->db = d;
	dir->refresh_ms = refresh_ms ? refresh_ms : 10000;
	int rv = db_listen(d, DIRECTORY_CHANNEL, on_notify, dir);
	if (rv != 0) {
		free(dir);
		return rv;
	}
	uv_timer_init(loop, &dir->timer);
	dir->timer.data = dir;
	/* Fast retries until the first load, then the refresh period. */
	uv_timer_start(&dir->timer, on_timer, 0, dir->refresh_ms);
	*out = dir;
	return 0;
}

static void
maybe_free(directory *dir)
{
	if (dir->pending == 0 && dir->closing && dir->timer.data == NULL)
		free_all(dir);
}

static void
on_timer_closed(uv_handle_t *h)
{
	directory *dir = ((uv_timer_t *)h)->data;
	dir->timer.data = NULL;
	maybe_free(dir);
}

void
directory_free(directory *dir)
{
	if (dir == NULL || dir->closing)
		return;
	dir->closing = true;
	uv_close((uv_handle_t *)&dir->timer, on_timer_closed);
}

bool
directory_loaded(const directory *dir)
{
	return dir->loaded;
}

const category_set *
directory_categories(const directory *dir)
{
	return &dir->cats;
}

int64_t
directory_categories_changed_us(const directory *dir)
{
	return dir->cats_changed_us;
}

/* The cache slot of a key's hash (the hash is uniform: its first bytes do). */
static size_t
miss_slot(const uint8_t hash[AUTH_HASH_LEN])
{
	uint32_t v;
	memcpy(&v, hash, sizeof(v));
	return v % DIRECTORY_MISS_SLOTS;
}

static bool
miss_cached(const directory *dir, const uint8_t hash[AUTH_HASH_LEN])
{
	size_t i = miss_slot(hash);
	return dir->misses[i].expires_ms > trygg_now_ms() &&
	    memcmp(dir->misses[i].hash, hash, AUTH_HASH_LEN) == 0;
}

static void
miss_add(directory *dir, const uint8_t hash[AUTH_HASH_LEN])
{
	size_t i = miss_slot(hash);
	memcpy(dir->misses[i].hash, hash, AUTH_HASH_LEN);
	dir->misses[i].expires_ms = trygg_now_ms() + DIRECTORY_MISS_TTL_MS;
}

const place_set *
directory_places(const directory *dir)
{
	return &dir->places;
}

typedef struct auth_lookup {
	directory *dir;
	uint8_t hash[AUTH_HASH_LEN];
	uint64_t generation; /* dir->generation when the lookup was sent */
	directory_auth_cb cb;
	void *arg;
} auth_lookup;

static void
lookup_done(void *arg, const db_reply *rep)
{
	auth_lookup *l = arg;
	directory *dir = l->dir;
	dir->pending--;
	if (dir->closing) {
		l->cb(l->arg, DIRECTORY_AUTH_UNAVAILABLE, NULL);
		free(l);
		maybe_free(dir);
		return;
	}
	if (rep->err != 0) {
		l->cb(l->arg, DIRECTORY_AUTH_UNAVAILABLE, NULL);
	} else if (PQntuples(rep->results[0]) == 0) {
		/* Unless a load ran meanwhile (it may have brought the key). */
		if (l->generation == dir->generation)
			miss_add(dir, l->hash);
		l->cb(l->arg, DIRECTORY_AUTH_UNKNOWN, NULL);
	} else {
		partner *p = upsert_partner(dir, rep->results[0], 0, 0);
		dir->keys = xrealloc(dir->keys, (dir->nkeys + 1) * sizeof(*dir->keys));
		memcpy(dir->keys[dir->nkeys].hash, l->hash, AUTH_HASH_LEN);
		dir->keys[dir->nkeys].partner_id = p->id;
		dir->nkeys++;
		l->cb(l->arg, p->active ? DIRECTORY_AUTH_OK : DIRECTORY_AUTH_UNKNOWN,
		    p->active ? p : NULL);
	}
	free(l);
}

void
directory_authenticate(directory *dir, const char *key, size_t len, bool may_query,
    directory_auth_cb cb, void *arg)
{
	uint8_t hash[AUTH_HASH_LEN];
	char kbuf[AUTH_KEY_LEN + 1];
	if (len != AUTH_KEY_LEN) {
		cb(arg, DIRECTORY_AUTH_UNKNOWN, NULL);
		return;
	}
	memcpy(kbuf, key, len);
	kbuf[len] = '\0';
	if (!auth_key_format_ok(kbuf)) {
		cb(arg, DIRECTORY_AUTH_UNKNOWN, NULL);
		return;
	}
	crypto_sha256(key, len, hash);
	for (size_t i = 0; i < dir->nkeys; i++) {
		if (memcmp(dir->keys[i].hash, hash, AUTH_HASH_LEN) == 0) {
			partner *p = directory_partner(dir, dir->keys[i].partner_id);
			if (p != NULL && p->active)
				cb(arg, DIRECTORY_AUTH_OK, p);
			else
				cb(arg, DIRECTORY_AUTH_UNKNOWN, NULL);
			return;
		}
	}
	if (miss_cached(dir, hash)) {
		cb(arg, DIRECTORY_AUTH_UNKNOWN, NULL);
		return;
	}
	if (!may_query) {
		cb(arg, DIRECTORY_AUTH_NOT_ASKED, NULL);
		return;
	}
	auth_lookup *l = xcalloc(1, sizeof(*l));
	l->dir = dir;
	l->generation = dir->generation;
	memcpy(l->hash, hash, AUTH_HASH_LEN);
	l->cb = cb;
	l->arg = arg;
	char hex[2 * AUTH_HASH_LEN + 1];
	crypto_hex(hash, AUTH_HASH_LEN, hex);
	const char *values[1] = {hex};
	if (db_query(dir->db, SQL_KEY_ONE, 1, values, lookup_done, l) != 0) {
		free(l);
		cb(arg, DIRECTORY_AUTH_UNAVAILABLE, NULL);
		return;
	}
	dir->pending++;
}
