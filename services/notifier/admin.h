/*
 * admin.h: `trygg-notifier admin ...`, the operator's command line for
 * units, routing rules, unit keys and dead letters (admin.c).
 */
#ifndef NOTIFIER_ADMIN_H
#define NOTIFIER_ADMIN_H

/* Runs the command in argv (after "admin"); returns the exit code: 0, 1
 * for a failure, 2 for a usage error. */
int admin_main(int argc, char **argv);

#endif
