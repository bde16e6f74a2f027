"""A small Chrome DevTools Protocol client for the page tests.

Python's standard library only: headless Chromium is started with
--remote-debugging-port=0 and a throwaway --user-data-dir, and the client
speaks to it over its browser websocket (RFC 6455 written here) in flat
session mode, so one connection drives pages and service workers alike.

    with Browser.launch(tmpdir) as b:
        page = b.new_page()                       # a Session on a new tab
        page.navigate("http://127.0.0.1:8082/phone/?walk=...")
        page.evaluate("document.title")           # -> the value
        page.wait_for("document.body.dataset.ready === 'true'", 20)
        page.set_offline(True)                    # Network.emulateNetworkConditions
        png = page.screenshot()                   # bytes
        page.console                              # [(level, text), ...]

Every wait is bounded: each call takes a timeout and raises CdpError when it
runs out. Chromium is killed (its process group) when the Browser closes.
decode_png() reads a screenshot back into pixels, for checking it shows
something. Missing chromium is an error, not a skip: install-deps.sh
installs it.
"""
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import zlib


class CdpError(AssertionError):
    pass


def chromium_path():
    """The Chromium binary (Debian's `chromium`); raises when it is missing."""
    for name in (os.environ.get("TRYGG_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name:
            p = shutil.which(name)
            if p:
                return p
    raise CdpError("chromium is not installed (deploy/install-deps.sh installs it; "
                   "or set TRYGG_CHROMIUM to a Chromium binary)")


class WebSocket:
    """A client websocket (text frames, no extensions) over a plain socket."""

    def __init__(self, url, timeout=10):
        assert url.startswith("ws://"), url
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port or 80)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, hostport, key))
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CdpError("websocket handshake: connection closed")
            head += chunk
        head, _, self.buf = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise CdpError("websocket handshake refused: %r" % head[:200])

    def send(self, text):
        data = text.encode()
        n = len(data)
        if n < 126:
            hdr = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if n < 4096 else _mask(data, mask)
        self.sock.sendall(hdr + mask + masked)

    def _read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.time()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise CdpError("websocket closed by the browser")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout):
        """The next text message; raises socket.timeout after timeout s."""
        deadline = time.time() + timeout
        parts = []
        while True:
            b0, b1 = self._read(2, deadline)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2, deadline))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8, deadline))[0]
            mask = self._read(4, deadline) if b1 & 0x80 else None
            payload = self._read(n, deadline)
            if mask:
                payload = _mask(payload, mask)
            if op == 0x8:
                raise CdpError("websocket closed by the browser")
            if op == 0x9:  # ping: answer, masked as a client must
                m = os.urandom(4)
                self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + m + _mask(payload, m))
                continue
            if op in (0x1, 0x2, 0x0):
                parts.append(payload)
                if b0 & 0x80:
                    return b"".join(parts).decode()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _mask(data, mask):
    # XOR by whole integers: fast enough for megabyte screenshots.
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


class Connection:
    """One browser websocket; commands by id, events queued by session."""

    def __init__(self, ws_url):
        self.ws = WebSocket(ws_url)
        self.next_id = 0
        self.events = []  # (sessionId or None, method, params), oldest first
        self.listeners = []  # callables (session, method, params)

    def call(self, method, params=None, session=None, timeout=30):
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.time() + timeout
        while True:
            m = self._next(deadline, "reply to %s" % method)
            if m.get("id") == mid:
                if "error" in m:
                    raise CdpError("%s: %s" % (method, m["error"]))
                return m.get("result", {})

    def _next(self, deadline, what):
        left = deadline - time.time()
        if left <= 0:
            raise CdpError("timed out waiting for %s" % what)
        try:
            m = json.loads(self.ws.recv(left))
        except socket.timeout:
            raise CdpError("timed out waiting for %s" % what)
        if "method" in m:
            ev = (m.get("sessionId"), m["method"], m.get("params", {}))
            self.events.append(ev)
            for fn in self.listeners:
                fn(*ev)
        return m

    def wait_event(self, method, session=None, pred=None, timeout=30):
        """The first queued or arriving event `method` (for `session`, if
        given) with pred(params) true; it is taken off the queue."""
        deadline = time.time() + timeout
        while True:
            for i, (s, meth, params) in enumerate(self.events):
                if meth == method and (session is None or s == session) and (pred is None or pred(params)):
                    del self.events[i]
                    return params
            self._next(deadline, "event %s" % method)

    def pump(self, seconds):
        """Reads events for `seconds` (keeps listeners such as the console fed)."""
        deadline = time.time() + seconds
        try:
            while True:
                self._next(deadline, "events")
        except CdpError as e:
            if "timed out" not in str(e):
                raise

    def close(self):
        self.ws.close()


