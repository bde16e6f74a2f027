/*
 * admin_events.c: `admin events ...` and `admin outbox ...` (see
 * admin_events.h). Each command runs its SQL on the blocking admin
 * connection and says in one plain sentence what it did and what happens
 * next, so an operator at 3 a.m. need not guess.
 */
#include "admin_events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_db.h"

const char admin_events_usage[] =
    "  events failed [--publisher P]        events set aside because their effect failed\n"
    "  events retry (--all | SEQ) [--publisher P]\n"
    "                                       ask the running service to re-apply them\n"
    "  events skipped                       purged ranges a stream went past\n"
    "  events streams                       cursor, epoch and state per publisher\n"
    "  events accept-epoch PUBLISHER [--from SEQ]\n"
    "                                       accept a publisher's new epoch; apply from\n"
    "                                       SEQ + 1 (default: where the epoch began)\n"
    "  events continue PUBLISHER            go past a purged range (recorded)\n"
    "  outbox new-epoch                     start a new epoch of this service's stream\n"
    "                                       (after restoring its database)\n";

static char usage_text[2048];

static const char *
usage(void)
{
	if (usage_text[0] == '\0')
		snprintf(usage_text, sizeof(usage_text), "usage:\n%s", admin_events_usage);
	return usage_text;
}

/* Tells the service's inboxes (they LISTEN on "<schema>_inbox"). */
static void
notify_inbox(const char *schema)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "NOTIFY %s_inbox", schema);
	admin_db_exec(sql, 0, NULL);
}

/* A decimal sequence number > 0, or a usage error naming `what`. */
static const char *
check_seq(const char *s, const char *what)
{
	char *end;
	if (s == NULL || *s < '0' || *s > '9')
		admin_usage("%s must be a sequence number, not '%s'\n\n%s", what, s ? s : "",
		    usage());
	unsigned long long v = strtoull(s, &end, 10);
	if (*end != '\0' || v == 0 || v > 9223372036854775807ULL)
		admin_usage("%s must be a sequence number, not '%s'\n\n%s", what, s, usage());
	return s;
}

static const char *
val(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? "-" : PQgetvalue(r, row, col);
}

/* ---- events failed ---- */

static int
cmd_failed(int argc, char **argv)
{
	admin_option o[] = {{.name = "--publisher", .takes_value = true}};
	admin_parse(argc, argv, 0, o, 1, usage());
	const char *v[1] = {o[0].value};
	PGresult *r = admin_db_run(
	    "SELECT publisher, seq, event_type, event_id, attempts,"
	    " to_char(failed_at, 'YYYY-MM-DD HH24:MI:SS TZ'),"
	    " CASE WHEN retry_requested_at IS NULL THEN '' ELSE 'retry asked' END, error"
	    " FROM inbox_failed WHERE $1::text IS NULL OR publisher = $1"
	    " ORDER BY publisher, seq",
	    1, v);
	int n = PQntuples(r);
	if (n == 0) {
		printf("no events set aside%s%s\n", o[0].value ? " for " : "",
		    o[0].value ? o[0].value : "");
		PQclear(r);
		return 0;
	}
	printf("%-12s %10s  %-34s %-36s %8s  %-23s %s\n", "PUBLISHER", "SEQ", "TYPE", "EVENT ID",
	    "ATTEMPTS", "FAILED AT", "ERROR");
	for (int i = 0; i < n; i++) {
		const char *state = val(r, i, 6);
		printf("%-12s %10s  %-34s %-36s %8s  %-23s %s%s%s\n", val(r, i, 0), val(r, i, 1),
		    val(r, i, 2), val(r, i, 3), val(r, i, 4), val(r, i, 5), val(r, i, 7),
		    state[0] ? " (" : "", state[0] ? "retry asked)" : "");
	}
	printf("%d event%s set aside; `events retry` re-applies them once the cause is fixed\n", n,
	    n == 1 ? "" : "s");
	PQclear(r);
	return 0;
}

/* ---- events retry ---- */

