/*
 * stderr_capture.h: catches what the code under test writes to stderr (the
 * JSON log) through a pipe, for the tests that check log lines. Header-only,
 * since each unit test is a program of its own. The pipe holds what a test
 * logs between start and end (64 KiB on Linux): keep it to a few lines.
 */
#ifndef TRYGG_TEST_STDERR_CAPTURE_H
#define TRYGG_TEST_STDERR_CAPTURE_H

#include <stdlib.h>
#include <unistd.h>

struct capture {
	int saved;
	int rd;
};

/* Redirects stderr (where the logger writes) into a pipe. */
static void
capture_start(struct capture *c)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	c->saved = dup(STDERR_FILENO);
	dup2(p[1], STDERR_FILENO);
	close(p[1]);
	c->rd = p[0];
}

/* Restores stderr and returns what was written (caller frees). */
static char *
capture_end(struct capture *c)
{
	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	ssize_t n;
	while ((n = read(c->rd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (cap - len < 2)
			buf = realloc(buf, cap *= 2);
	}
	close(c->rd);
	buf[len] = '\0';
	return buf;
}

#endif
