"""The reporting page in headless Chromium, as district staff use it.

A new user opens the page, picks last quarter and Southern Johannes, sees
the map, the trends, response times against their targets, the walk
findings and the survey beside them; the downloads carry the same query;
with a staff key they write a comment and publish a version, which then
opens read-only with its publisher. Checked: no console errors, one map
path per place, every number marked data-figure equals the picture JSON
(formatted as the page formats it; suppressed ones "<5"), print media hides
the controls and greys the map, and screenshots are real images.

Backend: the real build/bin/trygg-reporting when it exists (see
_real_backend); until reporting-core's branch is merged, a STAND-IN server
in this file serves the page's files from services/reporting/web/ and
answers the endpoints of docs/reporting.md with a fixed picture over the places of
deploy/demo/places.geojson. The assertions compare the page with whatever
JSON the backend answered, so they hold for both.
"""
import datetime
import decimal
import json
import os
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import BIN, ROOT, TMP, check, free_port, http

import cdp  # the one Chrome DevTools Protocol client of the tests

WEB = os.path.join(ROOT, "services/reporting/web")
STAFF_KEY = "staff-key-for-the-page-test"  # the stand-in's

# ---- the page's number formats, mirrored (picture.js fmt*) ----

NBSP = "\u00a0"


def _half_up(x, places):
    q = decimal.Decimal(1).scaleb(-places)
    return decimal.Decimal(x).quantize(q, rounding=decimal.ROUND_HALF_UP)


def _int(n):
    s = "{:,}".format(int(_half_up(abs(n), 0))).replace(",", NBSP)
    return ("\u2212" if n < 0 else "") + s


def _dec(x, places):
    s = str(_half_up(x, places)).replace(".", ",")
    return s.replace("-", "\u2212")


def fmt(kind, v, suppressed):
    """What picture.js shows for value v in format kind."""
    if v is None:
        return "<5" if suppressed else "\u2013"
    if kind == "count":
        return _int(v)
    if kind == "share":
        return "%d%s%%" % (int(_half_up(v * 100, 0)), NBSP)
    if kind == "minutes":
        if v < 60:
            return "%d%smin" % (int(_half_up(v, 0)), NBSP)
        h = v / 60
        if h < 10:
            return _dec(h, 1) + NBSP + "h"
        if h < 72:
            return _int(h) + NBSP + "h"
        return _dec(h / 24, 1) + NBSP + "d"
    if kind == "percent":
        return re.sub(",0$", "", _dec(v, 1)) + NBSP + "%"
    if kind == "score":
        return _dec(v, 1)
    return str(v)


def resolve(doc, path):
    """(value, suppressed) at a data-figure path: dotted keys, array indexes
    as numbers; suppressed is the flag of the count object holding it."""
    cur, parent = doc, None
    for seg in path.split("."):
        parent = cur
        if isinstance(cur, list):
            cur = cur[int(seg)]
        else:
            check(isinstance(cur, dict) and seg in cur, "data-figure %r: no %r in the JSON" % (path, seg))
            cur = cur[seg]
    return cur, bool(isinstance(parent, dict) and parent.get("suppressed"))


# ---- periods, as the service defines them ----

