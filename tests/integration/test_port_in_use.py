"""No silent sharing of a port (issue 12 item 5).

A second `make run`, or a second instance started by mistake, must not
quietly take a share of the first one's connections: the HTTP server used
to set SO_REUSEPORT, so the kernel split the port between both processes.
Now a service refuses to start on an HTTP port in use, exits non-zero and
names the port; sharing is possible only on purpose, with
TRYGG_HTTP_REUSE_PORT=true on every process that shares it. The bus
listeners (nng pub and rep, tcp and ipc) refuse a second publisher on the
same address the same way.
"""
import os
import subprocess

from harness import TMP, Service, TestFailure, check, free_port, fresh_schemas, http, role_url, wait_for
from intake_support import start_intake


def _second(name, binary, env, timeout=60):
    """Starts a second instance and returns (exit code, its output)."""
    svc = Service(name, binary, env)
    svc.start(wait_ready=False)
    try:
        rc = svc.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        ready = http("GET", svc.base + "/readyz", timeout=2)[0] == 200
        svc.kill9()
        raise TestFailure("%s still running after %ss (ready: %s); log:\n%s"
                                 % (name, timeout, ready, svc.tail()))
    with open(svc.log_path, "rb") as f:
        return rc, f.read().decode(errors="replace")


def test_second_intake_on_the_same_http_port_refuses_to_start():
    fresh_schemas("intake")
    first, _ = start_intake()
    port = first.http_port
    rc, out = _second("intake2", "trygg-intake", {
        "DATABASE_URL": role_url("intake"), "TRYGG_HTTP_PORT": port,
        "TRYGG_BUS_PUB_URL": "tcp://127.0.0.1:%d" % free_port(),
        "TRYGG_BUS_REP_URL": "tcp://127.0.0.1:%d" % free_port(), "TRYGG_DB_CONNECTIONS": "4"})
    check(rc != 0, "second intake on port %d exited 0; output:\n%s" % (port, out))
    check(str(port) in out and "in use" in out,
          "the refusal does not name port %d as in use:\n%s" % (port, out))
    # The first one never lost its port: every request reaches it.
    for _ in range(20):
        check(http("GET", first.base + "/readyz", timeout=5)[0] == 200, "first intake not ready")
    check(first.alive(), "the first intake died")


def test_sharing_a_port_on_purpose_with_http_reuse_port():
    fresh_schemas("testsub")
    port = free_port()

    def sub(name):
        return Service(name, "trygg-testsub", {
            "DATABASE_URL": role_url("testsub"), "TRYGG_HTTP_PORT": port,
            "TRYGG_HTTP_REUSE_PORT": "true",
            "TRYGG_BUS_TESTPUB_SUB_URL": "tcp://127.0.0.1:%d" % free_port(),
            "TRYGG_BUS_TESTPUB_REQ_URL": "tcp://127.0.0.1:%d" % free_port()})
    a = sub("testsub-a").start()
    b = sub("testsub-b").start()
    check(a.alive() and b.alive(), "both must run when sharing is configured")
    # Without the option on the newcomer, it is refused even though the
    # others share: sharing is each process's own choice.
    rc, out = _second("testsub-c", "trygg-testsub", {
        "DATABASE_URL": role_url("testsub"), "TRYGG_HTTP_PORT": port,
        "TRYGG_BUS_TESTPUB_SUB_URL": "tcp://127.0.0.1:%d" % free_port(),
        "TRYGG_BUS_TESTPUB_REQ_URL": "tcp://127.0.0.1:%d" % free_port()})
    check(rc != 0 and str(port) in out, "testsub-c without reuse started: %s\n%s" % (rc, out))


def _testpub(name, http_port, pub, rep):
    return Service(name, "trygg-testpub", {
        "DATABASE_URL": role_url("testpub"), "TRYGG_HTTP_PORT": http_port,
        "TRYGG_BUS_PUB_URL": pub, "TRYGG_BUS_REP_URL": rep})


def test_second_publisher_on_the_same_bus_address_refuses_to_start():
    fresh_schemas("testpub")
    ipc_dir = os.path.join(TMP, "port-in-use")
    os.makedirs(ipc_dir, exist_ok=True)
    for kind, pub, rep in (
            ("tcp", "tcp://127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port()),
            ("ipc", "ipc://%s/testpub.pub" % ipc_dir, "ipc://%s/testpub.rep" % ipc_dir)):
        first = _testpub("testpub-" + kind, free_port(), pub, rep).start()
        # Same pub address; a rep address of its own.
        other_rep = ("tcp://127.0.0.1:%d" % free_port() if kind == "tcp"
                     else "ipc://%s/other.rep" % ipc_dir)
        second = _testpub("testpub-%s-2" % kind, free_port(), pub, other_rep)
        rc, out = _second(second.name, "trygg-testpub", second.env)
        check(rc != 0, "second publisher on %s exited 0:\n%s" % (pub, out))
        check(pub in out and "in use" in out.lower(),
              "the refusal does not name %s as in use:\n%s" % (pub, out))
        # Same rep address (pub free): refused as well.
        other_pub = ("tcp://127.0.0.1:%d" % free_port() if kind == "tcp"
                     else "ipc://%s/other.pub" % ipc_dir)
        third = _testpub("testpub-%s-3" % kind, free_port(), other_pub, rep)
        rc, out = _second(third.name, "trygg-testpub", third.env)
        check(rc != 0 and rep in out, "second replay server on %s: rc %s\n%s" % (rep, rc, out))
        wait_for(lambda: http("GET", first.base + "/readyz", timeout=2)[0] == 200, 10,
                 "first testpub still ready")
        check(first.alive(), "the first publisher died")
        first.stop()
