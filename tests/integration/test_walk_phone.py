"""The walk on a phone (issue 10, item 7), in headless Chromium.

The phone page (services/walk-planner/web/, served at /phone/) is driven
over the DevTools protocol (cdp.py) through a proxy that stands for the
phone's network (walk_phone_support.Link): it can be cut, and it can lose
the answer to a POST after the server has stored the finding, which is
what makes a page send the same finding twice.

Which server: the real trygg-walk-planner when build/bin has it, else the
Python stand-in of walk_phone_support (the four endpoints of docs/walk-planner.md the page uses).
TRYGG_WALK_PHONE_SERVER=standin|real forces one. Each test prints which.
"""
import contextlib
import os
from types import SimpleNamespace

import cdp
from harness import BIN, TMP, check, http_json, wait_for
from walk_phone_support import (QUEUE_JS, Link, StandIn, items, no_page_errors, open_page, record,
                                set_offline, wait_states)

# Places of deploy/demo/places.geojson (the real service knows only those).
STOPS = [("sergels-torg", "Sergels torg", 59.3324, 18.0637),
         ("hotorget", "Hötorget", 59.3349, 18.0630),
         ("kungstradgarden", "Kungsträdgården", 59.3310, 18.0716)]
GPS = (59.33215, 18.06611)


class StandInServer:
    """The stand-in (walk_phone_support.StandIn) behind the same methods."""
    kind = "stand-in"

    def __init__(self):
        self.s = StandIn()
        self.port, self.base = self.s.port, self.s.base

    def create_walk(self, title):
        return self.s.create_walk(title, STOPS)

    def close(self):
        self.s.stop()


class RealServer:
    """The real trygg-walk-planner with its publishers around it
    (walks_support.Stack: stand-in intake and notifier, the demo places).
    A walk is made through the staff API, and the walk key is read from
    the walk's phone_url, as staff would hand it out."""
    kind = "real"
    BINARY = "trygg-walk-planner"

    def __init__(self):
        from walks_support import Stack  # walk-planner-core's test support
        self.st = Stack()
        self.port, self.base = self.st.wp.http_port, self.st.wp.base

    def create_walk(self, title):
        stops = [{"place": p, "name": n, "lat": la, "long": lo, "minutes": 10} for p, n, la, lo in STOPS]
        st, r = self.st.api("POST", "/v1/walks", {"title": title, "area": "norrmalm", "after_dark": True,
                                                  "starts_at": "2026-12-01T17:00:00+01:00", "stops": stops})
        check(st == 201 and r["walk"].get("phone_url"), "creating a walk: %s %s" % (st, r))
        return r["walk"]["walk_id"], r["walk"]["phone_url"].split("#key=")[1]

    def close(self):
        for s in (self.st.wp, self.st.intake, self.st.notifier):
            s.stop()


def walk_server():
    want = os.environ.get("TRYGG_WALK_PHONE_SERVER") or (
        "real" if os.path.exists(os.path.join(BIN, RealServer.BINARY)) else "standin")
    srv = RealServer() if want == "real" else StandInServer()
    print("  (phone page against the %s walk-planner)" % srv.kind, flush=True)
    return srv


def findings_on_server(srv, wid, key):
    st, r = http_json("GET", srv.base + "/v1/walks/%s/findings" % wid,
                      headers={"Authorization": "Bearer " + key})
    check(st == 200, "GET findings: %s %s" % (st, r))
    return r["findings"]


def post_finding(srv, wid, key, idem, body):
    return http_json("POST", srv.base + "/v1/walks/%s/findings" % wid, body,
                     headers={"Authorization": "Bearer " + key, "Idempotency-Key": idem})


def set_network(browser, page, link, online):
    """Cuts or restores the phone's network: the proxy and, as DevTools'
    Offline does, the page's and its service worker's own network."""
    if online:
        link.up()
    else:
        link.down()
    set_offline(browser, page, link.base, not online)


def check_screenshot(page, name):
    page.evaluate("document.getElementById('recorded').scrollIntoView()")
    png = page.screenshot()
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(png)
    w, h, _ = cdp.decode_png(png)
    colours = cdp.png_colours(png)
    check(len(png) > 10000 and w >= 300 and h >= 500, "screenshot %s too small: %d bytes, %dx%d" % (path, len(png), w, h))
    check(len(colours) > 20, "screenshot %s is nearly one colour (%d colours)" % (path, len(colours)))


