"""Helpers for walk-planner's integration tests (issue 10).

A Stack is trygg-walk-planner with real publishers around it:
trygg-reportpub stands in for intake (publisher "intake") and trygg-testpub
for the notifier (publisher "notifier"). Events with exactly the fields a
test wants (a report's time and night, a task event naming a finding) are
written straight into the stand-in's outbox, encoded here by hand, and its
real relay sequences and publishes them, so walk-planner sees them through
its real inboxes exactly as it would see intake's and the notifier's.
"""
import datetime
import json
import os
import re
import struct
import subprocess
import time
import uuid

from harness import (BIN, ROOT, Service, check, free_port, fresh_schemas, http, http_json, psql,
                     psql1, role_url, wait_for)
from intake_support import pb_fields

PLACES = os.path.join(ROOT, "deploy/demo/places.geojson")
AREAS = os.path.join(ROOT, "deploy/demo/survey-areas.geojson")
SURVEY = os.path.join(ROOT, "deploy/demo/survey-illustrative.csv")
PARTICIPANTS = os.path.join(ROOT, "deploy/demo/walk-participants.sh")
CENTRE = {"sergels-torg": (59.3324, 18.0637), "klarakvarteren": (59.3318, 18.0590),
          "centralstationen": (59.3303, 18.0586), "kungstradgarden": (59.3310, 18.0716),
          "sodra-johannes": (59.3372, 18.0660), "odenplan": (59.3430, 18.0497),
          "hotorget": (59.3349, 18.0630), "vasaparken": (59.3420, 18.0440)}


# ---- protobuf by hand ----

def _varint(n):
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_str(field, s):
    b = s.encode()
    return _varint(field << 3 | 2) + _varint(len(b)) + b


def f_int(field, n):
    return _varint(field << 3) + _varint(n) if n else b""


def f_bool(field, v):
    return _varint(field << 3) + b"\x01" if v else b""


def f_double(field, v):
    return _varint(field << 3 | 1) + struct.pack("<d", v)


def text(fields, n):
    return fields[n][0].decode() if n in fields else ""


def num(fields, n):
    return fields[n][0] if n in fields else 0


def us(dt):
    return int(dt.timestamp() * 1_000_000)


def report_received(places, category="litter", severity=2, night=False, at=None,
                    pos=None, report_id=None):
    at = at or datetime.datetime.now(datetime.timezone.utc)
    body = f_str(1, report_id or str(uuid.uuid4())) + f_str(5, category)
    if pos:
        body += f_bool(7, True) + f_double(8, pos[0]) + f_double(9, pos[1])
    for p in places:
        body += f_str(10, p)
    return body + f_int(11, severity) + f_int(13, us(at)) + f_int(17, us(at)) + f_bool(20, night)


