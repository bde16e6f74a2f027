/*
 * sign.h: the notifier's signing schemes, built on HMAC-SHA256 and
 * SHA-256 from common/crypto.h.
 *
 *   - Webhook signatures: every webhook carries
 *       Trygg-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *     with the receiving endpoint's secret. Binding the timestamp into the
 *     MAC lets a receiver refuse replays older than a few minutes
 *     (docs/notifier.md shows how a receiver checks it).
 *   - Signed links in e-mails: /v1/links/<action>/<task>?e=<expiry>&s=<hex
 *     HMAC(link secret, "<action>.<task>.<expiry>")>, so a crew member can
 *     acknowledge or close a task from a mail without a key.
 *   - API keys are stored as hex SHA-256 of the key.
 *
 * All functions are pure and thread-safe.
 */
#ifndef NOTIFIER_SIGN_H
#define NOTIFIER_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "util.h"

/* Hex digests (signatures, key hashes) are common/crypto.h's. */
#define SIGN_HEX_LEN CRYPTO_SHA256_HEX_LEN

/*
 * Formats the Trygg-Signature header value for `body` signed at unix time
 * `t` into buf ("t=...,v1=..."). Returns buf.
 */
const char *sign_webhook(const char *secret, int64_t t, const void *body, size_t len, char *buf,
    size_t buflen);

/*
 * Checks a Trygg-Signature header value against body and secret: the
 * timestamp must be within `tolerance_s` of `now` and some v1= value must
 * match (compared in constant time). Returns true if it verifies.
 */
bool sign_webhook_verify(const char *secret, const char *header, const void *body, size_t len,
    int64_t now, int64_t tolerance_s);

/* The link signature for action on task until `expires` (unix seconds). */
void sign_link(const char *secret, const char *action, const char *task_id, int64_t expires,
    char out[SIGN_HEX_LEN]);

/* Verifies a link signature (hex text) in constant time and that it has
 * not expired at `now`. */
bool sign_link_verify(const char *secret, const char *action, const char *task_id, int64_t expires,
    const char *sig, int64_t now);

/* Constant-time comparison of two NUL-terminated strings. */
bool sign_equal(const char *a, const char *b);

#endif
