#!/usr/bin/python3
"""`make compose-check`, part 2: the deployment files parse and give every
service what it needs.

deploy/k8s/*.yaml (Kubernetes), docker-compose.yml and deploy/prometheus.yml
are read with PyYAML (Debian's python3-yaml, installed by
deploy/install-deps.sh: the manifests are ordinary YAML with comments, as
people write and review them, not JSON-shaped YAML), and checked for:

- each workload runs the trygg image with a trygg-<service> command;
- DATABASE_URL comes from a Secret (never a literal), and no env value
  holds anything that looks like a password or a key;
- TRYGG_HTTP_ADDR is 0.0.0.0 and TRYGG_HTTP_PORT matches the container's
  http port, which the readiness (/readyz) and liveness (/healthz) probes use;
- terminationGracePeriodSeconds (k8s) / stop_grace_period (compose) is longer
  than TRYGG_DRAIN_TIMEOUT;
- a publisher listens on its own address per replica (0.0.0.0) and every
  subscriber lists each replica of its publisher (k8s: as many URLs as the
  publisher's StatefulSet has replicas, each a <name>-<i>.<headless
  service> that exists);
- a PodDisruptionBudget selects each workload;
- with the binaries built (build/bin), every TRYGG_* variable a file sets is
  one the service lists in --help (a misspelt name is otherwise only a
  warning at start);
- deploy/prometheus.yml scrapes every service at its HTTP port.

Prints what it checked and ends with "manifests: N passed, N failed".
"""
import glob
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
BIN = os.path.join(ROOT, os.environ.get("BUILD", "build"), "bin")
PORTS = {"intake": 8080, "notifier": 8081, "walk-planner": 8082, "reporting": 8083}
PUBLISHERS = {"intake": 5570, "notifier": 5572, "walk-planner": 5574}
SECRETISH = re.compile(r"(password|secret|tu_[0-9a-f]{8}|tk_[0-9a-f]{8}|BEGIN [A-Z ]*PRIVATE)",
                       re.I)

problems = []
checked = 0


def fail(where, msg):
    problems.append("%s: %s" % (where, msg))


def duration_s(v):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(v).strip())
    if not m:
        return None
    n = int(m.group(1))
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


_help = {}


def known_options(service):
    """TRYGG_* names from `trygg-<service> --help`, or None if not built."""
    if service not in _help:
        path = os.path.join(BIN, "trygg-" + service)
        if not os.access(path, os.X_OK):
            _help[service] = None
        else:
            out = subprocess.run([path, "--help"], capture_output=True, text=True,
                                 env={"PATH": "/usr/bin:/bin"}).stdout
            _help[service] = set(re.findall(r"\b(TRYGG_[A-Z0-9_]+|DATABASE_URL)\b", out))
    return _help[service]


def check_env_names(where, service, names):
    known = known_options(service)
    if known is None:
        return
    for n in names:
        if (n.startswith("TRYGG_") or n == "DATABASE_URL") and n not in known:
            fail(where, "%s is not an option of trygg-%s (--help)" % (n, service))


