/*
 * db.h: an asynchronous Postgres client on the libuv loop.
 *
 * One `db` is one libpq connection in non-blocking pipeline mode, watched
 * with uv_poll on PQsocket. Work is submitted as a *batch*: one or more
 * statements sent back to back and closed with one Sync, so a batch is one
 * implicit transaction (all statements commit together or none does) and
 * costs one round trip. Many batches may be in flight at once; their
 * callbacks run in submission order on the loop thread.
 *
 * An error at the implicit commit (a deferred constraint, a serialization
 * failure found at commit) fails the batch like a statement's error, with
 * failed_index set to the number of statements.
 *
 * When the connection drops, every batch in flight or queued fails with
 * TRYGG_EDBCONN (the outcome of a batch that was already sent is unknown:
 * callers that must know re-read state after reconnecting; the reply names
 * the backend that had it, so a caller can make sure that backend is gone
 * first) and the client reconnects on its own with exponential backoff.
 *
 * Bounds: every connection runs with statement_timeout (a statement the
 * server works on too long fails with SQLSTATE 57014), and a batch that
 * gets no answer at all within batch_timeout (the server or the network
 * frozen) resets the connection, failing its batches with TRYGG_EDBCONN.
 * Over TCP the connection also uses keepalives and tcp_user_timeout
 * (unless the conninfo sets them), so a dead peer is noticed while idle. While disconnected,
 * db_submit() fails at once with TRYGG_EDBCONN so callers can answer 503
 * instead of queueing without bound.
 *
 * Host names never block the loop: libpq resolves names with a blocking
 * getaddrinfo, so before each connect attempt every entry of the host
 * list that is a name (the conninfo's `host`, which may be a comma list,
 * else PGHOST as read by db_new; not a socket directory starting with '/'
 * or '@', not an IP literal, not one with its own hostaddr element from
 * the conninfo or PGHOSTADDR) is resolved with uv_getaddrinfo, all in
 * parallel, and libpq gets `host`, `hostaddr` (and, for a port list,
 * `port`) lists of equal length: one element per address (at most 8 per
 * name), an empty hostaddr element for a socket. A name that does not
 * resolve is logged (db_host_unresolved) and left out; if nothing is left
 * the attempt fails and is retried with backoff. target_session_attrs
 * applies to the list as libpq tries it. Lists of mismatched lengths are
 * passed on untouched for libpq to reject. Not covered: a connection that
 * names a pg_service.conf service (service= or PGSERVICE) is left wholly
 * to libpq.
 *
 * Statements are prepared automatically, once per connection, keyed by
 * their SQL text: callers pass the same SQL string and get a prepared
 * statement for free.
 *
 * Threading: every function must be called on the loop thread.
 */
#ifndef TRYGG_DB_H
#define TRYGG_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <uv.h>

#include "util.h"

typedef struct db db;
typedef struct db_batch db_batch;

typedef struct db_options {
	const char *conninfo;          /* libpq connection string or URL */
	const char *search_path;       /* schema(s), set at connect; NULL leaves it */
	const char *name;              /* application_name and log tag */
	unsigned backoff_min_ms;       /* first reconnect delay (default 100) */
	unsigned backoff_max_ms;       /* cap for the doubling delay (default 5000) */
	unsigned max_in_flight;        /* batches queued+sent before EBUSY (default 10000) */
	unsigned statement_timeout_ms; /* server side, per statement; 0: the server's */
	unsigned batch_timeout_ms;     /* client side: no answer this long resets the
	                                  connection (default 30000) */
} db_options;

/* The outcome of one batch, valid only during the callback. */
typedef struct db_reply {
	int err;                  /* 0, TRYGG_EDB, TRYGG_EDBCONN or TRYGG_ECLOSED */
	const char *sqlstate;     /* with TRYGG_EDB: the 5-char SQLSTATE */
	const char *message;      /* with any error: a human-readable reason */
	int failed_index;         /* with TRYGG_EDB: which statement failed; the
	                           * number of statements if the commit failed */
	int nresults;             /* with err == 0: one result per statement */
	PGresult *const *results; /* owned by db; freed after the callback */
	int backend_pid;          /* the server process the batch was sent to (0: none) */
} db_reply;