@contextlib.contextmanager
def walk_on_phone(title):
    """A server with a walk, the Link and Chromium with the walk's page
    open; everything is stopped (Chromium killed) when the block ends."""
    srv = walk_server()
    link = Link(srv.port)
    browser = None
    try:
        wid, key = srv.create_walk(title)
        browser = cdp.Browser.launch(TMP)
        page = open_page(browser, link.base, wid, key, GPS)
        yield SimpleNamespace(srv=srv, link=link, browser=browser, page=page, wid=wid, key=key)
    finally:
        if browser:
            browser.close()
        link.close()
        srv.close()


# --- the tests ---

def test_offline_walk_syncs_each_finding_once():
    """One finding online; the network dies while the second is being sent
    (the server stored it, the answer is lost); a third offline; a reload
    offline shows the walk and both queued; back online, the server has
    exactly three, each with its key, and the page shows all three sent."""
    with walk_on_phone("Kvällsvandring Norrmalm") as t:
        srv, link, browser, page, wid, key = t.srv, t.link, t.browser, t.page, t.wid, t.key
        check(page.evaluate("location.hash") == "", "the key is cleared from the address bar")
        check(page.evaluate("document.getElementById('stop-name').textContent") == "Sergels torg",
              "the first stop is shown")

        record(page, "lighting", 4, "Trasig lampa vid trappan", {"lighting": 0, "feeling": 1},
               photo="https://example.org/p/1.jpg", gps=True)
        wait_states(page, ["sent"], 30, "the first finding sent")
        on_server = findings_on_server(srv, wid, key)
        check(len(on_server) == 1, "the server has the first finding: %s" % on_server)
        first = on_server[0]
        check(first.get("category") == "lighting" and first.get("severity") == 4, "as recorded: %s" % first)
        check(abs(float(first.get("lat")) - GPS[0]) < 1e-4, "with the phone's position: %s" % first)

        page.evaluate("document.getElementById('next').click()")
        page.wait_for("document.getElementById('stop-name').textContent === 'Hötorget'", 30, "stop 2")
        link.lose_next_post = True
        record(page, "vegetation", 2, "Buskar skymmer sikten", {"visibility": 1})
        wait_for(lambda: link.lost == 1, 30, "the answer to the second finding lost")
        set_network(browser, page, link, False)
        wait_states(page, ["sent", "queued"], 30, "the second finding still queued")
        check(len(findings_on_server(srv, wid, key)) == 2, "the server did store the second finding")
        page.wait_for("document.getElementById('net').dataset.online === 'false'", 30, "the page shows offline")

        record(page, "litter", 1, "Fulla papperskorgar", {"people": 2})
        wait_states(page, ["sent", "queued", "queued"], 30, "the third finding queued")
        before = {i["key"] for i in items(page)}
        check(len(before) == 3, "three distinct idempotency keys: %s" % before)

        page.reload()
        page.wait_for("document.body.dataset.ready === 'true'", 30, "the page ready again, offline")
        check(page.evaluate("document.getElementById('title').textContent") == "Kvällsvandring Norrmalm",
              "offline reload shows the walk")
        check(page.evaluate("document.getElementById('stop-name').textContent") == "Hötorget",
              "offline reload keeps the stop")
        wait_states(page, ["sent", "queued", "queued"], 30, "offline reload shows both queued")
        check(page.evaluate("document.getElementById('queue-count').dataset.queued") == "2", "2 in the queue")
        check({i["key"] for i in items(page)} == before, "the same findings, the same keys")
        check_screenshot(page, "walk_phone_offline.png")

        set_network(browser, page, link, True)
        wait_states(page, ["sent", "sent", "sent"], 60, "all three sent after the network came back")

        on_server = findings_on_server(srv, wid, key)
        descr = sorted(f.get("description") for f in on_server)
        check(len(on_server) == 3, "exactly three findings on the server, none doubled: %s" % descr)
        check(descr == sorted(["Trasig lampa vid trappan", "Buskar skymmer sikten", "Fulla papperskorgar"]),
              "none lost: %s" % descr)
        # The resend really happened (so the count above tested something).
        second = [i["key"] for i in items(page)][1]  # the list is newest first
        check(link.posted.count(second) >= 2,
              "the second finding was sent again after its answer was lost: %s" % link.posted)
        # Each finding carries its key: the same key and body again gives
        # the finding the page was told about, and no new one.
        queue = page.evaluate(QUEUE_JS)
        check(len(queue) == 3, "three in the page's store: %s" % queue)
        ids = {f["finding_id"] for f in on_server}
        for q in queue:
            check(q["finding_id"] in ids, "the page holds the server's finding id: %s" % q)
            st, r = post_finding(srv, wid, key, q["idem"], q["body"])
            check(st == 200 and r["finding"]["finding_id"] == q["finding_id"],
                  "key %s names finding %s: %s %s" % (q["idem"], q["finding_id"], st, r))
        check(len(findings_on_server(srv, wid, key)) == 3, "still three")
        check_screenshot(page, "walk_phone_synced.png")
        no_page_errors(page)


