/*
 * Unit tests for the notifier's signatures (sign.c), backoff (backoff.c),
 * delivery outcome classification (delivery.c), e-mail composition
 * (mail.c) and UTF-8 cleaning (util.c's trygg_utf8_scrub, which intake_events.c uses).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backoff.h"
#include "delivery.h"
#include "mail.h"
#include "sign.h"

static void
test_hmac_vector(void **state)
{
	(void)state;
	char out[SIGN_HEX_LEN];
	/* RFC 4231 test case 2. */
	crypto_hmac_sha256_hex("Jefe", "what do ya want for nothing?", 28, out);
	assert_string_equal(out,
	    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	crypto_sha256_hex("abc", 3, out);
	assert_string_equal(out,
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void
test_webhook_signature(void **state)
{
	(void)state;
	const char *body = "{\"task\":1}";
	char hdr[160], mac[SIGN_HEX_LEN];
	sign_webhook("s3cret", 1700000000, body, strlen(body), hdr, sizeof(hdr));
	/* The documented construction: HMAC over "<t>.<body>". */
	crypto_hmac_sha256_hex("s3cret", "1700000000.{\"task\":1}", 21, mac);
	char want[160];
	snprintf(want, sizeof(want), "t=1700000000,v1=%s", mac);
	assert_string_equal(hdr, want);
	assert_true(sign_webhook_verify("s3cret", hdr, body, strlen(body), 1700000100, 300));
	assert_false(sign_webhook_verify("other", hdr, body, strlen(body), 1700000100, 300));
	assert_false(sign_webhook_verify("s3cret", hdr, "{\"task\":2}", 10, 1700000100, 300));
	assert_false(sign_webhook_verify("s3cret", hdr, body, strlen(body), 1700001000, 300));
	assert_false(sign_webhook_verify("s3cret", "v1=abc", body, strlen(body), 1700000000, 300));
	assert_false(sign_webhook_verify("s3cret", "t=x,v1=abc", body, strlen(body), 0, 300));
}

static void
test_links(void **state)
{
	(void)state;
	char sig[SIGN_HEX_LEN];
	const char *task = "0b3c6f0e-1111-4222-8333-444455556666";
	sign_link("k", "ack", task, 2000, sig);
	assert_true(sign_link_verify("k", "ack", task, 2000, sig, 1999));
	assert_false(sign_link_verify("k", "ack", task, 2000, sig, 2001));  /* expired */
	assert_false(sign_link_verify("k", "done", task, 2000, sig, 1999)); /* other action */
	assert_false(sign_link_verify("k", "ack", task, 2001, sig, 1999));  /* other expiry */
	assert_false(sign_link_verify("k", "ack", task, 2000, "00", 1999));
}

static void
test_backoff(void **state)
{
	(void)state;
	assert_int_equal(backoff_ceiling_ms(1, 1000, 600000), 1000);
	assert_int_equal(backoff_ceiling_ms(2, 1000, 600000), 2000);
	assert_int_equal(backoff_ceiling_ms(5, 1000, 600000), 16000);
	assert_int_equal(backoff_ceiling_ms(30, 1000, 600000), 600000);
	assert_int_equal(backoff_ceiling_ms(1000, 1000, 600000), 600000);
	/* Jitter spans [d/2, d]. */
	assert_int_equal(backoff_delay_ms(3, 1000, 600000, 0), 2000);
	assert_int_equal(backoff_delay_ms(3, 1000, 600000, UINT32_MAX), 4000);
	uint64_t mid = backoff_delay_ms(3, 1000, 600000, UINT32_MAX / 2);
	assert_true(mid > 2900 && mid < 3100);
	for (unsigned a = 1; a < 64; a++) {
		uint64_t d = backoff_delay_ms(a, 1000, 600000, (uint32_t)rand());
		assert_true(d >= backoff_ceiling_ms(a, 1000, 600000) / 2);
		assert_true(d <= backoff_ceiling_ms(a, 1000, 600000));
	}
}

static void
test_outcomes(void **state)
{
	(void)state;
	assert_true(delivery_is_success(0, 200));
	assert_true(delivery_is_success(0, 204));
	assert_false(delivery_is_success(0, 301));
	assert_false(delivery_is_success(TRYGG_ETIMEDOUT, 0));
	assert_true(delivery_is_permanent(0, 401));
	assert_true(delivery_is_permanent(0, 410));
	assert_false(delivery_is_permanent(0, 429));
	assert_false(delivery_is_permanent(0, 503));
	assert_false(delivery_is_permanent(TRYGG_EIO, 0));
}

static void
test_mail(void **state)
{
	(void)state;
	json_t *task = json_pack("{s:s, s:s, s:s, s:i, s:i, s:s, s:s}", "id", "t-1", "category",
	    "litter", "task_key", "sergels-torg", "priority", 3, "report_count", 2, "unit",
	    "cleaning-south", "address", "evil\r\nBcc: x@y");
	CURL *easy;
	mail_job *job;
	mail_params p = {.smtp_url = "smtp://127.0.0.1:25",
	    .from = "n@trygg.invalid",
	    .to = "crew@x.invalid",
	    .delivery_id = "d-1",
	    .kind = "task",
	    .task = task,
	    .ack_link = "http://h/ack",
	    .done_link = "http://h/done"};
	assert_int_equal(mail_prepare(&p, &easy, &job), 0);
	const char *text = mail_job_text(job);
	assert_non_null(strstr(text, "Trygg-Delivery: d-1\r\n"));
	assert_non_null(strstr(text, "Subject: [Trygg] New task: litter at sergels-torg"));
	assert_non_null(strstr(text, "Acknowledge: http://h/ack"));
	assert_null(strstr(text, "\r\nBcc:")); /* no header injection */
	curl_easy_cleanup(easy);
	mail_job_free(job);
	p.to = "a@b\r\nRCPT TO:<c@d>";
	assert_int_equal(mail_prepare(&p, &easy, &job), TRYGG_EINVAL);
	json_decref(task);
}

static void
test_clean_utf8(void **state)
{
	(void)state;
	char s[] = "Sveav\xc3\xa4gen \xff\xc3 ok \xed\xa0\x80";
	trygg_utf8_scrub(s);
	assert_string_equal(s, "Sveav\xc3\xa4gen ?? ok ???");
	char empty[] = "";
	trygg_utf8_scrub(empty);
	assert_string_equal(empty, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hmac_vector),
	    cmocka_unit_test(test_webhook_signature),
	    cmocka_unit_test(test_links),
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_outcomes),
	    cmocka_unit_test(test_mail),
	    cmocka_unit_test(test_clean_utf8),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
