"""Helpers for the notifier's integration tests (issue 5).

A Stack is the notifier with everything around it as real processes:
trygg-reportpub standing in for intake (it publishes ReportReceived through
a real outbox as publisher "intake" and records the task events it gets
back through a real inbox), trygg-notifier, and trygg-crewdemo as the crews'
webhook receiver (it verifies every signature and records what it gets).
An SMTP server on loopback (aiosmtpd) receives e-mail deliveries.
"""
import hashlib
import hmac
import json
import os
import subprocess
import threading
import time

from harness import (ROOT, TMP, Service, check, free_port, fresh_schemas, psql, psql1, role_url,
                     wait_for)

SECRET = "demo-webhook-secret"
SEED = os.path.join(ROOT, "deploy/demo/seed-notifier.sh")

FAST = {
    "TRYGG_BACKOFF_BASE": "100ms", "TRYGG_BACKOFF_MAX": "1s", "TRYGG_TIMER_INTERVAL": "100ms",
    "TRYGG_DELIVERY_POLL": "100ms", "TRYGG_WEBHOOK_TIMEOUT": "2s", "TRYGG_MAX_ATTEMPTS": "100",
}


def verify_signature(secret, header, body, tolerance=300):
    """The receiver's check from docs/notifier.md."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    t = int(parts["t"])
    if abs(time.time() - t) > tolerance:
        return False
    want = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, parts.get("v1", ""))


class Smtp:
    """A real SMTP server on loopback collecting messages (aiosmtpd)."""

    def __init__(self):
        from aiosmtpd.controller import Controller
        self.messages = []
        self.port = free_port()
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                       envelope.content.decode("utf-8", "replace")))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        self.url = "smtp://127.0.0.1:%d" % self.port

    def stop(self):
        self.controller.stop()


class Stack:
    def __init__(self, notifier_env=None, crew_env=None, smtp=None, seed=True):
        fresh_schemas("notifier", "reportpub")
        ports = [free_port() for _ in range(6)]
        self.intake_pub = "tcp://127.0.0.1:%d" % ports[0]
        self.intake_rep = "tcp://127.0.0.1:%d" % ports[1]
        self.notifier_pub = "tcp://127.0.0.1:%d" % ports[2]
        self.notifier_rep = "tcp://127.0.0.1:%d" % ports[3]
        self.crew_port = free_port()
        self.receiver_url = "http://127.0.0.1:%d/webhook" % self.crew_port
        self.record = os.path.join(TMP, "crew-%d.jsonl" % self.crew_port)
        self.keys_path = os.path.join(TMP, "keys-%d.json" % self.crew_port)
        if os.path.exists(self.record):
            os.unlink(self.record)
        self.reportpub = Service("reportpub", "trygg-reportpub", {
            "DATABASE_URL": role_url("reportpub"), "TRYGG_HTTP_PORT": free_port(),
            "TRYGG_BUS_PUB_URL": self.intake_pub, "TRYGG_BUS_REP_URL": self.intake_rep,
            "TRYGG_BUS_NOTIFIER_SUB_URL": self.notifier_pub,
            "TRYGG_BUS_NOTIFIER_REQ_URL": self.notifier_rep})
        nport = free_port()
        env = {"DATABASE_URL": role_url("notifier"), "TRYGG_HTTP_PORT": nport,
               "TRYGG_BUS_PUB_URL": self.notifier_pub, "TRYGG_BUS_REP_URL": self.notifier_rep,
               "TRYGG_BUS_INTAKE_SUB_URL": self.intake_pub,
               "TRYGG_BUS_INTAKE_REQ_URL": self.intake_rep,
               "TRYGG_PUBLIC_URL": "http://127.0.0.1:%d" % nport,
               # walk-planner's stream on ports where nothing publishes unless a
               # test gives one (the default port could meet another test's
               # walk-planner on this machine)
               "TRYGG_BUS_WALK_PLANNER_SUB_URL": "tcp://127.0.0.1:%d" % free_port(),
               "TRYGG_BUS_WALK_PLANNER_REQ_URL": "tcp://127.0.0.1:%d" % free_port()}
        env.update(FAST)
        if smtp:
            env["TRYGG_SMTP_URL"] = smtp.url
        env.update(notifier_env or {})
        self.notifier = Service("notifier", "trygg-notifier", env)
        cenv = {"TRYGG_HTTP_PORT": self.crew_port, "TRYGG_SECRET": SECRET,
                "TRYGG_RECORD": self.record, "TRYGG_KEYS_FILE": self.keys_path}
        cenv.update(crew_env or {})
        self.crew = Service("crewdemo", "trygg-crewdemo", cenv)
        self.notifier.start()
        self.reportpub.start()
        if seed:
            self.seed()
        self.crew.start()

    def seed(self):
        out = subprocess.run([SEED, role_url("notifier"), self.receiver_url, SECRET,
                              self.keys_path], capture_output=True, text=True, timeout=60)
        check(out.returncode == 0, "seed failed: %s %s" % (out.stdout, out.stderr))
        self.keys = json.load(open(self.keys_path))["units"]
        # The notifier reloads its routing on NOTIFY; wait until it has.
        wait_for(lambda: any(l.get("msg") == "routing_loaded" and l.get("units", 0) >= 10
                             for l in self.notifier.log_lines()), 10, "routing reload")

    def key(self, unit):
        return {"Authorization": "Bearer " + self.keys[unit]}

    def report(self, category="litter", places=("sergels-torg",), lat=59.3324, lon=18.0637,
               report_id=None, **kw):
        body = {"category": category, "places": list(places), "lat": lat, "long": lon}
        if report_id:
            body["report_id"] = report_id
        body.update(kw)
        status, res = self.reportpub.post("/reports", body)
        check(status == 201, "report answered %s %r" % (status, res))
        return res["report_id"]

    def received(self):
        """Every delivery the crew receiver has seen (including refused ones)."""
        if not os.path.exists(self.record):
            return []
        out = []
        for line in open(self.record):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_delivery(self, pred, timeout=10, what="a delivery"):
        return wait_for(lambda: [d for d in self.received() if pred(d)], timeout, what)

    def task_for(self, report_id, timeout=10):
        return wait_for(lambda: psql1("SELECT task_id FROM notifier.task_reports WHERE report_id = '%s'"
                                      % report_id), timeout, "task for %s" % report_id)

    def events(self, task_id=None):
        sql = "SELECT seq, event_type, task_id, report_ids, detail FROM reportpub.task_events"
        if task_id:
            sql += " WHERE task_id = '%s'" % task_id
        return psql(sql + " ORDER BY seq")

    def wait_events(self, task_id, types, timeout=10):
        def have():
            got = [e[1] for e in self.events(task_id)]
            return got if all(t in got for t in types) else None
        return wait_for(have, timeout, "events %s for %s" % (types, task_id))

    def api(self, method, path, unit="operators", body=None):
        from harness import http_json
        return http_json(method, self.notifier.base + path, body, headers=self.key(unit))