class Stack:
    """walk-planner, a stand-in intake (reportpub) and notifier (testpub)."""

    def __init__(self, env=None, demo=True):
        fresh_schemas("walks", "reportpub", "testpub")
        p = [free_port() for _ in range(6)]
        self.intake_pub, self.intake_rep = ("tcp://127.0.0.1:%d" % p[0], "tcp://127.0.0.1:%d" % p[1])
        self.notifier_pub, self.notifier_rep = ("tcp://127.0.0.1:%d" % p[2], "tcp://127.0.0.1:%d" % p[3])
        self.intake = Service("reportpub", "trygg-reportpub", {
            "DATABASE_URL": role_url("reportpub"), "TRYGG_HTTP_PORT": free_port(),
            "TRYGG_BUS_PUB_URL": self.intake_pub, "TRYGG_BUS_REP_URL": self.intake_rep})
        self.notifier = Service("testpub", "trygg-testpub", {
            "DATABASE_URL": role_url("testpub"), "TRYGG_HTTP_PORT": free_port(),
            "TRYGG_PUBLISHER": "notifier",
            "TRYGG_BUS_PUB_URL": self.notifier_pub, "TRYGG_BUS_REP_URL": self.notifier_rep})
        port = free_port()
        wenv = {"DATABASE_URL": role_url("walks"), "TRYGG_HTTP_PORT": port,
                "TRYGG_BUS_PUB_URL": "tcp://127.0.0.1:%d" % p[4],
                "TRYGG_BUS_REP_URL": "tcp://127.0.0.1:%d" % p[5],
                "TRYGG_BUS_INTAKE_SUB_URL": self.intake_pub,
                "TRYGG_BUS_INTAKE_REQ_URL": self.intake_rep,
                "TRYGG_BUS_NOTIFIER_SUB_URL": self.notifier_pub,
                "TRYGG_BUS_NOTIFIER_REQ_URL": self.notifier_rep,
                "TRYGG_PUBLIC_URL": "http://127.0.0.1:%d" % port}
        wenv.update(env or {})
        self.wp = Service("walk-planner", "trygg-walk-planner", wenv)
        self.intake.start()
        self.notifier.start()
        if demo:
            admin("places", "load", PLACES)
            admin("survey", "load", SURVEY, "--areas", AREAS, "--survey", "trygghetsmatning",
                  "--year", "2025", "--illustrative")
            out = subprocess.run([PARTICIPANTS, BIN], capture_output=True, text=True, timeout=60,
                                 env=admin_env())
            check(out.returncode == 0, "participants: %s %s" % (out.stdout, out.stderr))
        self.key = admin("key", "issue", "lead")[1].strip()
        self.wp.start()

    # ---- the stand-ins' outboxes ----

    def _emit(self, schema, events):
        values = ",".join("('%s', '\\x%s'::bytea)" % (t, p.hex()) for t, p in events)
        psql("INSERT INTO %s.outbox (event_type, payload) VALUES %s; NOTIFY %s_outbox"
             % (schema, values, schema))

    def reports(self, payloads):
        """Publishes ReportReceived payloads as intake."""
        for i in range(0, len(payloads), 500):
            self._emit("reportpub", [("trygg.events.ReportReceived", p) for p in payloads[i:i + 500]])

    def task_event(self, kind, payload):
        self._emit("testpub", [("trygg.events." + kind, payload)])

    def applied(self, publisher):
        return int(psql1("SELECT coalesce(max(last_seq), 0) FROM walks.inbox_cursor"
                         " WHERE publisher = '%s'" % publisher) or 0)

    def wait_applied(self, publisher, timeout=20):
        schema = "reportpub" if publisher == "intake" else "testpub"
        want = int(psql1("SELECT count(*) FROM %s.outbox" % schema))
        wait_for(lambda: self.applied(publisher) >= want, timeout,
                 "walk-planner applied %d events of %s" % (want, publisher))

    # ---- HTTP ----

    def api(self, method, path, body=None, key=True, headers=None):
        h = {"Content-Type": "application/json"}
        if key:
            h["Authorization"] = "Bearer " + (self.key if key is True else key)
        h.update(headers or {})
        return http_json(method, self.wp.base + path, body, h)

    def raw(self, method, path, key=True, body=None, headers=None):
        h = dict(headers or {})
        if key:
            h["Authorization"] = "Bearer " + (self.key if key is True else key)
        return http(method, self.wp.base + path, body, h)


def admin_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYGG_")}
    env["DATABASE_URL"] = role_url("walks")
    return env


def admin(*args, rc=0):
    """Runs `trygg-walk-planner admin ARGS`; returns (rc, stdout, stderr)."""
    p = subprocess.run([os.path.join(BIN, "trygg-walk-planner"), "admin"] + list(args),
                       env=admin_env(), capture_output=True, text=True, timeout=60)
    if rc is not None:
        check(p.returncode == rc, "admin %s: rc %s (wanted %s): %s%s"
              % (args, p.returncode, rc, p.stdout, p.stderr))
    return p.returncode, p.stdout, p.stderr


def outbox(type_suffix=None):
    """walk-planner's published events: [(type, fields)] in order."""
    rows = psql("SELECT event_type, encode(payload, 'hex') FROM walks.outbox ORDER BY id")
    out = [(t, pb_fields(bytes.fromhex(p))) for t, p in rows]
    return [e for e in out if type_suffix is None or e[0].endswith(type_suffix)]


def error_field(res):
    return res["error"]["field"] if isinstance(res, dict) and "error" in res else None


# ---- RFC 5545, the parts an invitation needs ----

def parse_ics(data):
    """Checks the wire rules (CRLF only, 75-octet lines, folding) and returns
    [(name, params dict, value)] of the unfolded content lines."""
    check(isinstance(data, bytes), "ics must be bytes")
    check(data.endswith(b"\r\n"), "ics must end with CRLF")
    check(b"\n" not in data.replace(b"\r\n", b""), "bare LF in ics")
    for line in data.split(b"\r\n")[:-1]:
        check(len(line) <= 75, "line longer than 75 octets: %r" % line)
        line.decode("utf-8")  # a fold never splits a character
    unfolded = data.replace(b"\r\n ", b"").replace(b"\r\n\t", b"").decode()
    props = []
    for line in unfolded.split("\r\n")[:-1]:
        m = re.match(r'^([A-Z-]+)((?:;[A-Z-]+=(?:"[^"]*"|[^;:,]*))*):(.*)$', line)
        check(m, "not a content line: %r" % line)
        params = dict(re.findall(r';([A-Z-]+)=("[^"]*"|[^;:,]*)', m.group(2)))
        props.append((m.group(1), params, m.group(3)))
    names = [p[0] for p in props]
    check(names[0] == "BEGIN" and props[0][2] == "VCALENDAR" and names[-1] == "END",
          "not a VCALENDAR: %r" % names)
    return props


def ics_get(props, name):
    return [p for p in props if p[0] == name]


def ics_unescape(v):
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), v)
