"""The notifier's operator command line, `trygg-notifier admin ...`
(docs/notifier.md, "The admin command"): a unit and a rule added with it
take the next report (through the stand-in intake, trygg-reportpub) to the
new unit's webhook; keys issued with it work against the API until
revoked; a dead letter is listed and re-queued; bad arguments exit 2 with
a message naming the argument, and write nothing.
"""
import datetime
import hashlib
import http.server
import json
import os
import re
import subprocess
import threading

from harness import BIN, check, free_port, psql, psql1, role_url, wait_for
from notifier_support import SECRET, Stack


def admin(*args, check_rc=True):
    """Runs `trygg-notifier admin ARGS` as the notifier's role; (rc, stdout, stderr)."""
    env = dict(os.environ)
    env.pop("TRYGG_DATABASE_URL", None)
    env["DATABASE_URL"] = role_url("notifier")
    p = subprocess.run([os.path.join(BIN, "trygg-notifier"), "admin"] + list(args), env=env,
                       capture_output=True, text=True, timeout=60)
    if check_rc:
        check(p.returncode == 0, "admin %s failed (%s): %s%s" % (args, p.returncode, p.stdout,
                                                                  p.stderr))
    return p.returncode, p.stdout, p.stderr


def wait_routing(st):
    """Waits until the running notifier has loaded the rules as they are now."""
    units = int(psql1("SELECT count(*) FROM notifier.units WHERE active"))
    rules = int(psql1("SELECT count(*) FROM notifier.routing_rules r JOIN notifier.units u"
                      " ON u.name = r.unit AND u.active"))

    def loaded():
        last = [l for l in st.notifier.log_lines() if l.get("msg") == "routing_loaded"]
        return last and last[-1].get("units") == units and last[-1].get("rules") == rules
    wait_for(loaded, 10, "routing reload (%d units, %d rules)" % (units, rules))


