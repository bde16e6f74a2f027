/*
 * loop.c: the process loop: uv loop, signal handles and the drain state
 * machine (RUNNING -> DRAINING -> DONE). See loop.h for the behaviour on
 * each signal and why a second SIGTERM calls _exit().
 */
#include "loop.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define DEFAULT_DRAIN_TIMEOUT_MS 10000

static const char *
signame(int signum)
{
	switch (signum) {
	case SIGTERM: return "SIGTERM";
	case SIGINT: return "SIGINT";
	case SIGHUP: return "SIGHUP";
	}
	return "?";
}

static void
on_deadline(uv_timer_t *t)
{
	loop *l = t->data;
	log_warn("drain_deadline", "\"timeout_ms\":%llu",
	    (unsigned long long)l->opt.drain_timeout_ms);
	l->state = LOOP_DONE;
	l->exit_code = 1;
	alarm(5); /* closing after a missed deadline gets 5 s too */
	uv_stop(&l->uv);
}

void
loop_drain(loop *l)
{
	if (l->state != LOOP_RUNNING)
		return;
	l->state = LOOP_DRAINING;
	l->drain_start_ms = uv_now(&l->uv);
	log_info("drain_start", "\"timeout_ms\":%llu", (unsigned long long)l->opt.drain_timeout_ms);
	/* Unreferenced: the deadline alone must not keep a finished loop alive. */
	uv_timer_start(&l->deadline, on_deadline, l->opt.drain_timeout_ms, 0);
	/* And whatever happens after SIGTERM, even a hang outside the loop
	 * (closing a socket, say), the process ends: SIGALRM's default action
	 * 5 s past the deadline. loop_fini() cancels it. */
	alarm((unsigned)(l->opt.drain_timeout_ms / 1000) + 6);
	uv_unref((uv_handle_t *)&l->deadline);
	if (l->opt.on_drain != NULL)
		l->opt.on_drain(l, l->opt.arg);
	else
		loop_drain_done(l);
}

void
loop_drain_done(loop *l)
{
	if (l->state != LOOP_DRAINING)
		return;
	l->state = LOOP_DONE;
	uv_timer_stop(&l->deadline);
	uv_update_time(&l->uv);
	log_info("drain_done", "\"elapsed_ms\":%llu",
	    (unsigned long long)(uv_now(&l->uv) - l->drain_start_ms));
	uv_stop(&l->uv);
}

bool
loop_is_draining(const loop *l)
{
	return l->state != LOOP_RUNNING;
}

/* Handles SIGTERM and SIGINT: the first drains, a second exits at once. */
static void
on_stop_signal(uv_signal_t *h, int signum)
{
	loop *l = h->data;
	if (l->state == LOOP_RUNNING) {
		log_info("signal", "\"signal\":\"%s\"", signame(signum));
		loop_drain(l);
		return;
	}
	log_error("drain_forced", "\"signal\":\"%s\"", signame(signum));
	_exit(1);
}

static void
on_hup(uv_signal_t *h, int signum)
{
	loop *l = h->data;
	if (l->state != LOOP_RUNNING || l->opt.on_reload == NULL) {
		log_info("signal_ignored", "\"signal\":\"%s\"", signame(signum));
		return;
	}
	log_info("signal", "\"signal\":\"%s\"", signame(signum));
	l->opt.on_reload(l, l->opt.arg);
}

