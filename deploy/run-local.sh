#!/usr/bin/env bash
# run-local.sh: `make run`. Starts the whole system on this machine.
#
# Without DATABASE_URL it starts a Postgres 15 cluster under var/pg (unix
# socket only, a free port; data kept between runs), creates one role and
# one schema per service, starts every service that has been built, loads
# the demo data, prints where everything listens, and waits. Ctrl-C (or
# SIGTERM) drains the services and stops Postgres; nothing is left running.
#
# With DATABASE_URL set, that database is used instead (its user must be
# able to create schemas); every service then connects as that user, each
# to its own schema.
#
# Environment: TRYGG_VAR_DIR (default ./var) holds the cluster, logs, bus
# sockets and var/demo-keys.json. BACKBONE=1 also starts the backbone demo
# (test publisher + subscriber, producing a trickle of events).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
BIN=$ROOT/$BUILD/bin
VAR=${TRYGG_VAR_DIR:-$ROOT/var}
mkdir -p "$VAR/log" "$VAR/run"
VAR=$(cd "$VAR" && pwd)
chmod 755 "$VAR" 2>/dev/null || true

pids=()
names=()
own_cluster=""
stopping=""
stop_all() {
  [ -n "$stopping" ] && return
  stopping=1
  echo
  echo "stopping..."
  # A history import still running is cut short (its open batch rolls back).
  if [ -n "${history_pid:-}" ]; then kill -TERM "$history_pid" 2>/dev/null || true; fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$own_cluster" ]; then deploy/pg-cluster.sh stop "$VAR/pg"; fi
  echo "stopped."
}
trap stop_all EXIT
trap 'exit 0' INT TERM

if [ -z "${DATABASE_URL:-}" ]; then
  deploy/pg-cluster.sh start "$VAR/pg"
  own_cluster=1
  SUPER=$(deploy/pg-cluster.sh url "$VAR/pg")
  deploy/pg-cluster.sh bootstrap "$VAR/pg" intake notifier walks reporting testpub testsub
  db_url() { echo "${SUPER/trygg@/$1@}"; }
else
  db_url() { echo "$DATABASE_URL"; }
fi

# start NAME SCHEMA PORT [VAR=VALUE...]: one program in the background,
# its JSON log lines (stderr) in var/log/NAME.log and what it prints for
# people (stdout) on this terminal; waits until /readyz answers.
start() {
  local name=$1 schema=$2 port=$3; shift 3
  env -i PATH="$PATH" HOME="${HOME:-/}" DATABASE_URL="$(db_url "$schema")" ${LSAN_OPTIONS:+LSAN_OPTIONS="$LSAN_OPTIONS"} \
    TRYGG_HTTP_PORT="$port" "$@" "$BIN/trygg-$name" 2>>"$VAR/log/$name.log" &
  pids+=($!)
  names+=("$name")
  local i
  for i in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
      printf '  %-14s http://127.0.0.1:%s   (log: %s)\n' "$name" "$port" "${VAR#$ROOT/}/log/$name.log"
      return 0
    fi
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "$name failed to start; last lines of its log:" >&2
      tail -20 "$VAR/log/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$name did not become ready in 30 s; see $VAR/log/$name.log" >&2
  exit 1
}

BUS=ipc://$VAR/run
started=0
echo "services:"
# The real services, each once it exists. Ports: intake 8080, notifier
# 8081, walk-planner 8082, reporting 8083; the demo crew receiver 8099.
INTAKE_PORT=${INTAKE_PORT:-8080}
NOTIFIER_PORT=${NOTIFIER_PORT:-8081}
CREW_PORT=${CREW_PORT:-8099}
if [ -x "$BIN/trygg-intake" ]; then
  start intake intake "$INTAKE_PORT" \
    TRYGG_BUS_PUB_URL="$BUS/intake.pub" TRYGG_BUS_REP_URL="$BUS/intake.rep" \
    TRYGG_BUS_NOTIFIER_SUB_URL="$BUS/notifier.pub" TRYGG_BUS_NOTIFIER_REQ_URL="$BUS/notifier.rep"
  started=$((started + 1))
fi
# A mail catcher for the demo (walk invitations with their .ics, e-mail
# tasks): every message the notifier sends lands as one file in
# var/mail/new/ (Maildir), unless TRYGG_SMTP_URL names a real relay.
MAIL_PORT=${MAIL_PORT:-1025}
if [ -x "$BIN/trygg-notifier" ] && [ -z "${TRYGG_SMTP_URL:-}" ] &&
  /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null; then
  /usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$MAIL_PORT" -c aiosmtpd.handlers.Mailbox \
    "$VAR/mail" >>"$VAR/log/mail.log" 2>&1 &
  pids+=($!)
  names+=(mail)
  TRYGG_SMTP_URL="smtp://127.0.0.1:$MAIL_PORT"
  printf '  %-14s %s   (messages: %s)\n' mail "$TRYGG_SMTP_URL" "${VAR#$ROOT/}/mail/new/"