class Session:
    """One attached target (a page or a worker) in flat mode."""

    def __init__(self, conn, target_id, session_id, kind):
        self.conn = conn
        self.target_id = target_id
        self.id = session_id
        self.kind = kind
        self.console = []  # (level, text): console calls and uncaught exceptions
        conn.listeners.append(self._on_event)

    def _on_event(self, session, method, params):
        if session != self.id:
            return
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", a.get("type")))) for a in params.get("args", []))
            self.console.append((params.get("type"), text))
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.console.append(("exception", d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Log.entryAdded":
            e = params.get("entry", {})
            self.console.append((e.get("level"), "%s %s" % (e.get("text"), e.get("url", ""))))

    def call(self, method, params=None, timeout=30):
        return self.conn.call(method, params, session=self.id, timeout=timeout)

    def evaluate(self, expression, timeout=30, await_promise=True):
        """The value of a JS expression (promises awaited); JS errors raise."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": await_promise, "timeout": int(timeout * 1000)},
                      timeout=timeout + 5)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CdpError("JS error in %r: %s" % (expression[:120], d.get("exception", {}).get("description")
                                                   or d.get("text")))
        return r.get("result", {}).get("value")

    def wait_for(self, expression, timeout, what=None, interval=0.2):
        """Polls a JS expression until it is truthy; returns its value."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = self.evaluate(expression, timeout=max(1, min(10, deadline - time.time())))
                if last:
                    return last
            except CdpError as e:  # e.g. the page is navigating
                last = e
            self.conn.pump(interval)
        raise CdpError("timed out after %ss waiting for %s (last: %r)\nconsole:\n%s"
                       % (timeout, what or expression, last, self.console_text()))

    def navigate(self, url, timeout=30):
        """Navigates and waits for the load event."""
        self.conn.events = [e for e in self.conn.events if not (e[0] == self.id and e[1] == "Page.loadEventFired")]
        r = self.call("Page.navigate", {"url": url}, timeout=timeout)
        if r.get("errorText"):
            raise CdpError("navigate %s: %s" % (url, r["errorText"]))
        self.conn.wait_event("Page.loadEventFired", self.id, timeout=timeout)

    def reload(self, timeout=30, ignore_cache=False):
        self.conn.events = [e for e in self.conn.events if not (e[0] == self.id and e[1] == "Page.loadEventFired")]
        self.call("Page.reload", {"ignoreCache": ignore_cache}, timeout=timeout)
        self.conn.wait_event("Page.loadEventFired", self.id, timeout=timeout)

    def set_offline(self, offline):
        """Cuts (or restores) this target's network as DevTools' "Offline" does."""
        self.call("Network.emulateNetworkConditions", {
            "offline": bool(offline), "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})

    def screenshot(self, timeout=30):
        """A PNG of the viewport, as bytes."""
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"}, timeout=timeout)["data"])

    def console_text(self):
        return "\n".join("  %s: %s" % c for c in self.console[-40:])


class Browser:
    """A headless Chromium process and its DevTools connection."""

    def __init__(self, proc, conn, profile, own_profile):
        self.proc = proc
        self.conn = conn
        self.profile = profile
        self.own_profile = own_profile
        self.sessions = []

    @classmethod
    def launch(cls, tmpdir=None, extra_args=(), timeout=30, log_path=None):
        """Starts headless Chromium with a fresh profile under tmpdir."""
        binary = chromium_path()
        profile = tempfile.mkdtemp(prefix="chromium.", dir=tmpdir)
        args = [binary, "--headless=new", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
                "--user-data-dir=" + profile, "--no-first-run", "--no-default-browser-check",
                "--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--metrics-recording-only", "--mute-audio", "--password-store=basic",
                "--window-size=412,915"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root otherwise
        args += list(extra_args) + ["about:blank"]
        log = open(log_path or os.path.join(profile, "chromium.log"), "wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        conn = None
        try:
            port_file = os.path.join(profile, "DevToolsActivePort")
            deadline = time.time() + timeout
            lines = []
            while time.time() < deadline:
                if proc.poll() is not None:
                    raise CdpError("chromium exited with %s; log in %s" % (proc.returncode, log.name))
                try:
                    lines = open(port_file).read().split()
                except OSError:
                    lines = []
                if len(lines) >= 2:
                    break
                time.sleep(0.1)
            else:
                raise CdpError("chromium did not open its DevTools port within %ss" % timeout)
            conn = Connection("ws://127.0.0.1:%s%s" % (lines[0], lines[1]))
            return cls(proc, conn, profile, True)
        except BaseException:
            _kill(proc)
            if conn:
                conn.close()
            raise

    def attach(self, target_id, kind="page"):
        sid = self.conn.call("Target.attachToTarget", {"targetId": target_id, "flatten": True})["sessionId"]
        s = Session(self.conn, target_id, sid, kind)
        for domain in ("Runtime", "Log", "Network") + (("Page",) if kind == "page" else ()):
            s.call(domain + ".enable")
        self.sessions.append(s)
        return s

    def new_page(self, url="about:blank"):
        """A new tab, attached, with Page/Runtime/Network/Log enabled."""
        tid = self.conn.call("Target.createTarget", {"url": url})["targetId"]
        return self.attach(tid, "page")

    def service_workers(self, url_prefix=""):
        """Attached sessions for the running service workers under url_prefix."""
        out = []
        for t in self.conn.call("Target.getTargets")["targetInfos"]:
            if t["type"] == "service_worker" and t["url"].startswith(url_prefix):
                known = [s for s in self.sessions if s.target_id == t["targetId"]]
                out.append(known[0] if known else self.attach(t["targetId"], "service_worker"))
        return out

    def grant(self, origin, permissions):
        """Grants e.g. ["geolocation"] to an origin without a prompt."""
        self.conn.call("Browser.grantPermissions", {"origin": origin, "permissions": list(permissions)})

    def close(self):
        try:
            if self.conn:
                try:
                    self.conn.call("Browser.close", timeout=5)
                except Exception:
                    pass
                self.conn.close()
        finally:
            _kill(self.proc)
            if self.own_profile:
                shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _kill(proc):
    """Kills Chromium and its helpers (it runs in its own process group)."""
    if proc.poll() is None:
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def decode_png(data):
    """(width, height, rows) of an 8-bit RGB/RGBA PNG; rows are bytes of
    width*channels each, after undoing the scanline filters."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise CdpError("not a PNG")
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack("!I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack("!IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise CdpError("unsupported PNG (depth %d, colour type %d, interlace %d)" % (depth, ctype, interlace))
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 0xFF
            elif f == 2:
                line[x] = (line[x] + b) & 0xFF
            elif f == 3:
                line[x] = (line[x] + ((a + b) >> 1)) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return w, h, rows


def png_colours(data, step=4):
    """The set of distinct RGB colours seen on a grid of every step-th pixel."""
    w, h, rows = decode_png(data)
    bpp = len(rows[0]) // w
    seen = set()
    for y in range(0, h, step):
        r = rows[y]
        for x in range(0, w, step):
            seen.add(bytes(r[x * bpp:x * bpp + 3]))
    return seen
