"""intake under a slowloris attack (issue 9, part 1), black-box.

About a thousand connections that send their request head a line at a
time must not keep /healthz and /readyz from answering, nor a normal POST
from going through: from one address (the per-address limit on
connections still waiting for their head), and from a thousand addresses
(127.0.0.2 and up: the whole of 127/8 is loopback), where only the global
limit, the reserve for the ops paths and the head deadline help. The head
deadline is a timer from accept to the end of the head, not an idle timer:
a connection that sends a byte every second is still closed once it runs
out.
"""
import errno
import select
import socket
import time

from harness import check, http
from intake_support import APP, post, report, start_intake, stop

N_SLOW = 1000
HEAD = b"POST /v1/reports HTTP/1.1\r\nHost: x\r\n"


def open_slow(port, n, many_addresses):
    """Opens n connections that start a request head and never finish it."""
    socks = []
    deadline = time.time() + 30
    for i in range(n):
        check(time.time() < deadline, "opening slow connections took over 30 s")
        s = socket.socket()
        s.setblocking(False)
        if many_addresses:
            # 127.0.0.2, 127.0.0.3, ... 127.0.3.235: one connection each.
            k = i + 2
            s.bind(("127.0.%d.%d" % (k // 250, k % 250 + 1), 0))
        err = s.connect_ex(("127.0.0.1", port))
        check(err in (0, errno.EINPROGRESS), "connect: %s" % errno.errorcode.get(err, err))
        socks.append(s)
    # Wait (bounded) for the connects to finish: the kernel completes them
    # from the listen backlog even when the server does not accept.
    p = select.poll()
    for s in socks:
        p.register(s, select.POLLOUT)
    pending, t0 = set(s.fileno() for s in socks), time.time()
    while pending and time.time() - t0 < 5:
        for fd, _ in p.poll(200):
            pending.discard(fd)
            p.unregister(fd)
    return socks


def trickle(socks):
    """Sends the next piece of each slow head: one header line."""
    for i, s in enumerate(socks):
        try:
            s.send(b"X-Slow-%d: 1\r\n" % i)
        except OSError:
            pass


def start_heads(socks):
    for s in socks:
        try:
            s.send(HEAD)
        except OSError:
            pass


def closed_by_server(s):
    """True once the server has closed the connection (EOF or reset)."""
    try:
        data = s.recv(4096)
        return data == b"" or b"HTTP/1.1" in data
    except BlockingIOError:
        return False
    except OSError:
        return True


def timed(fn):
    t0 = time.time()
    out = fn()
    return out, time.time() - t0


def check_service_answers(svc, key, what):
    """/healthz and /readyz within a second or two, and a POST that works."""
    for path in ("/healthz", "/readyz"):
        try:
            (status, _, _), took = timed(lambda: http("GET", svc.base + path, timeout=3))
        except OSError as e:
            raise AssertionError("%s: %s did not answer: %s" % (what, path, e))
        check(status == 200, "%s: %s answered %s" % (what, path, status))
        # The brief says within a second; the machine is shared, so 2 s.
        check(took < 2.0, "%s: %s took %.2f s" % (what, path, took))
    try:
        s, _, b = post(svc, key, report(description="during the attack"), timeout=5)
    except OSError as e:
        raise AssertionError("%s: POST failed: %s" % (what, e))
    check(s == 201, "%s: POST answered %s %r" % (what, s, b))


def closed_metric(svc, reason):
    """trygg_http_connections_closed_total for one reason."""
    _, _, data = http("GET", svc.base + "/metrics", timeout=5)
    for line in data.decode().splitlines():
        if line.startswith("trygg_http_connections_closed_total{") and \
                'reason="%s"' % reason in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no closed-connections metric for %s" % reason)


def close_all(socks):
    for s in socks:
        s.close()


def attack(svc, many_addresses, socks):
    """Opens the slow connections (into socks, for the caller to close),
    starts their heads and sends one more line half a second later."""
    socks.extend(open_slow(svc.http_port, N_SLOW, many_addresses))
    start_heads(socks)
    time.sleep(0.5)
    trickle(socks)


def test_intake_slowloris_one_address():
    svc, keys = start_intake()
    socks = []
    try:
        attack(svc, False, socks)
        check_service_answers(svc, keys[APP], "1000 slow connections from one address")
        # The per-address limit did it (not the global one, not time).
        check(closed_metric(svc, "per_addr") >= N_SLOW - 100, "per-address closes %s"
              % closed_metric(svc, "per_addr"))
        check(svc.alive(), "intake died")
    finally:
        close_all(socks)
    stop(svc)


def test_intake_slowloris_many_addresses_and_head_deadline():
    svc, keys = start_intake({"TRYGG_HTTP_HEAD_TIMEOUT": "3s"})
    socks = []
    try:
        attack(svc, True, socks)
        check_service_answers(svc, keys[APP], "1000 slow connections from 1000 addresses")
        check(closed_metric(svc, "per_addr") == 0, "one connection per address")
        # A byte every second never lets an idle timer fire; the head
        # deadline (3 s from accept) must close them all the same. Give it
        # until 9 s after the connects, bounded by count and time.
        t0 = time.time()
        open_socks = [s for s in socks if not closed_by_server(s)]
        for _ in range(12):
            if not open_socks or time.time() - t0 > 9:
                break
            time.sleep(0.75)
            trickle(open_socks)
            open_socks = [s for s in open_socks if not closed_by_server(s)]
        check(len(open_socks) == 0,
              "%d of %d slow connections still open %.1f s later (head deadline 3 s)"
              % (len(open_socks), len(socks), time.time() - t0))
        check(closed_metric(svc, "head_timeout") >= N_SLOW - 100, "head deadline closes %s"
              % closed_metric(svc, "head_timeout"))
        check_service_answers(svc, keys[APP], "after the head deadline")
        check(svc.alive(), "intake died")
    finally:
        close_all(socks)
    stop(svc)
