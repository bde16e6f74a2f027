"""`make run` started as a new user starts it, for the test_run_*.py tests.

RunLocal starts deploy/run-local.sh (what `make run` runs) in its own
process group with a private var/ directory and free ports, waits for its
"ready" line, gives what a user has (what it printed, the keys it wrote
under var/, the services' URLs), and stops it with SIGINT to the group,
as Ctrl-C in a terminal does, checking that no process and no running
cluster is left behind and that it stopped cleanly.

    with RunLocal("run-walk") as run:    # started and ready
        run.url("WALKS_PORT")             # http://127.0.0.1:<port>
        run.keys("walks-keys.json")       # a JSON file under its var/
        run.out()                         # what it printed so far
        run.stop()                        # Ctrl-C, then the checks

Leaving the block without stop() (a failure) kills the group and stops
its Postgres.
"""
import json
import os
import re
import signal
import subprocess
import time

from harness import ROOT, TMP, check, free_port, http, wait_for

PORTS = ("INTAKE_PORT", "NOTIFIER_PORT", "CREW_PORT", "TESTPUB_PORT", "TESTSUB_PORT", "WALKS_PORT",
         "REPORTING_PORT", "MAIL_PORT")


def procs_under(path):
    """Processes whose command line or environment mentions path: the
    cluster (-D path/pg/data) and the services (bus sockets under path)."""
    found = []
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = f.read()
        except OSError:
            continue
        if path.encode() in cmd or path.encode() in env:
            found.append("%s %s" % (pid, cmd.replace(b"\0", b" ").decode(errors="replace")))
    return found


class RunLocal:
    """One `make run` in TMP/<name>-var, its output in TMP/<name>.out."""

    def __init__(self, name, backbone=False, ready_timeout=90):
        self.var = os.path.join(TMP, name + "-var")
        self.out_path = os.path.join(TMP, name + ".out")
        self.ports = {k: free_port() for k in PORTS}
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRYGG_") and k != "DATABASE_URL"}
        env.update({k: str(v) for k, v in self.ports.items()})
        env.update({"TRYGG_VAR_DIR": self.var,
                    "BUILD": os.path.relpath(os.path.dirname(os.environ.get("TRYGG_BIN_DIR", "build/bin")),
                                             ROOT)})
        if backbone:
            env["BACKBONE"] = "1"
        self.started = time.time()
        with open(self.out_path, "wb") as log:
            self.proc = subprocess.Popen([os.path.join(ROOT, "deploy/run-local.sh")], env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        try:
            def ready():
                check(self.proc.poll() is None, "run-local.sh exited early:\n" + self.out())
                return "ready. Ctrl-C stops everything." in self.out()
            wait_for(ready, ready_timeout, "make run to be ready", interval=0.2)
        except BaseException:
            self.kill()
            raise
        self.ready_s = time.time() - self.started

    def out(self):
        """Everything make run printed so far (the services' stdout too)."""
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def url(self, port_name):
        return "http://127.0.0.1:%d" % self.ports[port_name]

    def path(self, *parts):
        return os.path.join(self.var, *parts)

    def keys(self, name):
        """A JSON file make run wrote under its var/ (demo-keys.json, ...)."""
        with open(self.path(name)) as f:
            return json.load(f)

    def ready_check(self, port_name):
        return http("GET", self.url(port_name) + "/readyz")[0] == 200

    def stop(self):
        """Ctrl-C to the group; then nothing may be left running, Postgres
        included, and make run must have said it stopped cleanly."""
        os.killpg(self.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        self.proc.wait(60)
        time.sleep(0.5)
        left = procs_under(self.var)
        check(not left, "processes left behind:\n" + "\n".join(left))
        check(not os.path.exists(self.path("pg", "data", "postmaster.pid")),
              "Postgres still running after Ctrl-C")
        out = self.out()
        check("stopped." in out, "no clean stop:\n" + out[-2000:])
        # A demo script that runs a stray command (an unquoted heredoc's
        # backticks) still "works" but tells a new user something is broken.
        check("command not found" not in out, "a demo step ran a stray command:\n" + out[-4000:])
        # What it tells a user to try must point at this run, not a default
        # port, and use only what deploy/install-deps.sh installs.
        wrong = [u for u in re.findall(r"https?://(?:127\.0\.0\.1|localhost):(\d+)", out)
                 if int(u) not in self.ports.values()]
        check(not wrong, "make run printed URLs to ports it does not use: %s" % sorted(set(wrong)))
        check("jq " not in out, "make run's hints use jq, which install-deps.sh does not install")

    def kill(self):
        """After a failure: kills the group and stops its cluster (pg_ctl
        started Postgres in a session of its own)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if os.path.exists(self.path("pg", "data", "postmaster.pid")):
            subprocess.run([os.path.join(ROOT, "deploy/pg-cluster.sh"), "stop", self.path("pg")],
                           capture_output=True, timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
