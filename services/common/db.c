/*
 * db.c: the asynchronous Postgres client (see db.h for the contract).
 *
 * One libpq connection per `db`, non-blocking and in pipeline mode, watched
 * with a uv_poll handle on PQsocket. A batch goes out as its statements
 * (PQsendQueryPrepared) followed by one PQpipelineSync, so it is one implicit
 * transaction and one round trip. Batches are sent the moment they are
 * submitted and wait in one FIFO queue; the results that come back are
 * matched to the head of that queue, step by step:
 *
 *   [Prepare_0] Exec_0 [Prepare_1] Exec_1 ... PIPELINE_SYNC
 *
 * Each Prepare/Exec step yields one PGresult and then a NULL from
 * PQgetResult; the Sync yields PGRES_PIPELINE_SYNC with no NULL after it.
 * A batch's callback runs only once its Sync has arrived: an error seen
 * before a Sync may be the server dying, and the connection-loss path then
 * reports TRYGG_EDBCONN instead.
 *
 * Auto-prepare: a per-connection hash keyed by SQL text maps each statement
 * to a server-side name "s<N>". The first batch that uses a text pipelines
 * a PQsendPrepare just before the Exec. Until that prepare is confirmed,
 * other batches send the same text unnamed (PQsendQueryParams), so a
 * prepare that gets aborted (an earlier statement of its batch failed)
 * never breaks a batch it does not belong to. Named statements survive a
 * rolled-back transaction, but not a reconnect, so the hash is emptied on
 * every disconnect.
 *
 * Deadline: `progress_ns` is when the head of the queue last saw progress
 * (became the head, or a result arrived); the deadline timer resets the
 * connection once it is batch_timeout old with batches outstanding, since
 * a frozen server or network would otherwise hold them forever.
 *
 * States: CONNECTING (PQconnectPoll driven by the poll handle, bounded by a
 * timer) -> SETUP (pipeline entered; LISTENs re-issued as an internal batch)
 * -> READY (db_submit accepted; state callback told `true`). Any failure
 * goes to WAITING (timer with exponential backoff and jitter) -> CONNECTING.
 *
 * Handles: the timer lives inside `struct db`; poll handles are heap
 * objects, one per socket, freed in their own close callback, so a new
 * socket never has to wait for the old handle to finish closing. `struct
 * db` itself is freed in whichever close callback runs last after
 * db_close(). User callbacks may call db_submit() and db_close(); after
 * each callback the code checks `closing` before touching the connection.
 */
#include "db.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define DB_MAX_LISTEN 8
#define DB_CONNECT_TIMEOUT_MS 10000
#define DB_DEFAULT_BACKOFF_MIN 100
#define DB_DEFAULT_BACKOFF_MAX 5000
#define DB_DEFAULT_MAX_IN_FLIGHT 10000
#define DB_DEFAULT_BATCH_TIMEOUT 30000
#define DB_CHANNEL_MAX 63   /* NAMEDATALEN - 1: longer names are truncated */
#define DB_MAX_PARAMS 65535 /* the protocol's limit; libpq refuses more */

enum db_state {
	ST_WAITING,    /* no connection; the timer will start one */
	ST_CONNECTING, /* PQconnectPoll in progress */
	ST_SETUP,      /* connected; internal LISTEN batch in flight */
	ST_READY,      /* connected and announced */
};

/* One statement of a batch, with its own copies of SQL and parameters. */
struct stmt {
	char *sql;
	int nparams;
	char **values;
	int *lengths;      /* NULL when all parameters are text */
	int *formats;      /* NULL when all parameters are text */
	int result_format; /* 0 text, 1 binary (db_batch_binary_results) */
};

/* Where the reader stands inside the batch at the head of the queue. */
enum step_phase { PH_PREPARE, PH_EXEC };

struct db_batch {
	struct stmt *stmts;
	int n, cap;

	/* Filled by db_submit. */
	db_cb cb;
	void *arg;
	db_batch *next;
	bool internal;      /* a LISTEN batch of ours: no user callback */
	bool setup;         /* the LISTEN batch that ends ST_SETUP */
	unsigned *prep_id;  /* per statement: id of the prepare sent, or 0 */
	PGresult **results; /* per statement, when it succeeded */

	/* Reader position. */
	int pos;
	enum step_phase phase;
	bool got; /* current step has produced its PGresult */

	/* First error of the batch. */
	char *sqlstate;
	char *message;
	int failed_index;
};

/* A prepared-statement entry, keyed by SQL text. */
struct pstmt {
	char *sql;
	unsigned id;        /* server-side name is "s<id>" */
	bool ready;         /* prepare confirmed */
	uint64_t batch_seq; /* the batch that sent the prepare */
	struct pstmt *next;
};

/*
 * One entry of the host list libpq would try, in order: a host name to
 * resolve on the loop before each attempt (addr NULL), or an entry that
 * needs no lookup (a socket directory, an IP literal, or one with its own
 * hostaddr element).
 */
struct host_ent {
	db *d;
	char *host;     /* the host element */
	char *addr;     /* the hostaddr element ("" for none); NULL: resolve host */
	char *port;     /* the port element, with db->host_ports */
	char *resolved; /* this attempt's addresses, comma-separated; NULL: none */
	bool pending;
	uv_getaddrinfo_t gai;
};

struct listen {
	char *channel;
	db_notify_cb cb;
	void *arg;
};

struct db {
	uv_loop_t *loop;
	char *conninfo;
	char *name;
	char *options; /* libpq "options" value carrying search_path, or NULL */
	unsigned backoff_min, backoff_max, max_in_flight;
	unsigned batch_timeout;
	bool keepalives; /* add TCP keepalive settings to the connection */
	int backend_pid; /* of the current (or last) connection */
	uv_timer_t deadline;
	uint64_t progress_ns;

	enum db_state state;
	bool closing;
	bool lost_pending; /* a send failed; the timer will run conn_lost */
	bool ever_connected;
	PGconn *conn;

	uv_timer_t timer;
	uv_poll_t *poll; /* NULL when no socket is watched */
	int poll_fd;
	int poll_events;
	unsigned nhandles;      /* open handles and pending DNS requests; free at 0 */
	struct host_ent *hosts; /* the effective host list, when it has a name */
	int nhosts, npending;   /* entries; lookups still running */
	bool host_ports;        /* one port per host entry */
	char *host_arg, *hostaddr_arg, *port_arg; /* what libpq gets, per attempt */
	char dns_error[300];                      /* the last lookup failure */

	unsigned backoff;
	uint32_t rng;

	db_batch *head, *tail; /* sent batches, oldest first */
	uint64_t batch_seq;