def test_notifier_admin_unit_rule_routes_and_keys():
    st = Stack()
    rc, out, _ = admin("unit", "add", "litter-pickers", "--kind", "crew",
                       "--display-name", "Litter pickers, Hötorget", "--webhook", st.receiver_url,
                       "--secret", SECRET, "--email", "pickers@crews.example.org",
                       "--supervisor", "lead@crews.example.org", "--supervisor", st.receiver_url,
                       "--supervisor-name", "Lead picker",
                       "--ack-target", "20m", "--completion-target", "12h")
    check("litter-pickers added" in out, out)
    row = psql("SELECT display_name, kind, webhook_url, webhook_secret, email, supervisor_email,"
               " supervisor_webhook_url, supervisor_name, ack_target_s, completion_target_s,"
               " handles_sensitive, default_for IS NULL, active"
               " FROM notifier.units WHERE name = 'litter-pickers'")[0]
    check(row == ["Litter pickers, Hötorget", "crew", st.receiver_url, SECRET,
                  "pickers@crews.example.org", "lead@crews.example.org", st.receiver_url,
                  "Lead picker", "1200", "43200", "f", "t", "t"], "unit row %r" % row)
    rc, out, _ = admin("rule", "add", "--category", "litter", "--place", "hotorget",
                       "--unit", "litter-pickers", "--priority", "200", "--note", "test: pickers")
    m = re.search(r"rule (\d+) added: litter at hotorget, always -> litter-pickers", out)
    check(m, "rule add said %r" % out)
    rule_id = m.group(1)
    # A windowed rule that is not open now (two days from today, Stockholm
    # time), so graffiti at Odenplan still goes to graffiti removal.
    try:
        from zoneinfo import ZoneInfo
        today = datetime.datetime.now(ZoneInfo("Europe/Stockholm")).weekday()
    except ImportError:
        today = datetime.datetime.utcnow().weekday()
    day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(today + 2) % 7]
    rc, out, _ = admin("rule", "add", "--category", "graffiti", "--place", "odenplan",
                       "--unit", "litter-pickers", "--copy", "park-maintenance",
                       "--window", "%s 07:00-18:00" % day, "--priority", "500",
                       "--ack-target", "5m")
    ids = re.findall(r"rule (\d+) added", out)
    check(len(ids) == 2 and "(copy, priority 500)" in out, "rule add with a copy: %r" % out)
    row = psql("SELECT days, from_min, to_min, role, ack_target_s FROM notifier.routing_rules"
               " WHERE id = %s" % ids[0])[0]
    check(row == [str(1 << ((today + 2) % 7)), "420", "1080", "owner", "300"], "window %r" % row)
    # Listings.
    rc, out, _ = admin("unit", "list")
    line = [l for l in out.splitlines() if l.startswith("litter-pickers ")]
    check(line and "20m" in line[0] and "12h" in line[0] and "webhook=" + st.receiver_url in line[0]
          and SECRET not in out, "unit list %r" % out)
    rc, out, _ = admin("rule", "list", "--unit", "litter-pickers")
    check(re.search(r"^%s\s+litter\s+hotorget\s+always\s+litter-pickers\s+owner\s+200" % rule_id,
                    out, re.M), "rule list %r" % out)
    check("%s 07:00-18:00" % day in out and len(out.strip().splitlines()) == 3,
          "rule list window %r" % out)
    wait_routing(st)
    # A litter report at Hötorget goes to the new unit, signed, with its targets.
    rid = st.report(places=["hotorget"], lat=59.3355, lon=18.0630, report_id="admin-litter-1")
    d = st.wait_delivery(lambda d: d.get("task", {}).get("report_ids") == [rid])[0]
    check(d["unit"] == "litter-pickers" and d["kind"] == "task" and d["signature_ok"],
          "routed to %r (signature_ok %r)" % (d["unit"], d.get("signature_ok")))
    task = d["task_id"]
    check(psql1("SELECT ack_target_s FROM notifier.tasks WHERE id = '%s'" % task) == "1200",
          "the unit's ack target was not used")
    g = st.report(category="graffiti", places=["odenplan"], report_id="admin-graffiti-1")
    check(psql1("SELECT unit FROM notifier.tasks WHERE id = '%s'" % st.task_for(g))
          == "graffiti-removal", "a rule outside its window routed graffiti")
    # unit set changes only what it names.
    admin("unit", "set", "litter-pickers", "--ack-target", "15m", "--email", "none",
          "--sensitive")
    row = psql("SELECT ack_target_s, email IS NULL, handles_sensitive, completion_target_s,"
               " webhook_url FROM notifier.units WHERE name = 'litter-pickers'")[0]
    check(row == ["900", "t", "t", "43200", st.receiver_url], "unit set %r" % row)
    # Keys: issued once in the seed's format, stored hashed, refused after revoke.
    rc, out, _ = admin("key", "issue", "litter-pickers", "--label", "test", "--quiet")
    key = out.strip()
    check(re.fullmatch(r"tu_[0-9a-f]{40}", key), "key format %r" % key)
    h = hashlib.sha256(key.encode()).hexdigest()
    check(psql1("SELECT unit FROM notifier.unit_keys WHERE key_hash = '%s'" % h)
          == "litter-pickers", "key not stored as its SHA-256")
    auth = {"Authorization": "Bearer " + key}
    from harness import http_json
    status, body = http_json("GET", st.notifier.base + "/v1/tasks", headers=auth)
    check(status == 200 and [t["id"] for t in body["tasks"]] == [task], "GET with new key %s %r"
          % (status, body))
    status, body = http_json("POST", st.notifier.base + "/v1/tasks/%s/ack" % task, {},
                             headers=auth)
    check(status == 200 and body["status"] == "acknowledged", "ack with new key %s" % status)
    rc, out, _ = admin("key", "list", "litter-pickers")
    check(h[:12] in out and key not in out and "test" in out, "key list %r" % out)
    rc, out, _ = admin("key", "revoke", h[:12])
    check("revoked key %s of litter-pickers" % h[:12] in out, out)
    status, _ = http_json("GET", st.notifier.base + "/v1/tasks", headers=auth)
    check(status == 401, "revoked key answered %s" % status)
    rc, _, err = admin("key", "revoke", h[:12], check_rc=False)
    check(rc == 1 and "no active key" in err, "second revoke %s %r" % (rc, err))
    # Removing the rule routes Hötorget's litter back to the demo crew.
    admin("key", "issue", "litter-pickers", "--quiet")
    rc, out, _ = admin("rule", "remove", rule_id)
    check("rule %s removed" % rule_id in out, out)
    rc, _, err = admin("rule", "remove", rule_id, check_rc=False)
    check(rc == 1 and "no rule with id %s" % rule_id in err, "second remove %s %r" % (rc, err))
    wait_routing(st)
    status, _ = st.api("POST", "/v1/tasks/%s/done" % task, unit="operators")
    check(status == 200, "done %s" % status)
    rid2 = st.report(places=["hotorget"], lat=59.3355, lon=18.0630, report_id="admin-litter-2")
    check(psql1("SELECT unit FROM notifier.tasks WHERE id = '%s'" % st.task_for(rid2))
          == "cleaning-south", "a removed rule still routes")


