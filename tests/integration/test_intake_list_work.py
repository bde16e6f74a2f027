"""intake's report lists read about one row per row they return (issue 9).

A list of n reports should cost about n index entries and n rows, however
many reports are newer than its window or how rare its filter is. This
counts the rows Postgres read from the reports table for a few list
requests (pg_stat_user_tables: heap rows fetched by index scans plus rows
read by sequential scans) with 30,000 reports newer than the window asked
for, and 20,000 in it. Before issue 9, Open311 lists were newest first by
service_request_id: a window in the past either walked that index from the
newest report down, reading (and dropping) every newer report first, or
read the whole window and sorted it.
"""
import json
import time
import urllib.parse

from harness import check, http, http_json, psql, psql1, wait_for
from intake_support import APP, STAFF, bearer, post, start_intake, stop

O = "/open311/v2"
NEWER = 30000  # reports newer than the window
IN_WINDOW = 20000  # reports in it: far more than a page


def rows_read():
    row = psql("SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0) "
               "FROM pg_stat_user_tables WHERE schemaname = 'intake' AND relname = 'reports'")
    return int(row[0][0])


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def test_intake_list_work_per_row():
    svc, keys = start_intake({"TRYGG_DB_CONNECTIONS": "3"})  # two dedicated, one shared
    try:
        # 20,000 reports a month ago, then 30,000 newer ones (higher
        # service_request_ids), as written by the store: one category for
        # all, so no filter narrows the walk.
        for label, n, start, step in (("old", IN_WINDOW, "30 days", "10 ms"),
                                      ("new", NEWER, "1 day", "1 second")):
            psql("""INSERT INTO intake.reports (id, partner_id, category, sensitive, severity,
                      lat, long, description, created_at, updated_at)
                    SELECT gen_random_uuid(),
                      (SELECT id FROM intake.partners WHERE name = 'trygg-app'), 'litter', false,
                      2, 59.3324, 18.0637, '%s ' || i, t, t
                    FROM generate_series(1, %d) i,
                      LATERAL (SELECT now() - interval '%s' + i * interval '%s' AS t) x"""
                 % (label, n, start, step))
        psql("ANALYZE intake.reports")
        now = time.time()
        window = "start_date=%s&end_date=%s" % (iso(now - 31 * 86400), iso(now - 29 * 86400))
        base = rows_read()

        # Each request eight times, as a busy service repeats them: from the
        # sixth execution of a prepared statement Postgres may use a
        # generic plan (one for any parameters), which is what runs then.
        asked = 0
        for _ in range(8):
            for path in ("/requests.json?" + window,
                         "/requests.json?service_code=litter&" + window,
                         "/requests.json?service_code=litter",  # the last 90 days
                         "/requests.xml?status=open&" + window):
                status, _, body = http("GET", svc.base + O + path)
                check(status == 200, "%s: %s %r" % (path, status, body[:200]))
                if path.startswith("/requests.json"):
                    got = json.loads(body)
                    check(len(got) == 1000, "%s: %d requests" % (path, len(got)))
                    times = [r["requested_datetime"] for r in got]
                    check(times == sorted(times, reverse=True), "%s: newest first" % path)
                    want = "old " if "start_date" in path else "new "
                    check(all(r["description"].startswith(want) for r in got),
                          "%s: only the window's reports" % path)
                asked += 1000
            # The native list, staff key, one category, from a cursor.
            status, page = http_json("GET", svc.base + "/v1/reports?category=litter&limit=1000"
                                     "&cursor=%d" % (IN_WINDOW + NEWER // 2),
                                     headers=bearer(keys[STAFF]))
            check(status == 200 and len(page["reports"]) == 1000, "native list: %s" % status)
            asked += 1000

        # A backend reports its counters within ~10 s of going idle; all
        # requests ran on one (one shared connection), so they come at once.
        wait_for(lambda: rows_read() - base >= asked, 20, "the lists' row counts")
        time.sleep(0.5)
        read = rows_read() - base
        print("rows read for %d rows listed: %d" % (asked, read))
        check(read <= asked * 1.1 + 100,
              "the lists read %d rows of reports to return %d (%d newer than the window)"
              % (read, asked, NEWER))
    finally:
        stop(svc)


def test_intake_created_body_is_the_stored_report():
    """The 201 body (written as text since issue 9) is the report as GET
    returns it: same members, same values, valid JSON whatever the text."""
    svc, keys = start_intake()
    try:
        body = {"category": "graffiti", "lat": 59.3324, "long": 18.0637,
                "description": 'Tag "BIG"\non the wall\tby the stairs \\ \u00e5\u00e4\u00f6 \U0001f600',
                "media_url": "https://photos.example.se/1.jpg",
                "attributes": {"surface": "wall"}, "contact": {"email": "anna@example.se"}}
        status, _, created = post(svc, keys[APP], body)
        check(status == 201, "post: %s %r" % (status, created))
        status, got = http_json("GET", svc.base + "/v1/reports/" + created["id"],
                                headers=bearer(keys[APP]))
        check(status == 200, "get: %s" % status)
        check(created == got, "201 body %r differs from GET %r" % (created, got))
        check(created["id"][14] == "7", "a time-ordered (v7) id: %s" % created["id"])
        # Without a position, with an address: lat/long null.
        status, _, c2 = post(svc, keys[APP], {"category": "litter", "address_string": "Sveavägen 1"})
        check(status == 201 and c2["lat"] is None and c2["long"] is None, "address only %r" % c2)
        status, g2 = http_json("GET", svc.base + "/v1/reports/" + c2["id"], headers=bearer(keys[APP]))
        check(c2 == g2, "201 body %r differs from GET %r" % (c2, g2))
    finally:
        stop(svc)
