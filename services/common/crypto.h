/*
 * crypto.h: the digests every service uses, in one place: SHA-256 (API key
 * hashes, idempotency request hashes, ETags) and HMAC-SHA256 (webhook
 * signatures, signed links), with their lower-case hex text. All from
 * OpenSSL's libcrypto; the notifier's signing schemes are in its sign.h.
 *
 * All functions are pure and thread-safe. A libcrypto that fails a digest
 * is broken beyond recovery; like out-of-memory (util.h), that aborts.
 */
#ifndef TRYGG_CRYPTO_H
#define TRYGG_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SHA256_LEN 32     /* bytes of a digest */
#define CRYPTO_SHA256_HEX_LEN 65 /* 64 hex digits and a NUL */

/* SHA-256 of the len bytes at data into out. */
void crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_LEN]);

/* hex(SHA-256(data)) into out. */
void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX_LEN]);

/* hex(HMAC-SHA256(key, msg)) into out; key is NUL-terminated text. */
void crypto_hmac_sha256_hex(const char *key, const void *msg, size_t len,
    char out[CRYPTO_SHA256_HEX_LEN]);

/* Lower-case hex of the n bytes at in into out (2n + 1 bytes, NUL-terminated). */
void crypto_hex(const uint8_t *in, size_t n, char *out);

#endif
