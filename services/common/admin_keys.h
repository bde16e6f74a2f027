/*
 * admin_keys.h: the `admin key ...` commands every service shares.
 *
 * Each service issues bearer keys to whoever may call its API (intake:
 * partners, the notifier: units, walk-planner: staff, reporting: readers).
 * A key is printed once; only its SHA-256 is stored. The operator refers
 * to a key by its ID, the first ADMIN_KEY_ID_LEN hex digits of that hash
 * (never the key itself in a listing), by a leading part of the ID of at
 * least ADMIN_KEY_ID_MIN digits, by the key itself, or, where the table
 * keeps the key's first characters, by those as `key list` shows them.
 *
 * Revoking changes exactly one active key or nothing: a reference that
 * matches several keys is refused (exit 1) and none is revoked, so an
 * operator who meant one partner's key never locks out another.
 */
#ifndef TRYGG_ADMIN_KEYS_H
#define TRYGG_ADMIN_KEYS_H

#include <stddef.h>

#define ADMIN_KEY_ID_LEN 12
#define ADMIN_KEY_ID_MIN 6
/* A listed prefix (shown_prefix_col) has at most this many characters after
 * the key prefix; anything longer that starts with it is taken as the key. */
#define ADMIN_KEY_SHOWN_MAX 9
#define ADMIN_KEY_RANDOM_BYTES 20 /* 160 bits */
/* A key made by admin_key_new: a prefix of up to 7 characters and
 * 2 * ADMIN_KEY_RANDOM_BYTES hex digits. */
#define ADMIN_KEY_MAX (7 + 2 * ADMIN_KEY_RANDOM_BYTES + 1)

/* Where a service keeps its keys (all strings are trusted SQL fragments). */
typedef struct admin_key_store {
	const char *usage;      /* e.g. "trygg-notifier admin key revoke ID|KEY" */
	const char *table;      /* e.g. "unit_keys" (has revoked_at) */
	const char *key_prefix; /* what every key starts with, e.g. "tu_" */
	/* The stored hash as lowercase hex text, e.g. "key_hash" or
	 * "encode(key_hash, 'hex')" for a bytea column. */
	const char *hash_hex_sql;
	/* SQL for whose key it is, named in messages, e.g. "unit". */
	const char *holder_sql;
	/* NULL, or a column holding the key's first characters as listed. */
	const char *shown_prefix_col;
	/* `key list`: the columns shown between ID and CREATED (SQL over
	 * list_from, default `table`, which has created_at and revoked_at),
	 * their headers (NULL-terminated), and a condition on $1 that picks
	 * one holder's keys (NULL: the list takes no holder). */
	const char *list_columns;
	const char *const *list_headers;
	const char *list_from;
	const char *holder_filter;
} admin_key_store;

/* Writes a new key, `prefix` and 40 random hex digits, into out (at least
 * ADMIN_KEY_MAX bytes), and the lowercase hex SHA-256 of it into hash (65
 * bytes). Dies if the random generator fails. */
void admin_key_new(const char *prefix, char out[ADMIN_KEY_MAX], char hash[65]);

/* Prints a newly issued key: alone on a line with `quiet` (for scripts),
 * else with its ID and holder and the advice that it is shown only now. */
void admin_key_print_new(const char *key, const char *hash_hex, const char *holder, int quiet);

/* `key list [HOLDER]`: ID, the store's columns, CREATED, REVOKED for every
 * key (of `holder` if not NULL), oldest first; never the key. */
void admin_key_list(const admin_key_store *s, const char *holder);

/* `key revoke ID|KEY`: argv[0] is the reference. Revokes exactly one
 * active key in one transaction and prints "revoked key ID of HOLDER";
 * exits 1 if none or several match (nothing revoked), 2 for a malformed
 * reference. */
void admin_key_revoke(const admin_key_store *s, int argc, char **argv);

#endif