	struct pstmt **ptab;
	size_t ptab_size, ptab_count;
	unsigned next_stmt_id;

	struct listen listens[DB_MAX_LISTEN];
	int nlisten;

	db_state_cb state_cb;
	void *state_arg;
	db_stats stats;
};

static void start_connect(db *d);
static void conn_lost(db *d, const char *why);
static void on_poll(uv_poll_t *h, int status, int events);
static void on_timer(uv_timer_t *t);

/* ---------------------------------------------------------------------- */
/* Batches                                                                */

db_batch *
db_batch_new(void)
{
	db_batch *b = xcalloc(1, sizeof(*b));
	b->failed_index = -1;
	return b;
}

/* Frees a batch with everything it owns, including any results. */
void
db_batch_free(db_batch *b)
{
	if (b == NULL)
		return;
	for (int i = 0; i < b->n; i++) {
		struct stmt *s = &b->stmts[i];
		for (int j = 0; j < s->nparams; j++)
			free(s->values[j]);
		free(s->values);
		free(s->lengths);
		free(s->formats);
		free(s->sql);
		if (b->results != NULL)
			PQclear(b->results[i]);
	}
	free(b->stmts);
	free(b->results);
	free(b->prep_id);
	free(b->sqlstate);
	free(b->message);
	free(b);
}

int
db_batch_count(const db_batch *b)
{
	return b ? b->n : 0;
}

/*
 * Appends a statement, copying the SQL and every parameter. A binary
 * parameter (formats[i] == 1) is copied by its length; a text one up to its
 * NUL. With lengths/formats NULL all parameters are text.
 */
void
db_batch_addb(db_batch *b, const char *sql, int nparams, const char *const *values,
    const int *lengths, const int *formats)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 4;
		b->stmts = xrealloc(b->stmts, (size_t)b->cap * sizeof(*b->stmts));
	}
	struct stmt *s = &b->stmts[b->n++];
	memset(s, 0, sizeof(*s));
	s->sql = xstrdup(sql);
	if (nparams <= 0)
		return;
	s->nparams = nparams;
	s->values = xcalloc((size_t)nparams, sizeof(char *));
	bool binary = false;
	for (int i = 0; i < nparams; i++)
		if (formats != NULL && formats[i] == 1)
			binary = true;
	if (binary) {
		s->lengths = xcalloc((size_t)nparams, sizeof(int));
		s->formats = xcalloc((size_t)nparams, sizeof(int));
	}
	for (int i = 0; i < nparams; i++) {
		const char *v = values ? values[i] : NULL;
		if (v == NULL)
			continue; /* SQL NULL */
		if (binary && formats[i] == 1) {
			int len = lengths && lengths[i] > 0 ? lengths[i] : 0;
			s->values[i] = xmalloc((size_t)len);
			memcpy(s->values[i], v, (size_t)len);
			s->lengths[i] = len;
			s->formats[i] = 1;
		} else {
			s->values[i] = xstrdup(v);
		}
	}
}

void
db_batch_add(db_batch *b, const char *sql, int nparams, const char *const *values)
{
	db_batch_addb(b, sql, nparams, values, NULL, NULL);
}

void
db_batch_binary_results(db_batch *b)
{
	if (b->n > 0)
		b->stmts[b->n - 1].result_format = 1;
}

/* Records the first error of a batch; later ones are consequences. */
static void
batch_set_error(db_batch *b, int index, const char *sqlstate, const char *message)
{
	if (b->message != NULL)
		return;
	b->failed_index = index;
	b->sqlstate = xstrdup(sqlstate ? sqlstate : "XX000");
	b->message = xstrdup(message && *message ? message : "unknown error");
}

/* ---------------------------------------------------------------------- */
/* Prepared-statement table                                               */

