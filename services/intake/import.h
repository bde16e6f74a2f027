/*
 * import.h: `trygg-intake admin import FILE.csv [--partner NAME]
 * [--dry-run]`, historical reports from a district's earlier systems
 * (docs/intake.md, "Importing history").
 *
 * Runs inside the admin command (blocking libpq through admin_db.h, after
 * the migrations). Each valid line becomes an imported report and a
 * ReportReceived (imported, source "import") in intake's outbox in one
 * statement; lines that fail are listed with their line number and field
 * on stderr at the end and change nothing.
 */
#ifndef INTAKE_IMPORT_H
#define INTAKE_IMPORT_H

#include <stdint.h>

#include "util.h"

/* The command; argv[0] is the file. Returns the exit code: 0, or 1 when
 * any line failed (the others are imported). Dies on a database error. */
int import_main(int argc, char **argv);

/* Parses an ISO 8601 time with a required offset ("Z" or "+01:00") into
 * µs since the epoch. Returns 0, or -1 if it is not one. */
int import_parse_time(const char *s, int64_t *us) TRYGG_MUSTCHECK;

#endif
