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
#      and GET a filtered list of 1,000, p50/p99, with the CPU per list.
# BENCH_GET_ONLY=1 skips steps 1-3 (the GET figures alone, ~2 min).
# Steps 1 and 2 run BENCH_ROUNDS (3) times back to back, the ratio taken
# within each round, with the CPU each used per transaction or report
# (/proc: the postmaster's process tree, intake's process), which a loaded
# machine moves less than the rates. Prints medians, min-max and each
# figure against its target; JSON in var/bench/intake.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/bin
PGBIN=/usr/lib/postgresql/15/bin
CONC=${BENCH_CONCURRENCY:-16}
SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
ROWS=${BENCH_ROWS:-1000000}
GET_ONLY=${BENCH_GET_ONLY:-0}
[ "$GET_ONLY" = 1 ] && ROUNDS=0
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
echo "== $ROUNDS rounds: pgbench limits then intake, $CONC connections, ${SECS}s each"
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

# CPU seconds of a process and its descendants (live ones, plus reaped
# children), from /proc: for Postgres, the postmaster's tree.
cpu() { /usr/bin/python3 - "$1" <<'PY'
import os, sys
procs = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            s = open("/proc/%s/stat" % d).read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        procs[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]))
def tree(p):
    return procs[p][1] + sum(tree(c) for c, v in procs.items() if v[0] == p)
