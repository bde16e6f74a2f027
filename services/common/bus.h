/*
 * bus.h: nng sockets driven from the libuv loop.
 *
 * nng completes its asynchronous I/O (nng_aio) on its own threads. Each
 * bus_sock turns those completions into work on the loop thread: the aio
 * callback only appends to a mutex-guarded queue and calls uv_async_send;
 * the loop drains the whole queue (wakeups coalesce) and calls the user's
 * callback there. So every callback below runs on the loop thread and no
 * nng call on the loop thread ever blocks.
 *
 * Every socket sets NNG_OPT_RECVMAXSZ: a larger message is dropped by nng
 * before it reaches us. nng does that by closing the connection, so the
 * subscriber redials (50 ms to 1 s backoff) and loses what was published
 * meanwhile; sequence numbers and replay cover that like any other loss.
 *
 * Memory: a sub socket queues at most recv_buf received messages for the
 * loop; when the loop falls that far behind, receiving pauses until it
 * drains and nng drops the oldest messages instead.
 *
 * Ownership: callbacks that receive an nng_msg own it and must free it (or
 * hand it on). bus_send/bus_reply take ownership of msg on success only.
 */
#ifndef TRYGG_BUS_H
#define TRYGG_BUS_H

#include <nng/nng.h>
#include <stdbool.h>
#include <uv.h>

#include "util.h"

typedef struct bus_sock bus_sock;

typedef struct bus_options {
	size_t recv_max; /* NNG_OPT_RECVMAXSZ; 0 means 1 MiB */
	int send_buf;    /* NNG_OPT_SENDBUF in messages; 0 means 1024 */
	int recv_buf;    /* NNG_OPT_RECVBUF in messages; 0 means 1024 */
} bus_options;

/* Delivered on the loop thread: a message for sub and rep sockets. */
typedef void (*bus_msg_cb)(void *arg, nng_msg *msg);
/* The reply to bus_request, or err (TRYGG_ETIMEDOUT, TRYGG_EBUS, TRYGG_ECLOSED)
 * with msg NULL. */
typedef void (*bus_reply_cb)(void *arg, int err, nng_msg *msg);

/* pub0, listening on `url` (tcp://host:port, ipc:///path). */
int bus_pub_open(uv_loop_t *loop, const char *url, const bus_options *o,
    bus_sock **out) TRYGG_MUSTCHECK;

/*
 * sub0, dialing `url` (non-blocking dial: it keeps retrying in the
 * background until the publisher is there), subscribed to everything.
 * `cb` gets each message. `url` may be a comma-separated list (one URL per
 * replica of the publisher): each is dialled on this one socket, so the
 * messages of all of them arrive here. TRYGG_EINVAL for an empty list.
 */
int bus_sub_open(uv_loop_t *loop, const char *url, const bus_options *o, bus_msg_cb cb, void *arg,
    bus_sock **out) TRYGG_MUSTCHECK;

/*
 * rep0 listening on `url`. `cb` gets each request; the service must answer
 * it with bus_reply() (possibly later, after a database query). One request
 * is handled at a time: the next is received after the reply was sent.
 */
int bus_rep_open(uv_loop_t *loop, const char *url, const bus_options *o, bus_msg_cb cb, void *arg,
    bus_sock **out) TRYGG_MUSTCHECK;

/* req0 dialing `url` (non-blocking dial); a comma-separated list dials
 * each URL on this socket and nng sends each request to one connected
 * peer. */
int bus_req_open(uv_loop_t *loop, const char *url, const bus_options *o,
    bus_sock **out) TRYGG_MUSTCHECK;

/* Publishes msg on a pub socket. Never blocks; a slow subscriber loses it
 * (that is what replay is for). */
int bus_send(bus_sock *s, nng_msg *msg) TRYGG_MUSTCHECK;

/* Answers the current request on a rep socket. TRYGG_EINVAL if no request
 * is waiting for an answer (each gets exactly one). A reply that cannot be
 * delivered (the requester went away) is dropped and logged. */
int bus_reply(bus_sock *s, nng_msg *msg) TRYGG_MUSTCHECK;

/*
 * Sends a request on a req socket and calls cb with the reply or an error
 * after timeout_ms (which must be > 0; it covers waiting for a connected
 * server too). One request at a time: TRYGG_EBUSY if one is pending. cb may
 * start the next request.
 */
int bus_request(bus_sock *s, nng_msg *msg, unsigned timeout_ms, bus_reply_cb cb,
    void *arg) TRYGG_MUSTCHECK;

/* True if a request is outstanding on this req socket. */
bool bus_request_pending(const bus_sock *s);

/*
 * Closes the socket: stops its aios (nng_aio_stop) so no callback runs
 * afterwards, closes the nng socket, and frees the memory from the
 * uv_async close callback. A pending bus_request's cb is not called.
 * Accepts NULL.
 */
void bus_close(bus_sock *s);

/* Counters for /metrics: messages sent (pub sends, rep replies, req
 * requests), received, and sends that failed. Accepts NULL (all zero). */
typedef struct bus_stats {
	uint64_t sent, received, send_failed;
} bus_stats;
void bus_get_stats(const bus_sock *s, bus_stats *out);

#endif
