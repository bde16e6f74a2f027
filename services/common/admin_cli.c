/*
 * admin_cli.c: dispatch of `trygg-<svc> admin ...` (see admin_cli.h).
 */
#include "admin_cli.h"

#include <stdio.h>
#include <string.h>

#include "admin_db.h"
#include "admin_events.h"

static void
print_usage(const admin_program *p, FILE *f)
{
	fputs(p->usage, f);
	fputs("Events and the outbox (docs/ARCHITECTURE.md, what can go wrong):\n", f);
	fputs(admin_events_usage, f);
}

int
admin_run(const admin_program *p, int argc, char **argv)
{
	admin_set_prog(p->prog);
	if (argc < 1) {
		print_usage(p, stderr);
		return ADMIN_EXIT_USAGE;
	}
	if (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0) {
		print_usage(p, stdout);
		return 0;
	}
	const char *group = argv[0], *verb = argc > 1 ? argv[1] : "";
	int code = 0;
	if (strcmp(group, "events") == 0 || strcmp(group, "outbox") == 0) {
		admin_db_connect(p->schema, p->migrations, p->who);
		code = group[0] == 'e' ? admin_events_main(p->schema, argc - 1, argv + 1)
		                       : admin_outbox_main(p->schema, argc - 1, argv + 1);
		admin_db_close();
		return code;
	}
	for (size_t i = 0; i < p->ncommands; i++) {
		const admin_command *c = &p->commands[i];
		if (strcmp(group, c->group) != 0 || (c->verb && strcmp(verb, c->verb) != 0))
			continue;
		admin_db_connect(p->schema, p->migrations, p->who);
		if (c->verb)
			c->run(argc - 2, argv + 2);
		else
			c->run(argc - 1, argv + 1);
		admin_db_close();
		return 0;
	}
	fprintf(stderr, "%s: unknown command '%s%s%s'\n\n", p->prog, group, argc > 1 ? " " : "",
	    verb);
	print_usage(p, stderr);
	return ADMIN_EXIT_USAGE;
}