print(tree(int(sys.argv[1])) / os.sysconf("SC_CLK_TCK"))
PY
}
pm=$(head -1 "$work/pg/data/postmaster.pid")
intake_pid=${pids[0]}
# Prints tx/s, Postgres CPU us per tx, and the p50 and p99 latency (ms) of
# pgbench's own transactions (its per-transaction log): the raw limit's tail
# at full load, against which intake's POST p99 is read.
pgb() {
  local c0 c1 tps
  rm -f "$work"/pgblog*
  c0=$(cpu "$pm")
  tps=$(cd "$work" && "$PGBIN/pgbench" -n -c "$CONC" -j 2 -T "$SECS" -l --log-prefix=pgblog -f "$1" "$SUPER" 2>&1 | sed -nE 's/^tps = ([0-9.]+) .*/\1/p')
  c1=$(cpu "$pm")
  echo "$tps $(/usr/bin/python3 -c "print(round(($c1 - $c0) * 1e6 / ($tps * $SECS)))")" \
    "$(cat "$work"/pgblog* | awk '{print $3}' | sort -n | awk '{a[NR] = $1} END {printf "%.3f %.3f", a[int(NR * 0.5) + 1] / 1000, a[int(NR * 0.99) + 1] / 1000}')"
}
# Commits per report in intake: its report transactions, its relay's rounds.
commits() {
  local m; m=$(curl -s "http://127.0.0.1:$http/metrics")
  echo "$(echo "$m" | sed -nE 's/^trygg_outbox_rounds_total\{[^}]*\} ([0-9.e+]+)$/\1/p')" \
    "$(echo "$m" | sed -nE 's/^trygg_intake_commit_batches_total ([0-9.e+]+)$/\1/p')"
}
# The backend of intake's relay (services/common/outbox.c: its rounds, or its
# idle check): its CPU is work per report that pgbench's rows never cost.
relay_backend() { psql -c "SELECT pid FROM pg_stat_activity WHERE usename = 'intake'
  AND (query LIKE 'SELECT pg_advisory_xact_lock%' OR query LIKE 'WITH pending AS%'
  OR query LIKE 'SELECT last_seq, epoch::text, epoch_base_seq,%') ORDER BY pid LIMIT 1"; }
# Rounds, each back to back: the two pgbench limits, then intake. The
# machine's load moves all three; the ratio is taken within a round.
rounds=()
for round in $(seq "$ROUNDS"); do
  echo "== round $round/$ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  read -r raw_simple pg_simple pgb_p50 pgb_p99 < <(pgb "$work/simple.sql")
  echo "raw INSERT + outbox row:      $raw_simple tx/s  (Postgres ${pg_simple} us CPU per tx, p50 $pgb_p50 ms, p99 $pgb_p99 ms)"
  read -r raw_report pg_report _ _ < <(pgb "$work/report.sql")
  echo "raw report row + outbox row:  $raw_report tx/s  (Postgres ${pg_report} us CPU per tx)"
  stored0=$(psql -c "SELECT count(*) FROM intake.reports")
  rb=$(relay_backend)
  c0=$(cpu "$pm"); i0=$(cpu "$intake_pid"); m0=$(commits); r0=$(cpu "${rb:-$pm}")
  # BENCH_LAT_DIR: every answer's time and latency, a file per round.
  post=$(BENCH_LAT_FILE=${BENCH_LAT_DIR:+$BENCH_LAT_DIR/post-round$round.txt} \
    load --conns "$CONC" --seconds "$SECS")
  c1=$(cpu "$pm"); i1=$(cpu "$intake_pid"); m1=$(commits); r1=$(cpu "${rb:-$pm}")
  [ -n "$rb" ] || r1=$r0
  stored1=$(psql -c "SELECT count(*) FROM intake.reports")
  echo "$post"
  rounds+=("$(/usr/bin/python3 -c "
import json; n = $stored1 - $stored0; p = json.loads('$post')
print(json.dumps({'raw_simple': $raw_simple, 'raw_report': $raw_report, 'durable': round(n / $SECS, 1),
  'p50_ms': p['p50_ms'], 'p99_ms': p['p99_ms'], 'ok_per_s': p['ok_per_s'],
  'pg_us_per_tx_simple': $pg_simple, 'pg_us_per_tx_report': $pg_report,
  'pgbench_p50_ms': $pgb_p50, 'pgbench_p99_ms': $pgb_p99,
  'relay_rounds_per_report': round((float('$m1'.split()[0]) - float('$m0'.split()[0])) / max(n, 1), 3),
  'report_tx_per_report': round((float('$m1'.split()[1]) - float('$m0'.split()[1])) / max(n, 1), 3),
  'pg_us_per_report': round(($c1 - $c0) * 1e6 / max(n, 1)), 'relay_pg_us_per_report': round(($r1 - $r0) * 1e6 / max(n, 1)), 'intake_us_per_report': round(($i1 - $i0) * 1e6 / max(n, 1)),
  'loadavg': open('/proc/loadavg').read().split()[0]}, separators=(',', ':')))")")
  echo "intake durable:               $(echo "${rounds[-1]}" | field durable) reports/s"
done
psql -c "DROP SCHEMA benchraw CASCADE" >/dev/null
post_half='{"p50_ms":0,"p99_ms":0,"ok_per_s":0}'
if [ "$GET_ONLY" != 1 ]; then
  rate=$(echo "$post" | field ok_per_s)
  half=$(/usr/bin/python3 -c "print(int($rate / 2))")
  echo "== intake: POST latency at half that rate ($half/s)"
  post_half=$(load --conns "$CONC" --seconds "$SECS" --rate "$half")
  echo "$post_half"
fi
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
  # As a deployment's table would be: vacuumed (hint bits, visibility
  # map) and analyzed, and the load's WAL checkpointed. Measured right
  # after the bulk load, the GETs shared the cores with autovacuum of the
  # 1M fresh rows and with a checkpoint, and each first read of a page
  # set its hint bits and dirtied it.
  psql -c "VACUUM (ANALYZE) intake.reports" >/dev/null
  psql -c "CHECKPOINT" >/dev/null
fi
maxid=$(psql -c "SELECT max(service_request_id) FROM intake.reports")
get_one=$(load --mode get-one --max-id "$maxid" --conns "$CONC" --seconds "$SECS" --rate 1000)
echo "$get_one"
c0=$(cpu "$pm"); i0=$(cpu "$intake_pid")
get_list=$(load --mode get-list --max-id "$maxid" --conns "$CONC" --seconds "$SECS" --rate 50)
c1=$(cpu "$pm"); i1=$(cpu "$intake_pid")
get_list=$(/usr/bin/python3 -c "
import json; p = json.loads('$get_list'); n = max(p['responses'], 1)
p['pg_us'] = round(($c1 - $c0) * 1e6 / n); p['intake_us'] = round(($i1 - $i0) * 1e6 / n)
p['loadavg'] = open('/proc/loadavg').read().split()[0]
print(json.dumps(p, separators=(',', ':')))")
echo "$get_list"

/usr/bin/python3 - "$batches" "$CONC" "$post_half" "$get_one" "$get_list" "$out/intake.json" \
    "$SECS" "${rounds[@]}" <<'PY'
import json, statistics, sys
batches, conc = float(sys.argv[1] or 0), int(sys.argv[2])
half, one, lst = (json.loads(x) for x in sys.argv[3:6])
secs = int(sys.argv[7])
rounds = [json.loads(x) for x in sys.argv[8:]]
for r in rounds:
    r["ratio"] = round(r["durable"] / r["raw_simple"], 2) if r["raw_simple"] else 0
    r["ratio_report"] = round(r["durable"] / r["raw_report"], 2) if r["raw_report"] else 0
med = lambda k: statistics.median(r[k] for r in rounds)
spread = lambda k: (min(r[k] for r in rounds), max(r[k] for r in rounds))
res = {"concurrency": conc, "seconds": secs, "rounds": rounds,
       "median": {k: med(k) for k in rounds[0] if k != "loadavg"} if rounds else {},
       "transactions_total": batches, "post_half_rate": half,
       "get_one": one, "get_list_1000": lst}
json.dump(res, open(sys.argv[6], "w"), indent=2)
verdict = lambda ok: "PASS" if ok else "MISS"
print()
if rounds:
    print("intake, %d connections, %d rounds of %d s (median, min-max; load average %s):"
          % (conc, len(rounds), secs, ", ".join(r["loadavg"] for r in rounds)))
    print("  raw INSERT+outbox tx/s   %8.0f  (%.0f-%.0f)" % ((med("raw_simple"),) + spread("raw_simple")))
    print("  raw report+outbox tx/s   %8.0f  (%.0f-%.0f)" % ((med("raw_report"),) + spread("raw_report")))
    print("  intake durable reports/s %8.0f  (%.0f-%.0f)" % ((med("durable"),) + spread("durable")))
    print("  ratio to INSERT+outbox   %8.2fx (%.2f-%.2f)  target >= 1.0  %s"
          % ((med("ratio"),) + spread("ratio") + (verdict(med("ratio") >= 1.0),)))
    print("  ratio to report+outbox   %8.2fx (%.2f-%.2f)" % ((med("ratio_report"),) + spread("ratio_report")))
    print("  POST p99 at full load    %8.2f ms (%.2f-%.2f)  target < 5 ms  %s"
          % ((med("p99_ms"),) + spread("p99_ms") + (verdict(med("p99_ms") < 5),)))
    print("  POST p50 at full load    %8.2f ms" % med("p50_ms"))
    print("  pgbench INSERT+outbox    p50 %.2f ms  p99 %.2f ms (%.2f-%.2f)  (the raw limit's own latency, same rounds)"
          % ((med("pgbench_p50_ms"), med("pgbench_p99_ms")) + spread("pgbench_p99_ms")))
    print("  commits per report       %.3f report transactions + %.3f relay rounds"
          % (med("report_tx_per_report"), med("relay_rounds_per_report")))
    print("  Postgres CPU per report  %8.0f us  (pgbench: %.0f us per INSERT+outbox tx, %.0f us per report+outbox tx)"
          % (med("pg_us_per_report"), med("pg_us_per_tx_simple"), med("pg_us_per_tx_report")))
    print("    of which the relay     %8.0f us  (numbering and publishing; pgbench's outbox rows are never numbered)"
          % med("relay_pg_us_per_report"))
    print("  intake CPU per report    %8.0f us" % med("intake_us_per_report"))
    print("  POST at half load        p50 %.2f ms  p99 %.2f ms  (%.0f/s)" % (half["p50_ms"], half["p99_ms"], half["ok_per_s"]))
print("  GET one (1M rows)        p50 %.2f ms  p99 %.2f ms  (%.0f/s)  target p99 < 10 ms  %s"
      % (one["p50_ms"], one["p99_ms"], one["ok_per_s"], verdict(one["p99_ms"] < 10)))
print("  GET list of 1000         p50 %.2f ms  p99 %.2f ms  (%.0f/s)  target p99 < 10 ms  %s"
      % (lst["p50_ms"], lst["p99_ms"], lst["ok_per_s"], verdict(lst["p99_ms"] < 10)))
print("  CPU per list of 1000     Postgres %.0f us, intake %.0f us  (load average %s)"
      % (lst["pg_us"], lst["intake_us"], lst["loadavg"]))
print("results: %s" % sys.argv[6])
PY
