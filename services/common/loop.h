/*
 * loop.h: the process loop. One per service: a uv_loop_t plus the signal
 * handling and graceful drain every daemon needs (CONVENTIONS.md,
 * "Daemons").
 *
 * Signals are handled inside the loop with uv_signal_t, so the callbacks
 * below run on the loop thread like everything else:
 *
 *   SIGTERM, SIGINT  The first one starts a drain: on_drain is called once,
 *                    and a deadline timer of drain_timeout_ms starts. The
 *                    service stops accepting work, finishes what is in
 *                    flight, closes its handles and calls loop_drain_done().
 *                    loop_run() returns 0 when the service calls
 *                    loop_drain_done() or when no handle keeps the loop alive
 *                    any more, whichever comes first; it returns 1 if the
 *                    deadline passes first (logged as "drain_deadline").
 *                    Whatever hangs after that (even outside the loop),
 *                    SIGALRM ends the process 6 s past the deadline;
 *                    loop_fini() cancels that alarm.
 *                    A second SIGTERM or SIGINT during the drain logs
 *                    "drain_forced" and calls _exit(1) at once: the operator
 *                    asked twice, and a stuck drain must not be able to
 *                    delay that. No atexit handlers or close callbacks run;
 *                    Postgres rolls back open transactions, and the outbox
 *                    makes unsent events safe.
 *   SIGHUP           Calls on_reload (e.g. config_reload()); ignored while
 *                    draining or when on_reload is NULL.
 *   SIGPIPE          Ignored process-wide from loop_init() on, so a write to
 *                    a closed socket fails with EPIPE instead of killing us.
 *
 * The signal handles and the deadline timer are unreferenced: they never
 * keep the loop alive by themselves, so a service whose own handles are all
 * closed ends the loop naturally.
 *
 * Ownership and threading: the loop struct is embedded by the caller and
 * must not move between loop_init() and loop_fini(). Every function here
 * must be called on the loop thread (from nng threads, hand over with
 * uv_async_send first). Handles the service puts on the loop remain the
 * service's; loop_fini() only closes ones the service forgot, as a leak.
 *
 * Typical main():
 *   loop l;
 *   loop_options lo = {.drain_timeout_ms = cfg.drain_timeout,
 *       .on_drain = svc_drain, .on_reload = svc_reload, .arg = &svc};
 *   if (loop_init(&l, &lo) != 0) return 1;
 *   ... open db, bus, http on loop_uv(&l) ...
 *   int code = loop_run(&l);
 *   ... free what the close callbacks did not ...
 *   loop_fini(&l);
 *   return code;
 */
#ifndef TRYGG_LOOP_H
#define TRYGG_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "util.h"

typedef struct loop loop;

/* Called on the loop thread with the options' arg. */
typedef void (*loop_cb)(loop *l, void *arg);

typedef struct loop_options {
	uint64_t drain_timeout_ms; /* 0 means 10000 */
	loop_cb on_drain;          /* NULL: a drain finishes at once */
	loop_cb on_reload;         /* NULL: SIGHUP is logged and ignored */
	void *arg;
} loop_options;

enum loop_state { LOOP_RUNNING, LOOP_DRAINING, LOOP_DONE };

/* Embed one per process; all fields are private. */
struct loop {
	uv_loop_t uv;
	uv_signal_t sigterm, sigint, sighup;
	uv_timer_t deadline;
	loop_options opt;
	enum loop_state state;
	int exit_code;
	uint64_t drain_start_ms;
	bool inited;
};

/*
 * Initialises the uv loop, installs the signal handlers and ignores SIGPIPE.
 * `o` is copied. Returns 0 or TRYGG_EIO (nothing to fini then).
 */
int loop_init(loop *l, const loop_options *o) TRYGG_MUSTCHECK;

/* The uv loop to put the service's handles on. */
uv_loop_t *loop_uv(loop *l);

/*
 * Runs the loop until the drain finishes, the deadline passes, or no
 * handle keeps it alive. Returns the process exit code: 0, or 1 when the
 * drain deadline passed.
 */
int loop_run(loop *l);

/* Starts a drain as if SIGTERM had arrived (e.g. after a fatal error). A
 * no-op if a drain has already started. */
void loop_drain(loop *l);

/* Tells the loop the drain has finished: loop_run() returns 0 after the
 * current iteration. Handles the service has uv_close()d by then finish
 * closing in loop_fini(). */
void loop_drain_done(loop *l);

/* True once a drain has started: e.g. /readyz answers 503 from then on. */
bool loop_is_draining(const loop *l);

/*
 * Closes the signal handles and the timer, closes and logs ("handle_leak",
 * a warning) every handle the service left open, runs the remaining close
 * callbacks and closes the uv loop. Returns 0 when the loop closed with
 * nothing left open (what uv_loop_close() == 0 means in our tests), or
 * TRYGG_EBUSY if handles leaked or uv_loop_close() still failed. Accepts
 * NULL and a loop whose init failed.
 */
int loop_fini(loop *l);

#endif