static size_t
hash_str(const char *s)
{
	size_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static struct pstmt *
ptab_find(db *d, const char *sql)
{
	if (d->ptab_size == 0)
		return NULL;
	for (struct pstmt *p = d->ptab[hash_str(sql) & (d->ptab_size - 1)]; p; p = p->next)
		if (strcmp(p->sql, sql) == 0)
			return p;
	return NULL;
}

/* Adds an entry for sql (which must not be present) with a fresh id. */
static struct pstmt *
ptab_add(db *d, const char *sql)
{
	if (d->ptab_count + 1 > d->ptab_size) {
		size_t nsize = d->ptab_size ? d->ptab_size * 2 : 64;
		struct pstmt **nt = xcalloc(nsize, sizeof(*nt));
		for (size_t i = 0; i < d->ptab_size; i++) {
			struct pstmt *p = d->ptab[i], *next;
			for (; p; p = next) {
				next = p->next;
				size_t k = hash_str(p->sql) & (nsize - 1);
				p->next = nt[k];
				nt[k] = p;
			}
		}
		free(d->ptab);
		d->ptab = nt;
		d->ptab_size = nsize;
	}
	struct pstmt *p = xcalloc(1, sizeof(*p));
	p->sql = xstrdup(sql);
	p->id = ++d->next_stmt_id;
	size_t k = hash_str(sql) & (d->ptab_size - 1);
	p->next = d->ptab[k];
	d->ptab[k] = p;
	d->ptab_count++;
	return p;
}

/* Drops the entry for sql if it still has the given id (0: any id). */
static void
ptab_remove(db *d, const char *sql, unsigned id)
{
	if (d->ptab_size == 0)
		return;
	struct pstmt **pp = &d->ptab[hash_str(sql) & (d->ptab_size - 1)];
	for (; *pp; pp = &(*pp)->next) {
		struct pstmt *p = *pp;
		if (strcmp(p->sql, sql) == 0) {
			if (id != 0 && p->id != id)
				return;
			*pp = p->next;
			free(p->sql);
			free(p);
			d->ptab_count--;
			return;
		}
	}
}

/* Forgets every prepared statement: the server session that held them is gone. */
static void
ptab_clear(db *d)
{
	for (size_t i = 0; i < d->ptab_size; i++) {
		struct pstmt *p = d->ptab[i], *next;
		for (; p; p = next) {
			next = p->next;
			free(p->sql);
			free(p);
		}
	}
	free(d->ptab);
	d->ptab = NULL;
	d->ptab_size = d->ptab_count = 0;
}

/* ---------------------------------------------------------------------- */
/* Handles                                                                */

/* Frees the db once no handle is left open; only after db_close(). */
static void
maybe_free(db *d)
{
	if (!d->closing || d->nhandles > 0)
		return;
	for (int i = 0; i < d->nlisten; i++)
		free(d->listens[i].channel);
	ptab_clear(d);
	free(d->conninfo);
	free(d->name);
	free(d->options);
	for (int i = 0; i < d->nhosts; i++) {
		free(d->hosts[i].host);
		free(d->hosts[i].addr);
		free(d->hosts[i].port);
		free(d->hosts[i].resolved);
	}
	free(d->hosts);
	free(d->host_arg);
	free(d->hostaddr_arg);
	free(d->port_arg);
	free(d);
}

static void
on_poll_closed(uv_handle_t *h)
{
	db *d = h->data;
	free(h);
	d->nhandles--;
	maybe_free(d);
}

static void
on_timer_closed(uv_handle_t *h)
{
	db *d = h->data;
	d->nhandles--;
	maybe_free(d);
}

/* Stops watching the socket; the handle frees itself when closed. */
static void
poll_close(db *d)
{
	if (d->poll == NULL)
		return;
	/* uv_close stops the watcher (and drops the fd from epoll) right away,
	 * before libpq closes the socket. */
	uv_close((uv_handle_t *)d->poll, on_poll_closed);
	d->poll = NULL;
	d->poll_fd = -1;
	d->poll_events = 0;
}

/*
 * Watches PQsocket for `events`. A new socket gets a new handle. With
 * `rearm`, the watcher is also stopped and started on the same fd: during
 * connect libpq may close a socket and open the next one under the same fd
 * number, which epoll has silently forgotten, so only a fresh registration
 * is safe. Returns 0 or TRYGG_EIO.
 */
static int
poll_watch(db *d, int events, bool rearm)
{
	int fd = PQsocket(d->conn);
	if (fd < 0)
		return TRYGG_EIO;
	if (d->poll != NULL && d->poll_fd != fd)
		poll_close(d);
	if (d->poll == NULL) {
		uv_poll_t *h = xmalloc(sizeof(*h));
		int rc = uv_poll_init(d->loop, h, fd);
		if (rc != 0) {
			free(h);
			log_error("db_poll_failed", "\"db\":\"%s\",\"error\":\"%s\"", d->name,
			    uv_strerror(rc));
			return TRYGG_EIO;
		}
		h->data = d;
		d->poll = h;
		d->poll_fd = fd;
		d->poll_events = 0;
		d->nhandles++;
	} else if (rearm) {
		uv_poll_stop(d->poll);
		d->poll_events = 0;
	}
	if (events == d->poll_events)
		return 0;
	int rc = uv_poll_start(d->poll, events, on_poll);
	if (rc != 0) {
		log_error("db_poll_failed", "\"db\":\"%s\",\"error\":\"%s\"", d->name,
		    uv_strerror(rc));
		return TRYGG_EIO;
	}
	d->poll_events = events;
	return 0;
}

/* Drops the connection and its socket watcher; forgets prepared statements. */
static void
conn_teardown(db *d)
{
	poll_close(d);
	if (d->conn != NULL) {
		PQfinish(d->conn);
		d->conn = NULL;
	}
	ptab_clear(d);
	d->lost_pending = false;
	uv_timer_stop(&d->deadline);
}

/* The first line of libpq's error message (the rest is a generic hint). */
static const char *
conn_error(db *d, char *buf, size_t len)
{
	const char *m = d->conn ? PQerrorMessage(d->conn) : "";
	snprintf(buf, len, "%s", m && *m ? m : "connection lost");
	buf[strcspn(buf, "\n")] = '\0';
	return buf;
}

/* ---------------------------------------------------------------------- */
/* Completing batches                                                     */

/* Unlinks the head of the queue. */
static db_batch *
queue_pop(db *d)
{
	db_batch *b = d->head;
	if (b != NULL) {
		d->head = b->next;
		if (d->head == NULL)
			d->tail = NULL;
		b->next = NULL;
		if (!b->internal)
			d->stats.in_flight--;
	}
	return b;
}

static void go_ready(db *d);

/*
 * Runs a finished batch's callback and frees it. `err` overrides the
 * batch's own outcome (TRYGG_EDBCONN, TRYGG_ECLOSED); 0 means "as the
 * server said". The batch must already be off the queue.
 */
static void
batch_complete(db *d, db_batch *b, int err, const char *why)
{
	db_reply r = {.err = err, .failed_index = -1, .backend_pid = d->backend_pid};
	if (err != 0) {
		r.message = why;
	} else if (b->message != NULL) {
		r.err = TRYGG_EDB;
		r.sqlstate = b->sqlstate;
		r.message = b->message;
		r.failed_index = b->failed_index;
	} else {
		r.nresults = b->n;
		r.results = b->results;
	}
	if (b->internal) {
		if (r.err == TRYGG_EDB) {
			char m[512];
			log_error("db_listen_failed",
			    "\"db\":\"%s\",\"sqlstate\":\"%s\",\"error\":%s", d->name, r.sqlstate,
			    log_json_str(r.message, m, sizeof(m)));
		}
		bool setup = b->setup;
		db_batch_free(b);
		if (setup && err == 0 && d->state == ST_SETUP)
			go_ready(d);
		return;
	}
	if (r.err == 0)
		d->stats.batches_ok++;
	else
		d->stats.batches_failed++;
	b->cb(b->arg, &r);
	db_batch_free(b);
}

/* Fails every batch in the queue with err; stops early if a callback closed us. */
static void
fail_all(db *d, int err, const char *why)
{
	bool was_closing = d->closing;
	db_batch *b;
	while ((b = queue_pop(d)) != NULL) {
		batch_complete(d, b, err, why);
		if (d->closing && !was_closing)
			return; /* db_close() failed the rest with ECLOSED */
	}
}

/* ---------------------------------------------------------------------- */
/* Sending                                                                */

static void on_deadline(uv_timer_t *t);

/* Arms the deadline timer for the head batch, if it is not running. */
static void
deadline_arm(db *d)
{
	if (d->head == NULL || d->closing || uv_is_active((uv_handle_t *)&d->deadline))
		return;
	uint64_t due = d->progress_ns + (uint64_t)d->batch_timeout * 1000000u;
	uint64_t now = trygg_now_ns();
	uv_timer_start(&d->deadline, on_deadline, due > now ? (due - now) / 1000000 + 1 : 0, 0);
}

/* No answer within batch_timeout: the connection is treated as lost. */
static void
on_deadline(uv_timer_t *t)
{
	db *d = t->data;
	if (d->head == NULL || d->closing || d->conn == NULL)
		return;
	uint64_t limit = (uint64_t)d->batch_timeout * 1000000u;
	if (trygg_now_ns() - d->progress_ns < limit) {
		deadline_arm(d);
		return;
	}
	char why[96];
	snprintf(why, sizeof(why), "no answer from the database within %u ms", d->batch_timeout);
	conn_lost(d, why);
}

/* Flushes libpq's output buffer; watches writability while data remains. */
static int
flush_out(db *d)
{
	int rc = PQflush(d->conn);
	if (rc < 0)
		return TRYGG_EDBCONN;
	return poll_watch(d, UV_READABLE | (rc == 1 ? UV_WRITABLE : 0), false);
}

/*
 * Puts one batch on the wire: per statement an optional Prepare and an
 * Exec, then a Sync. Internal batches are never prepared. Returns 0 or
 * TRYGG_EDBCONN when libpq refused (the connection is then broken).
 */
static int
batch_send(db *d, db_batch *b)
{
	uint64_t seq = ++d->batch_seq;
	if (b->n > 0) {
		b->prep_id = xcalloc((size_t)b->n, sizeof(unsigned));
		b->results = xcalloc((size_t)b->n, sizeof(PGresult *));
	}
	for (int i = 0; i < b->n; i++) {
		struct stmt *s = &b->stmts[i];
		const char *const *vals = (const char *const *)s->values;
		int ok;
		struct pstmt *p = b->internal ? NULL : ptab_find(d, s->sql);
		if (!b->internal && p == NULL) {
			p = ptab_add(d, s->sql);
			p->batch_seq = seq;
			char name[16];
			snprintf(name, sizeof(name), "s%u", p->id);
			if (!PQsendPrepare(d->conn, name, s->sql, 0, NULL))
				return TRYGG_EDBCONN;
			b->prep_id[i] = p->id;
		}
		if (p != NULL && (p->ready || p->batch_seq == seq)) {
			char name[16];
			snprintf(name, sizeof(name), "s%u", p->id);
			ok = PQsendQueryPrepared(d->conn, name, s->nparams, vals, s->lengths,
			    s->formats, s->result_format);
		} else {
			/* Internal, or its prepare is still in flight in another
			 * batch that might yet abort it: go unnamed. */
			ok = PQsendQueryParams(d->conn, s->sql, s->nparams, NULL, vals, s->lengths,
			    s->formats, s->result_format);
		}
		if (!ok)
			return TRYGG_EDBCONN;
	}
	if (!PQpipelineSync(d->conn))
		return TRYGG_EDBCONN;
	b->phase = (b->n > 0 && b->prep_id[0]) ? PH_PREPARE : PH_EXEC;
	return flush_out(d);
}

/*
 * Appends b to the queue and sends it. A libpq failure does not fail the
 * call: the batch stays queued and the connection-loss path, deferred to
 * the timer so no callback runs inside db_submit(), fails it with
 * TRYGG_EDBCONN.
 */
static void
enqueue_and_send(db *d, db_batch *b)
{
	if (d->tail) {
		d->tail->next = b;
	} else {
		d->head = b;
		d->progress_ns = trygg_now_ns();
	}
	d->tail = b;
	if (!b->internal)
		d->stats.in_flight++;
	deadline_arm(d);
	if (batch_send(d, b) != 0 && !d->lost_pending) {
		d->lost_pending = true;
		uv_timer_start(&d->timer, on_timer, 0, 0);
	}
}

/* Builds the quoted identifier for a channel name: "a""b". */
static char *
quote_ident(const char *s)
{
	size_t n = strlen(s);
	char *q = xmalloc(2 * n + 3), *o = q;
	*o++ = '"';
	for (; *s; s++) {
		if (*s == '"')
			*o++ = '"';
		*o++ = *s;
	}
	*o++ = '"';
	*o = '\0';
	return q;
}

/* Sends LISTEN for listens[from..to) as one internal batch. */
static void
send_listens(db *d, int from, int to, bool setup)
{
	db_batch *b = db_batch_new();
	for (int i = from; i < to; i++) {
		char *q = quote_ident(d->listens[i].channel);
		char *sql = xasprintf("LISTEN %s", q);
		db_batch_add(b, sql, 0, NULL);
		free(sql);
		free(q);
	}
	b->internal = true;
	b->setup = setup;
	enqueue_and_send(d, b);
}

/* ---------------------------------------------------------------------- */
/* Receiving                                                              */

/* The prepare for b's current statement came back as r. */
static void
on_prepare_result(db *d, db_batch *b, PGresult *r)
{
	const char *sql = b->stmts[b->pos].sql;
	unsigned id = b->prep_id[b->pos];
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK) {
		struct pstmt *p = ptab_find(d, sql);
		if (p != NULL && p->id == id)
			p->ready = true;
		return;
	}
	/* Failed or aborted: the name does not exist on the server. */
	ptab_remove(d, sql, id);
	if (st != PGRES_PIPELINE_ABORTED)
		batch_set_error(b, b->pos, PQresultErrorField(r, PG_DIAG_SQLSTATE),
		    PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
}

/* The Exec for b's current statement came back as r; keeps r on success. */
static bool
on_exec_result(db *d, db_batch *b, PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	switch (st) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_EMPTY_QUERY:
		if (b->results[b->pos] == NULL) {
			b->results[b->pos] = r;
			return true;
		}
		return false;
	case PGRES_PIPELINE_ABORTED: return false;
	default: {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		if (msg == NULL)
			msg = PQresultErrorMessage(r);
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
			msg = "COPY is not supported in a batch";
		/* 26000: our prepared statement is gone (DISCARD, DEALLOCATE):
		 * re-prepare next time. */
		if (state != NULL && strcmp(state, "26000") == 0)
			ptab_remove(d, b->stmts[b->pos].sql, 0);
		batch_set_error(b, b->pos, state, msg);
		return false;
	}
	}
}

