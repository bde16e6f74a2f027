"""intake's native JSON API (issue 4, parts 2, 3, 5 and 7), black-box.

A real trygg-intake on a fresh schema with the demo partners; every test
talks HTTP to it and checks what a partner's developer would see.
"""
import json
import threading
import time
import urllib.parse

from harness import check, http, psql, psql1, wait_for
from intake_support import (stop, APP, GAMLA_STAN, HOUSING, POLICE, SCHOOL, SERGELS, STAFF, VASAPARKEN,
                            admin, bearer, error_code, get, post, report, report_count,
                            start_intake)


def test_intake_post_and_get():
    svc, keys = start_intake()
    status, hdrs, body = post(svc, keys[APP], report(description="Overflowing bin",
                                                     contact={"email": "anna@example.se"}))
    check(status == 201, "POST answered %s %r" % (status, body))
    check(body["status"] == "open" and body["category"] == "litter", "body %r" % body)
    check(body["places"] == ["sergels-torg"], "places %r" % body["places"])
    check(body["partner"] == APP and body["severity"] == 2, "body %r" % body)
    check("contact" not in body and "anna" not in json.dumps(body), "contact leaked: %r" % body)
    check(hdrs.get("Location") == "/v1/reports/" + body["id"], "Location %r" % hdrs)
    # Committed before the 201: the row, its place, its contact and its event exist.
    check(report_count() == 1, "reports in db: %d" % report_count())
    check(psql1("SELECT email FROM intake.report_contacts") == "anna@example.se", "contact row")
    check(int(psql1("SELECT count(*) FROM intake.report_places")) == 1, "report_places")
    check(int(psql1("SELECT count(*) FROM intake.outbox WHERE event_type ="
                    " 'trygg.events.ReportReceived'")) == 1, "outbox row")
    for ident in (body["id"], body["service_request_id"]):
        status, one = get(svc, "/v1/reports/" + ident, keys[APP])
        check(status == 200 and one["id"] == body["id"], "GET %s: %s %r" % (ident, status, one))
        check(one["description"] == "Overflowing bin", "description %r" % one)
        check(one["places"] == ["sergels-torg"], "GET places %r" % one["places"])
    # Another partner cannot see it; staff can.
    status, other = get(svc, "/v1/reports/" + body["id"], keys[HOUSING])
    check(status == 404, "other partner got %s" % status)
    status, one = get(svc, "/v1/reports/" + body["id"], keys[STAFF])
    check(status == 200, "staff got %s" % status)
    check(get(svc, "/v1/reports/not-a-report", keys[APP])[0] == 404, "bad id")
    check(get(svc, "/v1/reports/999999", keys[APP])[0] == 404, "unknown srid")
    # Text that means something in array literals or SQL survives intact.
    tricky = 'He said "NULL" {a,b} \\x41 \\ O\'Brien; DROP TABLE reports; -- å\n2nd line'
    s, _, b = post(svc, keys[APP], report(description=tricky, address_string="NULL"))
    check(s == 201, "tricky text: %s %r" % (s, b))
    s, one = get(svc, "/v1/reports/" + b["id"], keys[APP])
    check(one["description"] == tricky and one["address_string"] == "NULL",
          "text changed: %r" % one)
    # Media type parameters are fine.
    s, _, b = post(svc, keys[APP], report(), headers={"Content-Type": "application/json; charset=utf-8"})
    check(s == 201, "charset parameter refused: %s %r" % (s, b))
    # An address without a position is accepted (no district check possible).
    status, _, body = post(svc, keys[APP], {"category": "litter",
                                            "address_string": "Drottninggatan 53"})
    check(status == 201 and body["lat"] is None and body["places"] == [], "address only %r" % body)
    stop(svc)


