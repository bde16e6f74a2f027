"""Errors the HTTP server produces itself, under /open311/v2/ (issue 9,
part 2), black-box: 404, 405, 413 (by Content-Length and for a chunked
body that grows over the cap) and 431 use the Open311 error document,
JSON or XML by the path's extension; the native API keeps its own.
"""
import json
import socket
import time

from harness import check, http
from intake_support import start_intake, stop


def raw(svc, data, timeout=10):
    """Sends raw bytes, returns (status, headers text, body bytes) of the answer."""
    s = socket.create_connection(("127.0.0.1", svc.http_port), timeout=timeout)
    try:
        s.sendall(data)
        buf, deadline = b"", time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                if len(body) >= length:
                    break
    finally:
        s.close()
    check(buf, "no answer at all (connection closed)")
    head, _, body = buf.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head.decode(errors="replace"), body


def check_o311_json(status, body, want, what):
    check(status == want, "%s: status %s" % (what, status))
    try:
        doc = json.loads(body)
    except ValueError:
        raise AssertionError("%s: not JSON: %r" % (what, body[:200]))
    check(isinstance(doc, list) and len(doc) == 1 and doc[0].get("code") == want and
          isinstance(doc[0].get("description"), str), "%s: not an Open311 error: %r" % (what, doc))


def check_o311_xml(status, body, want, what):
    check(status == want, "%s: status %s" % (what, status))
    check(b"<errors><error><code>%d</code><description>" % want in body,
          "%s: not an Open311 XML error: %r" % (what, body[:200]))


def test_intake_open311_server_errors():
    svc, _ = start_intake(seed_db=True)
    base = svc.base + "/open311/v2/"
    s, _, b = http("GET", base + "nothing.json")
    check_o311_json(s, b, 404, "404 .json")
    s, _, b = http("GET", base + "nothing.xml")
    check_o311_xml(s, b, 404, "404 .xml")
    s, h, b = http("DELETE", base + "requests.json")
    check_o311_json(s, b, 405, "405")
    check("GET" in h.get("Allow", "") and "POST" in h.get("Allow", ""), "Allow %r" % h)
    s, _, b = http("PUT", base + "requests.xml", b"x")
    check_o311_xml(s, b, 405, "405 .xml")

    head = ("POST /open311/v2/requests.json HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n")
    s, _, b = raw(svc, (head + "Content-Length: %d\r\n\r\n" % (2 << 20)).encode())
    check_o311_json(s, b, 413, "413 by Content-Length")

    # A chunked body that grows over the 1 MiB cap: a 413, not a close.
    chunk = b"a" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20)) + b"0\r\n\r\n"
    s, _, b = raw(svc, (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + body)
    check_o311_json(s, b, 413, "413 chunked")

    big = "X-Big: " + "h" * 40000 + "\r\n"
    s, _, b = raw(svc, ("GET /open311/v2/services.xml HTTP/1.1\r\nHost: x\r\n" + big +
                        "\r\n").encode())
    check_o311_xml(s, b, 431, "431 .xml")

    # The native API keeps its own error format.
    s, _, b = http("GET", svc.base + "/v1/nothing")
    check(s == 404 and json.loads(b)["error"]["code"] == "not_found", "native 404 %r" % b)
    check(svc.alive(), "intake died")
    stop(svc)
