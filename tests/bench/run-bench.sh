#!/usr/bin/env bash
# run-bench.sh: the backbone benchmark (`make bench`).
#
# On its own Postgres cluster (synchronous commit, fsync on, as in
# production) it measures, in one run:
#   1. the raw limits: pgbench's INSERT + outbox-row transaction rate at
#      the benchmark's concurrency (the same tables and rows the test
#      publisher writes), and bare nng pub/sub over tcp loopback;
#   2. the end-to-end event rate: trygg-testpub producing N events (each
#      its own transaction with an outbox row, CONCURRENCY in flight),
#      relayed over nng to trygg-testsub, which applies each exactly once;
#   3. commit-to-effect latency (p50, p99) at half the end-to-end rate:
#      from the commit of the producer's transaction to the commit of the
#      subscriber's effect (track_commit_timestamp);
# and prints each figure with its ratio to the limit. Results also go to
# var/bench/results.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/bin
PGBIN=/usr/lib/postgresql/15/bin
CONC=${BENCH_CONCURRENCY:-16}
EVENTS=${BENCH_EVENTS:-60000}
SECS=${BENCH_SECONDS:-10}
out=var/bench
mkdir -p "$out"
chmod 755 var "$out" 2>/dev/null || true
pgdir=$(mktemp -d /tmp/trygg-bench.XXXXXX)
chmod 755 "$pgdir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  deploy/pg-cluster.sh stop "$pgdir/pg" || true
  rm -rf "$pgdir"
}
trap cleanup EXIT

# Commit timestamps let the latency be measured from the producer's commit
# to the subscriber's commit, both as Postgres saw them.
PG_EXTRA_OPTS="-c track_commit_timestamp=on" deploy/pg-cluster.sh start "$pgdir/pg"
SUPER=$(deploy/pg-cluster.sh url "$pgdir/pg")
deploy/pg-cluster.sh bootstrap "$pgdir/pg" testpub testsub benchraw
psql() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$SUPER" "$@"; }
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== raw limit: INSERT + outbox row per transaction, $CONC clients (pgbench, ${SECS}s)"
{ echo "SET search_path = benchraw;"; cat services/common/sql/*.sql tests/tools/sql/testpub/*.sql;
  echo "CREATE SEQUENCE nseq;"; } | psql >/dev/null
cat > "$pgdir/tx.sql" <<'SQL'
BEGIN;
INSERT INTO benchraw.produced (n) VALUES (nextval('benchraw.nseq'));
INSERT INTO benchraw.outbox (event_type, payload) VALUES ('trygg.testing.TestEvent', '\x0801120c74657374206576656e742031');
COMMIT;
SQL
pg_tps=$("$PGBIN/pgbench" -n -c "$CONC" -j 2 -T "$SECS" -f "$pgdir/tx.sql" "$SUPER" 2>&1 |
  sed -nE 's/^tps = ([0-9.]+) .*/\1/p')
echo "pgbench: $pg_tps tx/s"

echo "== raw limit: nng pub/sub, 256-byte messages, tcp loopback"
nng_json=$("$BIN/trygg-nngbench" "tcp://127.0.0.1:$(port)" 300000 256)
nng_rate=$(echo "$nng_json" | sed -nE 's/.*"msgs_per_s":([0-9.]+).*/\1/p')
echo "nng: $nng_rate msg/s"

pub_url="tcp://127.0.0.1:$(port)"; rep_url="tcp://127.0.0.1:$(port)"
pub_http=$(port); sub_http=$(port)
env -i PATH="$PATH" DATABASE_URL="${SUPER/trygg@/testpub@}" TRYGG_HTTP_PORT=$pub_http \
  TRYGG_BUS_PUB_URL=$pub_url TRYGG_BUS_REP_URL=$rep_url TRYGG_LOG_LEVEL=warn \
  TRYGG_DB_CONNECTIONS=$CONC "$BIN/trygg-testpub" 2>"$out/testpub.log" &
pids+=($!)
env -i PATH="$PATH" DATABASE_URL="${SUPER/trygg@/testsub@}" TRYGG_HTTP_PORT=$sub_http \
  TRYGG_BUS_TESTPUB_SUB_URL=$pub_url TRYGG_BUS_TESTPUB_REQ_URL=$rep_url TRYGG_LOG_LEVEL=warn \
  "$BIN/trygg-testsub" 2>"$out/testsub.log" &
pids+=($!)

/usr/bin/python3 tests/bench/e2e.py --pub "http://127.0.0.1:$pub_http" --sub "http://127.0.0.1:$sub_http" \
  --db "$SUPER" --events "$EVENTS" --concurrency "$CONC" --seconds "$SECS" \
  --pg-tps "$pg_tps" --nng-rate "$nng_rate" --out "$out/results.json"
