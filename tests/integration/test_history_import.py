"""History import, PlaceDefined and the new ReportReceived fields (issues
10 and 11: the glue walk-planner and reporting need from intake).

- A live report's event says source "partner", reported_at == occurred_at
  and night as sun.h computes it at its position (or the district centre).
- `admin places load` writes one PlaceDefined per place (removed=true for
  what --replace dropped) into the outbox; a real subscriber started late
  gets them all by replay.
- `admin import FILE.csv` imports history with its original times, once
  (external_id), naming the line and field of every bad line, and the
  notifier records it as closed history: no webhook to anyone, while a live
  report afterwards still reaches the crew.
"""
import json
import math
import os
import struct
import subprocess
import time

from harness import (BIN, ROOT, TMP, Service, check, free_port, fresh_schemas, http_json, psql,
                     psql1, role_url, wait_for)
from intake_support import (APP, PLACES, SERGELS, STAFF, admin, bearer, outbox_events, pb_fields,
                            post, report, start_intake, stop)
from notifier_support import FAST, SECRET, SEED

CENTRE = (59.3326, 18.0649)


def sun_elevation(lat, lon, t):
    """Solar elevation in degrees at unix time t (NOAA's approximation)."""
    jd = t / 86400.0 + 2440587.5
    n = jd - 2451545.0
    L = math.radians((280.460 + 0.9856474 * n) % 360)
    g = math.radians((357.528 + 0.9856003 * n) % 360)
    lam = L + math.radians(1.915) * math.sin(g) + math.radians(0.020) * math.sin(2 * g)
    eps = math.radians(23.439 - 0.0000004 * n)
    dec = math.asin(math.sin(eps) * math.sin(lam))
    ra = math.atan2(math.cos(eps) * math.sin(lam), math.cos(lam))
    gmst = (18.697374558 + 24.06570982441908 * n) % 24
    ha = math.radians(gmst * 15 + lon) - ra
    phi = math.radians(lat)
    return math.degrees(math.asin(math.sin(phi) * math.sin(dec)
                                  + math.cos(phi) * math.cos(dec) * math.cos(ha)))


def received(payload):
    f = pb_fields(payload)
    def one(k, default=0):
        return f[k][0] if k in f else default
    def dbl(k):
        return struct.unpack("<d", f[k][0])[0] if k in f else 0.0
    return {"report_id": one(1, b"").decode(), "category": one(5, b"").decode(),
            "has_position": bool(one(7)), "lat": dbl(8), "long": dbl(9),
            "places": [p.decode() for p in f.get(10, [])], "occurred_at_us": one(13),
            "imported": bool(one(16)), "reported_at_us": one(17), "closed_at_us": one(18),
            "source": one(19, b"").decode(), "night": bool(one(20)),
            "partner": one(3, b"").decode()}


def events_of(kind):
    return [e for e in outbox_events() if e[0] == kind]


def test_report_received_live_fields():
    svc, keys = start_intake()
    s, _, b = post(svc, keys[APP], report())
    check(s == 201, "post %s %r" % (s, b))
    s, _, b2 = post(svc, keys[STAFF], {"category": "litter", "address_string": "Drottninggatan 1"})
    check(s == 201, "post without position %s %r" % (s, b2))
    evs = [received(p) for _, p, _ in events_of("trygg.events.ReportReceived")]
    check(len(evs) == 2, "events %r" % evs)
    for ev, pos in ((evs[0], SERGELS), (evs[1], CENTRE)):
        check(ev["source"] == "partner", "source %r" % ev["source"])
        check(not ev["imported"], "a live report marked imported")
        check(ev["reported_at_us"] == ev["occurred_at_us"] > 1.7e15,
              "reported_at %r occurred_at %r" % (ev["reported_at_us"], ev["occurred_at_us"]))
        check(ev["closed_at_us"] == 0, "closed_at on a live report")
        elev = sun_elevation(pos[0], pos[1], ev["reported_at_us"] / 1e6)
        if abs(elev + 0.833) > 1.5:  # not at twilight's edge, where rounding may differ
            check(ev["night"] == (elev < -0.833), "night %r at elevation %.1f" % (ev["night"], elev))
    stop(svc)


