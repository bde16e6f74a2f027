"""Helpers for the intake integration tests (test_intake_*.py).

Each test gets a fresh intake schema, the demo partners with fresh keys
(through the real `trygg-intake admin demo-seed`), the demo places, and a
running trygg-intake on free ports.
"""
import json
import os
import subprocess
import urllib.parse

from harness import (BIN, ROOT, TMP, Service, check, free_port, fresh_schemas, http, http_json,
                     psql, psql1, role_url)

PLACES = os.path.join(ROOT, "deploy/demo/places.geojson")
APP, POLICE, SCHOOL, HOUSING, STAFF = ("trygg-app", "polisen-norrmalm", "klara-skola",
                                       "stockholmshem", "norrmalm-staff")
SERGELS = (59.3324, 18.0637)      # in Sergels torg
VASAPARKEN = (59.3420, 18.0440)   # in Vasaparken
GAMLA_STAN = (59.3251, 18.0707)   # outside the district


def admin(*args, check_rc=True):
    """Runs `trygg-intake admin ARGS`; returns (rc, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYGG_")}
    env["DATABASE_URL"] = role_url("intake")
    p = subprocess.run([os.path.join(BIN, "trygg-intake"), "admin"] + list(args), env=env,
                       capture_output=True, text=True, timeout=60)
    if check_rc:
        check(p.returncode == 0, "admin %s failed (%s): %s%s" % (args, p.returncode, p.stdout, p.stderr))
    return p.returncode, p.stdout, p.stderr


def seed():
    """Fresh schema, demo partners and places; returns {partner name: key}."""
    fresh_schemas("intake")
    path = os.path.join(TMP, "demo-keys.json")
    admin("demo-seed", "--keys-file", path, "--places", PLACES)
    with open(path) as f:
        return json.load(f)


def start_intake(extra=None, seed_db=True, wait_ready=True):
    """Seeds (unless told not to) and starts intake; returns (service, keys)."""
    keys = seed() if seed_db else {}
    env = {"DATABASE_URL": role_url("intake"), "TRYGG_HTTP_PORT": free_port(),
           "TRYGG_BUS_PUB_URL": "tcp://127.0.0.1:%d" % free_port(),
           "TRYGG_BUS_REP_URL": "tcp://127.0.0.1:%d" % free_port(),
           "TRYGG_DB_CONNECTIONS": "4"}
    env.update(extra or {})
    svc = Service("intake", "trygg-intake", env)
    svc.start(wait_ready=wait_ready)
    return svc, keys


def bearer(key):
    return {"Authorization": "Bearer " + key}


def report(category="litter", pos=SERGELS, **kw):
    body = {"category": category, "lat": pos[0], "long": pos[1]}
    body.update(kw)
    return body


def post(svc, key, body, idem=None, headers=None, raw=None, timeout=10):
    """POST /v1/reports; returns (status, headers, parsed body)."""
    h = bearer(key) if key else {}
    h["Content-Type"] = "application/json"
    if idem is not None:
        h["Idempotency-Key"] = idem
    h.update(headers or {})
    data = raw if raw is not None else json.dumps(body).encode()
    status, hdrs, out = http("POST", svc.base + "/v1/reports", data, h, timeout)
    try:
        out = json.loads(out) if out else None
    except ValueError:
        pass
    return status, hdrs, out


def get(svc, path, key=None):
    return http_json("GET", svc.base + path, headers=bearer(key) if key else {})


def form_post(svc, fmt, fields, headers=None, raw=None):
    """POST /open311/v2/requests.<fmt> form-encoded; returns (status, headers, bytes)."""
    h = {"Content-Type": "application/x-www-form-urlencoded"}
    h.update(headers or {})
    data = raw if raw is not None else urllib.parse.urlencode(fields).encode()
    return http("POST", svc.base + "/open311/v2/requests." + fmt, data, h)


def error_code(body):
    check(isinstance(body, dict) and "error" in body, "not an error body: %r" % (body,))
    return body["error"]["code"], body["error"]["field"]


def report_count():
    return int(psql1("SELECT count(*) FROM intake.reports"))


# ---- protobuf, by hand (the suite uses only the standard library) ----

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_string(field, s):
    b = s.encode()
    return _varint(field << 3 | 2) + _varint(len(b)) + b


def pb_varint(field, n):
    return _varint(field << 3) + _varint(n)


def pb_fields(data):
    """Decodes a message into {field: [values]} (bytes or int)."""
    out, i = {}, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(data, i)
        elif wt == 2:
            n, i = _read_varint(data, i)
            v, i = data[i:i + n], i + n
        elif wt == 1:
            v, i = data[i:i + 8], i + 8
        elif wt == 5:
            v, i = data[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(field, []).append(v)
    return out


def _read_varint(data, i):
    shift = n = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def outbox_events():
    """(event_type, payload bytes, pub_seq) of intake's outbox, in id order."""
    rows = psql("SELECT event_type, encode(payload, 'hex'), coalesce(pub_seq, 0)"
                " FROM intake.outbox ORDER BY id")
    return [(t, bytes.fromhex(p), int(s)) for t, p, s in rows]


def stop(svc):
    """SIGTERM; the drain must end with exit code 0 (and, under ASan, no leak)."""
    rc = svc.stop()
    check(rc == 0, "%s exited %s; log:\n%s" % (svc.name, rc, svc.tail()))
