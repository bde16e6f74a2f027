"""intake under hostile use (issue 9): bytes that used to crash it, break
its public XML feed for everyone, or cost a database query each.

Every request here is one an anonymous client can send; after each batch
the service must still be alive and answer well-formed documents.
"""
import json
import socket
import urllib.parse
import xml.etree.ElementTree as ET

from harness import check, http, psql, psql1, wait_for
from intake_support import (APP, SERGELS, STAFF, admin, bearer, form_post, post, report,
                            start_intake, stop)

O = "/open311/v2"


def alive(svc):
    check(svc.alive(), "intake died; log:\n%s" % svc.tail())
    check(http("GET", svc.base + "/healthz")[0] == 200, "intake does not answer")


def o311_error(fmt, body):
    """The (code, description) of an Open311 error document, which must parse."""
    if fmt == "xml":
        root = ET.fromstring(body)
        check(root.tag == "errors", "not an error document: %r" % body)
        return int(root.findtext("error/code")), root.findtext("error/description")
    doc = json.loads(body.decode("utf-8"))
    return doc[0]["code"], doc[0]["description"]


def test_intake_hostile_split_utf8_in_error_messages():
    """A name or code cut in the middle of a character by a %.Ns used to make
    jansson refuse the error text and render.c call strlen(NULL)."""
    svc, keys = start_intake()
    name = "a" * 99 + "%C3%A9"
    for fmt in ("json", "xml"):
        # Without any key: the duplicate field is found while parsing.
        status, _, body = form_post(svc, fmt, None, raw=("%s=1&%s=2" % (name, name)).encode())
        alive(svc)
        code, desc = o311_error(fmt, body)
        check(status == 400 and code == 400 and "appears twice" in desc, "%s %r" % (status, body))
        # With a key: an unknown field, and an unknown service code cut at 64.
        status, _, body = form_post(svc, fmt, None, raw=(
            "api_key=%s&service_code=litter&lat=59.3324&long=18.0637&%s=1" % (keys[APP], name)
        ).encode())
        alive(svc)
        code, desc = o311_error(fmt, body)
        check(status == 400 and "unknown field" in desc, "%s %r" % (status, body))
        status, _, body = form_post(svc, fmt, {"api_key": keys[APP], "service_code": "a" * 63 + "é",
                                               "lat": "59.3324", "long": "18.0637"})
        alive(svc)
        code, desc = o311_error(fmt, body)
        check(status == 404 and code == 404 and "service_code" in desc, "%s %r" % (status, body))
    # The native API: an attribute name cut at 100 bytes.
    status, _, body = post(svc, keys[APP], report("graffiti", attributes={"b" * 99 + "é": "x"}))
    alive(svc)
    check(status == 400 and body["error"]["field"].startswith("attributes.b"), "%s %r" % (status, body))
    stop(svc)


def _xml_unsafe_cases():
    bad = {"U+FFFF": "x\uffffy", "U+FFFE": "x\ufffey", "C0": "x\x01y", "ESC": "x\x1by"}
    fields = ["description", "address_string", "first_name", "last_name", "email", "phone",
              "device_id", "account_id"]
    return bad, fields


def test_intake_hostile_xml_unsafe_text_refused():
    svc, keys = start_intake()
    bad, fields = _xml_unsafe_cases()
    for what, text in bad.items():
        for f in fields:
            for fmt in ("json", "xml"):
                form = {"api_key": keys[APP], "service_code": "litter", "lat": "59.3324",
                        "long": "18.0637", f: text}
                status, _, body = form_post(svc, fmt, form)
                code, desc = o311_error(fmt, body)
                check(status == 400 and desc.startswith(f), "%s in %s (%s): %s %r"
                      % (what, f, fmt, status, body))
        status, _, body = form_post(svc, "json", {
            "api_key": keys[APP], "service_code": "lighting", "lat": "59.3324", "long": "18.0637",
            "attribute[pole_number]": "12" + text})
        check(status == 400 and "attribute[pole_number]" in o311_error("json", body)[1],
              "%s in an attribute: %s %r" % (what, status, body))
        # The native API refuses the same, naming the field.
        status, _, body = post(svc, keys[APP], report(description=text))
        check(status == 400 and body["error"]["field"] == "description", "native %s: %r" % (what, body))
        status, _, body = post(svc, keys[APP], report(contact={"first_name": text}))
        check(status == 400 and body["error"]["field"] == "contact.first_name",
              "native contact %s: %r" % (what, body))
    check(int(psql1("SELECT count(*) FROM intake.reports")) == 0, "unsafe text was stored")
    # Tab, newlines and ordinary non-ASCII (and U+FFFD) are still welcome.
    status, _, body = form_post(svc, "json", {"api_key": keys[APP], "service_code": "litter",
                                              "lat": "59.3324", "long": "18.0637",
                                              "description": "a\tb\r\nc é \ufffd 😀"})
    check(status == 201, "ordinary text refused: %s %r" % (status, body))
    stop(svc)


