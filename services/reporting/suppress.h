/*
 * suppress.h: small-count suppression for public output, in one place.
 *
 * A table is a set of cells (counts) and linear relations between them
 * ("groups": a total and its parts, any member of which could be computed
 * from the others by subtraction). suppress_run() hides
 *   - primary: every cell with 0 < value < threshold (a zero counts nobody
 *     and stays visible);
 *   - secondary: in every group where exactly one member is hidden (it
 *     could be recovered from the others), the next smallest visible
 *     member too (an implicit one first, then a non-zero one), repeated
 *     until no group has exactly one hidden member.
 * A cell may be implicit: a figure that is not shown but follows from
 * shown ones (count - night = day when only count and night are shown);
 * it takes part in the rules but is not reported as suppressed.
 *
 * Ownership: the table owns its arrays; cells carry an opaque pointer for
 * the caller (where to write the null back).
 */
#ifndef REPORTING_SUPPRESS_H
#define REPORTING_SUPPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct suppress_cell {
	int64_t value;
	bool hidden;
	bool implicit;
	void *where; /* the caller's */
	const char *key;
} suppress_cell;

typedef struct suppress_table {
	suppress_cell *cells;
	size_t ncells, capcells;
	size_t *members; /* groups, flattened: each starts with its length */
	size_t nmembers, capmembers;
} suppress_table;

void suppress_init(suppress_table *t);
void suppress_fini(suppress_table *t);

/* Adds a cell and returns its index. */
size_t suppress_cell_add(suppress_table *t, int64_t value, void *where, const char *key);

/* The same for a figure that is not shown (see above). */
size_t suppress_implicit_add(suppress_table *t, int64_t value);

/* Declares that cells idx[0..n) are bound by one linear relation (a total
 * and its parts). Groups of fewer than 2 cells are ignored. */
void suppress_group(suppress_table *t, const size_t *idx, size_t n);

/* Applies the rules; returns how many shown (not implicit) cells are now
 * hidden. May be called once per table. */
size_t suppress_run(suppress_table *t, int64_t threshold);

#endif