int
loop_init(loop *l, const loop_options *o)
{
	memset(l, 0, sizeof(*l));
	l->opt = *o;
	if (l->opt.drain_timeout_ms == 0)
		l->opt.drain_timeout_ms = DEFAULT_DRAIN_TIMEOUT_MS;
	signal(SIGPIPE, SIG_IGN);
	if (uv_loop_init(&l->uv) != 0)
		return TRYGG_EIO;

	struct {
		uv_signal_t *h;
		int signum;
		uv_signal_cb cb;
	} sigs[] = {{&l->sigterm, SIGTERM, on_stop_signal}, {&l->sigint, SIGINT, on_stop_signal},
	    {&l->sighup, SIGHUP, on_hup}};
	uv_timer_init(&l->uv, &l->deadline);
	l->deadline.data = l;
	uv_unref((uv_handle_t *)&l->deadline);
	for (size_t k = 0; k < TRYGG_ARRAY_LEN(sigs); k++) {
		uv_signal_init(&l->uv, sigs[k].h);
		sigs[k].h->data = l;
		int rc = uv_signal_start(sigs[k].h, sigs[k].cb, sigs[k].signum);
		if (rc != 0) {
			log_error("signal_start_failed", "\"signal\":\"%s\",\"error\":\"%s\"",
			    signame(sigs[k].signum), uv_strerror(rc));
			l->inited = true;
			loop_fini(l);
			return TRYGG_EIO;
		}
		uv_unref((uv_handle_t *)sigs[k].h);
	}
	l->state = LOOP_RUNNING;
	l->inited = true;
	return 0;
}

uv_loop_t *
loop_uv(loop *l)
{
	return &l->uv;
}

int
loop_run(loop *l)
{
	uv_run(&l->uv, UV_RUN_DEFAULT);
	/* The service closed everything without calling loop_drain_done(). No
	 * uv_stop() here: a stop flag left set would skip loop_fini()'s run. */
	if (l->state == LOOP_DRAINING) {
		l->state = LOOP_DONE;
		uv_timer_stop(&l->deadline);
		log_info("drain_done", "\"elapsed_ms\":%llu",
		    (unsigned long long)(uv_now(&l->uv) - l->drain_start_ms));
	}
	return l->exit_code;
}

static bool
is_own_handle(const loop *l, const uv_handle_t *h)
{
	return h == (const uv_handle_t *)&l->sigterm || h == (const uv_handle_t *)&l->sigint ||
	    h == (const uv_handle_t *)&l->sighup || h == (const uv_handle_t *)&l->deadline;
}

/* uv_walk callback: closes a handle the service left open and counts it. */
static void
close_leaked(uv_handle_t *h, void *arg)
{
	loop *l = h->loop->data;
	int *leaks = arg;
	if (is_own_handle(l, h) || uv_is_closing(h))
		return;
	log_warn("handle_leak", "\"type\":\"%s\",\"active\":%s,\"after_deadline\":%s",
	    uv_handle_type_name(uv_handle_get_type(h)), uv_is_active(h) ? "true" : "false",
	    l->exit_code != 0 ? "true" : "false");
	(*leaks)++;
	uv_close(h, NULL);
}

int
loop_fini(loop *l)
{
	if (l == NULL || !l->inited)
		return 0;
	int leaks = 0;
	l->uv.data = l;
	uv_walk(&l->uv, close_leaked, &leaks);
	uv_handle_t *own[] = {(uv_handle_t *)&l->sigterm, (uv_handle_t *)&l->sigint,
	    (uv_handle_t *)&l->sighup, (uv_handle_t *)&l->deadline};
	for (size_t k = 0; k < TRYGG_ARRAY_LEN(own); k++)
		if (own[k]->loop == &l->uv && !uv_is_closing(own[k]))
			uv_close(own[k], NULL);
	/* Runs the close callbacks, ours and the service's. The NOWAIT pass
	 * clears a stop flag left by a loop_drain_done() outside loop_run(). */
	uv_run(&l->uv, UV_RUN_NOWAIT);
	uv_run(&l->uv, UV_RUN_DEFAULT);
	int rc = uv_loop_close(&l->uv);
	if (rc != 0)
		log_error("loop_close_failed", "\"error\":\"%s\"", uv_strerror(rc));
	l->inited = false;
	alarm(0); /* everything closed: cancel on_deadline()'s safety net */
	return leaks == 0 && rc == 0 ? 0 : TRYGG_EBUSY;
}
