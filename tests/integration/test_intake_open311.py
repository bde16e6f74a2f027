"""intake's Open311 GeoReport v2 endpoint (issue 4, parts 1 and 7), in
JSON and XML, black-box: what an unmodified Open311 client sees.
"""
import json
import time
import urllib.parse
import xml.etree.ElementTree as ET

from harness import check, http, http_json, psql, psql1, wait_for
from intake_support import (stop, APP, GAMLA_STAN, POLICE, SCHOOL, SERGELS, STAFF, VASAPARKEN,
                            form_post, start_intake)

O = "/open311/v2"


def get_xml(svc, path):
    status, hdrs, body = http("GET", svc.base + O + path)
    check(hdrs.get("Content-Type", "").startswith("text/xml"), "%s: type %r" % (path, hdrs))
    return status, ET.fromstring(body)


def get_json(svc, path):
    return http_json("GET", svc.base + O + path)


def xml_error(body):
    root = ET.fromstring(body)
    check(root.tag == "errors", "not an Open311 error document: %r" % body)
    e = root.find("error")
    return int(e.findtext("code")), e.findtext("description")


def json_error(body):
    doc = json.loads(body)
    check(isinstance(doc, list) and "code" in doc[0] and "description" in doc[0],
          "not an Open311 error document: %r" % body)
    return doc[0]["code"], doc[0]["description"]


def fields(key, code="litter", pos=SERGELS, **kw):
    f = {"api_key": key, "service_code": code}
    if pos is not None:
        f.update({"lat": str(pos[0]), "long": str(pos[1])})
    f.update(kw)
    return f


def test_intake_open311_discovery_and_services():
    svc, keys = start_intake()
    status, d = get_json(svc, "/discovery.json")
    check(status == 200 and d["endpoints"][0]["url"].endswith("/open311/v2"), "discovery %r" % d)
    check("text/xml" in d["endpoints"][0]["formats"], "formats")
    status, root = get_xml(svc, "/discovery.xml")
    check(status == 200 and root.tag == "discovery" and root.find("endpoints/endpoint/url")
          is not None, "discovery.xml")
    status, services = get_json(svc, "/services.json")
    codes = {s["service_code"]: s for s in services}
    for c in ("litter", "graffiti", "graffiti_offensive", "vandalism", "lighting", "vegetation",
              "traffic", "sleeping_outdoors", "drug_dealing", "school_incident", "youth_at_risk",
              "vulnerable_victim", "other"):
        check(c in codes, "service %s missing" % c)
    check(codes["graffiti"]["metadata"] is True and codes["litter"]["metadata"] is False, "metadata")
    check(codes["litter"]["type"] == "realtime", "type")
    status, root = get_xml(svc, "/services.xml")
    check(root.tag == "services" and len(root.findall("service")) == len(services), "services.xml")
    status, definition = get_json(svc, "/services/graffiti.json")
    attr = definition["attributes"][0]
    check(status == 200 and attr["code"] == "surface" and attr["datatype"] == "singlevaluelist"
          and attr["variable"] is True and attr["values"][0]["key"] == "wall", "definition %r" % definition)
    status, root = get_xml(svc, "/services/graffiti.xml")
    check(root.tag == "service_definition" and root.findtext("attributes/attribute/code") == "surface",
          "definition xml")
    status, _, body = http("GET", svc.base + O + "/services/unicorns.xml")
    check(status == 404 and xml_error(body)[0] == 404, "unknown service xml")
    status, _, body = http("GET", svc.base + O + "/services/unicorns.json")
    check(status == 404 and json_error(body)[0] == 404, "unknown service json")
    # The database's target for offensive graffiti is "at once".
    check(psql1("SELECT response_target_min FROM intake.categories WHERE service_code ="
                " 'graffiti_offensive'") == "0", "offensive graffiti target")
    stop(svc)


