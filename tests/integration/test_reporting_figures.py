"""Reporting (issue 11): every figure of the picture against counts the
test makes itself from the raw events it published: reports over two
years (local days in Europe/Stockholm, day and night, several places and
partners), tasks with their acknowledgements, completions, declines, joins
and recurrence, for the district, a place and a partner."""
import datetime
import random
import statistics

from harness import check, psql1
from reporting_support import (Stack, by, local, new_id, report_received, task_acked,
                               task_completed, task_declined, task_dispatched, task_joined,
                               task_opened)

CATS = {  # code: (focus area, target minutes, sensitive)
    "litter": ("physical_environment", 1440, False),
    "graffiti": ("physical_environment", 1440, False),
    "lighting": ("physical_environment", 4320, False),
    "traffic": ("traffic_safety", 1440, False),
    "drug_dealing": ("crime", 60, True),
}
PLACES = ["sergels-torg", "klarakvarteren", "odenplan", "vasaparken"]
PARTNERS = ["trygg-app", "polisen-norrmalm"]
Q3 = (datetime.date(2026, 7, 1), datetime.date(2026, 10, 1))
Q2 = (datetime.date(2026, 4, 1), datetime.date(2026, 7, 1))
Q3_LY = (datetime.date(2025, 7, 1), datetime.date(2025, 10, 1))


def make_reports(rng):
    out = []
    days = (datetime.date(2026, 10, 31) - datetime.date(2025, 4, 1)).days
    for i in range(400):
        d = datetime.date(2025, 4, 1) + datetime.timedelta(days=rng.randrange(days))
        cat = rng.choice(list(CATS))
        places = rng.sample(PLACES, rng.choice([0, 1, 1, 1, 2]))
        out.append({"id": new_id(), "cat": cat, "places": places, "night": rng.random() < 0.4,
                    "partner": rng.choice(PARTNERS),
                    "at": local(d.year, d.month, d.day, rng.randrange(8, 20), rng.randrange(60))})
    # Local midnight edges: 00:30 on 1 October is Q4 in Stockholm (22:30
    # UTC on 30 September); 23:30 on 30 September is Q3.
    out.append({"id": new_id(), "cat": "litter", "places": ["odenplan"], "night": True,
                "partner": "trygg-app", "at": local(2026, 10, 1, 0, 30)})
    out.append({"id": new_id(), "cat": "litter", "places": ["odenplan"], "night": True,
                "partner": "trygg-app", "at": local(2026, 9, 30, 23, 30)})
    return out


def publish_reports(st, reports):
    st.publish_many("intake", [("trygg.events.ReportReceived", report_received(
        r["id"], r["cat"], r["at"], places=r["places"], partner=r["partner"],
        focus=CATS[r["cat"]][0], night=r["night"], target=CATS[r["cat"]][1],
        sensitive=CATS[r["cat"]][2])) for r in reports])


def in_range(r, rng, place=None, partner=None):
    d = r["at"].date()
    return (rng[0] <= d < rng[1] and (place is None or place in r["places"])
            and (partner is None or r["partner"] == partner))


def c3(reports, pred, place=None, partner=None):
    return {"value": sum(1 for r in reports if in_range(r, Q3, place, partner) and pred(r)),
            "previous": sum(1 for r in reports if in_range(r, Q2, place, partner) and pred(r)),
            "last_year": sum(1 for r in reports if in_range(r, Q3_LY, place, partner) and pred(r))}


def strip(c):
    return {k: c[k] for k in ("value", "previous", "last_year")}


