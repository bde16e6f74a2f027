"""Headless Chromium driven over the DevTools protocol, for page tests.

Standard library only. A stand-in until the shared tests/integration/cdp.py
(walk-planner-phone's branch) lands; it offers the same small surface, so a
test written against one runs against the other:

    b = Browser.launch(tmpdir)            # headless, --no-sandbox as root
    page = b.new_page()                   # Page/Runtime/Log enabled
    page.navigate(url)                    # waits for the load event
    page.evaluate("js")                   # the value; JS errors raise
    page.wait_for("js", 20, "what")       # polls until truthy
    page.call("Domain.method", {...})     # any other command
    page.screenshot()                     # PNG bytes
    page.console                          # [(level, text)], errors included
    b.close()                             # kills the process group
    decode_png(data) -> (w, h, rows)      # rows of unfiltered pixel bytes

Every wait is bounded and raises CdpError when its time runs out.
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


def _chromium():
    for name in (os.environ.get("TRYGG_CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise CdpError("chromium is not installed (apt-get install chromium, or set TRYGG_CHROMIUM)")


class _Socket:
    """Just enough RFC 6455 for DevTools: masked text out, frames in."""

    def __init__(self, url, timeout):
        hostport, _, path = url[len("ws://"):].partition("/")
        host, _, port = hostport.partition(":")
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                        % (path, hostport, key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            more = self.s.recv(4096)
            if not more:
                raise CdpError("DevTools closed the websocket handshake")
            self.buf += more
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise CdpError("DevTools refused the websocket: %r" % head[:120])

    @staticmethod
    def _xor(data, mask):
        n = len(data)
        k = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        return (int.from_bytes(data, "big") ^ k).to_bytes(n, "big")

    def send(self, text, opcode=0x1):
        data = text.encode() if isinstance(text, str) else text
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
        mask = os.urandom(4)
        self.s.sendall(head + mask + (self._xor(data, mask) if n else b""))

    def _take(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.time()
            if left <= 0:
                raise socket.timeout()
            self.s.settimeout(left)
            more = self.s.recv(1 << 20)
            if not more:
                raise CdpError("the browser closed its DevTools socket")
            self.buf += more
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, deadline):
        """One whole message; socket.timeout at the deadline."""
        parts = []
        while True:
            b0, b1 = self._take(2, deadline)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._take(2, deadline))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._take(8, deadline))[0]
            mask = self._take(4, deadline) if b1 & 0x80 else None
            data = self._take(n, deadline)
            if mask:
                data = self._xor(data, mask)
            op = b0 & 0x0F
            if op == 0x8:
                raise CdpError("the browser closed its DevTools socket")
            if op == 0x9:
                self.send(data, 0xA)
                continue
            if op in (0x0, 0x1, 0x2):
                parts.append(data)
                if b0 & 0x80:
                    return b"".join(parts).decode()


class Page:
    """One tab, attached in flat mode over the browser's socket."""

    def __init__(self, browser, target, session):
        self.browser = browser
        self.target = target
        self.session = session
        self.console = []

    def call(self, method, params=None, timeout=30):
        return self.browser._call(method, params, self.session, timeout)

    def _event(self, method, params):
        if method == "Runtime.consoleAPICalled":
            args = params.get("args", [])
            self.console.append((params.get("type"), " ".join(
                str(a.get("value", a.get("description", ""))) for a in args)))
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.console.append(("exception", (d.get("exception") or {}).get("description") or d.get("text")))
        elif method == "Log.entryAdded":
            e = params.get("entry", {})
            self.console.append((e.get("level"), "%s %s" % (e.get("text"), e.get("url", ""))))

    def evaluate(self, expr, timeout=30):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True,
                                           "timeout": int(timeout * 1000)}, timeout + 5)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CdpError("JS error in %r: %s" % (expr[:100], (d.get("exception") or {}).get("description")
                                                  or d.get("text")))
        return r.get("result", {}).get("value")

    def wait_for(self, expr, timeout, what=None, interval=0.2):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = self.evaluate(expr, max(1, min(10, deadline - time.time())))
                if last:
                    return last
            except CdpError as e:
                last = e
            self.browser.pump(interval)
        raise CdpError("timed out after %ss waiting for %s (last %r); console: %r"
                       % (timeout, what or expr, last, self.console[-10:]))

    def navigate(self, url, timeout=30):
        self.browser.loads.discard(self.session)
        r = self.call("Page.navigate", {"url": url}, timeout)
        if r.get("errorText"):
            raise CdpError("navigating to %s: %s" % (url, r["errorText"]))
        deadline = time.time() + timeout
        while self.session not in self.browser.loads:
            if time.time() > deadline:
                raise CdpError("%s did not load within %ss" % (url, timeout))
            self.browser.pump(0.1)

    def screenshot(self, timeout=30):
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"}, timeout)["data"])