def _add_months(d, n):
    m = d.year * 12 + d.month - 1 + n
    return datetime.date(m // 12, m % 12 + 1, 1)


def last_quarter(today=None):
    t = today or datetime.date.today()
    q = datetime.date(t.year, (t.month - 1) // 3 * 3 + 1, 1)
    return _add_months(q, -3)


def _period(q):
    kind = q.get("period", "quarter")
    at = datetime.date.fromisoformat(q.get("at") or datetime.date.today().isoformat())
    if kind == "custom":
        f, t = datetime.date.fromisoformat(q["from"]), datetime.date.fromisoformat(q["to"])
        return {"kind": "custom", "from": f.isoformat(), "to": t.isoformat(), "label": "%s - %s" % (f, t)}
    if kind == "month":
        f = datetime.date(at.year, at.month, 1)
        t = _add_months(f, 1)
        label = f.strftime("%Y-%m")
    elif kind == "year":
        f, t = datetime.date(at.year, 1, 1), datetime.date(at.year + 1, 1, 1)
        label = str(at.year)
    else:
        f = datetime.date(at.year, (at.month - 1) // 3 * 3 + 1, 1)
        t = _add_months(f, 3)
        label = "Q%d %d" % ((f.month - 1) // 3 + 1, f.year)
    return {"kind": kind, "from": f.isoformat(), "to": t.isoformat(), "label": label}


# ---- STAND-IN backend (until trygg-reporting is built on this branch) ----

def demo_places():
    with open(os.path.join(ROOT, "deploy/demo/places.geojson")) as f:
        return json.load(f)


class StandIn:
    """Serves the page's files and docs/reporting.md's endpoints with a
    fixed picture, shaped as reporting-core's service answers."""

    def __init__(self):
        self.places = demo_places()
        self.comments = {}  # (period from, area) -> {section: text}
        self.versions = []
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.staff_key = STAFF_KEY
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer._handle(self, "GET")

            def do_PUT(self):
                outer._handle(self, "PUT")

            def do_POST(self):
                outer._handle(self, "POST")

        self.srv = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()

    def _audience(self, h):
        return "staff" if h.headers.get("Authorization") == "Bearer " + STAFF_KEY else "public"

    def picture(self, q, audience):
        period = _period(q)
        area = q.get("area", "district")
        names = {f["properties"]["slug"]: f["properties"]["name"] for f in self.places["features"]}
        slugs = [f["properties"]["slug"] for f in self.places["features"] if f["properties"]["kind"] == "place"]
        pub = audience == "public"

        def c(v, prev, ly):
            vals = [v, prev, ly]
            sup = pub and any(x is not None and x < 5 for x in vals)
            out = {"value": v, "previous": prev, "last_year": ly}
            if sup:
                out = {k: (None if x is not None and x < 5 else x) for k, x in out.items()}
                out["suppressed"] = True
            return out

        in_survey = {"johannes": ["sodra-johannes", "hotorget"],
                     "norrmalm-city": ["sergels-torg", "klarakvarteren", "centralstationen", "kungstradgarden"]}
        by_place = []
        for i, s in enumerate(slugs):
            if area.startswith("survey:") and s not in in_survey.get(area[7:], []):
                continue
            if area.startswith("place:") and s != area[6:]:
                continue
            n = [31, 12, 24, 3, 17, 46, 9, 6, 2, 14][i % 10]
            night = n * [5, 3, 4, 1, 6, 7, 2, 3, 1, 4][i % 10] // 10
            by_place.append({"place": s, "name": names[s], "count": c(n, n + 7 - 3 * i, n + 2),
                             "day": c(n - night, n - night, n - night + 1), "night": c(night, night + 1, night),
                             "repeat_reports": i % 4, "reopened": i % 3})
        tot = sum(p["count"]["value"] or 0 for p in by_place) + 2
        cats = [("litter", "Litter", "physical_environment", False, 1440, 52, 11),
                ("graffiti", "Graffiti", "physical_environment", False, 1440, 23, 9),
                ("lighting", "Broken lighting", "physical_environment", False, 4320, 14, 12),
                ("sleeping_outdoors", "Sleeping outdoors", "social_vulnerability", False, 240, 8, 5),
                ("drug_dealing", "Drug dealing", "crime", True, 60, 3, 3),
                ("traffic", "Traffic hazard", "traffic_safety", False, 1440, 6, 1)]
        weeks = []
        d = datetime.date.fromisoformat(period["from"])
        end = datetime.date.fromisoformat(period["to"])
        i = 0
        while d < end:
            n = [9, 14, 11, 3, 17, 21, 12, 8, 15, 19, 4, 10, 13, 7][i % 14]
            b = {"start": d.isoformat(), "count": n, "night": n * 4 // 10}
            for k in ("count", "night"):
                if pub and b[k] < 5:
                    b[k] = None
                    b["suppressed"] = True
            weeks.append(b)
            d += datetime.timedelta(days=7)
            i += 1

        def rt(n, med, p90, share):
            return {"n": n, "median_min": med, "p90_min": p90, "within_target_share": share}

        comments = self.comments.get((period["from"], area), {})
        return {
            "period": period,
            "previous": {"from": _add_months(datetime.date.fromisoformat(period["from"]), -3).isoformat(),
                         "to": period["from"]},
            "last_year": {"from": period["from"].replace(period["from"][:4], str(int(period["from"][:4]) - 1), 1),
                          "to": period["to"].replace(period["to"][:4], str(int(period["to"][:4]) - 1), 1)},
            "area": {"kind": area.split(":")[0], "slug": area.split(":")[-1],
                     "name": ("Norrmalm" if area == "district" else
                              names.get(area.split(":")[-1], area.split(":")[-1].capitalize()))},
            "audience": audience,
            "generated_at": "2026-11-30T10:00:00Z",
            "suppression": {"threshold": 5, "suppressed_cells": 7 if pub else 0},
            "totals": {"reports": c(tot, tot - 12, tot + 5), "day": c(tot - 61, tot - 70, tot - 50),
                       "night": c(61, 58, 60)},
            "by_category": [{"category": k, "name": nm, "focus_area": fa, "sensitive": se,
                             "count": c(n, n + 3, n - 2), "day": c(n - nt, n - nt, n - nt),
                             "night": c(nt, nt, nt)} for k, nm, fa, se, _, n, nt in cats],
            "by_focus_area": [{"focus_area": "physical_environment", "name": "Physical environment", "count": c(89, 80, 95)},
                              {"focus_area": "social_vulnerability", "name": "Social vulnerability", "count": c(8, 9, 4)},
                              {"focus_area": "crime", "name": "Crime", "count": c(3, 2, 6)}],
            "by_place": by_place,
            "hotspots": [{"rank": 1, "place": "sodra-johannes", "name": names["sodra-johannes"], "score": 12.5,
                          "reports": 17, "night": 11,
                          "explanation": "17 reports, 11 after dark, lighting 5; survey: worry late evening 31 %"},
                         {"rank": 2, "place": "sergels-torg", "name": names["sergels-torg"], "score": 9.25,
                          "reports": 31, "night": 15, "explanation": "31 reports, 15 after dark, litter 12"}],
            "trend": {"bucket": "week", "series": weeks},
            "response": {
                "ack": rt(101, 42.0, 610.5, 0.915), "done": rt(96, 1260.0, 3900.0, 0.7812),
                "overdue_now": 4,
                "by_unit": [{"unit": "cleaning-north", "ack": rt(70, 35.0, 300.0, 0.95),
                             "done": rt(68, 1100.0, 2600.0, 0.84), "overdue_now": 2},
                            {"unit": "lighting-crew", "ack": rt(14, 95.0, 900.0, 0.8),
                             "done": rt(12, 5100.0, 9000.0, 0.5), "overdue_now": 2}],
                "by_category": [{"category": k, "target_min": tgt,
                                 "ack": rt(n, tgt / 20 + 7, tgt / 4 + 11, 0.97),
                                 "done": rt(n, tgt * 0.6, tgt * 1.7, 0.75 + i * 0.03)}
                                for i, (k, nm, fa, se, tgt, n, nt) in enumerate(cats) if not se]},
            "walks": {"walks": 4, "findings": 37, "by_status": {"accepted": 9, "in_progress": 6, "done": 15, "verified": 4,
                                                             "declined": 3},
                      "done_within_6_months_share": 0.6667, "overdue": 5,
                      "declined": [{"owner": "Trafikkontoret", "count": 2}, {"owner": "Fastighetsägare AB", "count": 1}]},
            "survey": [{"area": "johannes", "name": "Johannes", "survey": "trygghetsmatning",
                        "year": 2025, "illustrative": True,
                        "indicators": [{"indicator": "worry_late_evening", "value": 31.0, "unit": "percent"},
                                       {"indicator": "avoid_places", "value": 18.5, "unit": "percent"}],
                        "reports": c(17, 12, 20)},
                       {"area": "norrmalm-city", "name": "Norrmalm city", "survey": "trygghetsmatning",
                        "year": 2025, "illustrative": True,
                        "indicators": [{"indicator": "worry_late_evening", "value": 22.0, "unit": "percent"},
                                       {"indicator": "avoid_places", "value": 12.0, "unit": "percent"}],
                        "reports": c(3, 4, 2)}],
            "comments": dict(comments),
            "version": None,
        }

    def _handle(self, h, method):
        u = urllib.parse.urlsplit(h.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""

        def send(status, ctype, data):
            data = data if isinstance(data, bytes) else data.encode()
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        def js(status, obj):
            send(status, "application/json", json.dumps(obj))

        p = u.path
        if method == "GET" and (p == "/" or p.startswith("/static/")):
            name = "index.html" if p == "/" else p[len("/static/"):]
            path = os.path.join(WEB, name)
            if "/" in name or not os.path.isfile(path):
                return js(404, {"error": {"code": "not_found", "message": "no such file"}})
            types = {"html": "text/html", "js": "text/javascript", "css": "text/css"}
            return send(200, types.get(name.rsplit(".", 1)[-1], "application/octet-stream") + "; charset=utf-8",
                        open(path, "rb").read())
        aud = self._audience(h)
        if method == "GET" and p == "/v1/places":
            return js(200, self.places)
        if method == "GET" and p == "/v1/picture":
            return js(200, self.picture(q, aud))
        if method == "GET" and p == "/v1/picture.csv":
            pic = self.picture(q, aud)
            t = pic["totals"]["reports"]
            return send(200, "text/csv; charset=utf-8", "section,key,name,value,previous,last_year\n"
                        "totals,reports,Reports,%s,%s,%s\n" % (t["value"], t["previous"], t["last_year"]))
        if method == "GET" and p == "/v1/picture.geojson":
            return js(200, {"type": "FeatureCollection", "features": [
                f for f in self.places["features"] if f["properties"]["kind"] == "place"]})
        if method == "PUT" and p == "/v1/comments":
            if aud != "staff":
                return js(401, {"error": {"code": "unauthorized", "message": "a staff or police key is needed"}})
            b = json.loads(body)
            if not re.match(r"^(summary|focus_area:[a-z_]+|place:[a-z0-9_-]+)$", b.get("section", "")):
                return js(400, {"error": {"code": "invalid_parameter", "field": "section",
                                          "message": "section is summary, focus_area:<code> or place:<slug>"}})
            self.comments.setdefault((b["period"]["from"], b["area"]), {})[b["section"]] = b["text"]
            return js(200, {"ok": True})
        if method == "POST" and p == "/v1/versions":
            if aud != "staff":
                return js(401, {"error": {"code": "unauthorized", "message": "a staff or police key is needed"}})
            b = json.loads(body)
            per = b["period"]
            pic = self.picture({"period": per["kind"], "at": per["from"], "from": per["from"], "to": per["to"],
                                "area": b["area"]}, "public")
            v = {"id": "v%d" % (len(self.versions) + 1), "published_at": "2026-11-30T10:15:00Z",
                 "published_by": "norrmalm-staff", "period": pic["period"], "area": b["area"],
                 "area_name": pic["area"]["name"]}
            pic["version"] = v
            self.versions.append((v, pic))
            return js(201, {"version": v})
        if method == "GET" and p == "/v1/versions":
            return js(200, {"versions": [v for v, _ in self.versions]})
        m = re.match(r"^/v1/versions/([^/]+)$", p)
        if method == "GET" and m:
            for v, pic in self.versions:
                if v["id"] == m.group(1):
                    return js(200, pic)
            return js(404, {"error": {"code": "not_found", "message": "no such version"}})
        return js(404, {"error": {"code": "not_found", "message": "no route"}})


def _backend():
    """The real service with events flowing when it is built and its test
    support is here (after reporting-core's branch is merged); else the
    STAND-IN above."""
    have_real = (os.path.exists(os.path.join(BIN, "trygg-reporting"))
                 and os.path.exists(os.path.join(BIN, "trygg-eventpub"))
                 and os.path.exists(os.path.join(os.path.dirname(__file__), "reporting_support.py")))
    if have_real and os.environ.get("TRYGG_PAGE_STAND_IN") != "1":
        return RealBackend()
    return StandIn()


class RealBackend:
    """trygg-reporting with stand-in publishers (reporting_support.Stack)
    fed events: reports at the demo places in last quarter, the quarter
    before and a year earlier, tasks acknowledged and done around their
    24-hour target, a walk with findings and a survey area over Southern
    Johannes."""

    def __init__(self):
        import reporting_support as rs
        self.st = rs.Stack()
        self.base = self.st.reporting.base
        self.staff_key = self.st.staff
        places = demo_places()["features"]
        centre = {}
        for f in places:
            if f["properties"]["kind"] == "place":
                ring = f["geometry"]["coordinates"][0][:-1]
                centre[f["properties"]["slug"]] = (sum(p[1] for p in ring) / len(ring),
                                                   sum(p[0] for p in ring) / len(ring))
        lq = last_quarter()
        starts = [lq, _add_months(lq, -3), datetime.date(lq.year - 1, lq.month, 1)]
        cats = [("litter", 1440, False), ("lighting", 4320, False), ("graffiti", 1440, False),
                ("sleeping_outdoors", 240, False), ("drug_dealing", 60, True)]
        slugs = sorted(centre)
        reports, tasks = [], []
        for k, start in enumerate(starts):
            for i, slug in enumerate(slugs):
                n = [14, 3, 9, 1, 22, 6, 0, 11, 4, 7][i % 10] + (3 - k)
                for j in range(max(0, n)):
                    cat, target, sensitive = cats[(i + j) % len(cats)]
                    day = 1 + (j * 7 + i) % 80
                    at = rs.local(start.year, start.month, 1, 9 + j % 12) + datetime.timedelta(days=day)
                    rid = rs.new_id()
                    la, lo = centre[slug]
                    reports.append(("trygg.events.ReportReceived", rs.report_received(
                        rid, cat, at, places=(slug,), night=(j % 3 == 0), target=target,
                        sensitive=sensitive, lat=la, lon=lo,
                        focus="crime" if sensitive else "physical_environment")))
                    if j % 2 == 0:
                        t = rs.new_id()
                        tasks += [("trygg.events.TaskOpened", rs.task_opened(t, rid, cat, slug, at)),
                                  ("trygg.events.TaskAcknowledged", rs.task_acked(
                                      t, "cleaning-north", at + datetime.timedelta(minutes=25 + 7 * j))),
                                  ("trygg.events.TaskCompleted", rs.task_completed(
                                      t, at + datetime.timedelta(hours=6 + 5 * (j % 7))))]
        box = {"type": "Polygon", "coordinates": [[[18.060, 59.334], [18.072, 59.334], [18.072, 59.3395],
                                                   [18.060, 59.3395], [18.060, 59.334]]]}
        w = rs.new_id()
        walk_at = rs.local(lq.year, lq.month, 12, 19)
        walks = [("trygg.walks.WalkUpdated", rs.walk_updated(w, 1, "sodra-johannes", "walked", walk_at,
                                                            places=["sodra-johannes", "hotorget"])),
                 ("trygg.walks.SurveyFiguresLoaded", rs.survey_loaded(
                     "trygghetsmatning", lq.year - 1, [("johannes", "Johannes", box)],
                     [("johannes", "worry_late_evening", 31.0, "percent"),
                      ("johannes", "avoid_places", 18.5, "percent")]))]
        for i, status in enumerate(["proposed", "accepted", "done", "done", "declined"]):
            walks.append(("trygg.walks.FindingUpdated", rs.finding_updated(
                rs.new_id(), 1, w, "sodra-johannes", "lighting", status, walk_at,
                status_at=walk_at + datetime.timedelta(days=10) if status == "done" else None,
                owner="Trafikkontoret" if status == "declined" else "")))
        self.st.publish_many("walk-planner", walks)
        self.st.wait_applied(60)  # survey areas before the reports that lie in them
        self.st.publish_many("intake", reports)
        self.st.publish_many("notifier", tasks)
        self.st.wait_applied(90)

    def close(self):
        pass  # the harness kills the services after each test


# ---- the page ----

def _page_figures(page):
    return page.evaluate("""Array.from(document.querySelectorAll('[data-figure]')).map(e =>
        [e.getAttribute('data-figure'), e.getAttribute('data-format'), e.textContent])""")


def _check_figures(page, pic):
    figs = _page_figures(page)
    check(len(figs) >= 60, "only %d numbers carry data-figure" % len(figs))
    paths = {f[0] for f in figs}
    for must in ("totals.reports.value", "totals.night.value", "response.done.median_min",
                 "walks.findings", "survey.0.indicators.0.value", "by_place.0.count.value",
                 "trend.series.0.count", "response.by_category.0.done.within_target_share"):
        check(must in paths, "no element shows %s" % must)
    wrong = []
    suppressed_shown = 0
    for path, kind, text in figs:
        v, sup = resolve(pic, path)
        want = fmt(kind, v, sup)
        if text != want:
            wrong.append((path, text, want))
        if text == "<5":
            suppressed_shown += 1
    check(not wrong, "numbers differ from the JSON (path, shown, expected): %r" % wrong[:10])
    return suppressed_shown


def _no_errors(page):
    errs = [c for c in page.console if c[0] in ("error", "exception", "assert")]
    check(not errs, "console errors: %r" % errs)


def _png_ok(png, path, min_w, min_h):
    with open(path, "wb") as f:
        f.write(png)
    w, h, rows = cdp.decode_png(png)
    check(w >= min_w and h >= min_h, "screenshot %dx%d, expected at least %dx%d" % (w, h, min_w, min_h))
    bpp = len(rows[0]) // w
    colours = set()
    for y in range(0, h, 3):
        r = rows[y]
        for x in range(0, w, 3):
            colours.add(bytes(r[x * bpp:x * bpp + 3]))
    check(len(colours) > 20, "screenshot %s has %d colours: blank?" % (path, len(colours)))
    return colours


def _clip(page, selector):
    r = page.evaluate("(() => { const b = document.querySelector(%r).getBoundingClientRect();"
                      " return [b.left + scrollX, b.top + scrollY, b.width, b.height]; })()" % selector)
    return {"x": r[0], "y": r[1], "width": r[2], "height": r[3], "scale": 1}


def _shot(page, clip=None):
    import base64
    params = {"format": "png", "captureBeyondViewport": True}
    if clip:
        params["clip"] = clip
    return base64.b64decode(page.call("Page.captureScreenshot", params, timeout=60)["data"])


def _select(page, sel_id, value):
    page.evaluate("(() => { const s = document.getElementById(%r); s.value = %r;"
                  " s.dispatchEvent(new Event('change', {bubbles: true})); })()" % (sel_id, value))


def _loaded_with(page, backend, query_part, timeout=20):
    """Waits until the page asked for a picture with query_part and drew it."""
    page.wait_for("document.body.dataset.loaded === 'true' && location.search.includes(%r)" % query_part,
                  timeout, "page loaded with %s" % query_part)
    page.wait_for("document.getElementById('status').hidden", timeout, "status cleared")


def test_reporting_page_journey():
    backend = _backend()
    browser = None
    shots = os.path.join(TMP, "reporting-page")
    os.makedirs(shots, exist_ok=True)
    try:
        browser = cdp.Browser.launch(TMP)
        page = browser.new_page()
        page.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1,
                                                         "mobile": False})
        # Every fetch the page makes, with whether it carried the key.
        page.call("Page.addScriptToEvaluateOnNewDocument", {"source": """
            window.__fetches = [];
            const f = window.fetch;
            window.fetch = function (url, opts) {
                const h = (opts && opts.headers) || {};
                window.__fetches.push([String(url), (opts && opts.method) || 'GET', h.Authorization || null]);
                return f.apply(this, arguments);
            };"""})
        page.navigate(backend.base + "/")
        page.wait_for("document.body.dataset.loaded === 'true'", 30, "first picture")

        # Last quarter in one click, then Southern Johannes from the area list.
        lq = last_quarter()
        page.evaluate("document.getElementById('last-quarter').click()")
        _loaded_with(page, backend, "at=" + lq.isoformat())
        check(page.evaluate("document.getElementById('period').value") == "quarter", "period picker not on quarter")
        areas = page.evaluate("Array.from(document.getElementById('area').options).map(o => o.value)")
        district = json.loads(http("GET", backend.base + "/v1/picture?period=quarter&at=%s" % lq.isoformat())[2])
        check("place:sodra-johannes" in areas and "district" in areas and district["survey"] and
              all("survey:" + sv["area"] in areas for sv in district["survey"]), "area choices %r" % areas)
        _select(page, "area", "place:sodra-johannes")
        _loaded_with(page, backend, "area=place%3Asodra-johannes")
        query = "period=quarter&at=%s&area=place%%3Asodra-johannes" % lq.isoformat()
        status, _, data = http("GET", backend.base + "/v1/picture?" + query)
        check(status == 200, "picture %s" % status)
        pic = json.loads(data)
        check(pic["period"]["from"] == lq.isoformat(), "picture period %r" % pic["period"])

        # The map: one path per place, each with its tooltip; the chosen place outlined.
        places = json.loads(http("GET", backend.base + "/v1/places")[2])
        feats = places["features"] if isinstance(places, dict) and "features" in places else places.get("places")
        n_places = len([f for f in feats if (f.get("properties", f)).get("kind", "place") == "place"])
        slugs = page.evaluate("Array.from(document.querySelectorAll('#map svg path[data-place]'))"
                              ".map(p => p.dataset.place + '|' + (p.querySelector('title') || {}).textContent)")
        check(len(slugs) == n_places and n_places >= 10, "map paths %d, places %d" % (len(slugs), n_places))
        check(all("|" in s and len(s.split("|")[1]) > 3 for s in slugs), "a place without a tooltip: %r" % slugs)
        check(page.evaluate("document.querySelector('path[data-place=\"sodra-johannes\"]').classList.contains('selected')"),
              "the chosen place is not outlined")
        legend = page.evaluate("document.querySelectorAll('#legend .legend-item').length")
        check(legend >= 5, "legend has %d items" % legend)
        # The map shows the district for the period whatever the area: the
        # busiest place darkest, the suppressed ones hatched.
        classes = page.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('path[data-place]'))"
                                ".map(p => [p.dataset.place, p.dataset.class]))")
        map_pic = json.loads(http("GET", backend.base + "/v1/picture?period=quarter&at=%s" % lq.isoformat())[2])
        top = max(map_pic["by_place"], key=lambda p: p["count"]["value"] or -1)
        check(classes[top["place"]] == "q4", "busiest place %s shaded %s" % (top["place"], classes[top["place"]]))
        sup_places = [p["place"] for p in map_pic["by_place"]
                      if p["count"].get("suppressed") and p["count"]["value"] is None]
        for s in sup_places:
            check(classes[s] == "suppressed", "suppressed place %s shaded %s" % (s, classes[s]))

        # Every number equals the JSON; suppressed ones read "<5".
        shown = _check_figures(page, pic)
        want_sup = sum(1 for path, _, _ in _page_figures(page) if resolve(pic, path) == (None, True))
        check(shown == want_sup, "%d '<5' shown for %d suppressed" % (shown, want_sup))
        check(want_sup > 0 or pic["audience"] != "public" or not pic["suppression"]["suppressed_cells"],
              "a public picture with suppressed cells but none shown")

        # The charts are there: trend bars per bucket, a target line per category.
        bars = page.evaluate("document.querySelectorAll('#trend-chart g.bucket').length")
        check(bars == len(pic["trend"]["series"]), "trend has %d buckets, JSON %d" % (bars, len(pic["trend"]["series"])))
        targets = page.evaluate("document.querySelectorAll('#response-chart g.resp-row line.target').length")
        check(targets == len(pic["response"]["by_category"]), "response chart has %d target lines" % targets)
        check(page.evaluate("document.querySelectorAll('#walks-chart rect.bar').length") == len(pic["walks"]["by_status"]),
              "walk findings chart does not show each status")
        check(page.evaluate("document.querySelectorAll('#survey-chart rect.bar').length") >= 2 * len(pic["survey"]),
              "survey chart lacks the survey beside the reports")

        # Shading by another figure redraws the map without a new request.
        before = page.evaluate("window.__fetches.length")
        _select(page, "figure", "night")
        page.wait_for("document.querySelector('#map svg').dataset.figureShown === 'night'", 10, "night shading")
        check(page.evaluate("window.__fetches.length") == before, "figure change fetched the picture again")
        _select(page, "figure", "survey:worry_late_evening")
        page.wait_for("document.querySelector('#map svg').dataset.figureShown === 'survey:worry_late_evening'", 20,
                      "survey shading")
        classes = page.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('path[data-place]'))"
                                ".map(p => [p.dataset.place, p.dataset.class]))")
        survey_places = {}
        for sv in pic["survey"]:
            sp = json.loads(http("GET", backend.base + "/v1/picture?period=quarter&at=%s&area=survey%%3A%s"
                                 % (lq.isoformat(), sv["area"]))[2])
            for p in sp["by_place"]:
                survey_places[p["place"]] = sv
        for slug, cls in classes.items():
            if slug in survey_places:
                check(cls.startswith("q"), "%s lies in survey area %s but is shaded %s"
                      % (slug, survey_places[slug]["area"], cls))
            else:
                check(cls == "nodata", "%s lies in no survey area but is shaded %s" % (slug, cls))
        _select(page, "figure", "reports")

        # Downloads carry the same query and answer.
        for id_, ctype in (("dl-csv", "text/csv"), ("dl-geojson", "json")):
            href = page.evaluate("document.getElementById(%r).href" % id_)
            check(query in href, "%s link %s lacks %s" % (id_, href, query))
            st, hdr, body = http("GET", href)
            check(st == 200 and ctype in hdr.get("Content-Type", ""), "%s answered %s %s" % (id_, st, hdr))
            if id_ == "dl-geojson":
                check(json.loads(body)["type"] == "FeatureCollection", "GeoJSON download is not a FeatureCollection")

        _no_errors(page)
        full = _shot(page)
        colours = _png_ok(full, os.path.join(shots, "page.png"), 1200, 2000)
        map_png = _shot(page, _clip(page, "#map svg"))
        map_colours = _png_ok(map_png, os.path.join(shots, "map.png"), 300, 200)
        check(bytes.fromhex("123f75") in map_colours, "the darkest shade is not on the map screenshot")
        check(len(colours) > 50, "page screenshot has too few colours")

        # Print: no controls, the map in greys, A4 pages.
        page.call("Emulation.setEmulatedMedia", {"media": "print"})
        hidden = page.evaluate("""['controls', 'publish-row', 'status', 'print', 'sec-versions'].map(id =>
            [id, getComputedStyle(document.getElementById(id)).display])""")
        check(all(d == "none" for _, d in hidden), "controls visible in print: %r" % hidden)
        fills = page.evaluate("Array.from(document.querySelectorAll('path[data-place]'))"
                              ".map(p => getComputedStyle(p).fill)")
        grey = re.compile(r"^rgb\((\d+), \1, \1\)$|^url\(")
        check(all(grey.match(f) for f in fills), "map not in greys in print: %r" % fills)
        print_png = _shot(page)
        _png_ok(print_png, os.path.join(shots, "print.png"), 600, 1000)
        pdf = page.call("Page.printToPDF", {"preferCSSPageSize": True}, timeout=60)
        import base64
        pdf = base64.b64decode(pdf["data"])
        with open(os.path.join(shots, "page.pdf"), "wb") as f:
            f.write(pdf)
        check(pdf[:4] == b"%PDF", "printToPDF gave no PDF")
        sizes = set(re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf))
        check(sizes and all(abs(float(w) - 595.3) < 2 and abs(float(h) - 841.9) < 2 for w, h in sizes),
              "PDF pages are not A4: %r" % sizes)
        # Each printed section starts a page of its own.
        secs = page.evaluate("""Array.from(document.querySelectorAll('main > section')).filter(s =>
            getComputedStyle(s).display !== 'none').map(s => [s.id, getComputedStyle(s).breakBefore])""")
        check(len(secs) >= 6 and all(b == "page" for _, b in secs[1:]), "print page breaks %r" % secs)
        pages = len(re.findall(rb"/Type /Page\b", pdf))
        check(pages >= len(secs), "print has %d pages for %d sections" % (pages, len(secs)))
        page.call("Emulation.setEmulatedMedia", {"media": ""})

        # Staff: a key in the fragment makes comments editable; save one, publish.
        page.navigate("about:blank")  # else only the fragment changes: no load
        page.navigate(backend.base + "/?" + query + "#key=" + backend.staff_key)
        page.wait_for("document.body.dataset.loaded === 'true' && !!document.querySelector('textarea[data-comment=summary]')",
                      20, "editable comments with a staff key")
        check("key=" not in page.evaluate("location.href"), "the key stays in the address bar")
        sent = page.evaluate("window.__fetches.filter(f => f[0].startsWith('/v1/picture?')).map(f => f[2])")
        check(sent and all(a == "Bearer " + backend.staff_key for a in sent), "the key is not sent: %r" % sent)
        text = "Fler anmälningar efter mörkrets inbrott; belysningen på Tegnérgatan åtgärdas i december."
        place_text = "Trygghetsvandring här i februari."
        keys = page.evaluate("Array.from(document.querySelectorAll('textarea[data-comment]')).map(t => t.dataset.comment)")
        check("summary" in keys and "place:sodra-johannes" in keys and any(k.startswith("focus_area:") for k in keys),
              "comment fields %r" % keys)
        for key, t in (("summary", text), ("place:sodra-johannes", place_text)):
            page.evaluate("(() => { const t = document.querySelector('textarea[data-comment=\"%s\"]'); t.value = %s;"
                          " document.querySelector('button[data-save=\"%s\"]').click(); })()" % (key, json.dumps(t), key))
            page.wait_for("document.querySelector('button[data-save=\"%s\"]').parentNode.textContent.includes('Sparad')"
                          % key, 10, "comment %s saved" % key)
        staff_pic = json.loads(http("GET", backend.base + "/v1/picture?" + query,
                                    headers={"Authorization": "Bearer " + backend.staff_key})[2])
        check(staff_pic["comments"].get("summary") == text and
              staff_pic["comments"].get("place:sodra-johannes") == place_text,
              "comments not stored: %r" % staff_pic["comments"])
        _check_figures(page, staff_pic)
        page.evaluate("document.getElementById('publish').click()")
        link = page.wait_for("(document.querySelector('#versions li[data-version] a') || {}).href", 10,
                             "published version listed")
        _no_errors(page)

        # The version opens read-only, with its publisher and the comment.
        page.navigate(link)
        page.wait_for("document.body.dataset.loaded === 'true' && !document.getElementById('version-banner').hidden",
                      20, "version banner")
        banner = page.evaluate("document.getElementById('version-banner').textContent")
        vid = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["version"][0]
        # The page still holds the staff key (sessionStorage): the staff rendition.
        version = json.loads(http("GET", backend.base + "/v1/versions/" + urllib.parse.quote(vid),
                                  headers={"Authorization": "Bearer " + backend.staff_key})[2])
        check(version["version"]["published_by"] in banner, "banner %r lacks the publisher" % banner)
        check(page.evaluate("document.querySelectorAll('textarea').length") == 0, "a version is editable")
        check(page.evaluate("document.getElementById('publish-row').hidden"), "publish offered on a version")
        shown_comment = page.evaluate("(document.querySelector('p.comment-text[data-comment=summary]') || {}).textContent")
        check(shown_comment == text, "version shows comment %r" % shown_comment)
        _check_figures(page, version)
        _no_errors(page)
        _png_ok(_shot(page), os.path.join(shots, "version.png"), 1200, 1500)
    finally:
        if browser:
            browser.close()
        backend.close()
