"""End-to-end part of `make bench` (see run-bench.sh): drives trygg-testpub
over HTTP, watches trygg-testsub's effects in Postgres, prints the figures
with their ratios to the raw limits measured in the same run."""
import argparse
import json
import subprocess
import time
import urllib.request

PSQL = "/usr/lib/postgresql/15/bin/psql"


def sql(db, q):
    return subprocess.run([PSQL, "-X", "-q", "-At", "-F", "\t", db, "-c", q], check=True,
                          capture_output=True, text=True).stdout.strip()


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wait(pred, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if pred():
                return True
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit("benchmark timed out")


def applied(db):
    return int(sql(db, "SELECT count(*) FROM testsub.applied"))


def main():
    ap = argparse.ArgumentParser()
    for a in ("pub", "sub", "db", "out"):
        ap.add_argument("--" + a, required=True)
    ap.add_argument("--events", type=int, default=60000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--pg-tps", type=float, required=True)
    ap.add_argument("--nng-rate", type=float, required=True)
    a = ap.parse_args()
    wait(lambda: call("GET", a.pub + "/readyz")["status"] == "ok"
         and call("GET", a.sub + "/readyz")["status"] == "ok", 60)

    # Warm up (connections, prepared statements, the subscriber's replay).
    call("POST", a.pub + "/produce", {"count": 2000, "concurrency": a.concurrency})
    wait(lambda: applied(a.db) >= 2000, 60)
    base = applied(a.db)

    print("== end to end: %d events, %d in flight, as fast as possible" % (a.events, a.concurrency))
    t0 = time.time()
    call("POST", a.pub + "/produce", {"count": a.events, "concurrency": a.concurrency})
    wait(lambda: not call("GET", a.pub + "/produce")["running"], 600)
    t_produced = time.time() - t0
    wait(lambda: applied(a.db) >= base + a.events, 600)
    t_applied = time.time() - t0
    produce_rate = a.events / t_produced
    e2e_rate = a.events / t_applied

    half = max(1, int(e2e_rate / 2))
    n_half = half * a.seconds
    print("== latency: %d events at %d/s (half the end-to-end rate)" % (n_half, half))
    mark = int(sql(a.db, "SELECT coalesce(max(id), 0) FROM testsub.applied"))
    call("POST", a.pub + "/produce", {"count": n_half, "concurrency": a.concurrency, "rate": half})
    wait(lambda: applied(a.db) >= base + a.events + n_half, 600)
    # Producer commit -> subscriber commit, as Postgres recorded them.
    lat = sql(a.db, "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),"
              " percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms), count(*) FROM ("
              " SELECT extract(epoch FROM pg_xact_commit_timestamp(a.xmin)"
              "   - pg_xact_commit_timestamp(p.xmin)) * 1000 AS ms"
              # produced rows are never updated, so their xmin is the
              # producer's transaction (outbox rows are, by the relay)
              " FROM testsub.applied a JOIN testpub.produced p ON p.n = a.n"
              " WHERE a.id > %d) x" % mark).split("\t")[:3]
    p50, p99, pmax = (float(x) for x in lat)
    dup = int(sql(a.db, "SELECT count(*) - count(DISTINCT seq) FROM testsub.applied"))

    res = {
        "concurrency": a.concurrency,
        "pg_insert_outbox_tps": round(a.pg_tps),
        "nng_pubsub_msgs_per_s": round(a.nng_rate),
        "produce_rate": round(produce_rate),
        "e2e_events_per_s": round(e2e_rate),
        "e2e_ratio_to_pg": round(e2e_rate / a.pg_tps, 2),
        "e2e_ratio_to_nng": round(e2e_rate / a.nng_rate, 3),
        "half_rate": half,
        "commit_to_effect_ms_p50": round(p50, 2),
        "commit_to_effect_ms_p99": round(p99, 2),
        "commit_to_effect_ms_max": round(pmax, 2),
        "duplicates": dup,
    }
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    print()
    print("%-44s %10s %8s" % ("figure", "value", "ratio"))
    print("%-44s %10d %8s" % ("raw: INSERT+outbox tx/s (pgbench, %d clients)" % a.concurrency, a.pg_tps, "1.00"))
    print("%-44s %10d %8s" % ("raw: nng pub/sub msg/s (tcp, 256 B)", a.nng_rate, ""))
    print("%-44s %10d %8.2f" % ("producer commits/s (testpub)", produce_rate, produce_rate / a.pg_tps))
    print("%-44s %10d %8.2f" % ("end to end events/s (commit -> effect)", e2e_rate, e2e_rate / a.pg_tps))
    print("%-44s %10.2f" % ("commit -> effect p50 ms at %d/s" % half, p50))
    print("%-44s %10.2f" % ("commit -> effect p99 ms at %d/s" % half, p99))
    print("%-44s %10d" % ("duplicate effects", dup))
    print("results: %s" % a.out)


if __name__ == "__main__":
    main()
