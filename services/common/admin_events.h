/*
 * admin_events.h: the operator's command for the reliable-events layer,
 * the same in every service (`trygg-<svc> admin events ...` and
 * `trygg-<svc> admin outbox ...`).
 *
 * It works on the service's own copies of the shared tables
 * (services/common/sql): inbox_failed (events set aside because their
 * effect failed), inbox_cursor (where each consumed stream stands, its
 * epoch, and why it halted), inbox_skipped (purged ranges a stream went
 * past) and the outbox's epoch. What it changes, it announces with
 * NOTIFY <schema>_inbox, which the running service's inboxes LISTEN to
 * (and poll for), so it acts within seconds without a restart.
 *
 *   events failed [--publisher P]      list the set-aside events
 *   events retry (--all | SEQ) [--publisher P]
 *                                      ask the service to re-apply them
 *   events skipped                     list the purged ranges gone past
 *   events streams                     cursor, epoch, halted per publisher
 *   events accept-epoch PUBLISHER [--from SEQ]
 *                                      accept a publisher's new epoch
 *   events continue PUBLISHER          go past a purged range (recorded)
 *   outbox new-epoch                   start a new epoch of this service's
 *                                      stream (after a restore)
 *
 * Both entry points expect admin_db_connect() to have run (the service's
 * admin does it, with its migrations) and return the exit status: 0, 1
 * for a failure (message on stderr), 2 for a usage error.
 */
#ifndef TRYGG_ADMIN_EVENTS_H
#define TRYGG_ADMIN_EVENTS_H

/* `schema` is the service's (trusted: a constant, it names the NOTIFY
 * channel); argv[0] is the word after "events". */
int admin_events_main(const char *schema, int argc, char **argv);

/* argv[0] is the word after "outbox". */
int admin_outbox_main(const char *schema, int argc, char **argv);

/* The usage lines, for the service's own usage text. */
extern const char admin_events_usage[];

#endif
