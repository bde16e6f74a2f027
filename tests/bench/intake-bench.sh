#!/usr/bin/env bash
# intake-bench.sh: the intake gateway's benchmark (issue 4, part 8).
# Standalone: tests/bench/intake-bench.sh (after `make`); `make bench` may
# call it. On its own Postgres cluster (synchronous commit, fsync on) it
# measures, in one run and at the same concurrency CONC:
#   1. the raw limits, with pgbench: (a) INSERT + outbox row per
#      transaction, the backbone's limit (same tables as run-bench.sh), and
#      (b) the same with intake's own report row (its table and indexes);
#   2. intake's durable accepted reports/s: CONC keep-alive connections
#      posting valid, varied reports to POST /v1/reports as fast as they
#      are answered (every 201 is committed with its outbox row);
#   3. p50/p99 POST latency at half that rate (paced);
#   4. with BENCH_ROWS (default 1,000,000) reports stored: GET one report
#      and GET a filtered list of 1,000, p50/p99.
# Prints each figure with its ratio to the limit; JSON in var/bench/intake.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/bin
PGBIN=/usr/lib/postgresql/15/bin
CONC=${BENCH_CONCURRENCY:-16}
SECS=${BENCH_SECONDS:-10}
ROWS=${BENCH_ROWS:-1000000}
out=var/bench
mkdir -p "$out"
[ -x "$BIN/trygg-intake" ] || { echo "build first: make"; exit 1; }
work=$(mktemp -d /tmp/trygg-intake-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  deploy/pg-cluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cc -O2 -o "$work/intake-load" tests/bench/intake-bench.c $(pkg-config --cflags --libs libuv) -lm
load() { "$work/intake-load" --port "$http" --key "$key" "$@"; }
field() { sed -nE "s/.*\"$1\":([0-9.]+).*/\1/p"; }

deploy/pg-cluster.sh start "$work/pg" >/dev/null
SUPER=$(deploy/pg-cluster.sh url "$work/pg")
deploy/pg-cluster.sh bootstrap "$work/pg" intake benchraw >/dev/null
psql() { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$SUPER" "$@"; }
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== raw limits at $CONC clients (pgbench, ${SECS}s each)"
{ echo "SET search_path = benchraw;"; cat services/common/sql/*.sql services/intake/sql/*.sql;
  echo "CREATE TABLE produced (n bigint PRIMARY KEY); CREATE SEQUENCE nseq;"
  echo "INSERT INTO partners (name, role) VALUES ('bench', 'staff');"; } | psql >/dev/null
cat > "$work/simple.sql" <<'SQL'
BEGIN;
INSERT INTO benchraw.produced (n) VALUES (nextval('benchraw.nseq'));
INSERT INTO benchraw.outbox (event_type, payload) VALUES ('trygg.testing.TestEvent', '\x0801120c74657374206576656e742031');
COMMIT;
SQL
cat > "$work/report.sql" <<'SQL'
\set lat random(0, 30000)
\set lon random(0, 60000)
BEGIN;
INSERT INTO benchraw.reports (id, partner_id, category, sensitive, severity, lat, long, description, created_at, updated_at) VALUES (gen_random_uuid(), 1, 'litter', false, 2, 59.3265 + :lat / 1e6, 18.0205 + :lon / 1e6, 'Overflowing bin by the entrance', now(), now());
INSERT INTO benchraw.outbox (event_type, payload) VALUES ('trygg.events.ReportReceived', '\x0a2431636461303765632d383864652d343461382d613437322d326464373239613366326666');
COMMIT;
SQL
pgb() { "$PGBIN/pgbench" -n -c "$CONC" -j 2 -T "$SECS" -f "$1" "$SUPER" 2>&1 | sed -nE 's/^tps = ([0-9.]+) .*/\1/p'; }
raw_simple=$(pgb "$work/simple.sql")
echo "INSERT + outbox row:        $raw_simple tx/s"
raw_report=$(pgb "$work/report.sql")
echo "report row + outbox row:    $raw_report tx/s"
psql -c "DROP SCHEMA benchraw CASCADE" >/dev/null

echo "== intake: $CONC connections posting reports (${SECS}s)"
export DATABASE_URL=${SUPER/trygg@/intake@}
"$BIN/trygg-intake" admin demo-seed --keys-file "$work/keys.json" \
  --places deploy/demo/places.geojson >/dev/null
"$BIN/trygg-intake" admin partner rate norrmalm-staff 1000000000 >/dev/null
key=$(sed -nE 's/.*"norrmalm-staff": "([^"]+)".*/\1/p' "$work/keys.json")
http=$(port)
env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" TRYGG_HTTP_PORT=$http TRYGG_LOG_LEVEL=warn \
  TRYGG_DB_CONNECTIONS=$CONC TRYGG_BUS_PUB_URL="tcp://127.0.0.1:$(port)" \
  TRYGG_BUS_REP_URL="tcp://127.0.0.1:$(port)" ${BENCH_INTAKE_ENV:-} \
  "$BIN/trygg-intake" 2>"$out/intake-bench.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break; sleep 0.1; done
load --conns "$CONC" --seconds 2 >/dev/null   # warm up
stored0=$(psql -c "SELECT count(*) FROM intake.reports")
post=$(load --conns "$CONC" --seconds "$SECS")
stored1=$(psql -c "SELECT count(*) FROM intake.reports")
rate=$(echo "$post" | field ok_per_s)
durable=$(/usr/bin/python3 -c "print(round(($stored1 - $stored0) / $SECS, 1))")
echo "$post"
half=$(/usr/bin/python3 -c "print(int($rate / 2))")
echo "== intake: POST latency at half that rate ($half/s)"
post_half=$(load --conns "$CONC" --seconds "$SECS" --rate "$half")
echo "$post_half"
batches=$(curl -s "http://127.0.0.1:$http/metrics" | sed -nE 's/^trygg_intake_commit_batches_total ([0-9.e+]+)$/\1/p')

echo "== GET latency with $ROWS reports stored"
have=$(psql -c "SELECT count(*) FROM intake.reports")
if [ "$have" -lt "$ROWS" ]; then
  psql -c "INSERT INTO intake.reports (id, partner_id, category, sensitive, severity, lat, long,
      description, attributes, created_at, updated_at)
    SELECT gen_random_uuid(), 1 + i % 5, (ARRAY['litter','graffiti_offensive','vandalism',
      'lighting','vegetation','traffic','sleeping_outdoors','other'])[1 + i % 8], false, 2,
      59.3265 + random() * 0.03, 18.0205 + random() * 0.064, 'seeded report ' || i, '{}',
      now() - i * interval '1 second', now() - i * interval '1 second'
    FROM generate_series(1, $ROWS - $have) i" >/dev/null
  psql -c "ANALYZE intake.reports" >/dev/null
fi
maxid=$(psql -c "SELECT max(service_request_id) FROM intake.reports")
get_one=$(load --mode get-one --max-id "$maxid" --conns "$CONC" --seconds "$SECS" --rate 1000)
echo "$get_one"
get_list=$(load --mode get-list --max-id "$maxid" --conns "$CONC" --seconds "$SECS" --rate 50)
echo "$get_list"

/usr/bin/python3 - "$raw_simple" "$raw_report" "$durable" "$batches" "$CONC" "$post" \
    "$post_half" "$get_one" "$get_list" "$out/intake.json" <<'PY'
import json, sys
raw_simple, raw_report, durable, batches = (float(x or 0) for x in sys.argv[1:5])
conc = int(sys.argv[5])
post, half, one, lst = (json.loads(x) for x in sys.argv[6:10])
res = {"concurrency": conc, "raw_insert_outbox_tps": raw_simple,
       "raw_report_outbox_tps": raw_report, "intake_reports_per_s": post["ok_per_s"],
       "intake_durable_reports_per_s": durable,
       "ratio_to_insert_outbox": round(durable / raw_simple, 2) if raw_simple else None,
       "ratio_to_report_outbox": round(durable / raw_report, 2) if raw_report else None,
       "transactions_total": batches, "post_full": post, "post_half_rate": half,
       "get_one": one, "get_list_1000": lst}
json.dump(res, open(sys.argv[10], "w"), indent=2)
print()
print("intake, %d connections:" % conc)
print("  durable reports/s      %8.0f   %.2fx INSERT+outbox (%0.f tx/s), %.2fx report+outbox (%.0f tx/s)"
      % (durable, res["ratio_to_insert_outbox"] or 0, raw_simple,
         res["ratio_to_report_outbox"] or 0, raw_report))
print("  POST at full load      p50 %.2f ms  p99 %.2f ms" % (post["p50_ms"], post["p99_ms"]))
print("  POST at half load      p50 %.2f ms  p99 %.2f ms  (%.0f/s)" % (half["p50_ms"], half["p99_ms"], half["ok_per_s"]))
print("  GET one (1M rows)      p50 %.2f ms  p99 %.2f ms  (%.0f/s)" % (one["p50_ms"], one["p99_ms"], one["ok_per_s"]))
print("  GET list of 1000       p50 %.2f ms  p99 %.2f ms  (%.0f/s)" % (lst["p50_ms"], lst["p99_ms"], lst["ok_per_s"]))
print("results: %s" % sys.argv[10])
PY