/*
 * A result after the batch's last statement: the implicit commit at the
 * Sync failed (a deferred constraint or constraint trigger, a serialization
 * failure detected at commit), and the whole transaction rolled back. The
 * batch fails with that SQLSTATE and failed_index == n (past the last
 * statement). Anything else there is unexpected and only logged.
 */
static void
on_commit_result(db *d, db_batch *b, PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_FATAL_ERROR) {
		log_warn("db_extra_result", "\"db\":\"%s\",\"status\":\"%s\"", d->name,
		    PQresStatus(st));
		return;
	}
	const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	batch_set_error(b, b->n, PQresultErrorField(r, PG_DIAG_SQLSTATE),
	    msg != NULL ? msg : PQresultErrorMessage(r));
}

/* Moves b's reader past the step that just ended (its NULL arrived). */
static void
step_advance(db_batch *b)
{
	b->got = false;
	if (b->phase == PH_PREPARE) {
		b->phase = PH_EXEC;
		return;
	}
	b->pos++;
	b->phase = (b->pos < b->n && b->prep_id[b->pos]) ? PH_PREPARE : PH_EXEC;
}

/*
 * Reads every complete result libpq has buffered and feeds it to the batch
 * at the head of the queue, completing batches as their Syncs arrive. Never
 * blocks: PQgetResult is only called when PQisBusy says it will not wait.
 * Returns early if a callback closed the db.
 */
