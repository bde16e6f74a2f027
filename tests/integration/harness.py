"""Black-box test harness: real Postgres, real service binaries, HTTP.

Only the Python standard library is used, so the suite needs nothing beyond
Debian's python3. Postgres is reached with psql (from postgresql-client).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BIN = os.environ.get("TRYGG_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))
SUPER_URL = os.environ.get("TRYGG_TEST_DATABASE_URL", "")
PGDIR = os.environ.get("TRYGG_TEST_PGDIR", "")
PGBIN = "/usr/lib/postgresql/15/bin"
TMP = os.environ.get("TRYGG_TEST_TMP") or tempfile.mkdtemp(prefix="trygg-it.")
os.chmod(TMP, 0o755)  # the postgres user must reach clusters made below it
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))


class TestFailure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def wait_for(pred, timeout, what, interval=0.1):
    """Polls pred() until it returns a truthy value; fails after timeout s."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # the service may be restarting
            last = e
        time.sleep(interval)
    raise TestFailure("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


_handed_out = set()


def free_port():
    """A TCP port on 127.0.0.1 that is free now, below Linux's ephemeral
    range (32768-60999), so an outgoing connection cannot take it between
    this check and the service's bind; never the same port twice in a run."""
    import random
    for _ in range(1000):
        port = random.randrange(20000, 32000)
        if port in _handed_out:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _handed_out.add(port)
        return port
    raise TestFailure("no free port found")


def role_url(role):
    """The superuser URL with the user replaced by a service role."""
    return SUPER_URL.replace("trygg@", role + "@", 1)


def thread_stacks(pid):
    """Every thread's stack of a running process, by gdb (or why not)."""
    try:
        out = subprocess.run(["gdb", "-batch", "-p", str(pid), "-ex", "thread apply all bt"],
                             capture_output=True, text=True, timeout=30)
        return "\n".join(l for l in out.stdout.splitlines()
                         if l.startswith(("Thread", "#")))
    except (OSError, subprocess.TimeoutExpired) as e:
        return "(no stacks: %s)" % e


def psql(sql, url=None):
    """Runs SQL as the superuser (or url) and returns rows as lists of str."""
    out = subprocess.run(
        [os.path.join(PGBIN, "psql"), "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
         url or SUPER_URL, "-c", sql],
        check=True, capture_output=True, text=True, timeout=120)
    return [line.split("\t") for line in out.stdout.splitlines() if line != ""]


def psql1(sql, url=None):
    rows = psql(sql, url)
    return rows[0][0] if rows else None


def fresh_schemas(*names):
    """Drops and recreates one role and schema per name, as make run does."""
    for n in names:
        psql('DROP SCHEMA IF EXISTS "%s" CASCADE' % n)
        psql("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%s') "
             "THEN CREATE ROLE \"%s\" LOGIN; END IF; END $$" % (n, n))
        psql('CREATE SCHEMA "%s" AUTHORIZATION "%s"' % (n, n))
        psql('ALTER ROLE "%s" SET search_path = "%s"' % (n, n))


def pg_stop():
    check(PGDIR, "Postgres fault tests need the test's own cluster")
    args = [os.path.join(PGBIN, "pg_ctl"), "-D", os.path.join(PGDIR, "data"), "-m", "fast", "-w", "stop"]
    _as_pg(args)


def pg_start():
    port = open(os.path.join(PGDIR, "port")).read().strip()
    args = [os.path.join(PGBIN, "pg_ctl"), "-D", os.path.join(PGDIR, "data"), "-l",
            os.path.join(PGDIR, "postgres.log"), "-w", "-o",
            "-k %s/sock -c listen_addresses='' -p %s -c max_connections=200" % (PGDIR, port), "start"]
    _as_pg(args)


def _as_pg(args):
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    subprocess.run(args, check=True, capture_output=True, timeout=60)


def http(method, url, body=None, headers=None, timeout=10):
    """Returns (status, headers, body bytes); never raises for HTTP errors."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def http_json(method, url, body=None, headers=None, timeout=10):
    status, _, data = http(method, url, body, headers, timeout)
    try:
        return status, json.loads(data) if data else None
    except ValueError:
        return status, data


RUNNING = []  # every Service started, so a failed test leaves none behind
CURRENT_TEST = ["setup"]


def kill_all():
    """Kills whatever the last test left running (called by run.py)."""
    while RUNNING:
        s = RUNNING.pop()
        s.kill9()


class Service:
    """One real service process with its own environment and log file."""

    def __init__(self, name, binary, env):
        self.name = name
        self.binary = os.path.join(BIN, binary)
        # The test runner's own TRYGG_* variables are not the service's.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRYGG_")}
        self.env.update({k: str(v) for k, v in env.items()})
        self.http_port = int(env["TRYGG_HTTP_PORT"])
        self.base = "http://127.0.0.1:%d" % self.http_port
        self.log_path = os.path.join(TMP, "%s.%s.log" % (CURRENT_TEST[0], name))
        self.proc = None
        self.starts = 0

    def start(self, wait_ready=True, timeout=30):
        check(os.path.exists(self.binary), "missing binary %s (run make)" % self.binary)
        # Truncated on the first start, appended to on restarts.
        self.log = open(self.log_path, "ab" if self.starts else "wb")
        self.proc = subprocess.Popen([self.binary], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.starts += 1
        RUNNING.append(self)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30):
        def ready():
            if self.proc.poll() is not None:
                raise TestFailure("%s exited with %s; log:\n%s" % (self.name, self.proc.returncode, self.tail()))
            return http("GET", self.base + "/readyz", timeout=2)[0] == 200
        try:
            wait_for(ready, timeout, "%s ready" % self.name)
        except TestFailure as e:
            raise TestFailure("%s\n%s" % (e, self.tail()))

    def wait_alive(self, timeout=30):
        """Waits for /healthz: the process serves, even if not ready (a
        halted stream keeps /readyz at 503 on purpose)."""
        def alive():
            if self.proc.poll() is not None:
                raise TestFailure("%s exited with %s; log:\n%s" % (self.name, self.proc.returncode, self.tail()))
            return http("GET", self.base + "/healthz", timeout=2)[0] == 200
        wait_for(alive, timeout, "%s alive" % self.name)

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout=20):
        """SIGTERM and wait: a clean drain must end the process in time."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        # A drain still running after 8 s is stuck somewhere: its threads'
        # stacks (gdb) go with the failure, since the process's own deadline
        # (drain timeout + 6 s, then SIGALRM) ends it before anyone looks.
        self.stacks = None
        try:
            return self.proc.wait(min(8, timeout))
        except subprocess.TimeoutExpired:
            self.stacks = thread_stacks(self.proc.pid)
        try:
            rc = self.proc.wait(max(timeout - 8, 1))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("%s did not stop within %ss of SIGTERM; log:\n%s\nstacks:\n%s"
                              % (self.name, timeout, self.tail(), self.stacks))
        if rc != 0:
            sys.stderr.write("%s exited %s after SIGTERM; its stacks 8 s after it:\n%s\n"
                             % (self.name, rc, self.stacks))
        return rc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def get(self, path, **kw):
        return http_json("GET", self.base + path, **kw)

    def post(self, path, body=None, **kw):
        return http_json("POST", self.base + path, body, **kw)

    def metric(self, name):
        """Reads one unlabelled sample from /metrics."""
        status, _, data = http("GET", self.base + "/metrics", timeout=5)
        check(status == 200, "/metrics answered %s" % status)
        for line in data.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def log_lines(self):
        with open(self.log_path, "rb") as f:
            out = []
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
            return out