def check_counts(pic, reports, place=None, partner=None):
    tot = pic["totals"]
    check(strip(tot["reports"]) == c3(reports, lambda r: True, place, partner),
          "totals %r vs %r" % (tot["reports"], c3(reports, lambda r: True, place, partner)))
    check(strip(tot["night"]) == c3(reports, lambda r: r["night"], place, partner), "night")
    check(strip(tot["day"]) == c3(reports, lambda r: not r["night"], place, partner), "day")
    cats = by(pic["by_category"], "category")
    for code in CATS:
        got = cats[code]
        want = c3(reports, lambda r, code=code: r["cat"] == code, place, partner)
        check(strip(got["count"]) == want, "category %s: %r vs %r" % (code, got["count"], want))
        check(strip(got["night"]) == c3(reports, lambda r, code=code: r["cat"] == code
                                        and r["night"], place, partner), "night of " + code)
        check(got["focus_area"] == CATS[code][0] and got["sensitive"] == CATS[code][2],
              "category meta %r" % got)
    fas = by(pic["by_focus_area"], "focus_area")
    for fa in set(v[0] for v in CATS.values()):
        want = c3(reports, lambda r, fa=fa: CATS[r["cat"]][0] == fa, place, partner)
        check(strip(fas[fa]["count"]) == want, "focus %s: %r vs %r" % (fa, fas[fa], want))
    if place is None:
        pl = by(pic["by_place"], "place")
        for p in PLACES:
            want = c3(reports, lambda r: True, p, partner)
            check(strip(pl[p]["count"]) == want, "place %s: %r vs %r" % (p, pl[p]["count"], want))
            check(strip(pl[p]["night"]) == c3(reports, lambda r: r["night"], p, partner),
                  "night of place " + p)
    # Trend: weekly buckets (Monday starts; the first clipped to 1 July).
    series = pic["trend"]["series"]
    check(pic["trend"]["bucket"] == "week", "bucket %r" % pic["trend"]["bucket"])
    want = {}
    for r in reports:
        if in_range(r, Q3, place, partner):
            d = r["at"].date()
            start = max(d - datetime.timedelta(days=d.weekday()), Q3[0])
            want[start.isoformat()] = want.get(start.isoformat(), 0) + 1
    got = {s["start"]: s["count"] for s in series if s["count"]}
    check(got == want, "trend %r vs %r" % (got, want))
    check(sum(s["count"] for s in series) == tot["reports"]["value"], "trend sums to the total")


def test_reporting_counts_every_figure():
    rng = random.Random(11)
    st = Stack()
    reports = make_reports(rng)
    publish_reports(st, reports)
    st.wait_applied(60)
    pic = st.picture(st.staff, period="quarter", at="2026-08-15")
    check(pic["audience"] == "staff" and pic["period"] == {
        "kind": "quarter", "from": "2026-07-01", "to": "2026-10-01", "label": "Q3 2026"},
        "period %r" % pic["period"])
    check(pic["previous"] == {"from": "2026-04-01", "to": "2026-07-01"}
          and pic["last_year"] == {"from": "2025-07-01", "to": "2025-10-01"}, "ranges")
    check(pic["suppression"]["suppressed_cells"] == 0, "staff sees everything")
    check_counts(pic, reports)
    # A place, and a partner's own reports.
    check_counts(st.picture(st.staff, period="quarter", at="2026-09-30",
                            area="place:vasaparken"), reports, place="vasaparken")
    ppic = st.picture(st.partner, period="quarter", at="2026-07-01")
    check(ppic["audience"] == "partner", "partner audience")
    check_counts(ppic, reports, partner="trygg-app")
    # A custom period of whole and partial months sums the same reports.
    cpic = st.picture(st.staff, period="custom", **{"from": "2026-06-17", "to": "2026-09-03"})
    want = sum(1 for r in reports if datetime.date(2026, 6, 17) <= r["at"].date()
               < datetime.date(2026, 9, 3))
    check(cpic["totals"]["reports"]["value"] == want,
          "custom %r vs %d" % (cpic["totals"]["reports"], want))
    # A year, monthly buckets.
    ypic = st.picture(st.staff, period="year", at="2025-05-05")
    check(ypic["trend"]["bucket"] == "month" and len(ypic["trend"]["series"]) == 12, "year")
    check(ypic["totals"]["reports"]["value"] == sum(1 for r in reports if r["at"].year == 2025),
          "year total")
    # CSV and GeoJSON say the same.
    status, _, csv = st.raw("GET", "/v1/picture.csv?period=quarter&at=2026-08-15", key=st.staff)
    check(status == 200, "csv %s" % status)
    rows = [l.split(",") for l in csv.decode().splitlines()]
    tot = [r for r in rows if r[0] == '"totals"' and r[1] == '"reports"'][0]
    check([int(x) for x in tot[3:6]] == list(strip(pic["totals"]["reports"]).values()),
          "csv totals %r" % tot)
    status, body = st.call("GET", "/v1/picture.geojson?period=quarter&at=2026-08-15",
                           key=st.staff)
    check(status == 200 and body["type"] == "FeatureCollection", "geojson")
    feats = {f["properties"]["slug"]: f for f in body["features"]}
    for p in PLACES:
        check(feats[p]["properties"]["count"] == by(pic["by_place"], "place")[p]["count"]["value"],
              "geojson count of " + p)
        ring = feats[p]["geometry"]["coordinates"][0]
        check(18 < ring[0][0] < 19 and 59 < ring[0][1] < 60, "lon/lat order")
    check("norrmalm" not in feats, "the district boundary is not a place")


