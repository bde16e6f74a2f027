"""Helpers for reporting's integration tests (issue 11).

A Stack is trygg-reporting with three stand-in publishers around it, each a
real outbox relay (trygg-eventpub) under its own schema publishing as
"intake", "notifier" and "walk-planner": a test writes protobuf events into
their outboxes (at the times it chooses: last month, last year) and
reporting follows them through its real inboxes. The tests then compare
every figure with what they count themselves from the events they wrote.
"""
import datetime
import json
import os
import struct
import subprocess
import uuid
from zoneinfo import ZoneInfo

from harness import (BIN, ROOT, SUPER_URL, TMP, Service, check, free_port, fresh_schemas, http, http_json,
                     psql, psql1, role_url, wait_for)

from intake_support import _varint  # noqa: E402 (protobuf varints, by hand)

PLACES = os.path.join(ROOT, "deploy/demo/places.geojson")
STOCKHOLM = ZoneInfo("Europe/Stockholm")
PUBS = {"intake": "evintake", "notifier": "evnotifier", "walk-planner": "evwalks"}

# ---- protobuf, by hand ----


def f_str(field, s):
    b = s.encode() if isinstance(s, str) else s
    return _varint(field << 3 | 2) + _varint(len(b)) + b


def f_int(field, n):
    return _varint(field << 3) + _varint(int(n)) if n else b""


def f_bool(field, v):
    return f_int(field, 1 if v else 0)


def f_double(field, x):
    return _varint(field << 3 | 1) + struct.pack("<d", x) if x else b""


def us(dt):
    return int(dt.timestamp() * 1_000_000)


def local(y, m, d, hh=12, mm=0):
    return datetime.datetime(y, m, d, hh, mm, tzinfo=STOCKHOLM)


def report_received(report_id, category, at, places=("sergels-torg",), partner="trygg-app",
                    role="resident_app", focus="physical_environment", night=False, target=1440,
                    sensitive=False, lat=59.3324, lon=18.0637, imported=False):
    msg = (f_str(1, report_id) + f_str(3, partner) + f_str(4, role) + f_str(5, category)
           + f_str(6, focus) + f_bool(7, True) + f_double(8, lat) + f_double(9, lon))
    for p in places:
        msg += f_str(10, p)
    msg += (f_int(11, 2) + f_bool(12, sensitive) + f_int(13, us(at)) + f_int(14, target)
            + f_bool(16, imported) + f_int(17, us(at)) + f_bool(20, night))
    return msg


def task_opened(task, report, category, place, at):
    return f_str(1, task) + f_str(2, report) + f_str(3, category) + f_str(4, place) + f_int(5, us(at))


def task_acked(task, unit, at):
    return f_str(1, task) + f_str(3, unit) + f_int(5, us(at))


def task_dispatched(task, unit, at):
    return f_str(1, task) + f_str(3, unit) + f_int(4, us(at))


def task_completed(task, at):
    return f_str(1, task) + f_str(3, "done") + f_int(4, us(at))


def task_declined(task, reason, owner, at):
    return f_str(1, task) + f_int(3, reason) + f_int(5, us(at)) + f_str(6, owner)


def task_joined(task, report, at, unit=""):
    return f_str(1, task) + f_str(3, report) + f_str(5, "open") + f_int(6, us(at)) + f_str(7, unit)


def walk_updated(walk, version, area, status, starts, places=()):
    msg = f_str(1, walk) + f_int(2, version) + f_str(3, area) + f_str(4, "Walk " + area)
    msg += f_int(5, us(starts)) + f_str(8, status)
    for p in places:
        msg += f_str(9, f_str(1, p) + f_str(2, p))
    return msg


def finding_updated(fid, version, walk, place, category, status, recorded, status_at=None,
                    deadline=None, owner=""):
    msg = (f_str(1, fid) + f_int(2, version) + f_str(3, walk) + f_str(4, place) + f_str(5, category)
           + f_int(6, 3) + f_str(16, status) + f_str(18, owner) + f_int(19, us(recorded)))
    if status_at:
        msg += f_int(20, us(status_at))
    if deadline:
        msg += f_int(15, us(deadline))
    return msg


def survey_loaded(survey, year, areas, figures, illustrative=True):
    """areas: [(slug, name, geometry dict)], figures: [(area, indicator, value, unit)]."""
    msg = f_str(1, survey) + f_int(2, year) + f_str(3, "test") + f_bool(4, illustrative)
    for slug, name, geom in areas:
        msg += f_str(5, f_str(1, slug) + f_str(2, name) + f_str(3, json.dumps(geom)))
    for area, ind, value, unit in figures:
        msg += f_str(6, f_str(1, area) + f_str(2, ind) + f_double(3, value) + f_str(4, unit))
    return msg


