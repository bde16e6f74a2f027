/*
 * test_loop.c: the process loop (services/common/loop.c): signals handled
 * inside the loop, the drain and its deadline, reload on SIGHUP, and a
 * clean uv_loop_close() at the end of every test (loop_fini() == 0 means
 * uv_loop_close() returned 0 with no handle left open).
 *
 * A fake service keeps a "listener" handle (a repeating timer) alive, as a
 * listening socket would, and closes it when told to drain.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"

struct svc {
	uv_timer_t listener; /* stands in for a listening socket */
	uv_timer_t inflight; /* stands in for a request still being served */
	int drains;
	int reloads;
	bool close_on_drain;    /* drain closes the listener */
	bool done_on_drain;     /* drain calls loop_drain_done() at once */
	bool inflight_on_drain; /* drain finishes 20 ms later, from inflight */
	bool drain_on_reload;
};

static void
noop_timer(uv_timer_t *t)
{
	(void)t;
}

static void
on_inflight(uv_timer_t *t)
{
	loop *l = t->data;
	uv_close((uv_handle_t *)t, NULL);
	loop_drain_done(l);
}

static void
svc_drain(loop *l, void *arg)
{
	struct svc *s = arg;
	s->drains++;
	if (s->close_on_drain)
		uv_close((uv_handle_t *)&s->listener, NULL);
	if (s->inflight_on_drain) {
		uv_timer_init(loop_uv(l), &s->inflight);
		s->inflight.data = l;
		uv_timer_start(&s->inflight, on_inflight, 20, 0);
	}
	if (s->done_on_drain)
		loop_drain_done(l);
}

static void
svc_reload(loop *l, void *arg)
{
	struct svc *s = arg;
	s->reloads++;
	if (s->drain_on_reload)
		loop_drain(l);
}

/* Initialises the loop for s and starts its listener. */
static void
start(loop *l, struct svc *s, uint64_t drain_ms)
{
	loop_options o = {.drain_timeout_ms = drain_ms,
	    .on_drain = svc_drain,
	    .on_reload = svc_reload,
	    .arg = s};
	assert_int_equal(loop_init(l, &o), 0);
	uv_timer_init(loop_uv(l), &s->listener);
	uv_timer_start(&s->listener, noop_timer, 1, 1);
}

static void
test_sigterm_drains(void **state)
{
	(void)state;
	loop l;
	struct svc s = {.close_on_drain = true, .done_on_drain = true};
	start(&l, &s, 5000);
	assert_false(loop_is_draining(&l));
	raise(SIGTERM);
	assert_int_equal(loop_run(&l), 0);
	assert_int_equal(s.drains, 1);
	assert_true(loop_is_draining(&l));
	assert_int_equal(loop_fini(&l), 0);
}

static void
test_sigint_drains(void **state)
{
	(void)state;
	loop l;
	struct svc s = {.close_on_drain = true};
	start(&l, &s, 5000);
	raise(SIGINT);
	/* No loop_drain_done(): the loop ends because nothing keeps it alive. */
	assert_int_equal(loop_run(&l), 0);
	assert_int_equal(s.drains, 1);
	assert_int_equal(loop_fini(&l), 0);
}

static void
test_drain_done_ends_loop(void **state)
{
	(void)state;
	loop l;
	struct svc s = {.inflight_on_drain = true};
	start(&l, &s, 5000);
	raise(SIGTERM);
	uint64_t t0 = trygg_now_ms();
	assert_int_equal(loop_run(&l), 0);
	assert_true(trygg_now_ms() - t0 >= 15);
	/* The listener still runs: loop_drain_done() is what ended the loop. */
	assert_true(uv_is_active((uv_handle_t *)&s.listener));
	assert_int_equal(s.drains, 1);
	uv_close((uv_handle_t *)&s.listener, NULL);
	assert_int_equal(loop_fini(&l), 0);
}

static void
test_deadline_ends_stuck_drain(void **state)
{
	(void)state;
	loop l;
	struct svc s = {0}; /* drains nothing, never calls loop_drain_done() */
	start(&l, &s, 50);
	raise(SIGTERM);
	uint64_t t0 = trygg_now_ms();
	assert_int_equal(loop_run(&l), 1);
	uint64_t took = trygg_now_ms() - t0;
	assert_true(took >= 45);
	assert_true(took < 2000);
	assert_int_equal(s.drains, 1);
	uv_close((uv_handle_t *)&s.listener, NULL);
	assert_int_equal(loop_fini(&l), 0);
}

