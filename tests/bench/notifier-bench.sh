#!/usr/bin/env bash
# notifier-bench.sh: end-to-end latency of the notifier (issue 5, part 6):
# from intake's POST /v1/reports returning 201 to the crew's webhook
# arriving, p50/p99/max at 100 and 500 reports/s, lost and duplicates.
# Target: p99 < 50 ms at 500 reports/s, zero lost.
# Standalone: tests/bench/notifier-bench.sh (after `make`).
#
# On its own Postgres cluster (deploy/pg-cluster.sh: synchronous commit,
# fsync on) with roles/schemas intake and notifier, it starts the real
# trygg-intake and trygg-notifier on free ports, the bus between them on
# ipc sockets in its temp dir, both directions wired as `make run` does;
# seeds the demo data with the commands `make run` uses (`trygg-intake
# admin demo-seed`, deploy/demo/seed-notifier.sh) with the demo units'
# webhooks pointed at its own receiver, and lifts the bench partner's rate
# limit (`trygg-intake admin partner rate`), as intake-bench.sh does.
#
# The load generator and receiver are one C program (notifier-load.c, built
# here with cc), so post and arrival times share one monotonic clock: it
# posts at a fixed rate (open loop) over keep-alive connections as the
# demo partner norrmalm-staff (may report every category), records when
# each 201 was read, receives the webhooks, verifies each HMAC signature as
# docs/notifier.md says, deduplicates on Trygg-Delivery, and takes the
# report ids from task.report_ids. latency = arrival - POST return.
# lost = posted (201) but no task webhook within BENCH_GRACE seconds after
# the phase; duplicates = extra task webhooks for a report under another
# delivery id (a resend with the same id is counted once, and shown apart).
#
# One webhook per report: a task's key is the place slug, else the ~110 m
# grid cell (cell:floor(lat/0.001):floor(long/0.002)); a report whose key
# and category have an open task JOINS it and pages nobody. So every
# report here gets its own (cell, category) pair: the cells of the district
# whose whole rectangle lies outside every named place (no place slug, and
# no copy rules, which only exist for named places), each report at its
# cell's centre, consecutive reports in different cells, a cell's 13
# categories used one pass at a time; no pair is ever reused (~850 cells x
# 13 categories; the run needs ~6,100). Every report thus opens its own
# task with exactly one webhook (kind task, to the owner unit).
#
# Also measured in the same run, for context: pgbench's INSERT + outbox row
# transaction rate at 16 clients (as run-bench.sh) and the latency of one
# such commit at 1 client (the cost of each commit in the chain:
# intake's report commit, intake's relay round, the notifier's inbox
# batch, its claim of the delivery).
#
# Environment: BENCH_SECONDS (10 per rate), BENCH_RATES ("100 500"),
# BENCH_GRACE (10), BENCH_CONNS (32), BENCH_NOTIFIER_ENV / BENCH_INTAKE_ENV
# (extra VAR=value settings, e.g. to try TRYGG_DELIVERY_POLL=50ms),
# BENCH_RAW=0 skips the pgbench figures, BENCH_CATCHUP_SECONDS (5; 0 skips)
# how long intake takes reports while the notifier is paused (catch-up);
# BENCH_CATCHUP_PERF=1 records perf profiles of the notifier and of
# Postgres during the catch-up into var/bench/catchup-*.perf. Results: var/bench/notifier.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/bin
PGBIN=/usr/lib/postgresql/15/bin
SECS=${BENCH_SECONDS:-10}
RATES=${BENCH_RATES:-100 500}
GRACE=${BENCH_GRACE:-10}
CONNS=${BENCH_CONNS:-32}
RAW=${BENCH_RAW:-1}
CATCHUP_SECS=${BENCH_CATCHUP_SECONDS:-5}
out=var/bench
mkdir -p "$out"
chmod 755 var "$out" 2>/dev/null || true
for b in trygg-intake trygg-notifier; do
  [ -x "$BIN/$b" ] || { echo "build first: make ($BIN/$b missing)"; exit 1; }
