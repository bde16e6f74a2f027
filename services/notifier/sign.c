/*
 * sign.c: HMAC-SHA256 webhook signatures, signed links and key hashes
 * (see sign.h for the formats).
 */
#include "sign.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* HMAC over "<t>.<body>". */
static void
webhook_mac(const char *secret, int64_t t, const void *body, size_t len, char out[SIGN_HEX_LEN])
{
	char prefix[32];
	int n = snprintf(prefix, sizeof(prefix), "%" PRId64 ".", t);
	char *msg = xmalloc((size_t)n + len + 1);
	memcpy(msg, prefix, (size_t)n);
	if (len > 0)
		memcpy(msg + n, body, len);
	crypto_hmac_sha256_hex(secret, msg, (size_t)n + len, out);
	free(msg);
}

const char *
sign_webhook(const char *secret, int64_t t, const void *body, size_t len, char *buf, size_t buflen)
{
	char mac[SIGN_HEX_LEN];
	webhook_mac(secret, t, body, len, mac);
	snprintf(buf, buflen, "t=%" PRId64 ",v1=%s", t, mac);
	return buf;
}

bool
sign_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la != lb)
		return false;
	return CRYPTO_memcmp(a, b, la) == 0;
}

bool
sign_webhook_verify(const char *secret, const char *header, const void *body, size_t len,
    int64_t now, int64_t tolerance_s)
{
	int64_t t = -1;
	char want[SIGN_HEX_LEN];
	bool have_t = false, ok = false;
	char *copy = xstrdup(header), *save = NULL;
	/* First pass for t=, since v1= may come before it. */
	for (char *part = strtok_r(copy, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
		while (*part == ' ')
			part++;
		if (strncmp(part, "t=", 2) == 0) {
			char *end;
			t = strtoll(part + 2, &end, 10);
			have_t = *end == '\0' && end != part + 2;
		}
	}
	free(copy);
	if (!have_t || t < now - tolerance_s || t > now + tolerance_s)
		return false;
	webhook_mac(secret, t, body, len, want);
	copy = xstrdup(header);
	for (char *part = strtok_r(copy, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
		while (*part == ' ')
			part++;
		if (strncmp(part, "v1=", 3) == 0 && sign_equal(part + 3, want))
			ok = true;
	}
	free(copy);
	return ok;
}

void
sign_link(const char *secret, const char *action, const char *task_id, int64_t expires,
    char out[SIGN_HEX_LEN])
{
	char *msg = xasprintf("%s.%s.%" PRId64, action, task_id, expires);
	crypto_hmac_sha256_hex(secret, msg, strlen(msg), out);
	free(msg);
}

bool
sign_link_verify(const char *secret, const char *action, const char *task_id, int64_t expires,
    const char *sig, int64_t now)
{
	char want[SIGN_HEX_LEN];
	if (expires < now)
		return false;
	sign_link(secret, action, task_id, expires, want);
	return sign_equal(sig, want);
}