def test_reporting_response_times_and_recurrence():
    rng = random.Random(7)
    st = Stack()
    reports, tasks, ack_min, done_min, events = [], [], [], [], []
    for i in range(60):
        d = datetime.date(2026, 7, 1) + datetime.timedelta(days=rng.randrange(90))
        cat = rng.choice(["litter", "graffiti", "lighting"])
        at = local(d.year, d.month, d.day, 10)
        r = {"id": new_id(), "cat": cat, "places": ["odenplan"], "night": False,
             "partner": "trygg-app", "at": at}
        reports.append(r)
        t = new_id()
        unit = rng.choice(["cleaning-north", "lighting-crew"])
        a = rng.randrange(1, 3000)
        events.append(("trygg.events.TaskOpened", task_opened(t, r["id"], cat, "odenplan", at)))
        events.append(("trygg.events.TaskDispatched", task_dispatched(t, unit, at)))
        events.append(("trygg.events.TaskAcknowledged",
                       task_acked(t, unit, at + datetime.timedelta(minutes=a))))
        ack_min.append((a, CATS[cat][1], unit))
        if i % 5 == 4:
            events.append(("trygg.events.TaskDeclined", task_declined(
                t, 1, "Trafikkontoret", at + datetime.timedelta(minutes=a + 5))))
        else:
            dm = a + rng.randrange(1, 5000)
            events.append(("trygg.events.TaskCompleted",
                           task_completed(t, at + datetime.timedelta(minutes=dm))))
            done_min.append((dm, CATS[cat][1], unit))
    # Task events published BEFORE the reports they name (another stream):
    # they must count once the reports arrive.
    st.publish_many("notifier", events)
    publish_reports(st, reports)
    # Recurrence: a completed task at Sergels torg, then a new one 3 days
    # later; a report that joined an open task.
    now = datetime.datetime.now(datetime.timezone.utc)
    r1, r2, r3 = new_id(), new_id(), new_id()
    t1, t2 = new_id(), new_id()
    base = local(2026, 8, 3, 12)
    rec = [{"id": r1, "cat": "litter", "places": ["sergels-torg"], "night": False,
            "partner": "trygg-app", "at": base},
           {"id": r2, "cat": "litter", "places": ["sergels-torg"], "night": False,
            "partner": "trygg-app", "at": base + datetime.timedelta(days=3)},
           {"id": r3, "cat": "litter", "places": ["sergels-torg"], "night": True,
            "partner": "trygg-app", "at": base + datetime.timedelta(days=3, hours=1)}]
    publish_reports(st, rec)
    st.publish_many("notifier", [
        ("trygg.events.TaskOpened", task_opened(t1, r1, "litter", "sergels-torg", base)),
        ("trygg.events.TaskCompleted", task_completed(t1, base + datetime.timedelta(hours=2))),
        ("trygg.events.TaskOpened", task_opened(t2, r2, "litter", "sergels-torg",
                                                base + datetime.timedelta(days=3))),
        ("trygg.events.TaskJoined", task_joined(t2, r3, base + datetime.timedelta(days=3, hours=1))),
        ("trygg.events.TaskCompleted", task_completed(t2, base + datetime.timedelta(days=4)))])
    # Overdue now: three tasks opened two hours ago, target one hour.
    over = []
    for i in range(3):
        rid, tid = new_id(), new_id()
        at = now - datetime.timedelta(hours=2)
        over.append(("trygg.events.ReportReceived", report_received(
            rid, "drug_dealing", at, places=["hotorget"], focus="crime", target=60,
            sensitive=True)))
        st.publish("notifier", "trygg.events.TaskOpened",
                   task_opened(tid, rid, "drug_dealing", "hotorget", at))
        st.publish("notifier", "trygg.events.TaskDispatched", task_dispatched(tid, "police", at))
    st.publish_many("intake", over)
    st.wait_applied(60)

    pic = st.picture(st.staff, period="quarter", at="2026-08-01", area="place:odenplan")
    resp = pic["response"]
    for kind, data in (("ack", ack_min), ("done", done_min)):
        got = resp[kind]
        mins = sorted(m for m, _, _ in data)
        check(got["n"] == len(mins), "%s n %r vs %d" % (kind, got, len(mins)))
        share = sum(1 for m, t, _ in data if m <= t) / len(data)
        check(abs(got["within_target_share"] - share) < 1e-3, "%s share %r vs %r"
              % (kind, got["within_target_share"], share))
        med = mins[(len(mins) + 1) // 2 - 1]
        p90 = mins[-(-9 * len(mins) // 10) - 1]
        check(abs(got["median_min"] - med) <= 0.05 * med + 0.1, "%s median %r vs %r"
              % (kind, got["median_min"], med))
        check(abs(got["p90_min"] - p90) <= 0.05 * p90 + 0.1, "%s p90 %r vs %r"
              % (kind, got["p90_min"], p90))
        units = by(resp["by_unit"], "unit")
        for u in ("cleaning-north", "lighting-crew"):
            check(units[u][kind]["n"] == sum(1 for _, _, uu in data if uu == u), "unit " + u)
    cats = by(resp["by_category"], "category")
    check(cats["litter"]["target_min"] == 1440, "target %r" % cats["litter"])
    check(sum(c["done"]["n"] for c in resp["by_category"]) == len(done_min), "by category")
    check(resp["overdue_now"] == 0, "no overdue at Odenplan")
    # District now: the three overdue tasks, by unit.
    now_pic = st.picture(st.police, period="month")
    check(now_pic["response"]["overdue_now"] == 3, "overdue %r" % now_pic["response"])
    check(by(now_pic["response"]["by_unit"], "unit")["police"]["overdue_now"] == 3, "by unit")
    # Recurrence at Sergels torg.
    spic = st.picture(st.staff, period="quarter", at="2026-08-01")
    sp = by(spic["by_place"], "place")["sergels-torg"]
    check(sp["reopened"] == 1 and sp["repeat_reports"] == 1, "recurrence %r" % sp)
    hs = by(spic["hotspots"], "place")
    check("odenplan" in hs and hs["odenplan"]["rank"] == 1, "hotspots %r" % spic["hotspots"])
    check(hs["odenplan"]["explanation"].startswith("60 reports, 0 after dark"),
          "explanation %r" % hs["odenplan"]["explanation"])
    check(psql1("SELECT count(*) FROM reporting.tasks WHERE NOT known") == "0", "tasks known")
