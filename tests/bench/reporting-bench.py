"""reporting-bench.py: the measuring half of reporting-bench.sh.

  latency --base URL --key KEY --out FILE   p50/p99 of the picture and the page
  events --db URL --schema S --events N     N ReportReceived into S.outbox
  apply --db URL --events N --pg-tps T ...  the inbox's apply rate, and the summary
"""
import argparse
import http.client
import json
import struct
import subprocess
import sys
import time
import urllib.parse
import os
import uuid

# The protobuf helpers of the integration tests (standard library only).
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../integration"))
from reporting_support import f_int, f_str  # noqa: E402

PSQL = "/usr/lib/postgresql/15/bin/psql"
N = int(os.environ.get("BENCH_REQUESTS", "200"))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * len(xs) + 0.5)) - 1)]


def timed(conn, path, key=None):
    headers = {"Authorization": "Bearer " + key} if key else {}
    t = time.perf_counter()
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    return (time.perf_counter() - t) * 1000, r.status, body


def latency(a):
    u = urllib.parse.urlparse(a.base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    cases = {
        "year_district_staff": ("/v1/picture?period=year&at=2026-06-01", a.key),
        "year_district_public": ("/v1/picture?period=year&at=2026-06-01", None),
        "quarter_place_staff": ("/v1/picture?period=quarter&at=2026-05-01&area=place:odenplan",
                                a.key),
        "year_csv_staff": ("/v1/picture.csv?period=year&at=2026-06-01", a.key),
    }
    res = {}
    for name, (path, key) in cases.items():
        for _ in range(5):
            ms, status, body = timed(conn, path, key)
            if status != 200:
                sys.exit("%s answered %s: %s" % (path, status, body[:300]))
        xs = [timed(conn, path, key)[0] for _ in range(N)]
        res[name] = {"p50_ms": round(pct(xs, 50), 2), "p99_ms": round(pct(xs, 99), 2)}
        print("  %-22s p50 %7.2f ms  p99 %7.2f ms" % (name, res[name]["p50_ms"],
                                                     res[name]["p99_ms"]))
    # The page: its HTML, the files it names under /static/, and the picture.
    _, status, html = timed(conn, "/")
    files = []
    if status == 200:
        import re
        files = sorted(set(re.findall(r'/static/[A-Za-z0-9._-]+', html.decode(errors="replace"))))
    xs = []
    for _ in range(N):
        t = 0
        t += timed(conn, "/")[0]
        for f in files:
            t += timed(conn, f)[0]
        t += timed(conn, "/v1/picture?period=year&at=2026-06-01", a.key)[0]
        xs.append(t)
    res["page_year_district"] = {"p50_ms": round(pct(xs, 50), 2), "p99_ms": round(pct(xs, 99), 2),
                                 "index_status": status, "files": files}
    print("  %-22s p50 %7.2f ms  p99 %7.2f ms  (index.html %s, %d files)" % (
        "page", res["page_year_district"]["p50_ms"], res["page_year_district"]["p99_ms"],
        status, len(files)))
    json.dump(res, open(a.out, "w"))


def events(a):
    cats = ["litter", "graffiti", "lighting", "traffic", "vandalism"]
    places = ["sergels-torg", "odenplan", "vasaparken", "hotorget"]
    base = 1780000000 * 1000000
    lines = []
    for i in range(a.events):
        msg = (f_str(1, str(uuid.uuid4())) + f_str(3, "trygg-app") + f_str(4, "resident_app")
               + f_str(5, cats[i % 5]) + f_str(6, "physical_environment") + f_int(7, 1)
               + b"\x41" + struct.pack("<d", 59.3324) + b"\x49" + struct.pack("<d", 18.0637)
               + f_str(10, places[i % 4]) + f_int(11, 2) + f_int(13, base + i * 1000000)
               + f_int(14, 1440) + f_int(17, base + i * 1000000) + f_int(20, i % 3 == 0))
        lines.append("trygg.events.ReportReceived\t\\\\x%s\n" % msg.hex())
    subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", a.db, "-c",
                    "COPY %s.outbox (event_type, payload) FROM STDIN" % a.schema],
                   input="".join(lines), text=True, check=True)


def cursor(db):
    out = subprocess.run([PSQL, "-X", "-At", db, "-c",
                          "SELECT coalesce(max(last_seq), 0) FROM reporting.inbox_cursor"
                          " WHERE publisher = 'intake'"], capture_output=True, text=True)
    try:
        return int(out.stdout.strip() or 0)
    except ValueError:
        return 0


def apply(a):
    deadline = time.time() + 600
    while cursor(a.db) == 0 and time.time() < deadline:
        time.sleep(0.02)
    t0, c0 = time.time(), cursor(a.db)
    while cursor(a.db) < a.events and time.time() < deadline:
        time.sleep(0.1)
    t1, c1 = time.time(), cursor(a.db)
    rate = (c1 - c0) / (t1 - t0) if t1 > t0 else 0
    pg = float(a.pg_tps)
    lat = json.load(open(a.latency))
    unc = json.load(open(a.uncached))
    res = {"apply_rate_per_s": round(rate, 1), "pg_insert_outbox_tps": pg,
           "apply_ratio": round(rate / pg, 2) if pg else None, "latency": lat,
           "latency_uncached": unc}
    print("inbox apply rate: %.0f reports/s (%d events in %.1f s); raw INSERT+outbox: %.0f tx/s;"
          " ratio %.2fx (target >= 1.0x)" % (rate, c1 - c0, t1 - t0, pg, res["apply_ratio"] or 0))
    for name, l in (("computed every time", unc), ("as served", lat)):
        y = l["year_district_staff"]["p99_ms"]
        p = l["page_year_district"]["p99_ms"]
        print("%s: year's picture, district, JSON p99 %.1f ms (target < 100): %s;"
              " the page p99 %.1f ms (target < 300): %s" % (
                  name, y, "ok" if y < 100 else "MISSED", p, "ok" if p < 300 else "MISSED"))
    json.dump(res, open(a.out, "w"), indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd")
    ap.add_argument("--base")
    ap.add_argument("--key")
    ap.add_argument("--out")
    ap.add_argument("--db")
    ap.add_argument("--schema")
    ap.add_argument("--events", type=int)
    ap.add_argument("--pg-tps")
    ap.add_argument("--latency")
    ap.add_argument("--uncached")
    a = ap.parse_args()
    {"latency": latency, "events": events, "apply": apply}[a.cmd](a)


if __name__ == "__main__":
    main()
