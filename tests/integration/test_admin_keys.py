"""The `admin key` commands of all four services, as an operator uses them.

Every service issues API keys the same way (printed once, only a SHA-256 of
it stored) and the operator lists and revokes them the same way:

  key list               an ID per key, never the key itself
  key revoke ID|KEY      exactly one active key, or nothing changes

An ID that matches several active keys must revoke none of them and say
so (an operator who meant one partner's key must not lock out another);
an unknown ID exits 1 with a message; a malformed one is a usage error
(exit 2). A revoked key stops working at the service's API.
"""
import os
import subprocess

from harness import BIN, check, fresh_schemas, psql, psql1, role_url
from walks_support import Stack as WalkStack


def admin(binary, role, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYGG_")}
    env["DATABASE_URL"] = role_url(role)
    p = subprocess.run([os.path.join(BIN, binary), "admin"] + list(args), env=env,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def ok(binary, role, *args):
    rc, out, err = admin(binary, role, *args)
    check(rc == 0, "%s admin %s: rc %s: %s%s" % (binary, " ".join(args), rc, out, err))
    return out


def active(schema, table):
    return int(psql1("SELECT count(*) FROM %s.%s WHERE revoked_at IS NULL" % (schema, table)))


def ambiguous_refused(binary, role, schema, table, arg):
    """Two active keys share `arg`: revoking by it changes nothing."""
    before = active(schema, table)
    rc, out, err = admin(binary, role, "key", "revoke", arg)
    check(rc == 1, "%s key revoke %s (ambiguous): rc %s, %s%s" % (binary, arg, rc, out, err))
    check("2" in err and "key" in err, "%s: the message should say how many match: %r"
          % (binary, err))
    check(active(schema, table) == before,
          "%s: an ambiguous id revoked %d key(s)" % (binary, before - active(schema, table)))


def unknown_and_malformed(binary, role):
    rc, _, err = admin(binary, role, "key", "revoke", "0123456789ab")
    check(rc == 1 and "no active key" in err, "%s unknown id: rc %s %r" % (binary, rc, err))
    rc, _, err = admin(binary, role, "key", "revoke", "zz")
    check(rc == 2, "%s malformed id: rc %s %r" % (binary, rc, err))
    rc, _, err = admin(binary, role, "key", "revoke")
    check(rc == 2, "%s no id: rc %s %r" % (binary, rc, err))


def revoke_by_key_then_by_id(binary, role, schema, table, issue, id_of):
    """Issue two keys; revoke one by the key itself, the other by its listed ID."""
    k1, k2 = issue(), issue()
    listing = ok(binary, role, "key", "list")
    check(k1 not in listing and k2 not in listing, "%s key list shows a key" % binary)
    check(id_of(k2) in listing, "%s key list lacks the id %s:\n%s" % (binary, id_of(k2), listing))
    n = active(schema, table)
    ok(binary, role, "key", "revoke", k1)
    check(active(schema, table) == n - 1, "%s: revoke by key" % binary)
    out = ok(binary, role, "key", "revoke", id_of(k2))
    check(active(schema, table) == n - 2, "%s: revoke by id" % binary)
    check(id_of(k2) in out, "%s: the answer names the revoked key's id: %r" % (binary, out))
    rc, _, err = admin(binary, role, "key", "revoke", k1)
    check(rc == 1 and "no active key" in err, "%s: revoking twice: rc %s %r" % (binary, rc, err))
    return k1, k2


def by_listed_prefix(binary, role, schema, table, issue):
    """Where `key list` shows a key's first characters, they name it too."""
    k = issue()
    listing = ok(binary, role, "key", "list")
    check(k[:10] in listing and k not in listing, "%s key list: %s" % (binary, listing))
    n = active(schema, table)
    out = ok(binary, role, "key", "revoke", k[:10])
    check(active(schema, table) == n - 1 and sha(k)[:12] in out,
          "%s: revoke by the listed prefix: %r" % (binary, out))


def sha(key):
    import hashlib
    return hashlib.sha256(key.encode()).hexdigest()


def test_intake_key_commands():
    fresh_schemas("intake")
    b, r = "trygg-intake", "intake"
    ok(b, r, "partner", "add", "p1", "--role", "police")
    pid = psql1("SELECT id FROM intake.partners WHERE name = 'p1'")

    def issue():
        return ok(b, r, "key", "issue", "p1", "--quiet").strip()
    revoke_by_key_then_by_id(b, r, "intake", "api_keys", issue, lambda k: sha(k)[:12])
    by_listed_prefix(b, r, "intake", "api_keys", issue)
    unknown_and_malformed(b, r)
    for i in (1, 2):
        psql("INSERT INTO intake.api_keys (partner_id, key_hash, prefix, label) VALUES"
             " (%s, sha256('dup%d'), 'tk_Dup0000', 'same prefix')" % (pid, i))
    ambiguous_refused(b, r, "intake", "api_keys", "tk_Dup0000")


def test_notifier_key_commands():
    fresh_schemas("notifier")
    b, r = "trygg-notifier", "notifier"
    ok(b, r, "unit", "list")  # applies the schema
    psql("INSERT INTO notifier.units (name, display_name) VALUES ('crew-a', 'Crew A')")

    def issue():
        return ok(b, r, "key", "issue", "crew-a", "--quiet").strip()
    revoke_by_key_then_by_id(b, r, "notifier", "unit_keys", issue, lambda k: sha(k)[:12])
    unknown_and_malformed(b, r)
    for i in (1, 2):
        psql("INSERT INTO notifier.unit_keys (key_hash, unit) VALUES ('abcdef%058d', 'crew-a')"
             % i)
    ambiguous_refused(b, r, "notifier", "unit_keys", "abcdef")


def test_reporting_key_commands():
    fresh_schemas("reporting")
    b, r = "trygg-reporting", "reporting"

    def issue():
        return ok(b, r, "key", "issue", "Anna", "--role", "staff", "--quiet").strip()
    revoke_by_key_then_by_id(b, r, "reporting", "keys", issue, lambda k: sha(k)[:12])
    unknown_and_malformed(b, r)
    for i in (1, 2):
        psql("INSERT INTO reporting.keys (key_hash, name, role) VALUES ('abcdef%058d', 'x%d',"
             " 'staff')" % (i, i))
    ambiguous_refused(b, r, "reporting", "keys", "abcdef")


def test_walk_planner_key_commands_and_a_revoked_key_is_refused():
    st = WalkStack()
    # (the harness stops the services after each test)
    b, r = "trygg-walk-planner", "walks"

    def issue():
        return ok(b, r, "key", "issue", "Staff Member").strip()
    check(st.api("GET", "/v1/walks")[0] == 200, "the stack's own key works")
    k1, k2 = revoke_by_key_then_by_id(b, r, "walks", "staff_keys", issue,
                                      lambda k: sha(k)[:12])
    for k in (k1, k2):
        check(st.api("GET", "/v1/walks", key=k)[0] == 401, "a revoked key still works")
    k3 = issue()
    check(st.api("GET", "/v1/walks", key=k3)[0] == 200, "a fresh key is refused")
    by_listed_prefix(b, r, "walks", "staff_keys", issue)
    unknown_and_malformed(b, r)
    for i in (1, 2):
        psql("INSERT INTO walks.staff_keys (name, key_hash, prefix) VALUES ('x%d',"
             " 'abcdef%058d', 'ws_x')" % (i, i))
    ambiguous_refused(b, r, "walks", "staff_keys", "abcdef")


def test_every_publisher_has_outbox_new_epoch():
    """docs/operations.md's restore procedure runs `admin outbox new-epoch`
    on each publisher (intake, notifier, walk-planner): it must exist in
    each and start a new epoch of that service's stream; `events` and
    `help` are the same in all four."""
    for binary, role in (("trygg-intake", "intake"), ("trygg-notifier", "notifier"),
                         ("trygg-walk-planner", "walks"), ("trygg-reporting", "reporting")):
        fresh_schemas(role)
        ok(binary, role, "events", "streams")  # applies the schema
        out = ok(binary, role, "help")
        check("events" in out and "outbox new-epoch" in out, "%s help: %s" % (binary, out))
        before = psql1("SELECT epoch FROM %s.outbox_state" % role)
        out = ok(binary, role, "outbox", "new-epoch")
        after = psql1("SELECT epoch FROM %s.outbox_state" % role)
        check(after != before and after in out, "%s outbox new-epoch: %r (%s -> %s)"
              % (binary, out, before, after))
        rc, _, err = admin(binary, role, "outbox", "nonsense")
        check(rc == 2, "%s outbox nonsense: rc %s %r" % (binary, rc, err))
        rc, _, err = admin(binary, role, "nonsense")
        check(rc == 2 and "nonsense" in err, "%s nonsense: rc %s %r" % (binary, rc, err))