class Flaky:
    """A webhook receiver that refuses with 404 (a permanent failure: a dead
    letter at once) until told to accept. What it accepts is kept: got has
    (delivery id, JSON body), raw (path, headers, raw body)."""

    def __init__(self, accept=False):
        self.accept = accept
        self.got = []
        self.raw = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = outer.accept
                if ok:
                    outer.got.append((self.headers.get("Trygg-Delivery"), json.loads(body)))
                    outer.raw.append((self.path, dict(self.headers), body))
                self.send_response(200 if ok else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = "http://127.0.0.1:%d" % self.port
        self.url = self.base + "/hook"

    def stop(self):
        self.server.shutdown()


def test_notifier_admin_dead_letter_retry():
    st = Stack()
    flaky = Flaky()
    try:
        admin("unit", "add", "flaky-crew", "--kind", "crew", "--webhook", flaky.url,
              "--secret", "flaky-secret-1")
        admin("rule", "add", "--category", "lighting", "--place", "*", "--unit", "flaky-crew",
              "--priority", "1000")
        wait_routing(st)
        rid = st.report(category="lighting", places=["kungstradgarden"], report_id="admin-dead-1")
        task = st.task_for(rid)
        dead = wait_for(lambda: psql1("SELECT id FROM notifier.deliveries WHERE task_id = '%s'"
                                      " AND unit = 'flaky-crew' AND status = 'dead'" % task),
                        10, "a dead letter")
        rc, out, _ = admin("deliveries", "dead")
        check(dead in out and "flaky-crew" in out and task in out, "deliveries dead %r" % out)
        rc, out, _ = admin("deliveries", "dead", "--unit", "cleaning-south")
        check(dead not in out, "--unit filter %r" % out)
        flaky.accept = True
        rc, out, _ = admin("deliveries", "retry", dead)
        check("queued again" in out, out)
        got = wait_for(lambda: [g for g in flaky.got if g[0] == dead], 10, "the retried delivery")
        check(got[0][1]["task"]["id"] == task, "retried delivery %r" % (got[0][1],))
        wait_for(lambda: psql1("SELECT status FROM notifier.deliveries WHERE id = '%s'" % dead)
                 == "delivered", 10, "delivered")
        check(psql1("SELECT count(*) FROM notifier.task_history WHERE task_id = '%s'"
                    " AND event = 'retried' AND actor = 'operator'" % task) == "1", "history")
        rc, _, err = admin("deliveries", "retry", dead, check_rc=False)
        check(rc == 1 and "is delivered, not a dead letter" in err, "retry again %s %r"
              % (rc, err))
    finally:
        flaky.stop()


def test_notifier_admin_bad_arguments():
    st = Stack()
    before = psql("SELECT (SELECT count(*) FROM notifier.units),"
                  " (SELECT count(*) FROM notifier.routing_rules),"
                  " (SELECT count(*) FROM notifier.unit_keys)")
    usage = [
        (("unit", "add", "Bad Name", "--kind", "crew"), "unit 'Bad Name'"),
        (("unit", "add", "x"), "--kind is required"),
        (("unit", "add", "x", "--kind", "pirate"), "--kind 'pirate'"),
        (("unit", "add", "x", "--kind", "crew", "--webhook", "ftp://example.org/x",
          "--secret", "long-enough"), "--webhook 'ftp://example.org/x'"),
        (("unit", "add", "x", "--kind", "crew", "--webhook", "http://example.org/x"),
         "--webhook needs --secret"),
        (("unit", "add", "x", "--kind", "crew", "--email", "not-an-address"), "--email"),
        (("unit", "add", "x", "--kind", "crew", "--ack-target", "10x"), "--ack-target '10x'"),
        (("unit", "add", "x", "--kind", "crew", "--default", "some"), "--default 'some'"),
        (("unit", "add", "x", "--kind", "crew", "--colour", "red"), "unknown option --colour"),
        (("unit", "add", "x", "--kind"), "--kind needs a value"),
        (("unit", "set", "cleaning-south"), "nothing to change"),
        (("rule", "add", "--unit", "cleaning-south"), "--category is required"),
        (("rule", "add", "--category", "litter"), "--unit is required"),
        (("rule", "add", "--category", "Litter!", "--unit", "cleaning-south"), "--category"),
        (("rule", "add", "--category", "litter", "--place", "Sergels torg",
          "--unit", "cleaning-south"), "--place"),
        (("rule", "add", "--category", "litter", "--unit", "cleaning-south",
          "--window", "mon-fry 07:00-18:00"), "--window 'mon-fry 07:00-18:00'"),
        (("rule", "add", "--category", "litter", "--unit", "cleaning-south",
          "--window", "mon-fri 07:00-25:00"), "--window"),
        (("rule", "add", "--category", "litter", "--unit", "cleaning-south",
          "--window", "08:00-08:00"), "empty"),
        (("rule", "add", "--category", "litter", "--unit", "cleaning-south",
          "--priority", "high"), "--priority 'high'"),
        (("rule", "remove", "abc"), "rule ID 'abc'"),
        (("rule", "remove"), "missing argument"),
        (("key", "revoke", "zz"), "key revoke 'zz'"),
        (("deliveries", "retry", "not-a-uuid"), "deliveries retry 'not-a-uuid'"),
        (("frobnicate",), "unknown command"),
        (("unit",), "unknown command"),
        ((), "usage"),
    ]
    for args, msg in usage:
        rc, out, err = admin(*args, check_rc=False)
        check(rc == 2 and msg in err, "%r: rc %s, stderr %r" % (args, rc, err))
    failures = [
        (("unit", "add", "cleaning-south", "--kind", "crew"), "already exists"),
        (("unit", "add", "second-default", "--kind", "unit", "--default", "all"),
         "unit 'district-office' is already the default"),
        (("unit", "set", "nobody", "--kind", "crew"), "no unit named 'nobody'"),
        (("unit", "set", "operators", "--webhook", "http://example.org/hook"),
         "has no webhook secret"),
        (("rule", "add", "--category", "litter", "--unit", "nobody"), "no unit named 'nobody'"),
        (("rule", "add", "--category", "litter", "--unit", "cleaning-south", "--copy", "ghost"),
         "no unit named 'ghost'"),
        (("rule", "remove", "999999"), "no rule with id 999999"),
        (("key", "issue", "nobody"), "no unit named 'nobody'"),
        (("key", "revoke", "abcdef0123"), "no active key"),
        (("deliveries", "retry", "00000000-0000-0000-0000-000000000000"), "no delivery"),
    ]
    for args, msg in failures:
        rc, out, err = admin(*args, check_rc=False)
        check(rc == 1 and msg in err, "%r: rc %s, stderr %r" % (args, rc, err))
    after = psql("SELECT (SELECT count(*) FROM notifier.units),"
                 " (SELECT count(*) FROM notifier.routing_rules),"
                 " (SELECT count(*) FROM notifier.unit_keys)")
    check(before == after, "refused commands wrote something: %r -> %r" % (before, after))
    rc, out, _ = admin("help")
    check(rc == 0 and "rule add" in out and "deliveries retry" in out, "help %r" % out)
    env = dict(os.environ, DATABASE_URL="", TRYGG_DATABASE_URL="")
    p = subprocess.run([os.path.join(BIN, "trygg-notifier"), "admin", "unit", "list"], env=env,
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 1 and "DATABASE_URL" in p.stderr, "no URL: %s %r" % (p.returncode,
                                                                              p.stderr))


def test_notifier_admin_sensitive_default_must_handle_sensitive():
    # The operator frees the sensitive default and tries to give it to an
    # ordinary crew: refused by the tool and by the schema; a sensitive
    # report with no rule is then set aside, never sent to a crew.
    st = Stack()
    admin("unit", "set", "social-services", "--default", "none")
    rc, _, err = admin("unit", "set", "cleaning-north", "--default", "sensitive", check_rc=False)
    check(rc == 1 and "does not handle sensitive reports" in err, "crew as default: %s %r"
          % (rc, err))
    rc, _, err = admin("unit", "set", "police-contact", "--not-sensitive", check_rc=False)
    check(rc == 0, "a unit that is no default may stop handling sensitive reports: %r" % err)
    admin("unit", "set", "police-contact", "--sensitive", "--default", "sensitive")
    rc, _, err = admin("unit", "set", "police-contact", "--not-sensitive", check_rc=False)
    check(rc == 1 and "is the default for sensitive reports" in err, "%s %r" % (rc, err))
    admin("unit", "set", "police-contact", "--default", "none")
    try:
        psql("UPDATE notifier.units SET default_for = 'sensitive' WHERE name = 'cleaning-north'")
        refused = ""
    except subprocess.CalledProcessError as e:
        refused = e.stderr
    check("units_sensitive_default_handles" in refused,
          "the schema took a crew as sensitive default: %r" % refused)
    check(psql1("SELECT count(*) FROM notifier.units WHERE default_for = 'sensitive'") == "0",
          "a sensitive default is set")
    wait_routing(st)
    rid = st.report(category="school_incident_other", places=["odenplan"], sensitive=True,
                    report_id="sens-nodefault-1")
    wait_for(lambda: int(psql1("SELECT count(*) FROM notifier.inbox_failed")) >= 1, 10,
             "the unroutable sensitive report to be set aside")
    check(psql1("SELECT count(*) FROM notifier.task_reports WHERE report_id = '%s'" % rid) == "0",
          "a sensitive report got a task without a sensitive unit")
    check(not [d for d in st.received() if rid in d.get("task", {}).get("report_ids", [])],
          "a sensitive report reached a receiver")


def test_notifier_admin_supervisor_has_its_own_secret():
    from notifier_support import verify_signature
    st = Stack()
    rec = Flaky(accept=True)
    try:
        # A unit without a webhook of its own still escalates to its
        # supervisor's; one with a webhook signs its supervisor's deliveries
        # with the supervisor's secret, never its own.
        rc, out, _ = admin("unit", "add", "sup-only", "--kind", "crew", "--supervisor",
                           rec.base + "/sup-only", "--ack-target", "1s")
        m = re.search(r"Supervisor webhook secret for sup-only.*?\n\n  ([0-9a-f]{64})\n", out, re.S)
        check(m, "no supervisor secret printed: %r" % out)
        only_secret = m.group(1)
        rc, out, _ = admin("unit", "add", "sup-crew", "--kind", "crew", "--webhook",
                           rec.base + "/crew", "--secret", "crew-secret-123", "--supervisor",
                           rec.base + "/sup-crew", "--ack-target", "1s")
        crew_secret_sup = re.search(r"\n  ([0-9a-f]{64})\n", out).group(1)
        check(only_secret not in psql1("SELECT string_agg(coalesce(webhook_secret, ''), ',')"
                                       " FROM notifier.units"), "secret reused")
        admin("rule", "add", "--category", "suptest_a", "--unit", "sup-only")
        admin("rule", "add", "--category", "suptest_b", "--unit", "sup-crew")
        wait_routing(st)
        st.report(category="suptest_a", places=["odenplan"], report_id="sup-a")
        st.report(category="suptest_b", places=["odenplan"], report_id="sup-b")

        def escalation(path):
            got = [g for g in rec.raw if g[0] == path]
            return got if got else None
        for path, secret in (("/sup-only", only_secret), ("/sup-crew", crew_secret_sup)):
            g = wait_for(lambda: escalation(path), 20, "the escalation to %s" % path)[0]
            sig = g[1].get("Trygg-Signature")
            check(json.loads(g[2])["kind"] == "escalation", "kind %r" % g[2][:100])
            check(verify_signature(secret, sig, g[2]), "%s: not signed with its own secret" % path)
            check(not verify_signature("crew-secret-123", sig, g[2]),
                  "%s: signed with the crew's secret" % path)
        # The crew's own deliveries stay signed with the crew's secret.
        crew = wait_for(lambda: escalation("/crew"), 10, "the crew's task")[0]
        check(verify_signature("crew-secret-123", crew[1]["Trygg-Signature"], crew[2]),
              "crew delivery signature")
    finally:
        rec.stop()