fi
if [ -x "$BIN/trygg-notifier" ]; then
  start notifier notifier "$NOTIFIER_PORT" \
    TRYGG_BUS_PUB_URL="$BUS/notifier.pub" TRYGG_BUS_REP_URL="$BUS/notifier.rep" \
    TRYGG_BUS_INTAKE_SUB_URL="$BUS/intake.pub" TRYGG_BUS_INTAKE_REQ_URL="$BUS/intake.rep" \
    TRYGG_BUS_WALK_PLANNER_SUB_URL="$BUS/walk-planner.pub" \
    TRYGG_BUS_WALK_PLANNER_REQ_URL="$BUS/walk-planner.rep" \
    ${TRYGG_SMTP_URL:+TRYGG_SMTP_URL="$TRYGG_SMTP_URL"}
  started=$((started + 1))
fi
WALKS_PORT=${WALKS_PORT:-8082}
if [ -x "$BIN/trygg-walk-planner" ]; then
  # Demo walk data first (admin commands need no running service): places
  # as a fallback until intake publishes PlaceDefined, ILLUSTRATIVE survey
  # figures, made-up participants, a staff key in var/walks-keys.json.
  wp_admin() { env -i PATH="$PATH" DATABASE_URL="$(db_url walks)" "$BIN/trygg-walk-planner" admin "$@"; }
  wp_admin places load deploy/demo/places.geojson >/dev/null
  wp_admin survey load deploy/demo/survey-illustrative.csv --areas deploy/demo/survey-areas.geojson \
    --survey trygghetsmatning --year 2025 --illustrative >/dev/null
  env -i PATH="$PATH" DATABASE_URL="$(db_url walks)" deploy/demo/walk-participants.sh "$BIN"
  walks_key=$(wp_admin key issue demo-staff --keys-file "$VAR/walks-keys.json")
  start walk-planner walks "$WALKS_PORT" \
    TRYGG_BUS_PUB_URL="$BUS/walk-planner.pub" TRYGG_BUS_REP_URL="$BUS/walk-planner.rep" \
    TRYGG_BUS_INTAKE_SUB_URL="$BUS/intake.pub" TRYGG_BUS_INTAKE_REQ_URL="$BUS/intake.rep" \
    TRYGG_BUS_NOTIFIER_SUB_URL="$BUS/notifier.pub" TRYGG_BUS_NOTIFIER_REQ_URL="$BUS/notifier.rep" \
    TRYGG_PUBLIC_URL="http://127.0.0.1:$WALKS_PORT"
  echo "  walk-planner staff key (also in ${VAR#$ROOT/}/walks-keys.json): $walks_key"
  started=$((started + 1))
fi

# Demo data: partners with keys (intake), units, rules and unit keys
# (notifier) whose webhooks go to the demo crew receiver.
if [ -x "$BIN/trygg-intake" ]; then
  echo "demo partners (keys also in ${VAR#$ROOT/}/demo-keys.json):"
  env -i PATH="$PATH" DATABASE_URL="$(db_url intake)" "$BIN/trygg-intake" admin demo-seed \
    --keys-file "$VAR/demo-keys.json" --places deploy/demo/places.geojson \
    --url "http://127.0.0.1:$INTAKE_PORT"
fi
if [ -x "$BIN/trygg-notifier" ] && [ -x "$BIN/trygg-crewdemo" ]; then
  [ -f "$VAR/crew-secret" ] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$VAR/crew-secret"
  secret=$(cat "$VAR/crew-secret")
  PSQL=/usr/lib/postgresql/15/bin/psql deploy/demo/seed-notifier.sh "$(db_url notifier)" \
    "http://127.0.0.1:$CREW_PORT/webhook" "$secret" "$VAR/notifier-keys.json" >"$VAR/log/seed-notifier.out"
  echo "demo units: keys in ${VAR#$ROOT/}/notifier-keys.json"
  echo "demo crew receiver (prints each task it receives):"
  start crewdemo notifier "$CREW_PORT" TRYGG_SECRET="$secret" \
    TRYGG_KEYS_FILE="$VAR/notifier-keys.json"
fi
# A year of synthetic history for the district (deploy/demo/history.py,
# the same file for the same day), imported through intake's outbox like
# any report (`admin import`; docs/intake.md). Once per database, in the
# background (about 10 s here; generating the file takes 1-2 s): the
# services serve meanwhile. HISTORY=0
# skips it.
if [ -x "$BIN/trygg-intake" ] && [ "${HISTORY:-1}" != 0 ]; then
  loaded=$(/usr/lib/postgresql/15/bin/psql -X -qAt "$(db_url intake)" \
    -c "SELECT EXISTS (SELECT 1 FROM intake.reports WHERE imported)" 2>/dev/null || echo f)
  if [ "$loaded" != t ]; then
    python3 deploy/demo/history.py > "$VAR/history.csv"
    env -i PATH="$PATH" DATABASE_URL="$(db_url intake)" "$BIN/trygg-intake" admin import \
      "$VAR/history.csv" >"$VAR/log/history.log" 2>&1 &
    history_pid=$! # not in pids: it is meant to finish
    echo "history: a year of synthetic reports loading in the background (${VAR#$ROOT/}/log/history.log)"
  fi
