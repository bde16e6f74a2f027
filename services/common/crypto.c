/*
 * crypto.c: SHA-256 and HMAC-SHA256 digests and their hex (see crypto.h).
 */
#include "crypto.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

void
crypto_hex(const uint8_t *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void
crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_LEN])
{
	unsigned int n = 0;
	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != CRYPTO_SHA256_LEN) {
		log_error("sha256_failed", NULL);
		abort();
	}
}

void
crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX_LEN])
{
	uint8_t md[CRYPTO_SHA256_LEN];
	crypto_sha256(data, len, md);
	crypto_hex(md, sizeof(md), out);
}

/* HMAC() is the one-shot API that OpenSSL 3 keeps undeprecated. */
void
crypto_hmac_sha256_hex(const char *key, const void *msg, size_t len,
    char out[CRYPTO_SHA256_HEX_LEN])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (HMAC(EVP_sha256(), key, (int)strlen(key), msg, len, md, &mdlen) == NULL ||
	    mdlen != CRYPTO_SHA256_LEN) {
		log_error("hmac_sha256_failed", NULL);
		abort();
	}
	crypto_hex(md, mdlen, out);
}
