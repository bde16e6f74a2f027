#!/usr/bin/env bash
# seed-notifier.sh DB_URL RECEIVER_URL SECRET OUT_KEYS_JSON
#
# Demo data for the notifier (issue 5): the district's units and routing
# rules, every demo unit's webhook pointing at RECEIVER_URL (the demo crew
# receiver, trygg-crewdemo) and signed with SECRET, and one fresh API key
# per unit, printed once and written to OUT_KEYS_JSON as
#   {"units": {"cleaning-south": "<key>", ...}}
# (the notifier stores only their SHA-256). Rerunning it updates the units
# and rules in place and replaces the demo keys.
#
# DB_URL is the notifier role's URL; the notifier must have started once
# (it creates its schema). Place slugs must match intake's places.
set -euo pipefail
db=${1:?usage: seed-notifier.sh DB_URL RECEIVER_URL SECRET OUT_KEYS_JSON}
receiver=${2:?RECEIVER_URL}
secret=${3:?SECRET}
out=${4:?OUT_KEYS_JSON}
PSQL=${PSQL:-$(command -v psql || echo /usr/lib/postgresql/15/bin/psql)}

# Wait for the notifier's migrations (it may be starting right now).
for _ in $(seq 1 300); do
  if [ "$("$PSQL" -X -qAt "$db" -c "SELECT to_regclass('notifier.routing_rules') IS NOT NULL" 2>/dev/null)" = t ]; then
    break
  fi
  sleep 0.1
done

units=(cleaning-south cleaning-north graffiti-removal street-lighting park-maintenance
       outreach police-contact social-services traffic-office district-office operators)
declare -A keys
values=""
for u in "${units[@]}"; do
  k="tu_$(openssl rand -hex 20)"
  keys[$u]=$k
  h=$(printf '%s' "$k" | openssl dgst -sha256 -r | cut -d' ' -f1)
  values+="${values:+,}('$h', '$u', 'demo')"
done

"$PSQL" -X -q -v ON_ERROR_STOP=1 -v receiver="$receiver" -v secret="$secret" "$db" <<SQL
BEGIN;
SET search_path = notifier;
-- Units: a cleaning crew per area, graffiti removal, street lighting, park
-- maintenance, the outreach unit, the police contact, social services
-- (youth at risk, vulnerable victims, school incidents), the traffic
-- office, and the district office as the default for everything else.
-- The supervisors' webhooks point at the same demo receiver, which knows one
-- secret; a real supervisor's webhook gets its own (trygg-notifier admin unit set --supervisor).
INSERT INTO units (name, display_name, kind, handles_sensitive, default_for, webhook_url,
    webhook_secret, email, supervisor_name, supervisor_email, supervisor_webhook_url,
    supervisor_webhook_secret, ack_target_s, completion_target_s)
VALUES
 ('cleaning-south', 'Cleaning crew, city centre (south)', 'crew', false, NULL, :'receiver', :'secret',
  'cleaning-south@crews.trygg.invalid', 'Supervisor cleaning', 'cleaning-lead@trygg.invalid', :'receiver', :'secret', 1800, 86400),
 ('cleaning-north', 'Cleaning crew, Vasastan (north)', 'crew', false, NULL, :'receiver', :'secret',
  'cleaning-north@crews.trygg.invalid', 'Supervisor cleaning', 'cleaning-lead@trygg.invalid', :'receiver', :'secret', 1800, 86400),
 ('graffiti-removal', 'Graffiti removal', 'crew', false, NULL, :'receiver', :'secret',
  'graffiti@crews.trygg.invalid', 'Supervisor graffiti', 'graffiti-lead@trygg.invalid', :'receiver', :'secret', 1800, 86400),
 ('street-lighting', 'Street lighting', 'crew', false, NULL, :'receiver', :'secret',
  'lighting@crews.trygg.invalid', 'Lighting duty officer', 'lighting-lead@trygg.invalid', :'receiver', :'secret', 3600, 172800),
 ('park-maintenance', 'Park maintenance', 'crew', false, NULL, :'receiver', :'secret',
  'parks@crews.trygg.invalid', 'Park supervisor', 'parks-lead@trygg.invalid', :'receiver', :'secret', 3600, 172800),
 ('outreach', 'Outreach unit (socialtjänsten uppsökande)', 'unit', false, NULL, :'receiver', :'secret',
  'outreach@units.trygg.invalid', 'Outreach coordinator', 'outreach-lead@trygg.invalid', :'receiver', :'secret', 1800, 86400),
 ('police-contact', 'Police contact, Norrmalm', 'police', true, NULL, :'receiver', :'secret',
  'police-contact@units.trygg.invalid', 'Duty officer', 'police-duty@trygg.invalid', :'receiver', :'secret', 900, 86400),
 ('social-services', 'Social services, Norrmalm', 'unit', true, 'sensitive', :'receiver', :'secret',
  'social@units.trygg.invalid', 'Duty social worker', 'social-duty@trygg.invalid', :'receiver', :'secret', 900, 86400),
 ('traffic-office', 'Traffic office', 'unit', false, NULL, :'receiver', :'secret',
  'traffic@units.trygg.invalid', 'Traffic duty', 'traffic-lead@trygg.invalid', :'receiver', :'secret', 3600, 172800),
 ('district-office', 'District office (default)', 'unit', false, 'all', :'receiver', :'secret',
  'district@units.trygg.invalid', 'District safety coordinator', 'district-lead@trygg.invalid', :'receiver', :'secret', 3600, 172800),
 ('operators', 'Notifier operators', 'operator', true, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 3600, 86400)
