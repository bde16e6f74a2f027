/*
 * auth.h: API keys.
 *
 * A key is "tk_" followed by 43 base64url characters (32 random bytes from
 * OpenSSL's RAND_bytes). It is shown to the operator once; intake stores
 * only its SHA-256 (common/crypto.h) and a short prefix for display. A request
 * proves its partner by presenting the key: "Authorization: Bearer <key>"
 * in the native API, the api_key field or query parameter in Open311.
 */
#ifndef INTAKE_AUTH_H
#define INTAKE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "util.h"

#define AUTH_KEY_LEN 46                 /* "tk_" + 43 */
#define AUTH_PREFIX_LEN 10              /* shown in listings: "tk_AbCdEfG" */
#define AUTH_HASH_LEN CRYPTO_SHA256_LEN /* hashed with crypto_sha256() */

/* Writes a fresh key (AUTH_KEY_LEN chars and a NUL) into out. Returns 0, or
 * TRYGG_EIO if the random generator failed. */
int auth_generate_key(char out[AUTH_KEY_LEN + 1]) TRYGG_MUSTCHECK;

/* True if s has the shape of a key (cheap check before any lookup). */
bool auth_key_format_ok(const char *s);

/*
 * Extracts the key from an Authorization header value "Bearer <key>"
 * (scheme case-insensitive, surrounding blanks ignored). Returns a pointer
 * into `header` and its length in *len, or NULL if the header is not a
 * bearer credential.
 */
const char *auth_parse_bearer(const char *header, size_t *len);

#endif