def test_intake_list_filters_and_pagination():
    svc, keys = start_intake()
    for i in range(7):
        pos = SERGELS if i % 2 == 0 else VASAPARKEN
        cat = "litter" if i < 5 else "graffiti"
        extra = {"attributes": {"surface": "wall"}} if cat == "graffiti" else {}
        status, _, b = post(svc, keys[APP], report(cat, pos, **extra))
        check(status == 201, "post %d: %s %r" % (i, status, b))
    check(post(svc, keys[HOUSING], report())[0] == 201, "housing post")
    status, page = get(svc, "/v1/reports?limit=3", keys[APP])
    check(status == 200 and len(page["reports"]) == 3 and page["next_cursor"], "page1 %r" % page)
    seen = [r["service_request_id"] for r in page["reports"]]
    while page["next_cursor"]:
        status, page = get(svc, "/v1/reports?limit=3&cursor=" + page["next_cursor"], keys[APP])
        check(status == 200, "next page %s" % status)
        seen += [r["service_request_id"] for r in page["reports"]]
    check(len(seen) == 7 and len(set(seen)) == 7, "pagination saw %r" % seen)
    check([int(s) for s in seen] == sorted((int(s) for s in seen), reverse=True), "order %r" % seen)
    status, page = get(svc, "/v1/reports?category=graffiti", keys[APP])
    check(len(page["reports"]) == 2, "category filter %r" % page)
    status, page = get(svc, "/v1/reports?place=vasaparken", keys[APP])
    check(len(page["reports"]) == 3, "place filter %d" % len(page["reports"]))
    status, page = get(svc, "/v1/reports?status=closed", keys[APP])
    check(page["reports"] == [], "status filter")
    status, page = get(svc, "/v1/reports", keys[STAFF])
    check(len(page["reports"]) == 8, "staff sees all: %d" % len(page["reports"]))
    status, page = get(svc, "/v1/reports?partner=" + HOUSING, keys[STAFF])
    check(len(page["reports"]) == 1, "partner filter")
    since = urllib.parse.quote("2000-01-01T00:00:00Z")
    status, page = get(svc, "/v1/reports?since=" + since + "&until=2999-01-01", keys[APP])
    check(status == 200 and len(page["reports"]) == 7, "date filter %s" % status)
    for q, field in (("limit=0", "limit"), ("limit=100000", "limit"), ("cursor=abc", "cursor"),
                     ("since=yesterday", "since"), ("status=lost", "status"),
                     ("category=Bad%20Code", "category")):
        status, body = get(svc, "/v1/reports?" + q, keys[APP])
        check(status == 400 and error_code(body)[1] == field, "%s: %s %r" % (q, status, body))
    stop(svc)


def test_intake_idempotency():
    svc, keys = start_intake()
    body = report(description="Same thing twice")
    s1, _, b1 = post(svc, keys[APP], body, idem="key-1")
    s2, h2, b2 = post(svc, keys[APP], body, idem="key-1")
    check(s1 == 201 and s2 == 201, "statuses %s %s" % (s1, s2))
    check(b1["id"] == b2["id"] and b1["service_request_id"] == b2["service_request_id"],
          "retry made another report: %r %r" % (b1, b2))
    check(h2.get("Idempotent-Replayed") == "true", "replay header %r" % h2)
    # Same object, keys in another order: still the same request.
    reordered = json.dumps(dict(reversed(list(body.items())))).encode()
    s3, _, b3 = post(svc, keys[APP], None, idem="key-1", raw=reordered)
    check(s3 == 201 and b3["id"] == b1["id"], "reordered retry %s %r" % (s3, b3))
    s4, _, b4 = post(svc, keys[APP], report(description="Something else"), idem="key-1")
    check(s4 == 409 and error_code(b4) == ("idempotency_key_reused", "Idempotency-Key"),
          "different body: %s %r" % (s4, b4))
    # Keys are per partner.
    s5, _, b5 = post(svc, keys[HOUSING], body, idem="key-1")
    check(s5 == 201 and b5["id"] != b1["id"], "other partner same key %s" % s5)
    check(report_count() == 2, "reports %d" % report_count())
    check(int(psql1("SELECT count(*) FROM intake.outbox"
                    " WHERE event_type = 'trygg.events.ReportReceived'")) == 2, "one event per report")
    # Concurrent retries with one key: exactly one report.
    results = []

    def worker():
        results.append(post(svc, keys[POLICE], report("vandalism"), idem="burst"))
    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if r[0] == 201]
    check(all(r[0] in (201, 409) for r in results), "statuses %r" % [r[0] for r in results])
    check(len({r[2]["id"] for r in ok}) == 1, "several reports for one key")
    check(int(psql1("SELECT count(*) FROM intake.reports r JOIN intake.partners p"
                    " ON p.id = r.partner_id WHERE p.name = '%s'" % POLICE)) == 1, "police reports")
    s, _, b = post(svc, keys[APP], body, idem="has space")
    check(s == 400 and error_code(b)[1] == "Idempotency-Key", "bad key %s %r" % (s, b))
    stop(svc)


