/*
 * suppress.c: small-count suppression (see suppress.h).
 */
#include "suppress.h"

#include <stdlib.h>

#include "util.h"

void
suppress_init(suppress_table *t)
{
	*t = (suppress_table){0};
}

void
suppress_fini(suppress_table *t)
{
	if (t == NULL)
		return;
	free(t->cells);
	free(t->members);
	*t = (suppress_table){0};
}

static size_t
add(suppress_table *t, int64_t value, void *where, const char *key, bool implicit)
{
	if (t->ncells == t->capcells) {
		t->capcells = t->capcells ? t->capcells * 2 : 64;
		t->cells = xrealloc(t->cells, t->capcells * sizeof(*t->cells));
	}
	t->cells[t->ncells] =
	    (suppress_cell){.value = value, .where = where, .key = key, .implicit = implicit};
	return t->ncells++;
}

size_t
suppress_cell_add(suppress_table *t, int64_t value, void *where, const char *key)
{
	return add(t, value, where, key, false);
}

size_t
suppress_implicit_add(suppress_table *t, int64_t value)
{
	return add(t, value, NULL, NULL, true);
}

void
suppress_group(suppress_table *t, const size_t *idx, size_t n)
{
	if (n < 2)
		return;
	if (t->nmembers + n + 1 > t->capmembers) {
		while (t->nmembers + n + 1 > t->capmembers)
			t->capmembers = t->capmembers ? t->capmembers * 2 : 256;
		t->members = xrealloc(t->members, t->capmembers * sizeof(*t->members));
	}
	t->members[t->nmembers++] = n;
	for (size_t i = 0; i < n; i++)
		t->members[t->nmembers++] = idx[i];
}

/* In one group with exactly one hidden member, hides another: an implicit
 * one if there is (it is not shown, so hiding it costs nothing), else the
 * smallest visible non-zero member, else a zero. True if it hid one. */
static bool
protect(suppress_table *t, const size_t *g, size_t n)
{
	size_t hidden = 0, best = SIZE_MAX;
	for (size_t i = 0; i < n; i++)
		if (t->cells[g[i]].hidden)
			hidden++;
	if (hidden != 1)
		return false;
	for (size_t pass = 0; pass < 3 && best == SIZE_MAX; pass++) {
		for (size_t i = 0; i < n; i++) {
			const suppress_cell *c = &t->cells[g[i]];
			if (c->hidden || (pass == 0 && !c->implicit) ||
			    (pass == 1 && c->value == 0))
				continue;
			if (best == SIZE_MAX || c->value < t->cells[best].value)
				best = g[i];
		}
	}
	if (best == SIZE_MAX)
		return false;
	t->cells[best].hidden = true;
	return true;
}

size_t
suppress_run(suppress_table *t, int64_t threshold)
{
	for (size_t i = 0; i < t->ncells; i++)
		if (t->cells[i].value > 0 && t->cells[i].value < threshold)
			t->cells[i].hidden = true;
	bool changed = true;
	while (changed) {
		changed = false;
		for (size_t o = 0; o < t->nmembers; o += 1 + t->members[o])
			if (protect(t, t->members + o + 1, t->members[o]))
				changed = true;
	}
	size_t n = 0;
	for (size_t i = 0; i < t->ncells; i++)
		if (t->cells[i].hidden && !t->cells[i].implicit)
			n++;
	return n;
}
