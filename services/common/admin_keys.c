/*
 * admin_keys.c: issuing and revoking API keys (see admin_keys.h).
 */
#include "admin_keys.h"

#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "admin_db.h"
#include "crypto.h"
#include "strbuf.h"

void
admin_key_new(const char *prefix, char out[ADMIN_KEY_MAX], char hash[65])
{
	uint8_t raw[ADMIN_KEY_RANDOM_BYTES];
	size_t n = strlen(prefix);
	if (n > ADMIN_KEY_MAX - 2 * ADMIN_KEY_RANDOM_BYTES - 1)
		admin_die("key prefix '%s' is too long", prefix);
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		admin_die("the random generator failed");
	memcpy(out, prefix, n);
	crypto_hex(raw, sizeof(raw), out + n);
	crypto_sha256_hex(out, strlen(out), hash);
}

void
admin_key_print_new(const char *key, const char *hash_hex, const char *holder, int quiet)
{
	if (quiet)
		printf("%s\n", key);
	else
		printf("New API key for %s (id %.*s; shown only now, store it safely):\n\n  %s\n\n",
		    holder, ADMIN_KEY_ID_LEN, hash_hex, key);
}

void
admin_key_list(const admin_key_store *s, const char *holder)
{
	strbuf sql = STRBUF_INIT;
	strbuf_appendf(&sql,
	    "SELECT left(%s, %d), %s, to_char(created_at, 'YYYY-MM-DD HH24:MI'),"
	    " coalesce(to_char(revoked_at, 'YYYY-MM-DD HH24:MI'), '') FROM %s",
	    s->hash_hex_sql, ADMIN_KEY_ID_LEN, s->list_columns,
	    s->list_from ? s->list_from : s->table);
	if (s->holder_filter != NULL)
		strbuf_appendf(&sql, " WHERE $1::text IS NULL OR %s", s->holder_filter);
	strbuf_append(&sql, " ORDER BY created_at, 1");
	const char *v[1] = {holder};
	PGresult *r = admin_db_run(strbuf_str(&sql), s->holder_filter ? 1 : 0, v);
	strbuf_fini(&sql);
	const char *head[16] = {"ID"};
	size_t n = 1;
	for (size_t i = 0; s->list_headers[i] != NULL && n < TRYGG_ARRAY_LEN(head) - 2; i++)
		head[n++] = s->list_headers[i];
	head[n++] = "CREATED";
	head[n++] = "REVOKED";
	if ((size_t)PQnfields(r) != n)
		admin_die("key list: %d columns for %zu headers", PQnfields(r), n);
	admin_print_table(r, head);
}

/* True if s is 1-max characters of [0-9a-f]. */
static bool
is_hex(const char *s, size_t max)
{
	size_t n = strlen(s);
	return n > 0 && n <= max && strspn(s, "0123456789abcdef") == n;
}

void
admin_key_revoke(const admin_key_store *s, int argc, char **argv)
{
	admin_parse(argc, argv, 1, NULL, 0, s->usage);
	const char *arg = argv[0];
	size_t plen = strlen(s->key_prefix);
	char hash[CRYPTO_SHA256_HEX_LEN];
	const char *param = arg; /* $1: the key's hash, or the reference as given */
	strbuf sql = STRBUF_INIT;
	strbuf_appendf(&sql, "UPDATE %s SET revoked_at = now() WHERE revoked_at IS NULL AND ",
	    s->table);
	if (strlen(arg) > 200)
		admin_usage("key revoke: a key or an ID is at most 200 characters");
	if (strncmp(arg, s->key_prefix, plen) == 0 && strlen(arg) > plen + ADMIN_KEY_SHOWN_MAX) {
		/* The key itself (longer than any listed prefix of it). */
		crypto_sha256_hex(arg, strlen(arg), hash);
		param = hash;
		strbuf_appendf(&sql, "%s = $1", s->hash_hex_sql);
	} else if (is_hex(arg, 64) && strlen(arg) >= ADMIN_KEY_ID_MIN) {
		strbuf_appendf(&sql, "left(%s, length($1)) = $1", s->hash_hex_sql);
	} else if (s->shown_prefix_col != NULL && strncmp(arg, s->key_prefix, plen) == 0) {
		strbuf_appendf(&sql, "%s = $1", s->shown_prefix_col);
	} else {
		strbuf_fini(&sql);
		admin_usage(
		    "key revoke '%s': expected an ID as `key list` shows it (at least %d hex"
		    " digits)%s or the key itself (%s...)",
		    arg, ADMIN_KEY_ID_MIN, s->shown_prefix_col ? ", the key's listed prefix" : "",
		    s->key_prefix);
	}
	strbuf_appendf(&sql, " RETURNING left(%s, %d), %s", s->hash_hex_sql, ADMIN_KEY_ID_LEN,
	    s->holder_sql);
	const char *v[1] = {param};
	admin_db_exec("BEGIN", 0, NULL);
	PGresult *r = admin_db_run(strbuf_str(&sql), 1, v);
	strbuf_fini(&sql);
	int n = PQntuples(r);
	if (n != 1) {
		PQclear(r);
		admin_db_exec("ROLLBACK", 0, NULL);
		if (n == 0)
			admin_die("no active key matches '%s' (see `key list`)", arg);
		admin_die(
		    "'%s' matches %d active keys; nothing revoked: give more digits of the ID", arg,
		    n);
	}
	admin_db_exec("COMMIT", 0, NULL);
	printf("revoked key %s of %s\n", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
	PQclear(r);
}
