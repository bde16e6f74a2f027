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
from intake_support import APP, POLICE, STAFF, VASAPARKEN, bearer, post, start_intake, stop

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
            # The shapes that keep a generic plan (one driving value, a
            # cursor): a category with no reports reads nothing, a
            # partner's own list about what it returns.
            status, page = http_json("GET", svc.base + "/v1/reports?category=graffiti&limit=1000"
                                     "&cursor=%d" % (IN_WINDOW + NEWER), headers=bearer(keys[STAFF]))
            check(status == 200 and page["reports"] == [], "rare category: %s" % status)
            status, page = http_json("GET", svc.base + "/v1/reports?limit=1000&cursor=%d"
                                     % (IN_WINDOW + NEWER // 3), headers=bearer(keys[APP]))
            check(status == 200 and len(page["reports"]) == 1000, "partner list: %s" % status)
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


def test_intake_list_rows_are_the_reports_as_got_one():
    """A list's rows travel in Postgres's binary format (ids, integers,
    booleans and times as raw values; issue 9), single reports in text: each
    report in a list, native and Open311 in JSON and XML, must read exactly
    as its own GET, for every kind of value: a UUIDv7 id, a
    service_request_id above 2^32, a time before 2000 (negative in Postgres's
    binary) and one with microseconds, NULLs, places, attributes, a closed
    report with notes, and a sensitive one (its description hidden from
    everyone but staff)."""
    svc, keys = start_intake()
    try:
        ids = []
        for key, body in (
                (APP, {"category": "graffiti", "lat": 59.3324, "long": 18.0637,
                       "description": 'Tag "BIG"\non the wall \\ \u00e5\u00e4\u00f6 \U0001f600',
                       "media_url": "https://photos.example.se/1.jpg",
                       "attributes": {"surface": "wall"}}),
                (APP, {"category": "litter", "address_string": "Sveavägen 1 <b>&</b>"}),
                (APP, {"category": "lighting", "lat": VASAPARKEN[0], "long": VASAPARKEN[1]}),
                (POLICE, {"category": "drug_dealing", "lat": 59.3324, "long": 18.0637,
                          "description": "Dealing at the stairs"})):
            status, _, created = post(svc, keys[key], body)
            check(status == 201, "post: %s %r" % (status, created))
            ids.append(created["id"])
        psql("""UPDATE intake.reports SET status = 'closed', close_reason = 'fixed',
                  status_notes = 'Cleaned', created_at = '1999-12-31 23:59:59.123456+00',
                  updated_at = '2026-01-02 03:04:05.678901+00' WHERE id = '%s'""" % ids[2])
        # A service_request_id beyond int4, as an old system's import might
        # leave after years of ids.
        psql("""INSERT INTO intake.reports (id, service_request_id, partner_id, category,
                  sensitive, severity, lat, long, description, created_at, updated_at)
                OVERRIDING SYSTEM VALUE
                SELECT '0190a000-0000-7000-8000-000000000001', 5000000123, id, 'vandalism',
                  false, 3, -0.5, -179.25, NULL, now(), now()
                FROM intake.partners WHERE name = 'trygg-app'""")
        ids.append("0190a000-0000-7000-8000-000000000001")

        for viewer in (STAFF, APP, POLICE):
            status, page = http_json("GET", svc.base + "/v1/reports?limit=1000",
                                     headers=bearer(keys[viewer]))
            check(status == 200, "list: %s" % status)
            listed = {r["id"]: r for r in page["reports"]}
            for rid in ids:
                status, one = http_json("GET", svc.base + "/v1/reports/" + rid,
                                        headers=bearer(keys[viewer]))
                check((status == 200) == (rid in listed), "viewer %s, %s: %s" % (viewer, rid, status))
                if status == 200:
                    check(listed[rid] == one, "list row %r differs from GET %r" % (listed[rid], one))
            check(len(listed) == (5 if viewer == STAFF else 4 if viewer == APP else 1),
                  "viewer %s sees %d" % (viewer, len(listed)))
        status, page = http_json("GET", svc.base + "/v1/reports?limit=1000",
                                 headers=bearer(keys[STAFF]))
        by = {r["id"]: r for r in page["reports"]}
        check(by[ids[4]]["service_request_id"] == "5000000123" and by[ids[4]]["long"] == -179.25,
              "big id, negative position: %r" % by[ids[4]])
        check(by[ids[2]]["created_at"] == "1999-12-31T23:59:59.123Z"
              and by[ids[2]]["updated_at"] == "2026-01-02T03:04:05.678Z", "times %r" % by[ids[2]])
        check(by[ids[3]]["description"] == "Dealing at the stairs", "staff sees the description")
        check(by[ids[0]]["places"] == ["sergels-torg"], "places %r" % by[ids[0]])
        # The cursor is the last row's service_request_id.
        status, page = http_json("GET", svc.base + "/v1/reports?limit=2",
                                 headers=bearer(keys[STAFF]))
        check(page["next_cursor"] == page["reports"][1]["service_request_id"], "cursor %r" % page)

        # Open311, with a staff key (sees everything) and without (public).
        srids = {r["id"]: r["service_request_id"] for r in by.values()}
        for q in ("?api_key=" + keys[STAFF], ""):
            window = "start_date=1999-12-01T00:00:00Z&end_date=2000-02-01T00:00:00Z"
            for path in ("/requests.json" + q, "/requests.json?%s%s" % (
                    window, q.replace("?", "&"))):
                status, _, body = http("GET", svc.base + O + path)
                check(status == 200, "%s: %s" % (path, status))
                for row in json.loads(body):
                    status, _, one = http("GET", svc.base + O + "/requests/%s.json%s"
                                          % (row["service_request_id"], q))
                    check(status == 200 and json.loads(one) == [row],
                          "%s: %r differs from %r" % (path, row, one))
            status, _, body = http("GET", svc.base + O + "/requests.xml" + q)
            check(status == 200, "xml: %s" % status)
            rows = body.decode().split("<request>")[1:]
            check(len(rows) == (4 if q else 3), "xml rows %d" % len(rows))
            for row in rows:
                srid = row.split("<service_request_id>")[1].split("<")[0]
                status, _, one = http("GET", svc.base + O + "/requests/%s.xml%s" % (srid, q))
                check(status == 200 and ("<request>" + row.split("</request>")[0])
                      in one.decode(), "xml %s: %r not in %r" % (srid, row, one))
        check(srids[ids[2]] in http("GET", svc.base + O + "/requests.json?" + window)[2].decode(),
              "the report of 1999 in its window")
    finally:
        stop(svc)