done
work=$(mktemp -d /tmp/trygg-nbench.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/bus"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  deploy/pg-cluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cc -O2 -Wall -pthread -o "$work/notifier-load" tests/bench/notifier-load.c -lcrypto -lm

# Commit timestamps split the latency into stages (see the end).
PG_EXTRA_OPTS="-c track_commit_timestamp=on" deploy/pg-cluster.sh start "$work/pg" 2>/dev/null
SUPER=$(deploy/pg-cluster.sh url "$work/pg")
deploy/pg-cluster.sh bootstrap "$work/pg" intake notifier benchraw >/dev/null
psql() { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$SUPER" "$@"; }
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
field() { sed -nE "s/.*\"$1\":([0-9.]+).*/\1/p"; }

raw_tps=0; raw_lat=0
if [ "$RAW" = 1 ]; then
  echo "== raw limits: INSERT + outbox row per transaction (pgbench, ${SECS}s at 16 clients, 5s at 1)"
  { echo "SET search_path = benchraw;"; cat services/common/sql/*.sql;
    echo "CREATE TABLE produced (n bigint PRIMARY KEY); CREATE SEQUENCE nseq;"; } | psql >/dev/null
  cat > "$work/tx.sql" <<'SQL'
BEGIN;
INSERT INTO benchraw.produced (n) VALUES (nextval('benchraw.nseq'));
INSERT INTO benchraw.outbox (event_type, payload) VALUES ('trygg.testing.TestEvent', '\x0801120c74657374206576656e742031');
COMMIT;
SQL
  raw_tps=$("$PGBIN/pgbench" -n -c 16 -j 2 -T "$SECS" -f "$work/tx.sql" "$SUPER" 2>&1 |
    sed -nE 's/^tps = ([0-9.]+) .*/\1/p')
  raw_lat=$("$PGBIN/pgbench" -n -c 1 -T 5 -f "$work/tx.sql" "$SUPER" 2>&1 |
    sed -nE 's/^latency average = ([0-9.]+) ms.*/\1/p')
  echo "16 clients: $raw_tps tx/s; 1 client: $raw_lat ms per transaction"
  psql -c "DROP SCHEMA benchraw CASCADE" >/dev/null
fi

# The cells: district cells whose rectangle misses every named place.
/usr/bin/python3 - deploy/demo/places.geojson > "$work/cells.txt" <<'PY'
import json, math, random, sys
feats = json.load(open(sys.argv[1]))["features"]
def rings(g):
    return [g["coordinates"][0]] if g["type"] == "Polygon" else [p[0] for p in g["coordinates"]]
def inside(lat, lon, ring):
    c = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1]):
        if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
            c = not c
    return c
district = [r for f in feats if f["properties"].get("kind") == "district" for r in rings(f["geometry"])]
boxes = []
for f in feats:
    if f["properties"].get("kind") == "district":
        continue
    for r in rings(f["geometry"]):
        boxes.append((min(p[1] for p in r), max(p[1] for p in r), min(p[0] for p in r), max(p[0] for p in r)))
lat0 = min(p[1] for r in district for p in r); lat1 = max(p[1] for r in district for p in r)
lon0 = min(p[0] for r in district for p in r); lon1 = max(p[0] for r in district for p in r)
m = 0.0002  # margin around places
cells = []
for row in range(math.floor(lat0 / 0.001), math.ceil(lat1 / 0.001)):
    for col in range(math.floor(lon0 / 0.002), math.ceil(lon1 / 0.002)):
        a0, a1, o0, o1 = row * 0.001, (row + 1) * 0.001, col * 0.002, (col + 1) * 0.002
        la, lo = a0 + 0.0005, o0 + 0.001
        if not any(inside(la, lo, r) for r in district):
            continue
        if any(a0 < b1 + m and a1 > b0 - m and o0 < c1 + m and o1 > c0 - m for b0, b1, c0, c1 in boxes):
            continue
        cells.append((la, lo))
random.Random(5).shuffle(cells)
for la, lo in cells:
    print("%.6f %.6f" % (la, lo))
PY
ncells=$(wc -l < "$work/cells.txt")
need=100; for r in $RATES; do need=$((need + r * SECS)); done
if [ "$need" -gt $((ncells * 13)) ]; then
  echo "$need reports need more (cell, category) pairs than the district has ($ncells x 13): lower BENCH_SECONDS"
  exit 1
fi

export DATABASE_URL=${SUPER/trygg@/intake@}
"$BIN/trygg-intake" admin demo-seed --keys-file "$work/keys.json" \
  --places deploy/demo/places.geojson >/dev/null
"$BIN/trygg-intake" admin partner rate norrmalm-staff 1000000000 >/dev/null
key=$(sed -nE 's/.*"norrmalm-staff": "([^"]+)".*/\1/p' "$work/keys.json")
unset DATABASE_URL

BUS=ipc://$work/bus
intake_http=$(port); notifier_http=$(port); recv_port=$(port)
env -i PATH="$PATH" DATABASE_URL="${SUPER/trygg@/intake@}" TRYGG_HTTP_PORT=$intake_http \
  TRYGG_LOG_LEVEL=warn TRYGG_BUS_PUB_URL="$BUS/intake.pub" TRYGG_BUS_REP_URL="$BUS/intake.rep" \
  TRYGG_BUS_NOTIFIER_SUB_URL="$BUS/notifier.pub" TRYGG_BUS_NOTIFIER_REQ_URL="$BUS/notifier.rep" \
  ${BENCH_INTAKE_ENV:-} "$BIN/trygg-intake" 2>"$out/notifier-bench-intake.log" &
pids+=($!)
env -i PATH="$PATH" DATABASE_URL="${SUPER/trygg@/notifier@}" TRYGG_HTTP_PORT=$notifier_http \
  TRYGG_LOG_LEVEL=warn TRYGG_BUS_PUB_URL="$BUS/notifier.pub" TRYGG_BUS_REP_URL="$BUS/notifier.rep" \
  TRYGG_BUS_INTAKE_SUB_URL="$BUS/intake.pub" TRYGG_BUS_INTAKE_REQ_URL="$BUS/intake.rep" \
  ${BENCH_NOTIFIER_ENV:-} "$BIN/trygg-notifier" 2>"$out/notifier-bench-notifier.log" &
notifier_pid=$!
pids+=($!)
for p in $intake_http $notifier_http; do
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$p/readyz" >/dev/null || { echo "service on $p not ready"; tail "$out"/notifier-bench-*.log; exit 1; }
done
secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
PSQL=$PGBIN/psql deploy/demo/seed-notifier.sh "${SUPER/trygg@/notifier@}" \
  "http://127.0.0.1:$recv_port/webhook" "$secret" "$work/notifier-keys.json" >/dev/null
sleep 1 # the notifier reloads units and rules on the trigger's NOTIFY

phases=()
for r in $RATES; do phases+=(--phase "$r:$SECS"); done
echo "== end to end: intake POST 201 -> signed webhook, rates: $RATES reports/s, ${SECS}s each ($ncells cells)"
res=$("$work/notifier-load" --intake-port "$intake_http" --listen "$recv_port" --key "$key" \
  --secret "$secret" --cells "$work/cells.txt" --conns "$CONNS" --grace "$GRACE" \
  --warmup 50:2 --dump "$work/reports.tsv" "${phases[@]}")
inbox_metrics=$(curl -s "http://127.0.0.1:$notifier_http/metrics" |
  sed -nE 's/^trygg_inbox_(gaps|replays|duplicates)_total(\{[^}]*\})? ([0-9.e+]+)$/\1=\3/p' | tr '\n' ' ')
tasks=$(psql -c "SELECT count(*) || ' ' || count(*) FILTER (WHERE cardinality(report_ids) > 1) FROM notifier.tasks")
dlv=$(psql -c "SELECT count(*) FILTER (WHERE status = 'delivered') || ' ' || count(*) FILTER (WHERE status <> 'delivered') || ' ' || coalesce(max(attempts), 0) FROM notifier.deliveries")

# Where the time goes, per report, from Postgres's commit timestamps and
# the receiver's clock (both wall clock, one machine): POST 201 -> the
# commit that numbered the report's outbox row -> the notifier's inbox
# batch committed (task, delivery, cursor) -> webhook arrival (the delivery
# worker's claim commit, then the HTTP request). intake's store numbers its
# events at insert (outbox.h, "Two ways to number"), so the numbering
# commit is the report's own, before its 201: the first stage is negative
# (the 201's own way back), and the second runs from the report's commit
# through the relay's read and the bus to the notifier's commit.
stages=$(psql <<SQL
CREATE TEMP TABLE bench (id text, rate int, post_us bigint, arr_us bigint);
\copy bench FROM '$work/reports.tsv'
WITH s AS (
  SELECT b.rate,
    extract(epoch FROM pg_xact_commit_timestamp(o.xmin)) * 1000 - b.post_us / 1000.0 AS relay,
    extract(epoch FROM pg_xact_commit_timestamp(tr.xmin) - pg_xact_commit_timestamp(o.xmin)) * 1000 AS ingest,
    b.arr_us / 1000.0 - extract(epoch FROM pg_xact_commit_timestamp(tr.xmin)) * 1000 AS deliver
  FROM bench b
  JOIN intake.outbox o ON o.event_type = 'trygg.events.ReportReceived'
   AND convert_from(substring(o.payload FROM 3 FOR 36), 'UTF8') = b.id
  JOIN notifier.task_reports tr ON tr.report_id = b.id
  WHERE b.arr_us IS NOT NULL)
, batches AS (
  -- the notifier's inbox transactions: how many, how big, how long (from
  -- the transaction's start, the tasks' created_at, to its commit)
  SELECT b.rate, count(*) n,
    extract(epoch FROM pg_xact_commit_timestamp(tr.xmin) - min(t.created_at)) * 1000 AS ms
  FROM bench b JOIN notifier.task_reports tr ON tr.report_id = b.id
  JOIN notifier.tasks t ON t.id = tr.task_id
  GROUP BY b.rate, tr.xmin::text::bigint, pg_xact_commit_timestamp(tr.xmin))
SELECT json_agg(json_build_object('rate', rate, 'n', n,
  'inbox_batches', (SELECT count(*) FROM batches x WHERE x.rate = y.rate),
  'inbox_batch_mean_reports', (SELECT round(avg(n), 1) FROM batches x WHERE x.rate = y.rate),
  'inbox_batch_max_reports', (SELECT max(n) FROM batches x WHERE x.rate = y.rate),
  'inbox_batch_ms', (SELECT json_build_array(round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
      round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2)) FROM batches x WHERE x.rate = y.rate),
  'post_to_relay_commit_ms', json_build_array(r50, r99), 'relay_to_inbox_commit_ms', json_build_array(i50, i99),
  'inbox_commit_to_webhook_ms', json_build_array(d50, d99)))