typedef void (*db_cb)(void *arg, const db_reply *reply);
typedef void (*db_state_cb)(void *arg, bool connected);
typedef void (*db_notify_cb)(void *arg, const char *channel, const char *payload);

/*
 * Creates a client on `loop` and starts connecting at once. The options are
 * copied. Returns 0, or TRYGG_EINVAL for a missing conninfo.
 */
int db_new(uv_loop_t *loop, const db_options *opts, db **out) TRYGG_MUSTCHECK;

/*
 * Stops the client: queued and in-flight batches fail with TRYGG_ECLOSED,
 * the connection is closed, and the memory is freed from the handles' close
 * callbacks, so run the loop afterwards. Accepts NULL.
 */
void db_close(db *d);

/* True while a connection is established and usable. */
bool db_is_connected(const db *d);

/* Called on every connect and disconnect (also the first connect). */
void db_set_state_cb(db *d, db_state_cb cb, void *arg);

/*
 * Subscribes to NOTIFY on `channel`; re-issued after every reconnect. The
 * callback gets each notification (duplicates are folded by Postgres).
 * At most 8 channels per client.
 */
int db_listen(db *d, const char *channel, db_notify_cb cb, void *arg) TRYGG_MUSTCHECK;

/* Removes every db_listen registration with this callback and arg (the
 * server-side LISTEN stays; its notifications are dropped). Accepts NULL. */
void db_unlisten(db *d, db_notify_cb cb, void *arg);

/*
 * The one verdict on a Postgres error: true if the same transaction may
 * well succeed when retried later (classes 08 connection, 40 serialization
 * failure and deadlock, 53 resources, 55 lock not available, 57 canceled or
 * shut down, 58 system error; 25006 read-only after a failover, 25P03,
 * 72000; and no SQLSTATE at all), false if it is about the data or the
 * statement (22 data, 23 constraint, 42 syntax or undefined object, P0
 * raised by a function, and everything else), which no retry will fix.
 */
bool db_error_is_transient(const char *sqlstate);

/* Batches. A batch owns copies of everything added to it. */
db_batch *db_batch_new(void);
void db_batch_free(db_batch *b);
int db_batch_count(const db_batch *b);

/* Adds a statement with text parameters (NULL value = SQL NULL). */
void db_batch_add(db_batch *b, const char *sql, int nparams, const char *const *values);

/*
 * Adds a statement with explicit lengths and formats (1 = binary, e.g.
 * bytea). lengths/formats may be NULL for all-text parameters.
 */
void db_batch_addb(db_batch *b, const char *sql, int nparams, const char *const *values,
    const int *lengths, const int *formats);

/*
 * Asks for the rows of the statement added last in binary format (every
 * column; PQfformat says 1): integers, booleans, UUIDs and timestamps then
 * travel as their raw values, without Postgres's output functions and the
 * reader's parsing, and text-typed columns as their bytes, as in text
 * format. For wide results read row by row (intake's report lists).
 */
void db_batch_binary_results(db_batch *b);

/*
 * Submits a batch. On success the db owns `b` and will call cb exactly once
 * on the loop thread. On error (TRYGG_EDBCONN when disconnected, TRYGG_EBUSY
 * over max_in_flight, TRYGG_ECLOSED after db_close) the caller still owns
 * `b` and cb is never called.
 */
int db_submit(db *d, db_batch *b, db_cb cb, void *arg) TRYGG_MUSTCHECK;

/* Convenience: one statement with text parameters as a batch. */
int db_query(db *d, const char *sql, int nparams, const char *const *values, db_cb cb,
    void *arg) TRYGG_MUSTCHECK;

/* Counters for /metrics. */
typedef struct db_stats {
	uint64_t batches_ok, batches_failed, reconnects;
	uint64_t dns_lookups; /* host names resolved on the loop (one per name
	                         and connect attempt) */
	unsigned in_flight;
} db_stats;
void db_get_stats(const db *d, db_stats *out);

#endif