fi
# Reporting (docs/reporting.md): follows intake, the notifier and
# walk-planner; the demo places until intake publishes PlaceDefined; a
# fresh staff key each run in var/reporting-keys.json.
if [ -x "$BIN/trygg-reporting" ]; then
  REPORTING_PORT=${REPORTING_PORT:-8083}
  env -i PATH="$PATH" DATABASE_URL="$(db_url reporting)" "$BIN/trygg-reporting" admin places load \
    deploy/demo/places.geojson >/dev/null
  rkey=$(env -i PATH="$PATH" DATABASE_URL="$(db_url reporting)" "$BIN/trygg-reporting" admin key \
    issue "demo staff" --role staff --quiet)
  printf '{"staff": "%s"}\n' "$rkey" > "$VAR/reporting-keys.json"
  start reporting reporting "$REPORTING_PORT" \
    TRYGG_BUS_INTAKE_SUB_URL="$BUS/intake.pub" TRYGG_BUS_INTAKE_REQ_URL="$BUS/intake.rep" \
    TRYGG_BUS_NOTIFIER_SUB_URL="$BUS/notifier.pub" TRYGG_BUS_NOTIFIER_REQ_URL="$BUS/notifier.rep" \
    TRYGG_BUS_WALK_PLANNER_SUB_URL="$BUS/walk-planner.pub" \
    TRYGG_BUS_WALK_PLANNER_REQ_URL="$BUS/walk-planner.rep"
  echo "  the situation picture: http://127.0.0.1:$REPORTING_PORT/#key=$rkey"
  echo "    (staff key in ${VAR#$ROOT/}/reporting-keys.json; without the key: the public picture)"
  started=$((started + 1))
fi
if [ "${BACKBONE:-}" = 1 ] || [ "$started" -eq 0 ]; then
  # The reliable-events backbone on its own: a publisher writing events
  # through its outbox and a subscriber applying them through its inbox.
  start testpub testpub "${TESTPUB_PORT:-8090}" \
    TRYGG_BUS_PUB_URL="$BUS/testpub.pub" TRYGG_BUS_REP_URL="$BUS/testpub.rep"
  start testsub testsub "${TESTSUB_PORT:-8091}" \
    TRYGG_BUS_TESTPUB_SUB_URL="$BUS/testpub.pub" TRYGG_BUS_TESTPUB_REQ_URL="$BUS/testpub.rep"
  curl -fsS -X POST -H 'Content-Type: application/json' \
    -d '{"count": 1000, "concurrency": 4, "rate": 50}' \
    "http://127.0.0.1:${TESTPUB_PORT:-8090}/produce" >/dev/null
  echo "  backbone demo: testpub produces 50 events/s; watch them arrive with"
  echo "    curl -s http://127.0.0.1:${TESTSUB_PORT:-8091}/metrics | grep trygg_inbox_applied_seq"
fi
if [ -n "$own_cluster" ]; then
  echo "postgres:"
  echo "  psql '$SUPER'"
fi
echo "bus sockets: $VAR/run/"
if [ -x "$BIN/trygg-intake" ]; then
  cat <<TRY
try it: post a litter report at Sergels torg as the resident app, and watch
the crew receiver above print the signed task it gets:
  curl -s -X POST http://127.0.0.1:$INTAKE_PORT/v1/reports \\
    -H "Authorization: Bearer \$(sed -nE 's/.*"trygg-app": *"([^"]+)".*/\1/p' ${VAR#$ROOT/}/demo-keys.json)" \\
    -H 'Content-Type: application/json' \\
    -d '{"category":"litter","lat":59.3324,"long":18.0637,"description":"Overflowing bin"}'
(docs/intake.md and docs/notifier.md have the rest; docs/walk-planner.md for walks.)
TRY
fi
if [ -x "$BIN/trygg-walk-planner" ]; then
  # Issue 10's journey: a walk for southern Johannes (the demo's survey
  # area "johannes", where the hotspot "Southern Johannes" lies) next
  # Thursday, local time; docs/walk-planner.md, "Demo", has the rest.
  thursday=$(TZ=Europe/Stockholm date -d 'next thursday' +%F)
  echo "plan a safety walk: a proposal for southern Johannes next Thursday (after dark, through its worst places):"
  echo "  K=\$(sed -nE 's/.*\"demo-staff\": *\"([^\"]+)\".*/\\1/p' ${VAR#$ROOT/}/walks-keys.json)"
  echo "  curl -s -X POST http://127.0.0.1:$WALKS_PORT/v1/walks/proposals -H \"Authorization: Bearer \$K\" \\"
  echo "    -d '{\"date\":\"$thursday\",\"area\":\"johannes\"}'"
  echo "(then create the walk, send the invitations (they land in ${VAR#$ROOT/}/mail/new/) and open its phone_url: docs/walk-planner.md, \"Demo\")"
fi
echo "ready. Ctrl-C stops everything."
# Wait for Ctrl-C; a service that dies on its own is reported.
while :; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "${names[$i]} exited; see $VAR/log/${names[$i]}.log" >&2
      exit 1
    fi
  done
  sleep 1
done