def test_intake_auth_and_permissions():
    svc, keys = start_intake()
    s, h, b = post(svc, None, report())
    check(s == 401 and error_code(b)[0] == "missing_key", "no key: %s %r" % (s, b))
    check("Bearer" in h.get("WWW-Authenticate", ""), "WWW-Authenticate %r" % h)
    s, _, b = post(svc, "tk_" + "A" * 43, report())
    check(s == 401 and error_code(b)[0] == "invalid_key", "unknown key %s %r" % (s, b))
    s, _, b = post(svc, "nonsense", report())
    check(s == 401, "malformed key %s" % s)
    check(get(svc, "/v1/reports")[0] == 401, "GET without key")
    # The resident app may not report sensitive categories; the school may.
    s, _, b = post(svc, keys[APP], report("youth_at_risk"))
    check(s == 403 and error_code(b) == ("category_not_allowed", "category"), "%s %r" % (s, b))
    s, _, b = post(svc, keys[SCHOOL], report("youth_at_risk", description="Pupil in distress"))
    check(s == 201 and b["sensitive"] is True, "school sensitive %s %r" % (s, b))
    check(b["description"] is None, "sensitive description shown to non-staff: %r" % b)
    s, one = get(svc, "/v1/reports/" + b["id"], keys[STAFF])
    check(one["description"] == "Pupil in distress", "staff sees description %r" % one)
    # Keys: issue, use at once, revoke, refused.
    rc, out, _ = admin("key", "issue", HOUSING, "--label", "test", "--quiet")
    new_key = out.strip()
    s, _, b = post(svc, new_key, report())
    check(s == 201, "new key refused: %s %r" % (s, b))
    rc, out, _ = admin("key", "list", HOUSING)
    check(new_key[:10] in out and new_key not in out, "key list shows prefix only: %s" % out)
    check(psql1("SELECT count(*) FROM intake.api_keys WHERE key_hash ="
                " sha256('%s'::bytea)" % new_key) == "1", "stored as SHA-256")
    admin("key", "revoke", new_key[:10])
    wait_for(lambda: post(svc, new_key, report())[0] == 401, 15, "revoked key refused")
    # Category permissions changed by the operator take effect.
    admin("partner", "categories", "set", HOUSING, "graffiti,graffiti_offensive")
    wait_for(lambda: post(svc, keys[HOUSING], report())[0] == 403, 15, "litter refused")
    rc, out, err = admin("partner", "categories", "set", HOUSING, "nonsense", check_rc=False)
    check(rc == 1 and "unknown categories" in err, "bad category set: %s %s" % (rc, err))
    rc, out, _ = admin("partner", "list")
    check(HOUSING in out and "graffiti,graffiti_offensive" in out, out)
    admin("partner", "add", "test-partner", "--role", "housing", "--categories", "litter")
    rc, _, err = admin("partner", "add", "Bad Name", "--role", "housing", check_rc=False)
    check(rc == 1, "bad partner name accepted")
    rc, _, err = admin("partner", "add", "x", "--role", "pirate", check_rc=False)
    check(rc == 1, "bad role accepted")
    stop(svc)


