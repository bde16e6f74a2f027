"""Support for the phone page's tests (test_walk_phone.py, and the walk
journey on `make run`, test_run_walk_journey.py).

Three pieces:

- StandIn: a small HTTP server with the four endpoints of docs/walk-planner.md the page uses that the
  phone page uses (GET /v1/meta, GET /v1/walks/{id}, POST and GET
  /v1/walks/{id}/findings, with the walk key and the Idempotency-Key
  semantics: same key and body -> 200 with the same finding, same key with
  another body -> 409) and the page's files from services/walk-planner/web/
  at /phone/. It is used only while the real trygg-walk-planner binary is
  not built; when it is, the tests run against the real service instead
  (see walk_server() in test_walk_phone.py).

- Link: a TCP proxy between the browser and the server standing for the
  phone's network. It can be cut (connections refused, open ones dropped)
  and can lose the answer to the next POST of a finding after the server
  has handled it, then cut itself: the moment the network dies in the
  middle of a request, which is what makes a page resend.

- Driving the page in Chromium (cdp.py) as a user does: open_page,
  record (fill the form and save), items and wait_states (the list of
  findings and their states), set_offline (DevTools' "Offline" for the
  page and its service worker), no_page_errors.
"""
import json
import os
import re
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import ROOT, check, free_port

WEB = os.path.join(ROOT, "services/walk-planner/web")
CATEGORIES = [("litter", "Litter"), ("graffiti", "Graffiti"), ("vandalism", "Vandalism"),
              ("lighting", "Broken lighting"), ("vegetation", "Overgrown vegetation"),
              ("traffic", "Traffic hazard"), ("sleeping_outdoors", "Sleeping outdoors"),
              ("drug_dealing", "Drug dealing"), ("other", "Other")]
PARAMETERS = ["lighting", "openness", "visibility", "people", "security", "walk_path",
              "public_transport", "gender_usage", "feeling"]
KINDS = ["district_unit", "administration", "housing", "private"]
FIELDS = {"stop_index", "category", "severity", "scores", "description", "photo_url", "lat", "long",
          "night", "responsible_kind", "responsible", "deadline"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".webmanifest": "application/manifest+json; charset=utf-8"}