def test_intake_hostile_stored_text_renders_as_xml():
    """Defence in depth: text that reached the database some other way (an
    older version, a crew note written before the fix) never breaks the
    feed."""
    svc, keys = start_intake()
    status, _, body = form_post(svc, "json", {"api_key": keys[APP], "service_code": "litter",
                                              "lat": "59.3324", "long": "18.0637",
                                              "description": "fine"})
    check(status == 201, "post %s %r" % (status, body))
    srid = json.loads(body)[0]["service_request_id"]
    psql("UPDATE intake.reports SET description = E'bad \\uFFFF \\x01 desc',"
         " status_notes = E'note \\uFFFE\\x02 end', address_string = E'\\x1b addr'")
    for path in ("/requests.xml", "/requests/%s.xml" % srid):
        status, _, body = http("GET", svc.base + O + path)
        check(status == 200, "%s: %s" % (path, status))
        root = ET.fromstring(body)  # raises on a character XML cannot carry
        r = root.find("request")
        check(r.findtext("description").startswith("bad ") and
              r.findtext("status_notes").endswith(" end"), "%s: %r" % (path, body))
    status, _, body = http("GET", svc.base + O + "/requests.json")
    doc = json.loads(body)
    check(status == 200 and doc[0]["description"].startswith("bad"), "json %r" % body)
    stop(svc)


def raw_get(svc, path, host):
    """GET with a Host header no HTTP library would send."""
    s = socket.create_connection(("127.0.0.1", svc.http_port), timeout=10)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host +
              b"\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head, body


def test_intake_hostile_host_header_and_public_url():
    public = "https://trygg.example.se/api"
    svc, keys = start_intake({"TRYGG_PUBLIC_URL": public})
    for host in (b"\xff", b"evil.example<x>", b"localhost:1"):
        status, head, body = raw_get(svc, O + "/discovery.json", host)
        check(status == 200, "discovery.json with Host %r: %s %r" % (host, status, body))
        d = json.loads(body.decode("utf-8"))
        check(d["endpoints"][0]["url"] == public + "/open311/v2", "url %r" % d)
        status, head, body = raw_get(svc, O + "/discovery.xml", host)
        check(status == 200, "discovery.xml with Host %r: %s" % (host, status))
        root = ET.fromstring(body)
        check(root.findtext("endpoints/endpoint/url") == public + "/open311/v2", "xml url %r" % body)
    alive(svc)
    stop(svc)


def test_intake_hostile_unknown_keys_cached_and_limited():
    """An unknown key costs at most one query until the directory reloads,
    and failed authentications are limited per address."""
    svc, keys = start_intake({"TRYGG_DIRECTORY_REFRESH": "1h", "TRYGG_AUTH_FAIL_PER_MIN": "600"})
    # A key of the right shape that is not issued yet.
    rc, out, _ = admin("key", "issue", APP, "--label", "later")
    new_key = [w for w in out.split() if w.startswith("tk_") and len(w) == 46][0]
    key_hash = psql1("SELECT encode(key_hash, 'hex') FROM intake.api_keys WHERE label = 'later'")
    psql("DELETE FROM intake.api_keys WHERE label = 'later'")
    psql("NOTIFY intake_directory")
    wait_for(lambda: post(svc, new_key, report())[0] == 401, 10, "key forgotten")
    for _ in range(3):
        check(post(svc, new_key, report())[0] == 401, "unknown key")
    # Issued behind intake's back (no NOTIFY): the cached miss still holds,
    # which proves no query was made for it.
    psql("INSERT INTO intake.api_keys (key_hash, prefix, partner_id, label) SELECT"
         " decode('%s', 'hex'), '%s', id, 'later' FROM intake.partners WHERE name = '%s'"
         % (key_hash, new_key[:10], APP))
    check(post(svc, new_key, report())[0] == 401, "the miss was not cached (a query per request)")
    # A directory reload forgets the misses.
    psql("NOTIFY intake_directory")
    wait_for(lambda: post(svc, new_key, report())[0] == 201, 10, "key accepted after reload")
    stop(svc)

    # Failed authentications per address: after the burst, 429 with
    # Retry-After, without asking Postgres; a key intake knows still works.
    svc, keys = start_intake({"TRYGG_AUTH_FAIL_PER_MIN": "6"})
    statuses = []
    for i in range(30):
        k = "tk_" + ("%043d" % i).replace("0", "Q")
        status, hdrs, body = post(svc, k, report())
        statuses.append(status)
        if status == 429:
            check(int(hdrs.get("Retry-After", "0")) >= 1, "Retry-After %r" % hdrs)
            break
    check(statuses[0] == 401 and statuses[-1] == 429, "failed authentications not limited: %r"
          % statuses)
    status, _, body = form_post(svc, "json", {"api_key": "tk_" + "Z" * 43, "service_code": "litter"})
    check(status == 429 and o311_error("json", body)[0] == 429, "Open311: %s %r" % (status, body))
    check(post(svc, keys[APP], report())[0] == 201, "a known key is not locked out")
    stop(svc)