FROM (SELECT rate, count(*) n,
  round(percentile_cont(0.5) WITHIN GROUP (ORDER BY relay)::numeric, 2) r50,
  round(percentile_cont(0.99) WITHIN GROUP (ORDER BY relay)::numeric, 2) r99,
  round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ingest)::numeric, 2) i50,
  round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ingest)::numeric, 2) i99,
  round(percentile_cont(0.5) WITHIN GROUP (ORDER BY deliver)::numeric, 2) d50,
  round(percentile_cont(0.99) WITHIN GROUP (ORDER BY deliver)::numeric, 2) d99
  FROM s GROUP BY rate ORDER BY rate) y;
SQL
)

# Catch-up (issue 9; target >= 2,000 reports/s): the notifier is paused
# (SIGSTOP) while intake takes reports as fast as 16 connections post them
# (intake-bench.c's varied reports; they may join open tasks), then resumed
# (SIGCONT); it finds the gap (live frames, heartbeat), replays it from
# intake and applies it. Ingest rate = events / (caught up - first cursor
# move); the time from SIGCONT to the first move is printed apart.
cu_events=0; cu_secs=0; cu_wait=0; cu_pg_ms=0; cu_n_ms=0
if [ "$CATCHUP_SECS" != 0 ]; then
  echo "== catch-up: notifier paused while intake takes reports for ${CATCHUP_SECS}s, then resumed"
  cc -O2 -o "$work/intake-load" tests/bench/intake-bench.c $(pkg-config --cflags --libs libuv) -lm
  cursor() { psql -c "SELECT coalesce((SELECT last_seq FROM notifier.inbox_cursor WHERE publisher = 'intake'), 0)"; }
  # Start from a notifier that has caught up with the phases above.
  for _ in $(seq 1200); do
    [ "$(cursor)" -ge "$(psql -c "SELECT last_seq FROM intake.outbox_state")" ] && break
    sleep 0.1
  done
  # The crews' receiver stays up during the catch-up (notifier-load has
  # ended): with nobody listening every delivery failed and was retried,
  # claims and outcomes of a dead endpoint in the cost being measured.
  /usr/bin/python3 - "$recv_port" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
  receiver=$!
  pids+=($receiver)
  kill -STOP "$notifier_pid"
  c0=$(cursor)
  # CPU jiffies of Postgres (the postmaster, its live backends and the
  # reaped ones) and of the notifier, so the catch-up's cost per report
  # can be compared across runs on a shared machine.
  pm=$(head -1 "$work/pg/data/postmaster.pid")
  jiffies() { for p in "$@"; do cut -d')' -f2 "/proc/$p/stat" 2>/dev/null; done |
    awk '{ s += $12 + $13 + $14 + $15 } END { print s + 0 }'; }
  pg_jiffies() { jiffies "$pm" $(pgrep -P "$pm"); }
  "$work/intake-load" --port "$intake_http" --key "$key" --conns 16 --seconds "$CATCHUP_SECS" >/dev/null
  sleep 1 # intake's relay numbers the last rows
  target=$(psql -c "SELECT last_seq FROM intake.outbox_state")
  t0=$(date +%s.%N); t_first=""
  pg0=$(pg_jiffies); n0=$(jiffies "$notifier_pid")
  if [ -n "${BENCH_CATCHUP_PERF:-}" ]; then # where the catch-up's CPU goes
    perf record -F 999 -g -o "$out/catchup-notifier.perf" -p "$notifier_pid" -- sleep 8 >/dev/null 2>&1 &
    perf record -F 999 -g -o "$out/catchup-postgres.perf" -p "$(pgrep -P "$pm" | paste -sd,)" -- sleep 8 >/dev/null 2>&1 &
  fi
  # While it catches up, its cursor is read from its own /metrics: a psql
  # every 50 ms would add a Postgres backend start each time to the load
  # (and to the CPU) being measured.
  applied() { curl -s --max-time 5 "http://127.0.0.1:$notifier_http/metrics" |
    sed -nE 's/^trygg_inbox_applied_seq\{publisher="intake"\} ([0-9]+)$/\1/p'; }
  kill -CONT "$notifier_pid"
  while :; do
    c=$(applied); c=${c:-$c0}; now=$(date +%s.%N)
    [ -z "$t_first" ] && [ "$c" -gt "$c0" ] && t_first=$now
    [ "$c" -ge "$target" ] && break
    if /usr/bin/python3 -c "import sys; sys.exit(0 if $now - $t0 > 300 else 1)"; then
      echo "catch-up: not caught up after 300 s ($c of $target)"; break
    fi
    sleep 0.05
  done
  pg1=$(pg_jiffies); n1=$(jiffies "$notifier_pid")
  kill "$receiver" 2>/dev/null || true
  read -r cu_events cu_secs cu_wait < <(/usr/bin/python3 -c "
f = ${t_first:-$now}; print($c - $c0, round($now - f, 3), round(f - $t0, 3))")
  cu_pg_ms=$(( (pg1 - pg0) * 10 )); cu_n_ms=$(( (n1 - n0) * 10 ))
fi

/usr/bin/python3 - "$res" "$raw_tps" "$raw_lat" "$tasks" "$dlv" "$out/notifier.json" "${BENCH_NOTIFIER_ENV:-}" "${stages:-null}" "$(cat /proc/loadavg)" "$inbox_metrics" "$cu_events" "$cu_secs" "$cu_wait" "$cu_pg_ms" "$cu_n_ms" <<'PY'
import json, sys
cu_events, cu_secs, cu_wait = int(sys.argv[11]), float(sys.argv[12]), float(sys.argv[13])
cu_pg_ms, cu_n_ms = int(sys.argv[14]), int(sys.argv[15])
res = json.loads(sys.argv[1])
res["stages"] = json.loads(sys.argv[8]) or []
res["loadavg_after"] = sys.argv[9]
res["notifier_inbox"] = dict((k, float(v)) for k, v in (x.split("=") for x in sys.argv[10].split()))
raw_tps, raw_lat = float(sys.argv[2] or 0), float(sys.argv[3] or 0)
ntasks, joined = (int(x) for x in sys.argv[4].split())
delivered, undelivered, max_att = (int(x) for x in sys.argv[5].split())
res.update({"raw_insert_outbox_tps_16_clients": raw_tps,
            "raw_insert_outbox_commit_ms_1_client": raw_lat,
            "tasks": ntasks, "tasks_with_joined_reports": joined,
            "deliveries_delivered": delivered, "deliveries_not_delivered": undelivered,
            "max_attempts": max_att, "notifier_env": sys.argv[7],
            "catchup_events": cu_events, "catchup_seconds": cu_secs,
            "catchup_first_move_after_s": cu_wait,
            "catchup_reports_per_s": round(cu_events / cu_secs, 1) if cu_secs > 0 else None,
            "catchup_postgres_cpu_ms": cu_pg_ms, "catchup_notifier_cpu_ms": cu_n_ms,
            "catchup_load_average": res["loadavg_after"].split()[0]})
json.dump(res, open(sys.argv[6], "w"), indent=2)
print()
print("%-52s %10s" % ("figure", "value"))
if raw_tps:
    print("%-52s %10.0f" % ("raw: INSERT+outbox tx/s (pgbench, 16 clients)", raw_tps))
    print("%-52s %10.2f" % ("raw: one INSERT+outbox commit, ms (pgbench, 1 client)", raw_lat))
for p in res["phases"]:
    r = p["rate"]
    print("%-52s %10d" % ("reports posted (201) at %d/s" % r, p["posted"]))
    print("%-52s %10.2f" % ("POST 201 -> webhook p50 ms at %d/s" % r, p["p50_ms"]))
    print("%-52s %10.2f" % ("POST 201 -> webhook p99 ms at %d/s%s" % (r, " (target < 50)" if r == 500 else ""), p["p99_ms"]))
    print("%-52s %10.2f" % ("POST 201 -> webhook max ms at %d/s" % r, p["max_ms"]))
    print("%-52s %10d" % ("lost at %d/s (target 0)" % r, p["lost"]))
    print("%-52s %10d" % ("duplicate task webhooks at %d/s" % r, p["duplicates"]))
    print("%-52s %10.2f" % ("POST latency p99 ms at %d/s (context)" % r, p["post_p99_ms"]))
for st in res["stages"]:
    print("%-52s %10s" % ("stages at %d/s, p50 / p99 ms:" % st["rate"], ""))
    for k, label in (("post_to_relay_commit_ms", "POST 201 -> event numbered (commit)"),
                     ("relay_to_inbox_commit_ms", "event numbered -> notifier inbox commit"),
                     ("inbox_commit_to_webhook_ms", "inbox commit -> webhook (claim + HTTP)")):
        print("  %-50s %10s" % (label, "%.1f / %.1f" % tuple(st[k])))
    print("  %-50s %10s" % ("notifier inbox: %d batches, mean %.1f reports (max %d), ms" % (
        st["inbox_batches"], st["inbox_batch_mean_reports"], st["inbox_batch_max_reports"]),
        "%.1f / %.1f" % tuple(st["inbox_batch_ms"])))
if cu_events:
    r = res["catchup_reports_per_s"] or 0
    print("%-52s %10.0f  %s" % ("notifier catch-up, reports/s (target >= 2000)", r,
        "PASS" if r >= 2000 else "MISS (%.2fx)" % (r / 2000)))
    print("  %-50s %10s" % ("%d events in %.2f s; first cursor move after" % (cu_events, cu_secs),
        "%.2f s" % cu_wait))
    print("  %-50s %10s" % ("CPU per report: Postgres / notifier, ms",
        "%.2f / %.2f" % (cu_pg_ms / cu_events, cu_n_ms / cu_events)))
print("%-52s %10s" % ("notifier inbox gaps / replays / redelivered", " / ".join(
    "%d" % res["notifier_inbox"].get(k, 0) for k in ("gaps", "replays", "duplicates"))))
print("%-52s %10d" % ("webhooks with a bad signature", res["bad_signatures"]))
print("%-52s %10d" % ("resends under the same delivery id", res["retries_same_delivery_id"]))
print("%-52s %10d" % ("tasks / with joined reports", ntasks), "/", joined)
print("%-52s %10d" % ("deliveries not delivered (max attempts %d)" % max_att, undelivered))
print("results: %s" % sys.argv[6])
PY