def check_k8s():
    global checked
    docs = []
    for path in sorted(glob.glob(os.path.join(ROOT, "deploy/k8s/*.yaml"))):
        with open(path) as f:
            for d in yaml.safe_load_all(f):
                if d:
                    d["_file"] = os.path.relpath(path, ROOT)
                    docs.append(d)
    kinds = {}
    for d in docs:
        for k in ("apiVersion", "kind", "metadata"):
            if k not in d:
                fail(d["_file"], "a document without %s" % k)
        kinds.setdefault(d.get("kind"), []).append(d)
    services = {d["metadata"]["name"]: d for d in kinds.get("Service", [])}
    sts = {d["metadata"]["name"]: d for d in kinds.get("StatefulSet", [])}
    workloads = kinds.get("StatefulSet", []) + kinds.get("Deployment", [])
    pdbs = kinds.get("PodDisruptionBudget", [])
    names = {w["metadata"]["name"] for w in workloads}
    for want in PORTS:
        if want not in names:
            fail("deploy/k8s", "no workload for %s" % want)
    for w in workloads:
        name = w["metadata"]["name"]
        where = "%s %s/%s" % (w["_file"], w["kind"], name)
        spec = w["spec"]
        sel = spec["selector"]["matchLabels"]
        tmpl = spec["template"]
        if any(tmpl["metadata"]["labels"].get(k) != v for k, v in sel.items()):
            fail(where, "the selector does not match the pod labels")
        if not any(p["spec"]["selector"]["matchLabels"] == sel for p in pdbs):
            fail(where, "no PodDisruptionBudget selects it")
        if name in PUBLISHERS:
            if w["kind"] != "StatefulSet":
                fail(where, "a publisher needs stable names per replica (StatefulSet)")
            hs = services.get(spec.get("serviceName"))
            if not hs or hs["spec"].get("clusterIP") != "None":
                fail(where, "serviceName must be a headless Service")
        pod = tmpl["spec"]
        c = pod["containers"][0]
        if not c["image"].startswith("trygg/trygg:"):
            fail(where, "image %s" % c["image"])
        if c.get("command") != ["trygg-" + name]:
            fail(where, "command %r" % c.get("command"))
        env = {e["name"]: e for e in c.get("env", [])}
        check_env_names(where, name, env)
        for e in env.values():
            if "value" in e and SECRETISH.search(str(e["value"])):
                fail(where, "%s holds a literal that looks like a secret" % e["name"])
        db = env.get("DATABASE_URL", {})
        if "secretKeyRef" not in db.get("valueFrom", {}):
            fail(where, "DATABASE_URL must come from a Secret")
        if env.get("TRYGG_HTTP_ADDR", {}).get("value") != "0.0.0.0":
            fail(where, "TRYGG_HTTP_ADDR must be 0.0.0.0 in a pod")
        port = int(env.get("TRYGG_HTTP_PORT", {}).get("value", 0))
        http = [p for p in c["ports"] if p["name"] == "http"]
        if port != PORTS.get(name) or not http or http[0]["containerPort"] != port:
            fail(where, "TRYGG_HTTP_PORT %s and the http containerPort disagree" % port)
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            g = c.get(probe, {}).get("httpGet", {})
            if g.get("path") != path or g.get("port") not in ("http", port):
                fail(where, "%s must GET %s on the http port" % (probe, path))
        grace = pod.get("terminationGracePeriodSeconds", 30)
        drain = 10  # the default; the ConfigMap's value is checked below
        for cm in kinds.get("ConfigMap", []):
            if "TRYGG_DRAIN_TIMEOUT" in cm.get("data", {}):
                drain = duration_s(cm["data"]["TRYGG_DRAIN_TIMEOUT"])
        if not grace > drain + 3:  # + the preStop pause
            fail(where, "terminationGracePeriodSeconds %s not above drain %ss + preStop" %
                 (grace, drain))
        if name in PUBLISHERS:
            for var, p in (("TRYGG_BUS_PUB_URL", PUBLISHERS[name]),
                           ("TRYGG_BUS_REP_URL", PUBLISHERS[name] + 1)):
                if env.get(var, {}).get("value") != "tcp://0.0.0.0:%d" % p:
                    fail(where, "%s must listen on tcp://0.0.0.0:%d" % (var, p))
        for var, e in env.items():
            m = re.fullmatch(r"TRYGG_BUS_([A-Z_]+)_(SUB|REQ)_URL", var)
            if not m:
                continue
            pub = m.group(1).lower().replace("_", "-")
            port = PUBLISHERS.get(pub, 0) + (0 if m.group(2) == "SUB" else 1)
            urls = e.get("value", "").split(",")
            ps = sts.get(pub)
            if ps is None:
                fail(where, "%s names %s, which is not a StatefulSet here" % (var, pub))
                continue
            want = ["tcp://%s-%d.%s:%d" % (pub, i, ps["spec"]["serviceName"], port)
                    for i in range(ps["spec"]["replicas"])]
            if urls != want:
                fail(where, "%s is %s; the %d replicas of %s are %s" %
                     (var, urls, ps["spec"]["replicas"], pub, ",".join(want)))
        checked += 1
    for s in services.values():
        sel = s["spec"].get("selector", {})
        if not any(all(w["spec"]["template"]["metadata"]["labels"].get(k) == v
                       for k, v in sel.items()) for w in workloads):
            fail(s["_file"], "Service %s selects no workload" % s["metadata"]["name"])
    for ing in kinds.get("Ingress", []):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                if p["backend"]["service"]["name"] not in services:
                    fail(ing["_file"], "Ingress backend %s is no Service" %
                         p["backend"]["service"]["name"])
    print("k8s: %d documents, %d workloads checked" % (len(docs), checked))