def test_intake_open311_post_both_formats():
    svc, keys = start_intake()
    status, hdrs, body = form_post(svc, "json", fields(
        keys[APP], "graffiti", VASAPARKEN, description="Tag on the wall",
        **{"attribute[surface]": "wall", "email": "a@example.se", "first_name": "Anna",
           "phone": "070-1234567"}))
    check(status == 201, "POST json: %s %r" % (status, body))
    doc = json.loads(body)
    srid = doc[0]["service_request_id"]
    # The spec: service_request_id or token, not both (ours is known at once).
    check(srid and "token" not in doc[0] and "service_notice" in doc[0], "response %r" % doc)
    check(hdrs.get("Content-Type") == "application/json; charset=utf-8", "type %r" % hdrs)
    # The token is the report's id (what the native API calls it).
    status, native = http_json("GET", svc.base + "/v1/reports/" + srid,
                               headers={"Authorization": "Bearer " + keys[APP]})
    token = native["id"]
    status, hdrs, body = form_post(svc, "xml", fields(keys[APP], "litter", None,
                                                      address_string="Sveavägen 20"))
    check(status == 201, "POST xml: %s %r" % (status, body))
    root = ET.fromstring(body)
    check(root.tag == "service_requests" and root.findtext("request/service_request_id") and
          root.find("request/token") is None, "xml %r" % body)
    srid2 = root.findtext("request/service_request_id")
    # GET one, both formats; contact details never appear.
    status, one = get_json(svc, "/requests/%s.json" % srid)
    r = one[0]
    check(status == 200 and r["service_code"] == "graffiti" and r["status"] == "open", "%r" % one)
    check(r["description"] == "Tag on the wall" and abs(r["lat"] - VASAPARKEN[0]) < 1e-9, "%r" % r)
    check(r["requested_datetime"].endswith("Z") and "T" in r["requested_datetime"], "dates %r" % r)
    for k in ("service_request_id", "status", "status_notes", "service_name", "service_code",
              "description", "agency_responsible", "service_notice", "requested_datetime",
              "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat",
              "long", "media_url"):
        check(k in r, "field %s missing" % k)
    text = json.dumps(one)
    check("example.se" not in text and "Anna" not in text and "070" not in text, "contact leaked")
    status, root = get_xml(svc, "/requests/%s.xml" % srid2)
    check(status == 200 and root.findtext("request/address") == "Sveavägen 20", "xml one")
    check(root.find("request/lat").text is None, "no position")
    # Tokens.
    status, t = get_json(svc, "/tokens/%s.json" % token)
    check(status == 200 and t[0]["service_request_id"] == srid, "token %r" % t)
    status, root = get_xml(svc, "/tokens/%s.xml" % token)
    check(root.findtext("request/service_request_id") == srid, "token xml")
    check(get_json(svc, "/tokens/00000000-0000-4000-8000-000000000000.json")[0] == 404, "token 404")
    check(get_json(svc, "/requests/999999.json")[0] == 404, "request 404")
    # A charset parameter on the form's type is fine.
    status, _, body = form_post(svc, "json", fields(keys[APP], "litter"), headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"})
    check(status == 201, "charset parameter: %s %r" % (status, body))
    # Idempotency works here too.
    f = fields(keys[APP], "litter", description="once")
    s1, _, b1 = form_post(svc, "json", f, headers={"Idempotency-Key": "o311-1"})
    s2, _, b2 = form_post(svc, "json", f, headers={"Idempotency-Key": "o311-1"})
    check(s1 == s2 == 201 and json.loads(b1)[0]["service_request_id"] ==
          json.loads(b2)[0]["service_request_id"], "idempotent retry")
    stop(svc)


def test_intake_open311_errors():
    svc, keys = start_intake()
    cases = [
        (fields("", "litter"), 403, "api_key"),
        (fields("tk_" + "B" * 43, "litter"), 403, "api_key"),
        (fields(keys[APP], "unicorns"), 404, "service_code"),  # the spec: 404
        (fields(keys[APP], "youth_at_risk"), 403, "service_code"),
        (fields(keys[APP], "litter", GAMLA_STAN), 400, "outside the district"),
        (fields(keys[APP], "litter", (59.33, 200)), 400, "long"),
        ({"api_key": keys[APP], "service_code": "litter"}, 400, "lat"),
        (fields(keys[APP], "litter", media_url="not a url"), 400, "media_url"),
        (fields(keys[APP], "litter", description="x" * 4001), 400, "description"),
        (fields(keys[APP], "graffiti", **{"attribute[surface]": "roof"}), 400, "attribute[surface]"),
        (fields(keys[APP], "litter", bogus="1"), 400, "bogus"),
    ]
    for fmt in ("json", "xml"):
        for f, want, text in cases:
            status, hdrs, body = form_post(svc, fmt, f)
            code, desc = (xml_error if fmt == "xml" else json_error)(body)
            check(status == want and code == want, "%s %r: %s %r" % (fmt, f, status, body))
            check(text in desc, "%s: %r does not mention %r" % (fmt, desc, text))
    status, _, body = form_post(svc, "json", None, raw=b"api_key=x&lat=%ZZ")
    check(status == 400 and json_error(body)[0] == 400, "bad escape: %s" % status)
    status, _, body = form_post(svc, "xml", None, raw=b"service_code=litter&lat=1&lat=2")
    check(status == 400 and "appears twice" in xml_error(body)[1], "duplicate field %r" % body)
    status, _, body = form_post(svc, "json", None, raw=b"description=%C3%28")
    check(status == 400, "invalid UTF-8: %s" % status)
    status, _, body = http("POST", svc.base + O + "/requests.xml", b'{"a":1}',
                           {"Content-Type": "application/json"})
    check(status == 415 and xml_error(body)[0] == 415, "415: %s %r" % (status, body))
    status, _, body = http("GET", svc.base + O + "/requests.json?start_date=2020-01-01T00:00:00Z"
                           "&end_date=2020-06-01T00:00:00Z")
    check(status == 400 and "90 days" in json_error(body)[1], "window over 90 days: %s" % status)
    status, _, body = http("GET", svc.base + O + "/requests.xml?start_date=soon")
    check(status == 400 and xml_error(body)[0] == 400, "bad date")
    status, _, body = http("GET", svc.base + O + "/requests/abc.json")
    check(status == 404, "bad id %s" % status)
    status, _, body = http("GET", svc.base + O + "/services.csv")
    check(status == 404, "unknown format %s" % status)
    check(int(psql1("SELECT count(*) FROM intake.reports")) == 0, "an invalid request was stored")
    stop(svc)


def test_intake_open311_list_filters_and_privacy():
    svc, keys = start_intake()
    posted = []
    for key, code, kw in ((APP, "litter", {}), (APP, "graffiti", {"attribute[surface]": "wall"}),
                          (POLICE, "drug_dealing", {"description": "Dealing at the stairs"}),
                          (SCHOOL, "youth_at_risk", {"description": "Pupil alone at night"}),
                          (APP, "lighting", {})):
        status, _, body = form_post(svc, "json", fields(keys[key], code, **kw))
        check(status == 201, "post %s: %s %r" % (code, status, body))
        posted.append(json.loads(body)[0]["service_request_id"])
    # Public: sensitive categories never appear, in either format.
    status, public = get_json(svc, "/requests.json")
    codes = sorted(r["service_code"] for r in public)
    check(codes == ["graffiti", "lighting", "litter"], "public list %r" % codes)
    status, root = get_xml(svc, "/requests.xml")
    check(sorted(r.findtext("service_code") for r in root.findall("request")) == codes, "xml list")
    check(get_json(svc, "/requests/%s.json" % posted[2])[0] == 404, "sensitive GET one is public")
    status, _, body = http("GET", svc.base + O + "/requests.json?service_code=drug_dealing")
    check(json.loads(body) == [], "sensitive via filter")
    # A non-staff partner's key does not unlock them; a staff key does.
    status, lst = get_json(svc, "/requests.json?api_key=" + keys[POLICE])
    check(len(lst) == 3, "police sees %d" % len(lst))
    status, lst = get_json(svc, "/requests.json?api_key=" + keys[STAFF])
    check(len(lst) == 5, "staff sees %d" % len(lst))
    by = {r["service_code"]: r for r in lst}
    check(by["drug_dealing"]["description"] == "Dealing at the stairs", "staff description")
    status, one = get_json(svc, "/requests/%s.json?api_key=%s" % (posted[3], keys[STAFF]))
    check(status == 200 and one[0]["description"] == "Pupil alone at night", "staff one")
    check(get_json(svc, "/requests.json?api_key=tk_" + "C" * 43)[0] == 403, "bad key on GET")
    # Filters.
    status, lst = get_json(svc, "/requests.json?service_request_id=%s,%s" % (posted[0], posted[4]))
    check(sorted(r["service_request_id"] for r in lst) == sorted([posted[0], posted[4]]), "ids")
    status, lst = get_json(svc, "/requests.json?service_code=litter,lighting")
    check(sorted(r["service_code"] for r in lst) == ["lighting", "litter"], "codes")
    status, lst = get_json(svc, "/requests.json?status=closed")
    check(lst == [], "closed")
    status, lst = get_json(svc, "/requests.json?status=open,closed")
    check(len(lst) == 3, "open,closed")
    now = time.time()
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600))
    end = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now + 3600))
    status, lst = get_json(svc, "/requests.json?start_date=%s&end_date=%s" % (
        start, urllib.parse.quote(end)))
    check(status == 200 and len(lst) == 3, "date range %s %r" % (status, lst))
    status, lst = get_json(svc, "/requests.json?end_date=2001-01-01T00:00:00Z")
    check(lst == [], "old window")
    # Empty dates are dates not given (the last 90 days).
    status, lst = get_json(svc, "/requests.json?start_date=&end_date=")
    check(status == 200 and len(lst) == 3, "empty dates %s %r" % (status, lst))
    # More anonymous reads than the old, never-refilled bucket of 10 allowed.
    for _ in range(3):
        status, root = get_xml(svc, "/requests.xml?service_code=litter,lighting")
        check(status == 200 and len(root.findall("request")) == 2, "xml filter %s" % status)
    stop(svc)


