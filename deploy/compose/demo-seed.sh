#!/usr/bin/env bash
# trygg-demo-seed: the demo data of `make run`, for `docker-compose
# --profile demo up` (the one-shot demo-seed service runs it once intake and
# the notifier are ready). The same admin commands and scripts as make run:
#
#   - intake: `trygg-intake admin demo-seed` creates the demo partners,
#     issues each a fresh key (printed once, here in this job's log, and
#     written to $DEMO_DIR/demo-keys.json) and loads the demo places;
#   - notifier: deploy/demo/seed-notifier.sh creates the units and routing
#     rules, points every demo unit's webhook at the demo crew receiver
#     ($CREW_WEBHOOK_URL, signed with $DEMO_CREW_SECRET) and issues unit
#     keys ($DEMO_DIR/notifier-keys.json).
#
# Environment: INTAKE_DATABASE_URL, NOTIFIER_DATABASE_URL (the services'
# roles), DEMO_CREW_SECRET, CREW_WEBHOOK_URL, DEMO_DIR (a volume the crew
# receiver also mounts). Rerunning it replaces the demo keys.
set -euo pipefail
: "${INTAKE_DATABASE_URL:?}" "${NOTIFIER_DATABASE_URL:?}" "${DEMO_CREW_SECRET:?}"
: "${CREW_WEBHOOK_URL:?}"
dir=${DEMO_DIR:-/var/lib/trygg/demo}
share=${TRYGG_SHARE:-/usr/share/trygg}
mkdir -p "$dir"
umask 077

echo "demo partners (keys shown once; also in $dir/demo-keys.json):"
DATABASE_URL=$INTAKE_DATABASE_URL trygg-intake admin demo-seed \
  --keys-file "$dir/demo-keys.json" --places "$share/demo/places.geojson"
"$share/demo/seed-notifier.sh" "$NOTIFIER_DATABASE_URL" "$CREW_WEBHOOK_URL" \
  "$DEMO_CREW_SECRET" "$dir/notifier-keys.json"
echo "demo-seed: done"