def test_place_defined_published_and_replayed():
    svc, keys = start_intake()  # demo-seed loaded the demo places
    with open(PLACES) as f:
        fc = json.load(f)
    slugs = [ft["properties"]["slug"] for ft in fc["features"]]
    evs = [pb_fields(p) for _, p, _ in events_of("trygg.events.PlaceDefined")]
    got = {e[1][0].decode(): e for e in evs}
    check(sorted(got) == sorted(slugs), "PlaceDefined for %r, want %r" % (sorted(got), sorted(slugs)))
    sergels = [ft for ft in fc["features"] if ft["properties"]["slug"] == "sergels-torg"][0]
    e = got["sergels-torg"]
    check(e[2][0].decode() == sergels["properties"]["name"], "name")
    check(json.loads(e[3][0]) == sergels["geometry"], "geometry differs from the file's")
    check(4 not in e and e[5][0] > 1.7e15, "removed or at_us")
    # --replace with one place fewer retires it.
    dropped = slugs[-1]
    fc2 = dict(fc, features=[ft for ft in fc["features"] if ft["properties"]["slug"] != dropped])
    path = os.path.join(TMP, "places-fewer.geojson")
    with open(path, "w") as f:
        json.dump(fc2, f)
    admin("places", "load", path, "--replace")
    evs = [pb_fields(p) for _, p, _ in events_of("trygg.events.PlaceDefined")]
    removed = [e[1][0].decode() for e in evs if 4 in e and e[4][0] == 1]
    check(removed == [dropped], "removed %r, want [%r]" % (removed, dropped))
    total = len(events_of("trygg.events.PlaceDefined"))
    check(total == 2 * len(slugs), "PlaceDefined events %d" % total)
    # A real subscriber started late gets every one (replay), from the bus.
    fresh_schemas("testsub")
    sub = Service("testsub", "trygg-testsub", {
        "DATABASE_URL": role_url("testsub"), "TRYGG_HTTP_PORT": free_port(),
        "TRYGG_PUBLISHER": "intake", "TRYGG_BUS_TESTPUB_SUB_URL": svc.env["TRYGG_BUS_PUB_URL"],
        "TRYGG_BUS_TESTPUB_REQ_URL": svc.env["TRYGG_BUS_REP_URL"]})
    sub.start()
    wait_for(lambda: psql1("SELECT last_seq FROM testsub.inbox_cursor WHERE publisher = 'intake'")
             == str(total), 20, "subscriber to reach seq %d" % total)
    stop(sub)
    stop(svc)


HEADER = "reported_at,category,lat,long,description,address,closed_at,status,external_id\n"


def history_csv(path, lines):
    with open(path, "w") as f:
        f.write(HEADER)
        for l in lines:
            f.write(l + "\n")