def test_intake_open311_public_rate_limit():
    # 120 a minute: a burst of 12, then 2 a second. The default (600: a
    # burst of 60) or a bucket that never refills would both fail this.
    svc, keys = start_intake({"TRYGG_PUBLIC_RATE_PER_MIN": "120"})
    statuses = []
    for _ in range(70):
        statuses.append(http("GET", svc.base + O + "/requests.json")[0])
        if statuses[-1] != 200:
            break
    ok = statuses.count(200)
    check(statuses[-1] == 429 and 12 <= ok < 60, "burst: %d OK then %r" % (ok, statuses[-1:]))
    status, hdrs, body = http("GET", svc.base + O + "/requests.xml")
    check(status == 429 and 1 <= int(hdrs.get("Retry-After", "0")) <= 2, "429 %s %r" % (status, hdrs))
    check(xml_error(body)[0] == 429, "Open311 error document")
    # With a key the partner's own limit applies instead.
    check(get_json(svc, "/requests.json?api_key=" + keys[STAFF])[0] == 200, "keyed GET")
    # The bucket refills: after the Retry-After, anonymous reads work again.
    time.sleep(1.6)
    check(http("GET", svc.base + O + "/requests.json")[0] == 200, "no refill")
    time.sleep(1.1)
    check(http("GET", svc.base + O + "/requests.xml")[0] == 200, "no refill (2)")
    stop(svc)