ON CONFLICT (name) DO UPDATE SET display_name = EXCLUDED.display_name, kind = EXCLUDED.kind,
    handles_sensitive = EXCLUDED.handles_sensitive, default_for = EXCLUDED.default_for,
    webhook_url = EXCLUDED.webhook_url, webhook_secret = EXCLUDED.webhook_secret,
    email = EXCLUDED.email, supervisor_name = EXCLUDED.supervisor_name,
    supervisor_email = EXCLUDED.supervisor_email,
    supervisor_webhook_url = EXCLUDED.supervisor_webhook_url,
    supervisor_webhook_secret = EXCLUDED.supervisor_webhook_secret,
    ack_target_s = EXCLUDED.ack_target_s, completion_target_s = EXCLUDED.completion_target_s,
    active = true;

DELETE FROM routing_rules WHERE note LIKE 'demo:%';
INSERT INTO routing_rules (category, place, days, from_min, to_min, unit, role, priority,
    ack_target_s, completion_target_s, note)
VALUES
 -- Litter: the cleaning crew of the area; anything else to the south crew.
 ('litter', 'sergels-torg', 127, 0, 1440, 'cleaning-south', 'owner', 100, NULL, NULL, 'demo: area'),
 ('litter', 'klarakvarteren', 127, 0, 1440, 'cleaning-south', 'owner', 100, NULL, NULL, 'demo: area'),
 ('litter', 'centralstationen', 127, 0, 1440, 'cleaning-south', 'owner', 100, NULL, NULL, 'demo: area'),
 ('litter', 'kungstradgarden', 127, 0, 1440, 'cleaning-south', 'owner', 100, NULL, NULL, 'demo: area'),
 ('litter', 'hotorget', 127, 0, 1440, 'cleaning-south', 'owner', 100, NULL, NULL, 'demo: area'),
 ('litter', 'sodra-johannes', 127, 0, 1440, 'cleaning-north', 'owner', 100, NULL, NULL, 'demo: area'),
 ('litter', 'odenplan', 127, 0, 1440, 'cleaning-north', 'owner', 100, NULL, NULL, 'demo: area'),
 ('litter', 'vasaparken', 127, 0, 1440, 'cleaning-north', 'owner', 100, NULL, NULL, 'demo: area'),
 ('litter', 'observatorielunden', 127, 0, 1440, 'cleaning-north', 'owner', 100, NULL, NULL, 'demo: area'),
 ('litter', 'sveavagen', 127, 0, 1440, 'cleaning-north', 'owner', 90, NULL, NULL, 'demo: area'),
 ('litter', NULL, 127, 0, 1440, 'cleaning-south', 'owner', 10, NULL, NULL, 'demo: fallback'),
 -- Graffiti; offensive graffiti at once (ack within 10 min, gone within 4 h).
 ('graffiti', NULL, 127, 0, 1440, 'graffiti-removal', 'owner', 100, NULL, NULL, 'demo: graffiti'),
 ('graffiti_offensive', NULL, 127, 0, 1440, 'graffiti-removal', 'owner', 100, 600, 14400, 'demo: at once'),
 ('vandalism', NULL, 127, 0, 1440, 'graffiti-removal', 'owner', 50, NULL, NULL, 'demo: vandalism'),
 ('lighting', NULL, 127, 0, 1440, 'street-lighting', 'owner', 100, NULL, NULL, 'demo: lighting'),
 -- Vegetation: park maintenance in the parks, else the area crews.
 ('vegetation', 'vasaparken', 127, 0, 1440, 'park-maintenance', 'owner', 100, NULL, NULL, 'demo: parks'),
 ('vegetation', 'observatorielunden', 127, 0, 1440, 'park-maintenance', 'owner', 100, NULL, NULL, 'demo: parks'),
 ('vegetation', 'kungstradgarden', 127, 0, 1440, 'park-maintenance', 'owner', 100, NULL, NULL, 'demo: parks'),
 ('vegetation', NULL, 127, 0, 1440, 'park-maintenance', 'owner', 10, NULL, NULL, 'demo: parks'),
 ('litter', 'vasaparken', 127, 0, 1440, 'park-maintenance', 'copy', 100, NULL, NULL, 'demo: parks see litter'),
 -- Sleeping outdoors: the outreach unit, with the area's cleaning crew
 -- for the site (copies).
 ('sleeping_outdoors', NULL, 127, 0, 1440, 'outreach', 'owner', 100, NULL, NULL, 'demo: outreach'),
 ('sleeping_outdoors', 'sergels-torg', 127, 0, 1440, 'cleaning-south', 'copy', 100, NULL, NULL, 'demo: site cleaning'),
 ('sleeping_outdoors', 'klarakvarteren', 127, 0, 1440, 'cleaning-south', 'copy', 100, NULL, NULL, 'demo: site cleaning'),
 ('sleeping_outdoors', 'centralstationen', 127, 0, 1440, 'cleaning-south', 'copy', 100, NULL, NULL, 'demo: site cleaning'),
 ('sleeping_outdoors', 'kungstradgarden', 127, 0, 1440, 'cleaning-south', 'copy', 100, NULL, NULL, 'demo: site cleaning'),
 ('sleeping_outdoors', 'odenplan', 127, 0, 1440, 'cleaning-north', 'copy', 100, NULL, NULL, 'demo: site cleaning'),
 ('sleeping_outdoors', 'vasaparken', 127, 0, 1440, 'cleaning-north', 'copy', 100, NULL, NULL, 'demo: site cleaning'),
 ('sleeping_outdoors', 'observatorielunden', 127, 0, 1440, 'cleaning-north', 'copy', 100, NULL, NULL, 'demo: site cleaning'),
 -- Sensitive categories: only the unit that handles them.
 ('drug_dealing', NULL, 127, 0, 1440, 'police-contact', 'owner', 100, 900, NULL, 'demo: police'),
 ('youth_at_risk', NULL, 127, 0, 1440, 'social-services', 'owner', 100, 900, NULL, 'demo: social'),
 ('vulnerable_victim', NULL, 127, 0, 1440, 'social-services', 'owner', 100, 900, NULL, 'demo: social'),
 ('school_incident', NULL, 127, 0, 1440, 'social-services', 'owner', 100, 900, NULL, 'demo: social'),
 -- Evenings and nights (Fri-Sat 22:00-06:00) the police contact also
 -- takes youth at risk at the hot spots.
 ('youth_at_risk', 'sergels-torg', 48, 1320, 360, 'police-contact', 'owner', 110, 600, NULL, 'demo: weekend nights'),
 ('traffic', NULL, 127, 0, 1440, 'traffic-office', 'owner', 100, NULL, NULL, 'demo: traffic');

UPDATE unit_keys SET revoked_at = now() WHERE label = 'demo' AND revoked_at IS NULL;
INSERT INTO unit_keys (key_hash, unit, label) VALUES $values;
COMMIT;
SQL

{
  printf '{"units": {'
  first=1
  for u in "${units[@]}"; do
    [ $first = 1 ] || printf ', '
    first=0
    printf '"%s": "%s"' "$u" "${keys[$u]}"
  done
  printf '}}\n'
} > "$out.tmp"
chmod 600 "$out.tmp"
mv "$out.tmp" "$out"
echo "notifier demo: ${#units[@]} units, their webhooks -> $receiver; unit keys (shown once, also in $out):"
for u in "${units[@]}"; do
  printf '  %-18s %s\n' "$u" "${keys[$u]}"
done