class StandIn:
    """The walk-planner API as docs/walk-planner.md describes it, in memory."""

    def __init__(self):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.walks = {}     # walk_id -> walk dict
        self.keys = {}      # walk key -> walk_id
        self.findings = {}  # walk_id -> [finding]
        self.by_idem = {}   # (walk_id, key) -> (body, finding)
        self.posts = []     # (walk_id, idempotency key or None, status): every POST seen
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                outer._handle(self, "GET")

            def do_POST(self):
                outer._handle(self, "POST")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a connection the Link dropped on purpose

        self.httpd = Server(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def create_walk(self, title, stops):
        """A walk with these stops [(place, name, lat, long)]; returns (walk_id, walk key)."""
        wid, key = str(uuid.uuid4()), uuid.uuid4().hex
        with self.lock:
            self.walks[wid] = {
                "walk_id": wid, "title": title, "area": "norrmalm", "status": "planned",
                "starts_at": "2026-11-30T17:00:00Z", "ends_at": "2026-11-30T19:00:00Z",
                "after_dark": True, "route_m": 1200.0,
                "stops": [{"index": i, "place": p, "name": n, "lat": la, "long": lo, "minutes": 10}
                          for i, (p, n, la, lo) in enumerate(stops)]}
            self.keys[key] = wid
            self.findings[wid] = []
        return wid, key

    # --- request handling ---

    def _send(self, h, status, body, ctype="application/json; charset=utf-8"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        h.wfile.write(data)

    def _error(self, h, status, code, message, field=None):
        self._send(h, status, {"error": {"code": code, "message": message, "field": field,
                                         "request_id": uuid.uuid4().hex}})

    def _handle(self, h, method):
        path = h.path.split("?", 1)[0]
        n = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(n) if n else b""
        if method == "GET" and (path == "/phone/" or path.startswith("/phone/")):
            name = path[len("/phone/"):] or "index.html"
            f = os.path.join(WEB, name)
            if "/" in name or not os.path.isfile(f):
                return self._error(h, 404, "not_found", "no such file")
            return self._send(h, 200, open(f, "rb").read(), TYPES.get(os.path.splitext(name)[1], "text/plain"))
        if method == "GET" and path == "/readyz":
            return self._send(h, 200, {"ready": True})
        if method == "GET" and path == "/v1/meta":
            return self._send(h, 200, {"categories": [{"code": c, "name": n} for c, n in CATEGORIES],
                                       "parameters": PARAMETERS, "responsible_kinds": KINDS,
                                       "statuses": ["proposed", "accepted", "in_progress", "done"]})
        m = re.fullmatch(r"/v1/walks/([0-9a-f-]+)(/findings)?", path)
        if not m:
            return self._error(h, 404, "not_found", "no such route")
        wid = m.group(1)
        auth = h.headers.get("Authorization", "")
        if wid not in self.walks or self.keys.get(auth[7:] if auth.startswith("Bearer ") else None) != wid:
            return self._error(h, 401, "unauthorized", "a key for this walk is required")
        if not m.group(2) and method == "GET":
            return self._send(h, 200, self.walks[wid])
        if m.group(2) and method == "GET":
            with self.lock:
                return self._send(h, 200, {"findings": list(self.findings[wid])})
        if m.group(2) and method == "POST":
            return self._post_finding(h, wid, raw)
        return self._error(h, 405, "method_not_allowed", "method not allowed")

    def _post_finding(self, h, wid, raw):
        idem = h.headers.get("Idempotency-Key")
        with self.lock:
            if not idem or len(idem) > 100:
                self.posts.append((wid, idem, 400))
                return self._error(h, 400, "invalid", "Idempotency-Key is required", "Idempotency-Key")
            try:
                body = json.loads(raw)
            except ValueError:
                self.posts.append((wid, idem, 400))
                return self._error(h, 400, "invalid_json", "body is not JSON")
            # As the real service: a known key first (same body: the same
            # finding; another body: 409), then the body's fields.
            seen = self.by_idem.get((wid, idem))
            if seen:
                status = 200 if seen[0] == body else 409
                self.posts.append((wid, idem, status))
                if status == 409:
                    return self._error(h, 409, "idempotency_conflict",
                                       "this Idempotency-Key was used with another body", "Idempotency-Key")
                return self._send(h, 200, {"finding": seen[1]})
            err = validate(body, self.walks[wid])
            if err:
                self.posts.append((wid, idem, 400))
                return self._error(h, 400, "invalid_value", err[1], err[0])
            f = dict(body)
            f.update({"finding_id": str(uuid.uuid4()), "walk_id": wid, "status": "proposed",
                      "idempotency_key": idem})
            self.findings[wid].append(f)
            self.by_idem[(wid, idem)] = (body, f)
            self.posts.append((wid, idem, 201))
            return self._send(h, 201, {"finding": f})


def validate(b, walk):
    """(field, message) of the first problem in a finding body, or None."""
    if not isinstance(b, dict):
        return ("body", "must be an object")
    if not isinstance(b.get("stop_index"), int) or not 0 <= b["stop_index"] < len(walk["stops"]):
        return ("stop_index", "no such stop")
    if b.get("category") not in [c for c, _ in CATEGORIES]:
        return ("category", "unknown category")
    if not isinstance(b.get("severity"), int) or not 1 <= b["severity"] <= 5:
        return ("severity", "must be 1..5")
    for k, v in (b.get("scores") or {}).items():
        if k not in PARAMETERS or not isinstance(v, int) or not 0 <= v <= 3:
            return ("scores." + k, "must be a parameter scored 0..3")
    if b.get("responsible_kind") not in KINDS:
        return ("responsible_kind", "responsible_kind is required: one of " + ", ".join(KINDS))
    if not isinstance(b.get("responsible"), str) or not b["responsible"].strip():
        return ("responsible", "responsible must not be empty")
    if b.get("photo_url") is not None and not re.fullmatch(r"https?://\S+", str(b["photo_url"])):
        return ("photo_url", "photo_url must be an http(s) URL")
    if (b.get("lat") is None) != (b.get("long") is None):
        return ("lat", "lat and long go together")
    extra = set(b) - FIELDS
    if extra:
        return (sorted(extra)[0], "unknown field")
    return None


# --- driving the page (Chromium over the DevTools protocol) ---

ITEMS_JS = """Array.from(document.querySelectorAll('#findings li')).map(li => ({
  key: li.dataset.key, state: li.dataset.state, id: li.dataset.findingId, text: li.textContent}))"""

QUEUE_JS = "TryggQueue.listFindings(new URLSearchParams(location.search).get('walk'))"


def record(page, category, severity, description, scores=None, photo=None, gps=False,
           kind="district_unit", responsible="Parkenheten Norr"):
    """Fills the finding form as a user would and saves it."""
    page.evaluate("""(() => {
      const o = %s, $ = id => document.getElementById(id);
      $('category').value = o.category;
      document.querySelector('#severity button[data-value="' + o.severity + '"]').click();
      for (const [p, v] of Object.entries(o.scores))
        document.querySelector('.seg[data-param="' + p + '"] button[data-value="' + v + '"]').click();
      $('description').value = o.description;
      $('photo').value = o.photo || '';
      $('responsible-kind').value = o.kind;
      $('responsible').value = o.responsible;
      if (o.gps) $('locate').click();
    })()""" % json.dumps({"category": category, "severity": severity, "scores": scores or {},
                          "description": description, "photo": photo, "gps": gps,
                          "kind": kind, "responsible": responsible}))
    if gps:
        page.wait_for("document.getElementById('lat').value !== ''", 15, "the position filled in")
    page.wait_for("!document.getElementById('save').disabled", 30, "the save button enabled")
    n = page.evaluate("document.querySelectorAll('#findings li').length")
    page.evaluate("document.getElementById('save').click()")
    page.wait_for("document.querySelectorAll('#findings li').length === %d" % (n + 1), 30,
                  "the finding %r in the list" % description)


def items(page):
    return page.evaluate(ITEMS_JS)


def wait_states(page, want, timeout, what):
    """Waits until the list's states, oldest first, equal `want`."""
    js = "(%s).reverse().map(i => i.state).join(',') === %s" % (ITEMS_JS, json.dumps(",".join(want)))
    page.wait_for(js, timeout, what)


def open_page(browser, base, wid, key, gps):
    """A new tab on the walk's phone page at base (the server, or a Link in
    front of it) with the walk key, the phone at gps (lat, long); returns
    once the page works offline."""
    page = browser.new_page()
    browser.grant(base, ["geolocation"])
    page.call("Emulation.setGeolocationOverride", {"latitude": gps[0], "longitude": gps[1], "accuracy": 8})
    page.navigate("%s/phone/?walk=%s#key=%s" % (base, wid, key))
    page.wait_for("document.body.dataset.ready === 'true'", 30, "the page ready")
    # The service worker takes over the page (clients.claim) once it has
    # cached the page's files: only then does a reload work offline.
    page.wait_for("navigator.serviceWorker.controller !== null", 30, "the service worker in control")
    # ... and has cached the walk and the meta (fetched again through it).
    page.wait_for("""caches.open('trygg-phone-v1').then(c => Promise.all(
        [c.match(TryggQueue.apiBase() + '/v1/meta'), c.match(TryggQueue.apiBase() + '/v1/walks/%s')]))
        .then(r => r.every(x => x))""" % wid, 30, "the walk and meta in the service worker's cache")
    return page


def set_offline(browser, page, base, offline):
    """Cuts (or restores) the network of the page and of its service
    worker, as DevTools' "Offline" does."""
    for s in [page] + browser.service_workers(base + "/phone/"):
        s.set_offline(offline)


def no_page_errors(page):
    bad = [c for c in page.console if c[0] == "exception"]
    check(not bad, "the page threw:\n%s" % page.console_text())


class Link:
    """A TCP proxy on 127.0.0.1 standing for the phone's network."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.conns = set()
        self.lose_next_post = False
        self.lost = 0  # answers thrown away
        self.posted = []  # the Idempotency-Key (or None) of every finding POST that went through
        self.listener = None
        self.up()

    def up(self):
        with self.lock:
            if self.listener:
                return
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.port))
            s.listen(64)
            self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def down(self):
        """Refuses new connections and drops the open ones."""
        with self.lock:
            s, self.listener = self.listener, None
            conns, self.conns = list(self.conns), set()
        if s:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for c in conns:
            _close(c)

    def _accept(self, s):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
                u.settimeout(None)
            except OSError:
                _close(c)
                continue
            with self.lock:
                if self.listener is not s:
                    _close(c)
                    _close(u)
                    return
                self.conns.update((c, u))
            state = {"armed": False}
            threading.Thread(target=self._pump, args=(c, u, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, state, False), daemon=True).start()

    def _pump(self, src, dst, state, to_server):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if to_server and data.startswith(b"POST ") and b"/findings" in data.split(b"\r\n", 1)[0]:
                    m = re.search(rb"\r\nidempotency-key: *([^\r]*)\r\n", data, re.I)
                    with self.lock:
                        self.posted.append(m.group(1).decode() if m else None)
                        if self.lose_next_post:
                            self.lose_next_post = False
                            state["armed"] = True
                if not to_server and state["armed"]:
                    # The server has answered: the network dies before the
                    # answer reaches the phone.
                    self.lost += 1
                    self.down()
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)
            with self.lock:
                self.conns.discard(src)
                self.conns.discard(dst)

    def close(self):
        self.down()


def _close(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