def test_rejected_finding_is_kept_and_the_rest_flow():
    """Three findings recorded offline; the server refuses the middle one
    (409: its key was used for another finding). Back online, the first and
    third are sent, the second shows the server's message and stays, also
    after a reload, and is not sent again by itself, nor forgotten with the
    old sent ones; the user can then send it as a new finding, and it lands
    once."""
    with walk_on_phone("Vandring Vasastan") as t:
        srv, link, browser, page, wid, key = t.srv, t.link, t.browser, t.page, t.wid, t.key
        set_network(browser, page, link, False)
        record(page, "graffiti", 2, "Klotter på elskåp")
        record(page, "lighting", 5, "Mörk gångtunnel", {"lighting": 0})
        record(page, "traffic", 3, "Skymd övergång")
        wait_states(page, ["queued", "queued", "queued"], 30, "three queued offline")
        queue = page.evaluate(QUEUE_JS)
        middle = queue[1]
        other = dict(middle["body"], description="Något helt annat")
        st, r = post_finding(srv, wid, key, middle["idem"], other)
        check(st == 201, "the middle key taken by another finding: %s %s" % (st, r))

        set_network(browser, page, link, True)
        wait_states(page, ["sent", "error", "sent"], 60, "first and third sent, the middle in error")
        text = [i for i in items(page) if i["key"] == middle["idem"]][0]["text"]
        check("Idempotency-Key" in text or "409" in text or "key" in text.lower(),
              "the error shows the server's message: %r" % text)

        page.reload()
        page.wait_for("document.body.dataset.ready === 'true'", 30, "the page ready again")
        wait_states(page, ["sent", "error", "sent"], 30, "the refused finding kept after a reload")
        page.evaluate("document.getElementById('sync').click()")
        page.conn.pump(2)
        wait_states(page, ["sent", "error", "sent"], 30, "still kept after another sync")
        check(link.posted.count(middle["idem"]) == 1,
              "the refused finding is not sent again by itself: %s" % link.posted)
        descr = sorted(f.get("description") for f in findings_on_server(srv, wid, key))
        check(descr == sorted(["Klotter på elskåp", "Skymd övergång", "Något helt annat"]),
              "the server has the two sent and the other finding: %s" % descr)
        check_screenshot(page, "walk_phone_error.png")

        # Sent findings are forgotten by the phone after a fortnight; the
        # refused one never is.
        page.evaluate("""TryggQueue.listFindings(null).then(all => TryggQueue.openDb().then(db =>
            new Promise((ok, fail) => { const t = db.transaction('findings', 'readwrite');
              all.forEach(i => { i.sent_at = i.state === 'sent' && i.body.category === 'graffiti'
                ? new Date(Date.now() - 15 * 86400e3).toISOString() : i.sent_at;
                t.objectStore('findings').put(i); });
              t.oncomplete = ok; t.onerror = fail; })))""")
        page.reload()
        page.wait_for("document.body.dataset.ready === 'true'", 30, "the page ready again")
        wait_states(page, ["error", "sent"], 30, "the old sent finding forgotten, the refused one kept")

        # The user sends it again as a new finding (a new key): now it lands, once.
        page.evaluate("document.querySelector('#findings li[data-state=error] button.retry').click()")
        wait_states(page, ["sent", "sent"], 60, "the refused finding sent as new")
        descr = sorted(f.get("description") for f in findings_on_server(srv, wid, key))
        check(descr == sorted(["Klotter på elskåp", "Mörk gångtunnel", "Skymd övergång", "Något helt annat"]),
              "the refused finding is on the server once: %s" % descr)
        no_page_errors(page)
