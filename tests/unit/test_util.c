/*
 * test_util.c: ids. UUIDv4 and UUIDv7 strings have their version and
 * variant bits and are distinct across many refills of the per-thread
 * random buffer; a UUIDv7 starts with its time; and a forked child never
 * hands out the random bytes its parent hands out next.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "util.h"

static int
cmp_ids(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void
test_uuid4_form_and_distinct(void **state)
{
	(void)state;
	enum { N = 5000 };
	char(*ids)[37] = calloc(N, 37);
	assert_non_null(ids);
	for (int i = 0; i < N; i++) {
		trygg_uuid4(ids[i]);
		assert_true(trygg_uuid_valid(ids[i]));
		assert_int_equal(ids[i][14], '4');
		assert_non_null(strchr("89ab", ids[i][19]));
	}
	qsort(ids, N, 37, cmp_ids);
	for (int i = 1; i < N; i++)
		assert_string_not_equal(ids[i - 1], ids[i]);
	free(ids);
}

static void
test_uuid7_time_and_distinct(void **state)
{
	(void)state;
	char a[37], b[37];
	/* 0x0123456789ab ms */
	trygg_uuid7(a, 0x0123456789abLL);
	assert_true(trygg_uuid_valid(a));
	assert_memory_equal(a, "01234567-89ab-7", 15);
	assert_non_null(strchr("89ab", a[19]));
	trygg_uuid7(b, 0x0123456789abLL);
	assert_string_not_equal(a, b);
	trygg_uuid7(b, 0x0123456789acLL);
	assert_true(strcmp(a, b) < 0);
}

/* The parent has random bytes left in its buffer when it forks; the child
 * must not hand out the same ones. */
static void
test_fork_does_not_repeat(void **state)
{
	(void)state;
	char warm[37], parent[37], child[37] = {0};
	trygg_uuid4(warm); /* fills the buffer */
	int fd[2];
	assert_int_equal(pipe(fd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char id[37];
		trygg_uuid4(id);
		ssize_t w = write(fd[1], id, sizeof(id));
		_exit(w == (ssize_t)sizeof(id) ? 0 : 1);
	}
	close(fd[1]);
	trygg_uuid4(parent);
	assert_int_equal(read(fd[0], child, sizeof(child)), (ssize_t)sizeof(child));
	close(fd[0]);
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_true(trygg_uuid_valid(child));
	assert_string_not_equal(parent, child);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_uuid4_form_and_distinct),
	    cmocka_unit_test(test_uuid7_time_and_distinct),
	    cmocka_unit_test(test_fork_does_not_repeat),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