def test_intake_open311_spec_rules():
    """GeoReport v2 rules real clients rely on (issue 9, item 4)."""
    svc, keys = start_intake({"TRYGG_PUBLIC_URL": "https://trygg.example.se/",
                              "TRYGG_DIRECTORY_REFRESH": "1h"})
    # FixMyStreet's graffiti report: every attribute it knows, some empty.
    status, hdrs, body = form_post(svc, "xml", fields(
        keys[APP], "graffiti", VASAPARKEN, description="Tag",
        **{"attribute[surface]": "", "email": "", "phone": "", "first_name": "",
           "last_name": "", "media_url": "", "address_string": "", "address_id": "",
           "account_id": "", "device_id": "", "jurisdiction_id": ""}))
    check(status == 201, "empty optional attributes: %s %r" % (status, body))
    check(hdrs.get("Content-Type") == "text/xml; charset=utf-8", "xml type %r" % hdrs)
    # address_id alone is a location.
    status, _, body = form_post(svc, "json", fields(keys[APP], "litter", None,
                                                    address_id="#NOTPINPOINTED#"))
    check(status == 201, "address_id: %s %r" % (status, body))
    # An unknown service_code is a 404, in both formats.
    for fmt in ("json", "xml"):
        status, _, body = form_post(svc, fmt, fields(keys[APP], "unicorns"))
        code = (xml_error if fmt == "xml" else json_error)(body)[0]
        check(status == 404 and code == 404, "unknown service %s: %s" % (fmt, status))
    # JSON says its charset, documents and errors alike.
    for path in ("/services.json", "/requests.json", "/discovery.json", "/requests/0.json"):
        status, hdrs, _ = http("GET", svc.base + O + path)
        check(hdrs.get("Content-Type") == "application/json; charset=utf-8", "%s: %r" % (path, hdrs))
    # Discovery: the configured URL, and a changeset that follows the categories.
    status, d1 = get_json(svc, "/discovery.json")
    check(d1["endpoints"][0]["url"] == "https://trygg.example.se/open311/v2", "url %r" % d1)
    time.sleep(0.05)
    psql("UPDATE intake.categories SET name = 'Litter and bins' WHERE service_code = 'litter'")
    psql("NOTIFY intake_directory")
    wait_for(lambda: get_json(svc, "/discovery.json")[1]["changeset"] != d1["changeset"], 10,
             "changeset changes with the categories")
    status, d2 = get_json(svc, "/discovery.json")
    check(d2["changeset"] > d1["changeset"] and d2["endpoints"][0]["changeset"] == d2["changeset"],
          "changeset %r -> %r" % (d1["changeset"], d2["changeset"]))
    status, root = get_xml(svc, "/discovery.xml")
    check(root.findtext("changeset") == d2["changeset"], "xml changeset")
    # A reload without a change keeps it.
    psql("NOTIFY intake_directory")
    time.sleep(0.5)
    check(get_json(svc, "/discovery.json")[1]["changeset"] == d2["changeset"], "spurious change")
    # A token does not reveal what requests/{id} hides.
    status, _, body = form_post(svc, "json", fields(keys[POLICE], "drug_dealing",
                                                    description="Dealing at the stairs"))
    srid = json.loads(body)[0]["service_request_id"]
    token = psql1("SELECT id FROM intake.reports WHERE service_request_id = %s" % int(srid))
    check(get_json(svc, "/requests/%s.json" % srid)[0] == 404, "sensitive by id")
    check(get_json(svc, "/tokens/%s.json" % token)[0] == 404, "sensitive by token")
    status, _, body = http("GET", svc.base + O + "/tokens/%s.xml" % token)
    check(status == 404 and xml_error(body)[0] == 404, "sensitive by token (xml)")
    status, t = get_json(svc, "/tokens/%s.json?api_key=%s" % (token, keys[STAFF]))
    check(status == 200 and t[0]["service_request_id"] == srid, "staff token %r" % t)
    stop(svc)