static void
read_results(db *d)
{
	while (d->conn != NULL && PQstatus(d->conn) == CONNECTION_OK && !PQisBusy(d->conn)) {
		PGresult *r = PQgetResult(d->conn);
		db_batch *b = d->head;
		if (r != NULL)
			d->progress_ns = trygg_now_ns();
		if (r == NULL) {
			if (b == NULL || !b->got)
				return; /* nothing more buffered */
			step_advance(b);
			continue;
		}
		if (b == NULL) {
			/* Results nobody asked for: should not happen. */
			log_warn("db_unexpected_result", "\"db\":\"%s\",\"status\":\"%s\"", d->name,
			    PQresStatus(PQresultStatus(r)));
			PQclear(r);
			continue;
		}
		if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			if (b->pos < b->n)
				log_warn("db_short_batch", "\"db\":\"%s\",\"pos\":%d,\"n\":%d",
				    d->name, b->pos, b->n);
			batch_complete(d, queue_pop(d), 0, NULL);
			if (d->closing)
				return;
			continue;
		}
		b->got = true;
		bool kept = false;
		if (b->pos >= b->n)
			on_commit_result(d, b, r);
		else if (b->phase == PH_PREPARE)
			on_prepare_result(d, b, r);
		else
			kept = on_exec_result(d, b, r);
		if (!kept)
			PQclear(r);
	}
}

/* Hands every pending notification to the matching db_listen callbacks. */
static void
read_notifies(db *d)
{
	PGnotify *n;
	while (d->conn != NULL && (n = PQnotifies(d->conn)) != NULL) {
		for (int i = 0; i < d->nlisten && !d->closing; i++)
			if (strcmp(d->listens[i].channel, n->relname) == 0)
				d->listens[i].cb(d->listens[i].arg, n->relname,
				    n->extra ? n->extra : "");
		PQfreemem(n);
		if (d->closing)
			return;
	}
}

/* ---------------------------------------------------------------------- */
/* Connection lifecycle                                                   */

/* Next reconnect delay: the current backoff with "equal jitter", then doubled. */
static unsigned
next_backoff(db *d)
{
	unsigned b = d->backoff;
	d->rng ^= d->rng << 13;
	d->rng ^= d->rng >> 17;
	d->rng ^= d->rng << 5;
	unsigned delay = b / 2 + (unsigned)(d->rng % (b / 2 + 1));
	d->backoff = b >= d->backoff_max / 2 ? d->backoff_max : b * 2;
	return delay;
}

/* Schedules the next connection attempt; returns its delay for the log. */
static unsigned
schedule_reconnect(db *d)
{
	unsigned delay = next_backoff(d);
	d->state = ST_WAITING;
	uv_timer_start(&d->timer, on_timer, delay, 0);
	return delay;
}

/* A connection attempt failed (or timed out); try again later. */
static void
connect_failed(db *d, const char *why)
{
	char buf[512], m[600];
	if (why == NULL)
		why = conn_error(d, buf, sizeof(buf));
	conn_teardown(d);
	unsigned delay = schedule_reconnect(d);
	log_warn("db_connect_failed", "\"db\":\"%s\",\"error\":%s,\"retry_ms\":%u", d->name,
	    log_json_str(why, m, sizeof(m)), delay);
}

/* Announces the connection: counted, logged by caller, state callback. */
static void
go_ready(db *d)
{
	d->state = ST_READY;
	if (d->ever_connected)
		d->stats.reconnects++;
	d->ever_connected = true;
	if (d->state_cb != NULL)
		d->state_cb(d->state_arg, true);
}

/* Routes server notices (WARNING, NOTICE) into our log instead of stderr. */
static void
on_notice(void *arg, const char *message)
{
	db *d = arg;
	char m[1024];
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s", message);
	size_t n = strlen(buf);
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	log_info("db_notice", "\"db\":\"%s\",\"notice\":%s", d->name,
	    log_json_str(buf, m, sizeof(m)));
}

/* PQconnectPoll reported CONNECTION_OK: switch to pipeline mode and set up. */
static void
on_connected(db *d)
{
	uv_timer_stop(&d->timer);
	if (PQsetnonblocking(d->conn, 1) != 0 || PQenterPipelineMode(d->conn) != 1 ||
	    poll_watch(d, UV_READABLE, true) != 0) {
		connect_failed(d, NULL);
		return;
	}
	d->backoff = d->backoff_min;
	d->backend_pid = PQbackendPID(d->conn);
	log_info("db_connected", "\"db\":\"%s\",\"server_version\":%d,\"pid\":%d", d->name,
	    PQserverVersion(d->conn), PQbackendPID(d->conn));
	d->state = ST_SETUP;
	if (d->nlisten > 0)
		send_listens(d, 0, d->nlisten, true);
	else
		go_ready(d);
}

/* Advances the libpq connect state machine one step. */
static void
connect_step(db *d)
{
	switch (PQconnectPoll(d->conn)) {
	case PGRES_POLLING_READING:
		if (poll_watch(d, UV_READABLE, true) != 0)
			connect_failed(d, NULL);
		break;
	case PGRES_POLLING_WRITING:
		if (poll_watch(d, UV_WRITABLE, true) != 0)
			connect_failed(d, NULL);
		break;
	case PGRES_POLLING_OK: on_connected(d); break;
	default: connect_failed(d, NULL); break;
	}
}

static void start_connect_resolved(db *d);

/* Appends `item` to the comma-separated list *list (NULL: empty). */
static void
list_add(char **list, const char *item)
{
	char *n = *list == NULL ? xstrdup(item) : xasprintf("%s,%s", *list, item);
	free(*list);
	*list = n;
}

/*
 * Every lookup of this attempt is done: libpq gets the host, hostaddr (and
 * port) lists with one element per address to try, a name that resolved
 * to several addresses once per address (as libpq itself would try them),
 * a name that did not resolve left out. Nothing left: the attempt fails.
 */