static void
test_drain_runs_once(void **state)
{
	(void)state;
	loop l;
	struct svc s = {0};
	start(&l, &s, 50);
	loop_drain(&l);
	loop_drain(&l);
	assert_int_equal(loop_run(&l), 1);
	assert_int_equal(s.drains, 1);
	uv_close((uv_handle_t *)&s.listener, NULL);
	assert_int_equal(loop_fini(&l), 0);
}

static void
test_sighup_reloads(void **state)
{
	(void)state;
	loop l;
	struct svc s = {.drain_on_reload = true, .close_on_drain = true, .done_on_drain = true};
	start(&l, &s, 5000);
	raise(SIGHUP);
	assert_int_equal(loop_run(&l), 0);
	assert_int_equal(s.reloads, 1);
	assert_int_equal(s.drains, 1);
	assert_int_equal(loop_fini(&l), 0);
}

static void
test_sighup_without_reload_cb(void **state)
{
	(void)state;
	loop l;
	loop_options o = {0}; /* no callbacks: SIGHUP ignored, drain ends at once */
	assert_int_equal(loop_init(&l, &o), 0);
	uv_timer_t keep;
	uv_timer_init(loop_uv(&l), &keep);
	uv_timer_start(&keep, noop_timer, 1, 1);
	raise(SIGHUP);
	raise(SIGTERM);
	assert_int_equal(loop_run(&l), 0);
	uv_close((uv_handle_t *)&keep, NULL);
	assert_int_equal(loop_fini(&l), 0);
}

static void
test_nothing_to_run(void **state)
{
	(void)state;
	/* Our own handles never keep the loop alive. */
	loop l;
	loop_options o = {0};
	assert_int_equal(loop_init(&l, &o), 0);
	assert_int_equal(loop_run(&l), 0);
	assert_false(loop_is_draining(&l));
	assert_int_equal(loop_fini(&l), 0);
	assert_int_equal(loop_fini(NULL), 0);
}

static void
test_sigpipe_ignored(void **state)
{
	(void)state;
	loop l;
	loop_options o = {0};
	signal(SIGPIPE, SIG_DFL);
	assert_int_equal(loop_init(&l, &o), 0);
	struct sigaction sa;
	sigaction(SIGPIPE, NULL, &sa);
	assert_true(sa.sa_handler == SIG_IGN);
	assert_int_equal(loop_fini(&l), 0);
}

static void
test_leak_reported(void **state)
{
	(void)state;
	loop l;
	struct svc s = {.done_on_drain = true}; /* forgets to close the listener */
	start(&l, &s, 5000);
	raise(SIGTERM);
	assert_int_equal(loop_run(&l), 0);
	/* loop_fini() closes the forgotten handle, so uv_loop_close() still
	 * succeeds, but it reports the leak. */
	assert_int_equal(loop_fini(&l), TRYGG_EBUSY);
	assert_false(uv_is_active((uv_handle_t *)&s.listener));
}

static void
second_sigterm_drain(loop *l, void *arg)
{
	(void)l;
	(void)arg;
	raise(SIGTERM); /* the operator presses Ctrl-C again */
}

static void
test_second_sigterm_exits(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		loop l;
		loop_options o = {.drain_timeout_ms = 5000, .on_drain = second_sigterm_drain};
		if (loop_init(&l, &o) != 0)
			_exit(3);
		uv_timer_t keep;
		uv_timer_init(loop_uv(&l), &keep);
		uv_timer_start(&keep, noop_timer, 1, 1);
		raise(SIGTERM);
		loop_run(&l);
		_exit(2); /* not reached if the second signal exits */
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
}

int
main(void)
{
	log_init("test_loop", LOG_INFO);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sigterm_drains),
	    cmocka_unit_test(test_sigint_drains),
	    cmocka_unit_test(test_drain_done_ends_loop),
	    cmocka_unit_test(test_deadline_ends_stuck_drain),
	    cmocka_unit_test(test_drain_runs_once),
	    cmocka_unit_test(test_sighup_reloads),
	    cmocka_unit_test(test_sighup_without_reload_cb),
	    cmocka_unit_test(test_nothing_to_run),
	    cmocka_unit_test(test_sigpipe_ignored),
	    cmocka_unit_test(test_leak_reported),
	    cmocka_unit_test(test_second_sigterm_exits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