def test_history_import_validation_idempotency_and_open311():
    svc, keys = start_intake()
    path = os.path.join(TMP, "history.csv")
    history_csv(path, [
        # 2: winter evening at Sergels torg, closed
        '2025-12-10T19:30:00+01:00,litter,59.3324,18.0637,"Bins, full",,2025-12-11T08:00:00+01:00,,old-1',
        # 3: summer noon, open, address only
        '2026-06-21T12:00:00+02:00,graffiti,,,"Tag on wall",Sveavägen 10,,open,old-2',
        # 4: bad time (no offset)
        '2026-01-01T10:00:00,litter,59.3324,18.0637,x,,,,old-3',
        # 5: unknown category
        '2026-01-01T10:00:00Z,unicorns,59.3324,18.0637,x,,,,old-4',
        # 6: bad latitude
        '2026-01-01T10:00:00Z,litter,91,18.0637,x,,,,old-5',
        # 7: status closed without closed_at; no external id (derived)
        '2026-02-01T07:00:00+01:00,lighting,59.3420,18.0440,"Lamp out, ""again""",,,closed,',
        # 8: closed before reported
        '2026-02-01T07:00:00+01:00,lighting,59.3420,18.0440,x,,2026-01-01T00:00:00Z,,old-7',
    ])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYGG_")}
    env["DATABASE_URL"] = role_url("intake")
    def run(*extra):
        return subprocess.run([os.path.join(BIN, "trygg-intake"), "admin", "import", path] + list(extra),
                              env=env, capture_output=True, text=True, timeout=60)
    dry = run("--dry-run")
    check(dry.returncode == 1, "dry run rc %s" % dry.returncode)
    check(psql1("SELECT count(*) FROM intake.reports WHERE imported") == "0", "dry run wrote")
    p = run()
    check(p.returncode == 1, "rc %s (a bad line must fail the run): %s %s" % (p.returncode, p.stdout, p.stderr))
    for line, field in ((4, "reported_at"), (5, "category"), (6, "lat"), (8, "closed_at")):
        check("history.csv:%d: %s" % (line, field) in p.stderr, "no error for line %d %s in %r"
              % (line, field, p.stderr))
    check("3 imported" in p.stdout and "4 failed" in p.stdout, "summary %r" % p.stdout)
    rows = psql("SELECT external_id, status, category, to_char(created_at AT TIME ZONE 'UTC',"
                " 'YYYY-MM-DD HH24:MI'), coalesce(to_char(closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), '')"
                " FROM intake.reports WHERE imported ORDER BY created_at")
    check(len(rows) == 3, "rows %r" % rows)
    check(rows[0][0] == "old-1" and rows[0][1] == "closed" and rows[0][3] == "2025-12-10 18:30"
          and rows[0][4] == "2025-12-11 07:00", "row 1 %r" % (rows[0],))
    check(rows[1][1] == "closed" and rows[1][0].startswith("sha256:"), "row 3 %r" % (rows[1],))
    check(rows[2][0] == "old-2" and rows[2][1] == "open", "row 2 %r" % (rows[2],))
    evs = {e["report_id"]: e for e in
           (received(p) for _, p, _ in events_of("trygg.events.ReportReceived"))}
    check(len(evs) == 3, "events %d" % len(evs))
    by_cat = {e["category"]: e for e in evs.values()}
    lit = by_cat["litter"]
    check(lit["imported"] and lit["source"] == "import" and lit["partner"] == "history-import",
          "litter event %r" % lit)
    check(lit["reported_at_us"] == 1765391400 * 10**6, "reported_at %r" % lit["reported_at_us"])
    check(lit["closed_at_us"] == 1765436400 * 10**6, "closed_at %r" % lit["closed_at_us"])
    check(lit["night"] and lit["places"] == ["sergels-torg"], "night/places %r" % lit)
    gra = by_cat["graffiti"]
    check(not gra["night"] and not gra["has_position"] and gra["closed_at_us"] == 0, "graffiti %r" % gra)
    check(by_cat["lighting"]["night"], "07:00 on 1 February is before sunrise")
    # Twice: nothing twice.
    p = run()
    check(p.returncode == 1 and "0 imported, 3 already there" in p.stdout, "second run %r" % p.stdout)
    check(psql1("SELECT count(*) FROM intake.reports WHERE imported") == "3", "second run wrote")
    check(len(events_of("trygg.events.ReportReceived")) == 3, "second run published")
    # Visible through Open311 like any report, closed when closed_at is set.
    srid = psql1("SELECT service_request_id FROM intake.reports WHERE external_id = 'old-1'")
    status, body = http_json("GET", svc.base + "/open311/v2/requests/%s.json" % srid)
    check(status == 200 and body[0]["status"] == "closed", "Open311 %s %r" % (status, body))
    check(body[0]["requested_datetime"].startswith("2025-12-10T18:30"), "time %r" % body[0])
    stop(svc)