static void
hosts_resolved(db *d)
{
	free(d->host_arg);
	free(d->hostaddr_arg);
	free(d->port_arg);
	d->host_arg = d->hostaddr_arg = d->port_arg = NULL;
	int n = 0;
	for (int i = 0; i < d->nhosts; i++) {
		struct host_ent *h = &d->hosts[i];
		const char *addrs = h->addr != NULL ? h->addr : h->resolved;
		if (addrs == NULL)
			continue;
		char *copy = xstrdup(addrs), *rest = copy;
		do {
			char *a = strsep(&rest, ",");
			list_add(&d->host_arg, h->host);
			list_add(&d->hostaddr_arg, a);
			if (d->host_ports)
				list_add(&d->port_arg, h->port);
			n++;
		} while (rest != NULL);
		free(copy);
	}
	if (n == 0) {
		d->state = ST_CONNECTING;
		connect_failed(d, d->dns_error);
		return;
	}
	start_connect_resolved(d);
}

/* Records that host entry `h` did not resolve, and logs it. */
static void
host_unresolved(db *d, const struct host_ent *h, const char *why)
{
	char m[400];
	snprintf(d->dns_error, sizeof(d->dns_error), "cannot resolve host %s: %s", h->host, why);
	log_warn("db_host_unresolved", "\"db\":\"%s\",\"error\":%s", d->name,
	    log_json_str(d->dns_error, m, sizeof(m)));
}

/*
 * A host name was resolved (or not) on libuv's thread pool. Its addresses
 * (at most 8, in getaddrinfo's order) go to libpq as hostaddr elements,
 * next to the name (which stays in use for TLS and .pgpass), so
 * PQconnectStartParams does no lookup itself.
 */
static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct host_ent *h = req->data;
	db *d = h->d;
	h->pending = false;
	d->npending--;
	d->nhandles--;
	if (d->closing) {
		uv_freeaddrinfo(res);
		maybe_free(d);
		return;
	}
	int naddr = 0;
	for (struct addrinfo *ai = status == 0 ? res : NULL; ai != NULL && naddr < 8;
	     ai = ai->ai_next) {
		char ip[INET6_ADDRSTRLEN] = "";
		if (ai->ai_family == AF_INET6)
			uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, ip, sizeof(ip));
		else if (ai->ai_family == AF_INET)
			uv_ip4_name((struct sockaddr_in *)ai->ai_addr, ip, sizeof(ip));
		if (ip[0] == '\0')
			continue;
		list_add(&h->resolved, ip);
		naddr++;
	}
	uv_freeaddrinfo(res);
	if (naddr == 0)
		host_unresolved(d, h, status < 0 ? uv_strerror(status) : "no address");
	if (d->npending == 0)
		hosts_resolved(d);
}

/*
 * Starts a connection attempt: first resolves every host name of the host
 * list on the thread pool, all at once (libpq would block the loop on
 * each), then start_connect_resolved() via hosts_resolved().
 */
