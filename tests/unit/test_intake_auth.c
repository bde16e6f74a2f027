/*
 * test_intake_auth.c: API key generation, SHA-256 hashing and the bearer
 * header parser (auth.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "auth.h"

static void
test_generate(void **state)
{
	(void)state;
	char a[AUTH_KEY_LEN + 1], b[AUTH_KEY_LEN + 1];
	assert_int_equal(auth_generate_key(a), 0);
	assert_int_equal(auth_generate_key(b), 0);
	assert_int_equal(strlen(a), AUTH_KEY_LEN);
	assert_true(strncmp(a, "tk_", 3) == 0);
	assert_true(auth_key_format_ok(a));
	assert_string_not_equal(a, b);
	assert_false(auth_key_format_ok("tk_short"));
	a[10] = '!';
	assert_false(auth_key_format_ok(a));
	assert_false(auth_key_format_ok(NULL));
}

static void
test_hash_known_vector(void **state)
{
	(void)state;
	uint8_t h[AUTH_HASH_LEN];
	char hex[2 * AUTH_HASH_LEN + 1];
	crypto_sha256("abc", 3, h);
	crypto_hex(h, AUTH_HASH_LEN, hex);
	assert_string_equal(hex,
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	crypto_sha256("", 0, h);
	crypto_hex(h, AUTH_HASH_LEN, hex);
	assert_string_equal(hex,
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void
test_bearer(void **state)
{
	(void)state;
	size_t n;
	const char *k = auth_parse_bearer("Bearer tk_abc", &n);
	assert_non_null(k);
	assert_int_equal(n, 6);
	assert_memory_equal(k, "tk_abc", 6);
	k = auth_parse_bearer("  bearer \t tk_abc  ", &n);
	assert_non_null(k);
	assert_int_equal(n, 6);
	assert_null(auth_parse_bearer("Basic dXNlcjpwdw==", &n));
	assert_null(auth_parse_bearer("Bearer", &n));
	assert_null(auth_parse_bearer("Bearer   ", &n));
	assert_null(auth_parse_bearer("Bearertk_abc", &n));
	assert_null(auth_parse_bearer(NULL, &n));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_generate),
	    cmocka_unit_test(test_hash_known_vector),
	    cmocka_unit_test(test_bearer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
