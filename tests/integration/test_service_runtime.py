"""What every service does the same way (services/common/svc.c), seen from
outside, on the test subscriber: configuration errors, --help, health and
metrics, SIGHUP reload, drain."""
import os
import signal
import subprocess
import time

from harness import (BIN, Service, check, free_port, fresh_schemas, http, role_url, wait_for)


def _run(env, args=(), timeout=20):
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRYGG_")}
    base.update(env)
    return subprocess.run([os.path.join(BIN, "trygg-testsub")] + list(args), env=base,
                          capture_output=True, text=True, timeout=timeout)


def test_bad_config_stops_with_a_clear_message():
    r = _run({"DATABASE_URL": role_url("testsub"), "TRYGG_HTTP_PORT": "70000"})
    check(r.returncode == 1, "exit code %s" % r.returncode)
    check("TRYGG_HTTP_PORT=70000" in r.stderr and "65535" in r.stderr,
          "message does not name the variable and bound:\n" + r.stderr)
    r = _run({"TRYGG_HTTP_PORT": "8080"})
    check(r.returncode == 1 and "database_url" in r.stderr.lower(),
          "missing DATABASE_URL not reported:\n" + r.stderr)
    r = _run({"DATABASE_URL": role_url("testsub"), "TRYGG_BATCH_MAX": "lots"})
    check(r.returncode == 1 and "TRYGG_BATCH_MAX" in r.stderr, r.stderr)


def test_help_lists_every_option():
    r = _run({}, ["--help"])
    check(r.returncode == 0, "--help exited %s" % r.returncode)
    for name in ("DATABASE_URL", "TRYGG_HTTP_PORT", "TRYGG_LOG_LEVEL", "TRYGG_BUS_TESTPUB_SUB_URL",
                 "TRYGG_DRAIN_TIMEOUT", "TRYGG_DB_CONNECTIONS"):
        check(name in r.stdout, "%s missing from --help:\n%s" % (name, r.stdout))


def test_health_metrics_reload_and_drain():
    fresh_schemas("testsub")
    sub = Service("testsub", "trygg-testsub", {
        "DATABASE_URL": role_url("testsub"), "TRYGG_HTTP_PORT": free_port(),
        "TRYGG_BUS_TESTPUB_SUB_URL": "tcp://127.0.0.1:%d" % free_port(),
        "TRYGG_BUS_TESTPUB_REQ_URL": "tcp://127.0.0.1:%d" % free_port(), "TRYGG_LOG_LEVEL": "info"})
    sub.start()
    status, body = sub.get("/healthz")
    check(status == 200 and body["status"] == "ok", "healthz %s %r" % (status, body))
    status, body = sub.get("/readyz")
    check(status == 200, "readyz %s %r" % (status, body))
    _, headers, text = http("GET", sub.base + "/metrics")
    text = text.decode()
    check(headers.get("Content-Type", "").startswith("text/plain"), "metrics content type")
    for metric in ("trygg_db_connected", "trygg_inbox_applied_seq", "process_resident_memory_bytes"):
        check(metric in text, "%s missing from /metrics" % metric)
    rss = sub.metric("process_resident_memory_bytes")
    check(rss is not None and rss > 0, "no resident memory figure")
    if not os.environ.get("TRYGG_SANITIZED"):  # ASan's shadow memory is not ours
        check(rss < 20 * 1024 * 1024, "idle RSS %s over 20 MB" % rss)
    status, body = sub.get("/no/such/path")
    check(status == 404 and body["error"]["code"], "404 body %r" % body)

    # SIGHUP reloads the log level from the environment it was started with
    # (unchanged here), and the service keeps serving.
    sub.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any(l.get("msg") in ("config_reloaded", "config_reload_failed")
                         for l in sub.log_lines()), 5, "reload logged")
    check(sub.get("/readyz")[0] == 200, "not ready after SIGHUP")

    # SIGTERM: exits 0 within the drain deadline, logs the drain.
    t0 = time.time()
    rc = sub.stop()
    check(rc == 0, "exit %s" % rc)
    check(time.time() - t0 < 5, "drain took %.1fs" % (time.time() - t0))
    msgs = [l.get("msg") for l in sub.log_lines()]
    check("draining" in msgs and "stopped" in msgs, "drain not logged: %r" % msgs[-8:])
    for line in sub.log_lines():
        for key in ("ts", "level", "service", "msg"):
            check(key in line, "log line without %s: %r" % (key, line))