class Browser:
    def __init__(self, proc, profile):
        self.proc = proc
        self.profile = profile
        self.sock = None
        self.next_id = 0
        self.pages = {}
        self.loads = set()

    @classmethod
    def launch(cls, tmpdir=None, extra_args=(), timeout=30):
        profile = tempfile.mkdtemp(prefix="chromium.", dir=tmpdir)
        args = [_chromium(), "--headless=new", "--remote-debugging-port=0", "--user-data-dir=" + profile,
                "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--mute-audio", "--hide-scrollbars", "--window-size=1280,900"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium will not start as root without it
        args += list(extra_args) + ["about:blank"]
        with open(os.path.join(profile, "chromium.log"), "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        b = cls(proc, profile)
        try:
            deadline = time.time() + timeout
            port_file = os.path.join(profile, "DevToolsActivePort")
            while True:
                if proc.poll() is not None:
                    raise CdpError("chromium exited with %s" % proc.returncode)
                try:
                    lines = open(port_file).read().split()
                except OSError:
                    lines = []
                if len(lines) >= 2:
                    break
                if time.time() > deadline:
                    raise CdpError("chromium opened no DevTools port within %ss" % timeout)
                time.sleep(0.1)
            b.sock = _Socket("ws://127.0.0.1:%s%s" % (lines[0], lines[1]), timeout)
            return b
        except BaseException:
            b.close()
            raise

    def _dispatch(self, m):
        s = m.get("sessionId")
        if m.get("method") == "Page.loadEventFired":
            self.loads.add(s)
        if s in self.pages:
            self.pages[s]._event(m["method"], m.get("params", {}))

    def _call(self, method, params=None, session=None, timeout=30):
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.sock.send(json.dumps(msg))
        deadline = time.time() + timeout
        while True:
            try:
                m = json.loads(self.sock.recv(deadline))
            except socket.timeout:
                raise CdpError("no answer to %s within %ss" % (method, timeout))
            if m.get("id") == mid:
                if "error" in m:
                    raise CdpError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self._dispatch(m)

    def pump(self, seconds):
        """Reads events for a while (console messages, load events)."""
        deadline = time.time() + seconds
        while True:
            try:
                m = json.loads(self.sock.recv(deadline))
            except socket.timeout:
                return
            if "method" in m:
                self._dispatch(m)

    def new_page(self):
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        self.pages[session] = page
        for domain in ("Page", "Runtime", "Log"):
            page.call(domain + ".enable")
        return page

    def close(self):
        if self.sock:
            try:
                self._call("Browser.close", timeout=5)
            except Exception:
                pass
            self.sock.s.close()
        if self.proc.poll() is None:
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its renderers and helpers too
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self.profile, ignore_errors=True)


def decode_png(data):
    """(width, height, rows) of an 8-bit RGB or RGBA PNG, filters undone."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise CdpError("not a PNG")
    pos, chunks, ihdr = 8, [], None
    while pos + 8 <= len(data):
        n, kind = struct.unpack("!I4s", data[pos:pos + 8])
        if kind == b"IHDR":
            ihdr = struct.unpack("!IIBBBBB", data[pos + 8:pos + 21])
        elif kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + n])
        pos += n + 12
    w, h, depth, colour, _, _, interlace = ihdr
    if depth != 8 or colour not in (2, 6) or interlace:
        raise CdpError("PNG kind not handled: depth %d colour %d interlace %d" % (depth, colour, interlace))
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = w * bpp
    if len(raw) != h * (stride + 1):
        raise CdpError("PNG data is %d bytes, expected %d" % (len(raw), h * (stride + 1)))
    rows, up = [], bytes(stride)
    for y in range(h):
        ftype = raw[y * (stride + 1)]
        cur = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ftype == 2:
            cur = bytearray((a + b) & 0xFF for a, b in zip(cur, up))
        elif ftype != 0:
            for i in range(stride):
                left = cur[i - bpp] if i >= bpp else 0
                if ftype == 1:
                    cur[i] = (cur[i] + left) & 0xFF
                elif ftype == 3:
                    cur[i] = (cur[i] + ((left + up[i]) >> 1)) & 0xFF
                else:
                    ul = up[i - bpp] if i >= bpp else 0
                    p = left + up[i] - ul
                    pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - ul)
                    cur[i] = (cur[i] + (left if pa <= pb and pa <= pc else up[i] if pb <= pc else ul)) & 0xFF
        rows.append(bytes(cur))
        up = cur
    return w, h, rows
