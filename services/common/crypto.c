/*
 * crypto.c: SHA-256 and HMAC-SHA256 digests and their hex (see crypto.h).
 */
#include "crypto.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
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

/* SHA-256 fetched once: OpenSSL 3 looks up EVP_sha256()'s implementation
 * again on every EVP_Digest call (EVP_MD_fetch, about half of each digest
 * of a short key or body; perf, issue 9). */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void
sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void
crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_LEN])
{
	unsigned int n = 0;
	pthread_once(&sha256_once, sha256_fetch);
	const EVP_MD *md = sha256_md != NULL ? sha256_md : EVP_sha256();
	if (EVP_Digest(data, len, out, &n, md, NULL) != 1 || n != CRYPTO_SHA256_LEN) {
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
