/*
 * admin_cli.h: the frame of every service's operator command line,
 * `trygg-<svc> admin <group> <verb> ARGS...`.
 *
 * One dispatch for all four services: `help` (or --help) prints the
 * service's usage and the shared lines (exit 0; no arguments at all: the
 * same on stderr, exit 2); `events ...` and `outbox ...` are the shared
 * commands of admin_events.h; anything else is looked up in the service's
 * command table, and an unknown command is a usage error that names it
 * (exit 2). Before a command runs, admin_run connects and applies the
 * service's embedded migrations (admin_db_connect), so every command
 * speaks the schema of the binary it ships in; it closes the connection
 * afterwards. A command reports failures through admin_die/admin_usage.
 */
#ifndef TRYGG_ADMIN_CLI_H
#define TRYGG_ADMIN_CLI_H

#include <stddef.h>

#include "migrate.h"

typedef struct admin_command {
	const char *group; /* e.g. "key" */
	/* e.g. "issue"; NULL: every verb of the group not listed before this
	 * entry, and the command gets the verb as its argv[0]. */
	const char *verb;
	void (*run)(int argc, char **argv); /* argv: what follows the verb */
} admin_command;

typedef struct admin_program {
	const char *prog;   /* "trygg-notifier admin", for messages */
	const char *schema; /* "notifier" */
	const struct migration *migrations;
	const char *who;   /* the role in "set DATABASE_URL to ... URL": "the notifier's" */
	const char *usage; /* "usage: ...\n" and the service's commands */
	const admin_command *commands;
	size_t ncommands;
} admin_program;

/* Runs the command in argv (what follows `admin`); returns the exit status. */
int admin_run(const admin_program *p, int argc, char **argv);

#endif