def new_id():
    return str(uuid.uuid4())


# ---- the stack ----


def psql_stdin(sql):
    """Runs a long statement (too long for an argument) as the superuser."""
    subprocess.run([os.path.join("/usr/lib/postgresql/15/bin", "psql"), "-X", "-q",
                    "-v", "ON_ERROR_STOP=1", SUPER_URL], input=sql, check=True,
                   capture_output=True, text=True, timeout=120)


def admin(*args, check_rc=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYGG_")}
    env["DATABASE_URL"] = role_url("reporting")
    p = subprocess.run([os.path.join(BIN, "trygg-reporting"), "admin"] + list(args), env=env,
                       capture_output=True, text=True, timeout=60)
    if check_rc:
        check(p.returncode == 0, "admin %s failed (%s): %s%s" % (args, p.returncode, p.stdout,
                                                                p.stderr))
    return p.returncode, p.stdout, p.stderr


class Stack:
    def __init__(self, pubs=True, extra=None, places=True):
        fresh_schemas("reporting", *PUBS.values())
        self.urls = {}
        self.pubs = {}
        env = {"DATABASE_URL": role_url("reporting"), "TRYGG_HTTP_PORT": free_port()}
        for name, schema in PUBS.items():
            pub = "tcp://127.0.0.1:%d" % free_port()
            rep = "tcp://127.0.0.1:%d" % free_port()
            self.urls[name] = (pub, rep)
            var = name.upper().replace("-", "_")
            env["TRYGG_BUS_%s_SUB_URL" % var] = pub
            env["TRYGG_BUS_%s_REQ_URL" % var] = rep
            if pubs:
                s = Service("pub-" + name, "trygg-eventpub", {
                    "DATABASE_URL": role_url(schema), "TRYGG_HTTP_PORT": free_port(),
                    "TRYGG_EVENTPUB_SCHEMA": schema, "TRYGG_PUBLISHER": name,
                    "TRYGG_BUS_PUB_URL": pub, "TRYGG_BUS_REP_URL": rep})
                s.start()
                self.pubs[name] = s
        env.update(extra or {})
        if places:
            admin("places", "load", PLACES)
        self.staff = admin("key", "issue", "Anna Staff", "--role", "staff", "--quiet")[1].strip()
        self.police = admin("key", "issue", "Polisen", "--role", "police", "--quiet")[1].strip()
        self.partner = admin("key", "issue", "App", "--role", "partner", "--partner",
                             "trygg-app", "--quiet")[1].strip()
        self.reporting = Service("reporting", "trygg-reporting", env)
        self.reporting.start()

    def publish(self, publisher, event_type, payload):
        self.publish_many(publisher, [(event_type, payload)])

    def publish_many(self, publisher, events):
        """Writes events into a stand-in's outbox in one transaction (in order)."""
        schema = PUBS[publisher]
        for i in range(0, len(events), 2000):
            chunk = events[i:i + 2000]
            values = ",".join("('%s', '\\x%s'::bytea)" % (t, p.hex()) for t, p in chunk)
            psql_stdin("INSERT INTO %s.outbox (event_type, payload) VALUES %s;" % (schema, values))
        # wake the relay at once (it also polls)
        psql("NOTIFY %s_outbox" % schema)

    def last_seq(self, publisher):
        return int(psql1("SELECT count(*) FROM %s.outbox" % PUBS[publisher]))

    def wait_applied(self, timeout=30):
        """Until reporting's cursors have every event written so far."""
        want = {p: self.last_seq(p) for p in PUBS}

        def done():
            rows = dict((r[0], int(r[1])) for r in
                        psql("SELECT publisher, last_seq FROM reporting.inbox_cursor"))
            return all(rows.get(p, 0) >= n for p, n in want.items() if n > 0)
        wait_for(done, timeout, "reporting applied %r" % want)
        failed = psql1("SELECT count(*) FROM reporting.inbox_failed")
        check(failed == "0", "events set aside: %r" % psql("SELECT * FROM reporting.inbox_failed"))

    def picture(self, key=None, path="/v1/picture", **q):
        qs = "&".join("%s=%s" % kv for kv in q.items())
        headers = {"Authorization": "Bearer " + key} if key else None
        status, body = http_json("GET", self.reporting.base + path + ("?" + qs if qs else ""),
                                 headers=headers)
        check(status == 200, "picture answered %s %r" % (status, body))
        return body

    def raw(self, method, path, body=None, key=None):
        headers = {"Authorization": "Bearer " + key} if key else None
        return http(method, self.reporting.base + path, body, headers=headers)

    def call(self, method, path, body=None, key=None):
        headers = {"Authorization": "Bearer " + key} if key else None
        return http_json(method, self.reporting.base + path, body, headers=headers)


def by(rows, key):
    return {r[key]: r for r in rows}