def check_compose():
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        doc = yaml.safe_load(f)
    n = 0
    for name, s in doc["services"].items():
        where = "docker-compose.yml %s" % name
        cmd = s.get("command") or []
        env = s.get("environment") or {}
        for k, v in env.items():
            if SECRETISH.search(str(v)) and "${" not in str(v):
                fail(where, "%s holds a literal that looks like a secret" % k)
        if not cmd or not cmd[0].startswith("trygg-") or name in ("crewdemo",):
            continue
        service = cmd[0][len("trygg-"):]
        if service not in PORTS and service not in ("testpub", "testsub"):
            continue
        check_env_names(where, service, env)
        if env.get("TRYGG_HTTP_ADDR") != "0.0.0.0":
            fail(where, "TRYGG_HTTP_ADDR must be 0.0.0.0")
        if service in PORTS and int(env.get("TRYGG_HTTP_PORT", 0)) != PORTS[service]:
            fail(where, "TRYGG_HTTP_PORT %s, the table says %d" %
                 (env.get("TRYGG_HTTP_PORT"), PORTS[service]))
        grace = duration_s(s.get("stop_grace_period", "10s"))
        drain = duration_s(env.get("TRYGG_DRAIN_TIMEOUT", "10s"))
        if not grace > drain:
            fail(where, "stop_grace_period %ss not above TRYGG_DRAIN_TIMEOUT %ss" % (grace, drain))
        test = " ".join(s.get("healthcheck", {}).get("test", []))
        if "/readyz" not in test:
            fail(where, "the health check must mean ready (/readyz)")
        if s.get("restart") not in ("unless-stopped", "always", "on-failure"):
            fail(where, "no restart policy")
        if "DATABASE_URL" in env and "${" not in env["DATABASE_URL"]:
            fail(where, "DATABASE_URL must take its password from the environment")
        n += 1
    print("docker-compose.yml: %d services checked" % n)


def check_prometheus():
    with open(os.path.join(ROOT, "deploy/prometheus.yml")) as f:
        doc = yaml.safe_load(f)
    targets = {t for job in doc["scrape_configs"] for sc in job.get("static_configs", [])
               for t in sc["targets"]}
    for svc, port in PORTS.items():
        if "%s:%d" % (svc, port) not in targets:
            fail("deploy/prometheus.yml", "does not scrape %s:%d" % (svc, port))
    print("deploy/prometheus.yml: %d targets" % len(targets))


def main():
    parts = (check_k8s, check_compose, check_prometheus)
    for part in parts:
        try:
            part()
        except Exception as e:  # a file that does not even have the shape
            fail(part.__name__, "%s: %s" % (type(e).__name__, e))
    for p in problems:
        print("FAIL " + p)
    print("manifests: %d passed, %d failed" % (len(parts) - (1 if problems else 0),
                                               1 if problems else 0))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