static int
cmd_retry(const char *schema, int argc, char **argv)
{
	admin_option o[] = {{.name = "--publisher", .takes_value = true}, {.name = "--all"}};
	int npos = argc > 0 && strncmp(argv[0], "--", 2) != 0 ? 1 : 0;
	admin_parse(argc, argv, npos, o, 2, usage());
	const char *seq = npos ? check_seq(argv[0], "SEQ") : NULL;
	if ((seq == NULL) == (o[1].value == NULL))
		admin_usage("give either --all or one SEQ\n\n%s", usage());
	const char *v[2] = {seq, o[0].value};
	admin_db_exec("BEGIN", 0, NULL);
	if (seq != NULL && o[0].value == NULL) {
		PGresult *c = admin_db_run(
		    "SELECT count(DISTINCT publisher) FROM inbox_failed WHERE seq = $1::bigint", 1,
		    v);
		long k = atol(PQgetvalue(c, 0, 0));
		PQclear(c);
		if (k > 1) {
			admin_db_exec("ROLLBACK", 0, NULL);
			admin_usage(
			    "seq %s is set aside for %ld publishers: name one with --publisher\n",
			    seq, k);
		}
	}
	PGresult *r = admin_db_run("UPDATE inbox_failed SET retry_requested_at = now()"
	                           " WHERE ($1::bigint IS NULL OR seq = $1::bigint)"
	                           " AND ($2::text IS NULL OR publisher = $2)"
	                           " RETURNING publisher, seq",
	    2, v);
	int n = PQntuples(r);
	if (n == 0) {
		PQclear(r);
		admin_db_exec("ROLLBACK", 0, NULL);
		if (seq != NULL)
			admin_die("no set-aside event with seq %s%s%s (see `events failed`)", seq,
			    o[0].value ? " from " : "", o[0].value ? o[0].value : "");
		printf("no events set aside%s%s: nothing to retry\n", o[0].value ? " for " : "",
		    o[0].value ? o[0].value : "");
		return 0;
	}
	notify_inbox(schema);
	admin_db_exec("COMMIT", 0, NULL);
	if (n == 1)
		printf("asked the running service to re-apply %s seq %s; it does within seconds "
		       "and deletes it from `events failed` if it succeeds\n",
		    PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
	else
		printf("asked the running service to re-apply %d set-aside events; each that "
		       "succeeds leaves `events failed` within seconds\n",
		    n);
	PQclear(r);
	return 0;
}

/* ---- events skipped ---- */

static int
cmd_skipped(int argc, char **argv)
{
	admin_parse(argc, argv, 0, NULL, 0, usage());
	PGresult *r = admin_db_run("SELECT publisher, from_seq, to_seq, epoch, reason,"
	                           " to_char(recorded_at, 'YYYY-MM-DD HH24:MI:SS TZ')"
	                           " FROM inbox_skipped ORDER BY publisher, from_seq",
	    0, NULL);
	int n = PQntuples(r);
	if (n == 0)
		printf("no purged ranges were gone past\n");
	else
		printf("%-12s %10s %10s  %-36s %-10s %s\n", "PUBLISHER", "FROM SEQ", "TO SEQ",
		    "EPOCH", "REASON", "RECORDED AT");
	for (int i = 0; i < n; i++)
		printf("%-12s %10s %10s  %-36s %-10s %s\n", val(r, i, 0), val(r, i, 1),
		    val(r, i, 2), val(r, i, 3), val(r, i, 4), val(r, i, 5));
	PQclear(r);
	return 0;
}

/* ---- events streams ---- */

static int
cmd_streams(int argc, char **argv)
{
	admin_parse(argc, argv, 0, NULL, 0, usage());
	PGresult *r =
	    admin_db_run("SELECT c.publisher, c.last_seq, c.epoch, coalesce(c.halted, 'applying'),"
	                 " (SELECT count(*) FROM inbox_failed f WHERE f.publisher = c.publisher),"
	                 " to_char(c.updated_at, 'YYYY-MM-DD HH24:MI:SS TZ'), c.halted_detail,"
	                 " c.pending_epoch, c.pending_base_seq"
	                 " FROM inbox_cursor c ORDER BY c.publisher",
	        0, NULL);
	int n = PQntuples(r);
	if (n == 0)
		printf("no streams: this service has not consumed any events yet\n");
	else
		printf("%-12s %10s  %-36s %-14s %10s  %s\n", "PUBLISHER", "CURSOR", "EPOCH",
		    "STATE", "SET ASIDE", "UPDATED AT");
	for (int i = 0; i < n; i++) {
		printf("%-12s %10s  %-36s %-14s %10s  %s\n", val(r, i, 0), val(r, i, 1),
		    val(r, i, 2), val(r, i, 3), val(r, i, 4), val(r, i, 5));
		if (!PQgetisnull(r, i, 6))
			printf("    %s\n", PQgetvalue(r, i, 6));
		if (!PQgetisnull(r, i, 7))
			printf("    new epoch %s began after seq %s: `events accept-epoch %s` "
			       "accepts it\n",
			    PQgetvalue(r, i, 7), val(r, i, 8), PQgetvalue(r, i, 0));
		else if (strcmp(val(r, i, 3), "purged") == 0)
			printf("    `events continue %s` goes past the purged range\n",
			    PQgetvalue(r, i, 0));
	}
	PQclear(r);
	return 0;
}

/* ---- events accept-epoch / continue ---- */

/* The stream's state; dies if the service has no such stream. */
static char *
stream_state(const char *publisher)
{
	const char *v[1] = {publisher};
	PGresult *r =
	    admin_db_run("SELECT coalesce(halted, '') FROM inbox_cursor WHERE publisher = $1", 1,
	        v);
	if (PQntuples(r) == 0) {
		PQclear(r);
		admin_die("no stream from '%s' (see `events streams`)", publisher);
	}
	char *state = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return state;
}

/*
 * Runs `sql` (an UPDATE ... RETURNING on a halted stream) and, if it
 * changed the row, NOTIFYs the service in the same transaction. Dies if
 * the stream was no longer halted (the service got there first). The
 * caller PQclear()s the result.
 */
static PGresult *
unhalt(const char *schema, const char *pub, const char *sql, int n, const char *const *v)
{
	admin_db_exec("BEGIN", 0, NULL);
	PGresult *r = admin_db_run(sql, n, v);
	if (PQntuples(r) == 0) {
		PQclear(r);
		admin_db_exec("ROLLBACK", 0, NULL);
		admin_die("%s's stream is no longer halted (the service moved on): nothing done",
		    pub);
	}
	notify_inbox(schema);
	admin_db_exec("COMMIT", 0, NULL);
	return r;
}

static int
cmd_accept_epoch(const char *schema, int argc, char **argv)
{
	admin_option o[] = {{.name = "--from", .takes_value = true}};
	admin_parse(argc, argv, 1, o, 1, usage());
	const char *pub = argv[0];
	const char *from = o[0].value ? check_seq(o[0].value, "--from") : NULL;
	char *state = stream_state(pub);
	if (state[0] == '\0' || strcmp(state, "purged") == 0) {
		int purged = state[0] != '\0';
		free(state);
		if (purged)
			admin_die("%s's stream halted at a purged range, not a new epoch: "
			          "`events continue %s` goes past it",
			    pub, pub);
		admin_die("%s's stream is not halted: there is no epoch to accept", pub);
	}
	free(state);
	const char *v[2] = {pub, from};
	PGresult *r = unhalt(schema, pub,
	    "UPDATE inbox_cursor SET epoch = pending_epoch,"
	    " last_seq = coalesce($2::bigint, pending_base_seq, last_seq),"
	    " halted = NULL, halted_detail = NULL, pending_epoch = NULL, pending_base_seq = NULL"
	    " WHERE publisher = $1 AND halted IS NOT NULL RETURNING epoch, last_seq",
	    2, v);
	long long last = atoll(PQgetvalue(r, 0, 1));
	printf("accepted epoch %s for %s: the next event applied will be seq %lld\n",
	    PQgetisnull(r, 0, 0) ? "(the first one seen)" : PQgetvalue(r, 0, 0), pub, last + 1);
	PQclear(r);
	return 0;
}

static int
cmd_continue(const char *schema, int argc, char **argv)
{
	admin_parse(argc, argv, 1, NULL, 0, usage());
	const char *pub = argv[0];
	char *state = stream_state(pub);
	if (strcmp(state, "purged") != 0) {
		int halted = state[0] != '\0';
		free(state);
		if (halted)
			admin_die("%s's stream halted for a new epoch, not a purged range: "
			          "`events accept-epoch %s` accepts it",
			    pub, pub);
		admin_die("%s's stream is not halted: nothing to continue", pub);
	}
	free(state);
	const char *v[1] = {pub};
	PGresult *r = unhalt(schema, pub,
	    "UPDATE inbox_cursor SET halted = NULL, halted_detail = NULL"
	    " WHERE publisher = $1 AND halted = 'purged' RETURNING last_seq",
	    1, v);
	printf("%s's stream continues after seq %s: the service records the purged range it "
	       "goes past (see `events skipped`) and applies from the first event still kept\n",
	    pub, PQgetvalue(r, 0, 0));
	PQclear(r);
	return 0;
}

int
admin_events_main(const char *schema, int argc, char **argv)
{
	if (argc < 1 || strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0) {
		fputs(usage(), argc < 1 ? stderr : stdout);
		return argc < 1 ? ADMIN_EXIT_USAGE : 0;
	}
	const char *cmd = argv[0];
	argc--, argv++;
	if (strcmp(cmd, "failed") == 0)
		return cmd_failed(argc, argv);
	if (strcmp(cmd, "retry") == 0)
		return cmd_retry(schema, argc, argv);
	if (strcmp(cmd, "skipped") == 0)
		return cmd_skipped(argc, argv);
	if (strcmp(cmd, "streams") == 0)
		return cmd_streams(argc, argv);
	if (strcmp(cmd, "accept-epoch") == 0)
		return cmd_accept_epoch(schema, argc, argv);
	if (strcmp(cmd, "continue") == 0)
		return cmd_continue(schema, argc, argv);
	admin_usage("unknown command 'events %s'\n\n%s", cmd, usage());
}

int
admin_outbox_main(const char *schema, int argc, char **argv)
{
	(void)schema;
	if (argc < 1 || strcmp(argv[0], "new-epoch") != 0)
		admin_usage("unknown command 'outbox%s%s'\n\n%s", argc ? " " : "",
		    argc ? argv[0] : "", usage());
	admin_parse(argc - 1, argv + 1, 0, NULL, 0, usage());
	/* outbox_new_epoch() (004_epoch_retention.sql) starts the epoch in
	 * outbox_state; the relay reads it on its next round. */
	PGresult *r = admin_db_run("SELECT outbox_new_epoch()::text, (SELECT epoch_base_seq FROM"
	                           " outbox_state LIMIT 1)",
	    0, NULL);
	printf("started epoch %s of this service's stream after seq %s: subscribers halt "
	       "(epoch_changed) until their operator runs `events accept-epoch`\n",
	    val(r, 0, 0), val(r, 0, 1));
	PQclear(r);
	return 0;
}