def test_intake_bad_input_classes():
    svc, keys = start_intake({"TRYGG_HTTP_MAX_BODY": "64K"})
    k = keys[APP]

    def bad(raw, status, code, field=None, ctype="application/json"):
        s, _, b = post(svc, k, None, raw=raw, headers={"Content-Type": ctype})
        check(s == status, "%r: status %s %r" % (raw[:60], s, b))
        got_code, got_field = error_code(b)
        check(got_code == code, "%r: code %s, expected %s" % (raw[:60], got_code, code))
        if field is not None:
            check(got_field == field, "%r: field %r, expected %r" % (raw[:60], got_field, field))

    bad(b'{"category": "litter", "lat": 59.33', 400, "invalid_json")
    bad(b'{"category":"litter","category":"graffiti","lat":59.33,"long":18.06}', 400,
        "duplicate_key")
    bad(b'{"category":"litter","lat":59.33,"long":18.06,"description":"\xff\xfe"}', 400,
        "invalid_utf8")
    bad(b'[1,2]', 400, "not_object")
    bad(b'', 400, "invalid_json")
    bad(json.dumps(report()).encode(), 415, "unsupported_media_type", "Content-Type",
        ctype="text/plain")
    bad(json.dumps(report()).encode(), 415, "unsupported_media_type", ctype="application/jsonx")
    bad(json.dumps(report(category="unicorns")).encode(), 400, "unknown_category", "category")
    bad(json.dumps(report(pos=(95.0, 18.06))).encode(), 400, "out_of_range", "lat")
    bad(json.dumps(report(pos=GAMLA_STAN)).encode(), 400, "outside_district", "lat")
    bad(json.dumps(report(media_url="javascript:alert(1)")).encode(), 400, "invalid_url",
        "media_url")
    bad(json.dumps(report(description="x" * 4001)).encode(), 400, "too_long", "description")
    bad(json.dumps(report(address_string="y" * 251)).encode(), 400, "too_long",
        "address_string")
    bad(json.dumps(report(colour="red")).encode(), 400, "unknown_field", "colour")
    bad(json.dumps(report("graffiti", attributes={"surface": "roof"})).encode(), 400,
        "invalid_value", "attributes.surface")
    bad(json.dumps({"category": "litter", "lat": "59.33", "long": 18.06}).encode(), 400,
        "wrong_type", "lat")
    bad(b'{"a":' * 100 + b'1' + b'}' * 100, 400, "too_deep")
    s, _, b = post(svc, k, None, raw=b'{"description":"' + b'x' * 70000 + b'"}')
    check(s == 413, "oversized body: %s" % s)
    # A description of exactly 4000 characters (8000 bytes of å) is fine.
    s, _, b = post(svc, k, report(description="å" * 4000))
    check(s == 201, "4000 characters refused: %s %r" % (s, b))
    check(report_count() == 1, "rejected reports were stored")
    check(svc.metric("trygg_intake_rejected_total") >= 15, "rejections counted")
    # The service answered everything and is still healthy.
    check(http("GET", svc.base + "/readyz")[0] == 200, "not ready after bad input")
    stop(svc)


def test_intake_rate_limit():
    svc, keys = start_intake()
    admin("partner", "rate", APP, "6")  # burst 10, then one per 10 s
    time.sleep(0.5)
    statuses = []
    for _ in range(14):
        s, h, b = post(svc, keys[APP], report())
        statuses.append(s)
        if s == 429:
            check(int(h.get("Retry-After", "0")) >= 1, "Retry-After %r" % h)
            check(error_code(b)[0] == "rate_limited", "body %r" % b)
    check(statuses.count(201) >= 9 and statuses[-1] == 429, "statuses %r" % statuses)
    # Other partners are not affected.
    check(post(svc, keys[HOUSING], report())[0] == 201, "housing limited too")
    stop(svc)


def test_intake_group_commit_burst():
    svc, keys = start_intake({"TRYGG_DB_CONNECTIONS": "4", "TRYGG_COMMIT_PARALLEL": "2"})
    admin("partner", "rate", POLICE, "600000")
    time.sleep(0.5)
    n, results = 400, []
    lock = threading.Lock()

    def worker(i0):
        for i in range(i0, n, 40):
            pos = (59.330 + (i % 20) * 0.001, 18.03 + (i % 30) * 0.001)
            r = post(svc, keys[POLICE], report("vandalism", pos, description="burst %d" % i),
                     idem="b-%d" % i)
            with lock:
                results.append(r)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = [r[:1] + (r[2],) for r in results if r[0] != 201]
    check(not bad, "%d failed, e.g. %r" % (len(bad), bad[:3]))
    check(report_count() == n, "stored %d of %d" % (report_count(), n))
    check(int(psql1("SELECT count(*) FROM intake.outbox"
                    " WHERE event_type = 'trygg.events.ReportReceived'")) == n, "events")
    batches = svc.metric("trygg_intake_commit_batches_total")
    check(batches < n, "no grouping: %s transactions for %d reports" % (batches, n))
    print("  group commit: %d reports in %d transactions" % (n, batches))
    # The relay sequenced every event.
    wait_for(lambda: psql1("SELECT count(*) FROM intake.outbox WHERE pub_seq IS NULL") == "0",
             10, "relay to sequence")
    stop(svc)
