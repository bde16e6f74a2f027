#!/usr/bin/env bash
# reporting-bench.sh: the situation picture's benchmark (issue 11, part 6).
# Standalone: tests/bench/reporting-bench.sh (after `make`); not in `make
# test`. On its own Postgres cluster (synchronous commit, fsync on) it
#   1. stores BENCH_ROWS (default 1,000,000) reports over two years and
#      their tasks (acknowledged, done) in reporting's schema, with the
#      aggregates the inbox would have built (set-based SQL doing what
#      apply_report/apply_task do, so it takes minutes, not hours);
#   2. measures GET /v1/picture for a year of the district (staff, and the
#      suppressed public one), a quarter of a place, and the page (GET /,
#      its static files and the picture JSON it fetches): p50/p99, first
#      with every picture computed (TRYGG_PICTURE_CACHE=0), then as served
#      (a picture is computed again after any change or after 60 s);
#   3. measures the inbox's apply rate: BENCH_EVENTS (default 50,000)
#      ReportReceived events waiting in a stand-in intake's outbox, applied
#      by reporting (with the 1,000,000 stored) from cursor 0; against the
#      raw INSERT + outbox-row transaction rate at BENCH_CONCURRENCY
#      clients (pgbench), the limit intake's accepted rate is held to.
# Targets: year JSON p99 < 100 ms, page p99 < 300 ms, apply rate >= 1.0x.
# JSON in var/bench/reporting.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/bin
PGBIN=/usr/lib/postgresql/15/bin
CONC=${BENCH_CONCURRENCY:-16}
SECS=${BENCH_SECONDS:-10}
ROWS=${BENCH_ROWS:-1000000}
EVENTS=${BENCH_EVENTS:-50000}
out=var/bench
mkdir -p "$out"
[ -x "$BIN/trygg-reporting" ] || { echo "build first: make"; exit 1; }
work=$(mktemp -d /tmp/trygg-reporting-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  deploy/pg-cluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

deploy/pg-cluster.sh start "$work/pg" >/dev/null
SUPER=$(deploy/pg-cluster.sh url "$work/pg")
deploy/pg-cluster.sh bootstrap "$work/pg" reporting evintake benchraw >/dev/null
psql() { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$SUPER" "$@"; }
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RURL=${SUPER/trygg@/reporting@}

echo "== raw limit: INSERT + outbox row per transaction, $CONC clients (pgbench, ${SECS}s)"
{ echo "SET search_path = benchraw;"; cat services/common/sql/*.sql;
  echo "CREATE TABLE produced (n bigint PRIMARY KEY); CREATE SEQUENCE nseq;"; } | psql >/dev/null
cat > "$work/tx.sql" <<'SQL'
BEGIN;
INSERT INTO benchraw.produced (n) VALUES (nextval('benchraw.nseq'));
INSERT INTO benchraw.outbox (event_type, payload) VALUES ('trygg.testing.TestEvent', '\x0801120c74657374206576656e742031');
COMMIT;
SQL
pg_tps=$("$PGBIN/pgbench" -n -c "$CONC" -j 2 -T "$SECS" -f "$work/tx.sql" "$SUPER" 2>&1 |
  sed -nE 's/^tps = ([0-9.]+) .*/\1/p')
echo "pgbench: $pg_tps tx/s"

echo "== storing $ROWS reports and their tasks"
env -i PATH="$PATH" DATABASE_URL="$RURL" "$BIN/trygg-reporting" admin places load \
  deploy/demo/places.geojson >/dev/null
key=$(env -i PATH="$PATH" DATABASE_URL="$RURL" "$BIN/trygg-reporting" admin key issue bench \
  --role staff --quiet)
t0=$(date +%s)
psql -v rows="$ROWS" -f tests/bench/reporting-bench.sql
echo "stored in $(( $(date +%s) - t0 )) s: $(psql -c "SELECT count(*) FROM reporting.reports") reports,"\
" $(psql -c "SELECT count(*) FROM reporting.tasks") tasks,"\
" $(psql -c "SELECT count(*) FROM reporting.counts_day") day rows,"\
" $(psql -c "SELECT count(*) FROM reporting.response_day") histogram rows"

ipub="tcp://127.0.0.1:$(port)"; irep="tcp://127.0.0.1:$(port)"
http=$(port)
start_reporting() {
  env -i PATH="$PATH" DATABASE_URL="$RURL" TRYGG_HTTP_PORT=$http TRYGG_LOG_LEVEL=warn \
    TRYGG_PICTURE_CACHE=${PICTURE_CACHE:-60s} \
    TRYGG_BUS_INTAKE_SUB_URL=$ipub TRYGG_BUS_INTAKE_REQ_URL=$irep \
    "$BIN/trygg-reporting" 2>>"$out/reporting.log" &
  rpid=$!
  pids+=($rpid)
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$http/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "reporting did not start; see $out/reporting.log"; exit 1
}
: > "$out/reporting.log"
echo "== every picture computed (TRYGG_PICTURE_CACHE=0)"
PICTURE_CACHE=0 start_reporting
/usr/bin/python3 tests/bench/reporting-bench.py latency --base "http://127.0.0.1:$http" \
  --key "$key" --out "$work/latency-uncached.json"
kill "$rpid"; wait "$rpid" 2>/dev/null || true
echo "== as served (a picture is computed again after any change, or after 60 s)"
start_reporting
/usr/bin/python3 tests/bench/reporting-bench.py latency --base "http://127.0.0.1:$http" \
  --key "$key" --out "$work/latency.json"

echo "== inbox apply rate: $EVENTS reports waiting in intake's outbox"
kill "$rpid"; wait "$rpid" 2>/dev/null || true
# The stand-in intake first (it creates its outbox), then the backlog, then
# reporting from cursor 0.
ephttp=$(port)
env -i PATH="$PATH" DATABASE_URL="${SUPER/trygg@/evintake@}" TRYGG_HTTP_PORT=$ephttp \
  TRYGG_LOG_LEVEL=warn TRYGG_EVENTPUB_SCHEMA=evintake TRYGG_PUBLISHER=intake \
  TRYGG_BUS_PUB_URL=$ipub TRYGG_BUS_REP_URL=$irep "$BIN/trygg-eventpub" 2>>"$out/eventpub.log" &
pids+=($!)
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$ephttp/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
/usr/bin/python3 tests/bench/reporting-bench.py events --db "$SUPER" --schema evintake \
  --events "$EVENTS"
psql -c "DELETE FROM reporting.inbox_cursor" >/dev/null
start_reporting
/usr/bin/python3 tests/bench/reporting-bench.py apply --db "$SUPER" --events "$EVENTS" \
  --pg-tps "$pg_tps" --latency "$work/latency.json" --uncached "$work/latency-uncached.json" \
  --out "$out/reporting.json"