static void
start_connect(db *d)
{
	if (d->nhosts == 0) {
		start_connect_resolved(d);
		return;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	d->state = ST_CONNECTING;
	d->dns_error[0] = '\0';
	for (int i = 0; i < d->nhosts; i++) {
		struct host_ent *h = &d->hosts[i];
		if (h->addr != NULL)
			continue;
		free(h->resolved);
		h->resolved = NULL;
		h->d = d;
		h->gai.data = h;
		int rc = uv_getaddrinfo(d->loop, &h->gai, on_resolved, h->host, NULL, &hints);
		if (rc != 0) {
			host_unresolved(d, h, uv_strerror(rc));
			continue;
		}
		h->pending = true;
		d->npending++;
		d->nhandles++;
		d->stats.dns_lookups++;
	}
	if (d->npending == 0)
		hosts_resolved(d);
}

/*
 * Starts a connection attempt with PQconnectStartParams. The URL or
 * conninfo goes in as an expanded "dbname"; our application_name, options
 * and resolved host/hostaddr/port lists come after it and so take
 * precedence.
 */
static void
start_connect_resolved(db *d)
{
	const char *keys[12] = {"dbname", "application_name"};
	const char *vals[12] = {d->conninfo, d->name};
	int k = 2;
	if (d->options != NULL) {
		keys[k] = "options";
		vals[k++] = d->options;
	}
	if (d->host_arg != NULL) {
		keys[k] = "host";
		vals[k++] = d->host_arg;
		keys[k] = "hostaddr";
		vals[k++] = d->hostaddr_arg;
	}
	if (d->port_arg != NULL) {
		keys[k] = "port";
		vals[k++] = d->port_arg;
	}
	/* Over TCP a dead peer is then noticed after ~25 s idle, or once sent
	 * data stays unacknowledged for the batch timeout; libpq ignores
	 * these on a unix socket. */
	char user_timeout[16];
	if (d->keepalives) {
		snprintf(user_timeout, sizeof(user_timeout), "%u", d->batch_timeout);
		keys[k] = "keepalives_idle";
		vals[k++] = "10";
		keys[k] = "keepalives_interval";
		vals[k++] = "5";
		keys[k] = "keepalives_count";
		vals[k++] = "3";
		keys[k] = "tcp_user_timeout";
		vals[k++] = user_timeout;
	}
	d->state = ST_CONNECTING;
	d->conn = PQconnectStartParams(keys, vals, 1);
	if (d->conn == NULL || PQstatus(d->conn) == CONNECTION_BAD) {
		connect_failed(d, NULL);
		return;
	}
	PQsetNoticeProcessor(d->conn, on_notice, d);
	uv_timer_start(&d->timer, on_timer, DB_CONNECT_TIMEOUT_MS, 0);
	/* libpq's rule: act as if PQconnectPoll had said WRITING. */
	if (poll_watch(d, UV_WRITABLE, true) != 0)
		connect_failed(d, NULL);
}

/*
 * The connection broke while up (SETUP or READY): every batch fails with
 * TRYGG_EDBCONN, the state callback hears `false` (if it had heard `true`),
 * and a reconnect is scheduled.
 */
static void
conn_lost(db *d, const char *why)
{
	char buf[512], m[600];
	if (why == NULL)
		why = conn_error(d, buf, sizeof(buf));
	bool announced = d->state == ST_READY;
	log_warn("db_disconnected", "\"db\":\"%s\",\"error\":%s,\"in_flight\":%u", d->name,
	    log_json_str(why, m, sizeof(m)), d->stats.in_flight);
	conn_teardown(d);
	d->state = ST_WAITING; /* db_submit from the callbacks below: EDBCONN */
	fail_all(d, TRYGG_EDBCONN, "connection to the database lost");
	if (d->closing)
		return;
	if (announced && d->state_cb != NULL) {
		d->state_cb(d->state_arg, false);
		if (d->closing)
			return;
	}
	unsigned delay = schedule_reconnect(d);
	log_info("db_reconnect_scheduled", "\"db\":\"%s\",\"retry_ms\":%u", d->name, delay);
}

/* The timer: reconnect, connect timeout, or a deferred connection loss. */
static void
on_timer(uv_timer_t *t)
{
	db *d = t->data;
	switch (d->state) {
	case ST_WAITING: start_connect(d); break;
	case ST_CONNECTING: connect_failed(d, "connect timed out"); break;
	case ST_SETUP:
	case ST_READY:
		if (d->lost_pending)
			conn_lost(d, NULL);
		break;
	}
}

/* Socket events: connect steps, or flush / read results / notifications. */
static void
on_poll(uv_poll_t *h, int status, int events)
{
	db *d = h->data;
	if (d->closing || h != d->poll)
		return;
	if (d->state == ST_CONNECTING) {
		connect_step(d);
		return;
	}
	if (status < 0) {
		conn_lost(d, uv_strerror(status));
		return;
	}
	if ((events & UV_WRITABLE) && flush_out(d) != 0) {
		conn_lost(d, NULL);
		return;
	}
	/* Read results even on a pure writable event: a send that would block
	 * makes libpq read input into its buffer, and the socket then no
	 * longer reports readable for it. */
	bool ok = !(events & UV_READABLE) || PQconsumeInput(d->conn) == 1;
	read_results(d);
	if (d->closing)
		return;
	read_notifies(d);
	if (d->closing)
		return;
	if (!ok || PQstatus(d->conn) != CONNECTION_OK)
		conn_lost(d, NULL);
}

/* ---------------------------------------------------------------------- */
/* Public API                                                             */

/*
 * Builds the libpq "options" value: the URL's own options (if any) plus
 * "-c search_path=...", with spaces and backslashes escaped as libpq wants.
 */
static char *
make_options(const char *user_opts, const char *search_path, unsigned statement_timeout_ms)
{
	size_t n = search_path ? strlen(search_path) : 0;
	char *esc = xmalloc(2 * n + 1), *o = esc;
	for (const char *s = search_path; s && *s; s++) {
		if (*s == ' ' || *s == '\\')
			*o++ = '\\';
		*o++ = *s;
	}
	*o = '\0';
	/* The statement timeout goes first, so the URL's own options can
	 * override it; search_path goes last, as ours. */
	char st[48] = "", *sp = n > 0 ? xasprintf("-c search_path=%s", esc) : xstrdup("");
	if (statement_timeout_ms > 0)
		snprintf(st, sizeof(st), "-c statement_timeout=%u", statement_timeout_ms);
	const char *parts[3] = {st, user_opts ? user_opts : "", sp};
	char *r = xstrdup("");
	for (int i = 0; i < 3; i++) {
		if (*parts[i] == '\0')
			continue;
		char *r2 = xasprintf("%s%s%s", r, *r ? " " : "", parts[i]);
		free(r);
		r = r2;
	}
	free(sp);
	free(esc);
	return r;
}

static bool
is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* True for a host element libpq would look up: not empty, not a socket
 * directory ('/' or '@' first), not an IP literal. */
static bool
is_host_name(const char *host)
{
	return host[0] != '\0' && host[0] != '/' && host[0] != '@' && !is_ip_literal(host);
}

/* The conninfo's value, else the environment's, as libpq would take it. */
static const char *
effective(const char *val, const char *env)
{
	if (val != NULL && val[0] != '\0')
		return val;
	val = getenv(env);
	return val != NULL && val[0] != '\0' ? val : NULL;
}

/* Splits a comma list as libpq does (no escapes); returns the count. */
static int
split_list(const char *list, char ***out)
{
	int n = 1;
	for (const char *p = list; *p; p++)
		n += *p == ',';
	char **v = xcalloc((size_t)n, sizeof(*v)), *copy = xstrdup(list), *rest = copy;
	for (int i = 0; i < n; i++)
		v[i] = xstrdup(strsep(&rest, ","));
	free(copy);
	*out = v;
	return n;
}

static void
free_list(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/*
 * Works out the host list libpq would try (the conninfo's host, else
 * PGHOST; with hostaddr and port likewise from PGHOSTADDR and PGPORT) and,
 * if any entry is a name libpq would look up with a blocking call, keeps
 * the list in d->hosts so start_connect resolves the names on the loop.
 * Lists whose lengths do not match are left to libpq, which rejects them;
 * so is everything when a pg_service.conf service is named (its entries
 * rank between the conninfo and the environment, and are not read here).
 */
static void
plan_hosts(db *d, const char *host, const char *hostaddr, const char *port, const char *service)
{
	if (effective(service, "PGSERVICE") != NULL)
		return;
	host = effective(host, "PGHOST");
	hostaddr = effective(hostaddr, "PGHOSTADDR");
	port = effective(port, "PGPORT");
	if (host == NULL)
		return;
	char **hv, **av = NULL, **pv = NULL;
	int n = split_list(host, &hv), na = hostaddr ? split_list(hostaddr, &av) : 0;
	int np = port ? split_list(port, &pv) : 0;
	bool names = false;
	for (int i = 0; i < n; i++)
		names |= (na == 0 || av[i][0] == '\0') && is_host_name(hv[i]);
	if (names && (na == 0 || na == n) && (np <= 1 || np == n)) {
		d->hosts = xcalloc((size_t)n, sizeof(*d->hosts));
		d->nhosts = n;
		d->host_ports = np > 1;
		for (int i = 0; i < n; i++) {
			struct host_ent *h = &d->hosts[i];
			const char *a = na > 0 ? av[i] : "";
			if (a[0] == '\0' && is_ip_literal(hv[i]))
				a = hv[i]; /* a literal is its own address */
			h->host = xstrdup(hv[i]);
			h->addr = a[0] == '\0' && is_host_name(hv[i]) ? NULL : xstrdup(a);
			h->port = np > 1 ? xstrdup(pv[i]) : NULL;
		}
	}
	free_list(hv, n);
	free_list(av, na);
	free_list(pv, np);
}

int
db_new(uv_loop_t *loop, const db_options *opts, db **out)
{
	*out = NULL;
	if (loop == NULL || opts == NULL || opts->conninfo == NULL)
		return TRYGG_EINVAL;
	char *err = NULL;
	PQconninfoOption *ci = PQconninfoParse(opts->conninfo, &err);
	if (ci == NULL) {
		char m[512];
		log_error("db_bad_conninfo", "\"error\":%s",
		    log_json_str(err ? err : "out of memory", m, sizeof(m)));
		PQfreemem(err);
		return TRYGG_EINVAL;
	}
	const char *user_opts = NULL, *host = NULL, *hostaddr = NULL, *port = NULL;
	const char *service = NULL;
	bool user_keepalives = false;
	for (PQconninfoOption *o = ci; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "options") == 0)
			user_opts = o->val;
		else if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "service") == 0)
			service = o->val;
		else if ((strncmp(o->keyword, "keepalives", 10) == 0 ||
		             strcmp(o->keyword, "tcp_user_timeout") == 0) &&
		    o->val != NULL)
			user_keepalives = true;
	}

	db *d = xcalloc(1, sizeof(*d));
	d->loop = loop;
	d->conninfo = xstrdup(opts->conninfo);
	d->name = xstrdup(opts->name && *opts->name ? opts->name : "trygg");
	if ((opts->search_path != NULL && *opts->search_path) || opts->statement_timeout_ms > 0)
		d->options = make_options(user_opts, opts->search_path, opts->statement_timeout_ms);
	d->keepalives = !user_keepalives;
	d->batch_timeout =
	    opts->batch_timeout_ms ? opts->batch_timeout_ms : DB_DEFAULT_BATCH_TIMEOUT;
	plan_hosts(d, host, hostaddr, port, service);
	PQconninfoFree(ci);
	d->backoff_min = opts->backoff_min_ms ? opts->backoff_min_ms : DB_DEFAULT_BACKOFF_MIN;
	d->backoff_max = opts->backoff_max_ms ? opts->backoff_max_ms : DB_DEFAULT_BACKOFF_MAX;
	if (d->backoff_max < d->backoff_min)
		d->backoff_max = d->backoff_min;
	d->max_in_flight = opts->max_in_flight ? opts->max_in_flight : DB_DEFAULT_MAX_IN_FLIGHT;
	d->backoff = d->backoff_min;
	d->rng = (uint32_t)(trygg_now_ns() ^ ((uint64_t)getpid() << 16) ^ (uintptr_t)d) | 1u;
	d->poll_fd = -1;
	uv_timer_init(loop, &d->timer);
	d->timer.data = d;
	uv_timer_init(loop, &d->deadline);
	d->deadline.data = d;
	d->nhandles = 2;
	start_connect(d);
	*out = d;
	return 0;
}