def test_intake_open311_client_round_trip():
    """A real client's full round trip (tests/tools/open311_client.py, which
    talks the way FixMyStreet's Open311.pm does), in XML and in JSON."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../tools"))
    from open311_client import Open311Client, Open311Error
    svc, keys = start_intake({"TRYGG_PUBLIC_URL": "https://trygg.example.se"})
    for fmt in ("xml", "json"):
        client = Open311Client(svc.base + O, api_key=keys[APP], jurisdiction="norrmalm", fmt=fmt)
        d = client.discovery()
        endpoint = d["endpoints"]["endpoint"] if fmt == "xml" else d["endpoints"][0]
        check(endpoint["url"] == "https://trygg.example.se/open311/v2", "discovery %r" % d)
        services = {s["service_code"]: s for s in client.get_service_list()}
        check({"graffiti", "lighting", "litter"} <= set(services), "services %r" % list(services))
        meta = client.get_service_meta_info("graffiti")
        check(meta["service_code"] == "graffiti" and meta["attributes"][0]["code"] == "surface"
              and {v["key"] for v in meta["attributes"][0]["values"]} >= {"wall", "door"},
              "definition %r" % meta)
        # Every optional field, some of them empty, as FixMyStreet sends them.
        srid, rec = client.send_service_request(
            "graffiti", lat=VASAPARKEN[0], lon=VASAPARKEN[1], address_string="", address_id="",
            description="Tag på väggen ✓", media_url="", email="anna@example.se",
            first_name="Anna", last_name="", phone="", device_id="", account_id="",
            attributes={"surface": ""})
        check(srid and "token" not in rec, "POST answer %r" % rec)
        check(client.last_content_type == ("text/xml; charset=utf-8" if fmt == "xml"
                                           else "application/json; charset=utf-8"),
              "type %r" % client.last_content_type)
        srid2, _ = client.send_service_request(
            "lighting", address_string="Sveavägen 20", description="Lamp out",
            media_url="https://example.se/p.jpg", attributes={"pole_number": "17"})
        # The spec's 404 for an unknown service reaches the client as such.
        try:
            client.send_service_request("unicorns", lat=SERGELS[0], lon=SERGELS[1])
            check(False, "unknown service accepted")
        except Open311Error as e:
            check(e.status == 404 and e.code == 404, "unknown service: %r" % e)
        # GET by id list, one by one, and by dates.
        got = {r["service_request_id"]: r for r in client.get_service_requests([srid, srid2])}
        check(set(got) == {srid, srid2}, "by ids %r" % list(got))
        check(got[srid]["description"] == "Tag på väggen ✓" and got[srid]["status"] == "open",
              "fields %r" % got[srid])
        check(got[srid2]["address"] == "Sveavägen 20" and got[srid2]["media_url"] ==
              "https://example.se/p.jpg", "fields %r" % got[srid2])
        check("anna" not in json.dumps(got), "contact leaked")
        one = client.get_service_request(srid)
        check(one["service_code"] == "graffiti" and float(one["lat"]) == VASAPARKEN[0], "one %r" % one)
        now = time.time()
        window = client.get_service_requests(
            start_date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 600)),
            end_date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 600)))
        check({srid, srid2} <= {r["service_request_id"] for r in window}, "by dates")
        check(client.get_service_requests(start_date="", end_date="") != [], "empty dates")
        # The token (the report's id) resolves to the same request.
        token = psql1("SELECT id FROM intake.reports WHERE service_request_id = %d" % int(srid))
        check(client.get_service_request_id_from_token(token) == srid, "token")
    stop(svc)