def test_imported_history_pages_nobody():
    """50 imported reports reach the notifier as closed history: no webhook,
    no timer, no open task; a live report afterwards still reaches the crew."""
    svc, keys = start_intake()
    fresh_schemas("notifier")
    nport = free_port()
    env = {"DATABASE_URL": role_url("notifier"), "TRYGG_HTTP_PORT": nport,
           "TRYGG_BUS_PUB_URL": "tcp://127.0.0.1:%d" % free_port(),
           "TRYGG_BUS_REP_URL": "tcp://127.0.0.1:%d" % free_port(),
           "TRYGG_BUS_INTAKE_SUB_URL": svc.env["TRYGG_BUS_PUB_URL"],
           "TRYGG_BUS_INTAKE_REQ_URL": svc.env["TRYGG_BUS_REP_URL"],
           "TRYGG_PUBLIC_URL": "http://127.0.0.1:%d" % nport,
           "TRYGG_BUS_WALK_PLANNER_SUB_URL": "tcp://127.0.0.1:%d" % free_port(),
           "TRYGG_BUS_WALK_PLANNER_REQ_URL": "tcp://127.0.0.1:%d" % free_port()}
    env.update(FAST)
    notifier = Service("notifier", "trygg-notifier", env)
    crew_port = free_port()
    record = os.path.join(TMP, "crew-history-%d.jsonl" % crew_port)
    keys_path = os.path.join(TMP, "keys-history-%d.json" % crew_port)
    crew = Service("crewdemo", "trygg-crewdemo", {
        "TRYGG_HTTP_PORT": crew_port, "TRYGG_SECRET": SECRET, "TRYGG_RECORD": record,
        "TRYGG_KEYS_FILE": keys_path})
    notifier.start()
    out = subprocess.run([SEED, role_url("notifier"), "http://127.0.0.1:%d/webhook" % crew_port,
                          SECRET, keys_path], capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, "seed %s" % out.stderr)
    crew.start()
    wait_for(lambda: any(l.get("msg") == "routing_loaded" and l.get("units", 0) >= 10
                         for l in notifier.log_lines()), 10, "routing reload")
    path = os.path.join(TMP, "history50.csv")
    cats = ["litter", "graffiti", "vandalism", "lighting", "sleeping_outdoors"]
    history_csv(path, ['2026-%02d-%02dT%02d:15:00+01:00,%s,59.3324,18.0637,n%d,,%s,,h-%d'
                       % (1 + i % 10, 1 + i % 28, i % 24, cats[i % 5], i,
                          "2026-11-01T00:00:00Z" if i % 2 else "", i) for i in range(50)])
    admin("import", path)
    # The outbox also holds the demo places' PlaceDefined: wait for all of it.
    total = wait_for(lambda: psql1("SELECT count(*) FROM intake.outbox WHERE pub_seq IS NOT NULL"
                                   " HAVING count(*) = (SELECT count(*) FROM intake.outbox)"), 20,
                     "intake to publish")
    wait_for(lambda: psql1("SELECT last_seq FROM notifier.inbox_cursor WHERE publisher = 'intake'")
             == total, 20, "notifier to apply the imported reports (seq %s)" % total)
    check(psql1("SELECT count(*) FROM notifier.deliveries") == "0", "imported reports made deliveries")
    check(psql1("SELECT count(*) FROM notifier.timers") == "0", "imported reports made timers")
    check(psql1("SELECT count(*) FROM notifier.tasks") == "0", "imported reports made tasks")
    check(psql1("SELECT count(*) FROM notifier.history_reports WHERE closed_at IS NOT NULL") == "25"
          and psql1("SELECT count(*) FROM notifier.history_reports") == "50", "history not recorded")
    # A live report afterwards still pages the crew (so the silence above is not a dead notifier).
    s, _, b = post(svc, keys[APP], report(description="live"))
    check(s == 201, "post %s" % s)
    def webhooks():
        if not os.path.exists(record):
            return []
        return [json.loads(l) for l in open(record) if l.strip()]
    got = wait_for(lambda: [d for d in webhooks() if d.get("task", {}).get("report_ids") == [b["id"]]],
                   20, "the live report's webhook")
    check(got[0]["signature_ok"], "signature")
    others = [d for d in webhooks() if d.get("task", {}).get("report_ids") != [b["id"]]]
    check(others == [], "webhooks for imported reports: %r" % others[:3])
    stop(crew)
    stop(notifier)
    stop(svc)