void
db_close(db *d)
{
	if (d == NULL || d->closing)
		return;
	d->closing = true;
	for (int i = 0; i < d->nhosts; i++)
		if (d->hosts[i].pending) /* on_resolved still runs, and frees */
			uv_cancel((uv_req_t *)&d->hosts[i].gai);
	fail_all(d, TRYGG_ECLOSED, "database client closed");
	conn_teardown(d);
	uv_timer_stop(&d->timer);
	uv_close((uv_handle_t *)&d->timer, on_timer_closed);
	uv_close((uv_handle_t *)&d->deadline, on_timer_closed);
	log_info("db_closed", "\"db\":\"%s\"", d->name);
}

bool
db_is_connected(const db *d)
{
	return d != NULL && !d->closing && d->state == ST_READY && !d->lost_pending;
}

void
db_set_state_cb(db *d, db_state_cb cb, void *arg)
{
	d->state_cb = cb;
	d->state_arg = arg;
}

int
db_listen(db *d, const char *channel, db_notify_cb cb, void *arg)
{
	if (d == NULL || channel == NULL || *channel == '\0' || cb == NULL ||
	    strlen(channel) > DB_CHANNEL_MAX)
		return TRYGG_EINVAL;
	if (d->closing)
		return TRYGG_ECLOSED;
	if (d->nlisten >= DB_MAX_LISTEN)
		return TRYGG_ETOOBIG;
	struct listen *l = &d->listens[d->nlisten++];
	l->channel = xstrdup(channel);
	l->cb = cb;
	l->arg = arg;
	/* Already connected: listen now. Otherwise the (re)connect does it. */
	if ((d->state == ST_SETUP || d->state == ST_READY) && !d->lost_pending)
		send_listens(d, d->nlisten - 1, d->nlisten, false);
	return 0;
}

void
db_unlisten(db *d, db_notify_cb cb, void *arg)
{
	if (d == NULL)
		return;
	/* Only our table changes: the server keeps sending, read_notifies()
	 * finds no callback and drops the notification. */
	for (int i = 0; i < d->nlisten;) {
		if (d->listens[i].cb == cb && d->listens[i].arg == arg) {
			free(d->listens[i].channel);
			d->listens[i] = d->listens[--d->nlisten];
		} else {
			i++;
		}
	}
}

bool
db_error_is_transient(const char *sqlstate)
{
	if (sqlstate == NULL || strlen(sqlstate) != 5)
		return true; /* no verdict from the server: assume the link */
	static const char *const classes[] = {
	    "08", /* connection exception */
	    "40", /* transaction rollback: serialization failure, deadlock */
	    "53", /* insufficient resources: too many connections, disk full */
	    "55", /* object not in prerequisite state: lock_not_available */
	    "57", /* operator intervention: query canceled, admin shutdown */
	    "58", /* system error: I/O error */
	};
	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
		if (strncmp(sqlstate, classes[i], 2) == 0)
			return true;
	static const char *const codes[] = {
	    "25006", /* read_only_sql_transaction: a failover or maintenance */
	    "25P03", /* idle_in_transaction_session_timeout */
	    "72000", /* snapshot_too_old */
	    "F0000", /* config_file_error */
	};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcmp(sqlstate, codes[i]) == 0)
			return true;
	return false;
}

int
db_submit(db *d, db_batch *b, db_cb cb, void *arg)
{
	if (d == NULL || b == NULL || cb == NULL)
		return TRYGG_EINVAL;
	if (d->closing)
		return TRYGG_ECLOSED;
	if (!db_is_connected(d))
		return TRYGG_EDBCONN;
	/* libpq would refuse these, and a refused send looks like a dead
	 * connection: catch the caller's mistake here instead. */
	for (int i = 0; i < b->n; i++)
		if (b->stmts[i].nparams > DB_MAX_PARAMS)
			return TRYGG_EINVAL;
	if (d->stats.in_flight >= d->max_in_flight)
		return TRYGG_EBUSY;
	b->cb = cb;
	b->arg = arg;
	b->internal = false;
	enqueue_and_send(d, b);
	return 0;
}

int
db_query(db *d, const char *sql, int nparams, const char *const *values, db_cb cb, void *arg)
{
	db_batch *b = db_batch_new();
	db_batch_add(b, sql, nparams, values);
	int rc = db_submit(d, b, cb, arg);
	if (rc != 0)
		db_batch_free(b);
	return rc;
}

void
db_get_stats(const db *d, db_stats *out)
{
	*out = d->stats;
}
