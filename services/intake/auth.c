/*
 * auth.c: API key generation and hashing with OpenSSL (see auth.h).
 */
#include "auth.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int
auth_generate_key(char out[AUTH_KEY_LEN + 1])
{
	uint8_t raw[33]; /* 32 random bytes, padded to a multiple of 3 */
	if (RAND_bytes(raw, 32) != 1)
		return TRYGG_EIO;
	raw[32] = 0;
	memcpy(out, "tk_", 3);
	char *p = out + 3;
	for (int i = 0; i < 33; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
		*p++ = b64url[(v >> 18) & 63];
		*p++ = b64url[(v >> 12) & 63];
		*p++ = b64url[(v >> 6) & 63];
		*p++ = b64url[v & 63];
	}
	/* 44 characters were written; the last encodes only padding bits. */
	out[AUTH_KEY_LEN] = '\0';
	return 0;
}

bool
auth_key_format_ok(const char *s)
{
	if (s == NULL || strlen(s) != AUTH_KEY_LEN || strncmp(s, "tk_", 3) != 0)
		return false;
	for (size_t i = 3; i < AUTH_KEY_LEN; i++) {
		if (strchr(b64url, s[i]) == NULL)
			return false;
	}
	return true;
}

const char *
auth_parse_bearer(const char *header, size_t *len)
{
	if (header == NULL)
		return NULL;
	while (*header == ' ' || *header == '\t')
		header++;
	if (strncasecmp(header, "Bearer", 6) != 0 || (header[6] != ' ' && header[6] != '\t'))
		return NULL;
	const char *k = header + 7;
	while (*k == ' ' || *k == '\t')
		k++;
	size_t n = strlen(k);
	while (n > 0 && (k[n - 1] == ' ' || k[n - 1] == '\t'))
		n--;
	if (n == 0)
		return NULL;
	*len = n;
	return k;
}
