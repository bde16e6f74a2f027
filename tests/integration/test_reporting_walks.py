"""Reporting (issue 11): walks and their findings' follow-up, and survey
indicators beside the reports of the same areas (reports whose position
lies in the survey area; places whose centroid does)."""
import json

from harness import check
from reporting_support import (PLACES, Stack, by, finding_updated, local, new_id,
                               report_received, survey_loaded, walk_updated)

BOX = {"type": "Polygon", "coordinates": [[[18.035, 59.338], [18.055, 59.338],
                                           [18.055, 59.348], [18.035, 59.348],
                                           [18.035, 59.338]]]}


def inside(lat, lon):
    return 59.338 < lat < 59.348 and 18.035 < lon < 18.055


def test_reporting_walks_findings_and_survey():
    st = Stack()
    w1, w2, w3 = new_id(), new_id(), new_id()
    f = [new_id() for _ in range(5)]
    jan, feb = local(2026, 1, 10), local(2026, 2, 1)
    ev = [
        ("trygg.walks.WalkUpdated", walk_updated(w1, 1, "vasaparken", "planned", feb)),
        ("trygg.walks.WalkUpdated", walk_updated(w1, 2, "vasaparken", "walked", feb,
                                                 places=["vasaparken", "odenplan"])),
        ("trygg.walks.WalkUpdated", walk_updated(w2, 1, "sergels-torg", "walked", jan)),
        ("trygg.walks.WalkUpdated", walk_updated(w3, 1, "odenplan", "cancelled", jan)),
        # done within two months
        ("trygg.walks.FindingUpdated", finding_updated(f[0], 1, w1, "vasaparken", "lighting",
                                                       "proposed", feb)),
        ("trygg.walks.FindingUpdated", finding_updated(f[0], 2, w1, "vasaparken", "lighting",
                                                       "done", feb, status_at=local(2026, 4, 1))),
        # done after seven months
        ("trygg.walks.FindingUpdated", finding_updated(f[1], 1, w2, "sergels-torg", "vegetation",
                                                       "done", jan, status_at=local(2026, 9, 1))),
        # declined, owner elsewhere
        ("trygg.walks.FindingUpdated", finding_updated(f[2], 1, w2, "sergels-torg", "traffic",
                                                       "declined", jan, owner="Trafikkontoret")),
        # open, past its deadline
        ("trygg.walks.FindingUpdated", finding_updated(f[3], 3, w1, "odenplan", "lighting",
                                                       "accepted", feb,
                                                       deadline=local(2026, 6, 1))),
        # an older version arriving late changes nothing
        ("trygg.walks.FindingUpdated", finding_updated(f[3], 2, w1, "odenplan", "lighting",
                                                       "done", feb, status_at=feb)),
        # another year
        ("trygg.walks.FindingUpdated", finding_updated(f[4], 1, w2, "odenplan", "lighting",
                                                       "proposed", local(2025, 5, 1))),
        ("trygg.walks.SurveyFiguresLoaded", survey_loaded(
            "trygghetsmatning", 2025, [("vasastan", "Vasastan", BOX)],
            [("vasastan", "worry_late_evening", 31.0, "percent"),
             ("vasastan", "disorder_litter", 44.5, "percent")])),
    ]
    st.publish_many("walk-planner", ev)
    st.wait_applied(30)
    # Reports after the survey areas are known: inside the box or not.
    pos = [(59.3420, 18.0440, ["vasaparken"]), (59.3430, 18.0490, ["odenplan"]),
           (59.3425, 18.0445, ["vasaparken"]), (59.3324, 18.0637, ["sergels-torg"]),
           (59.3330, 18.0620, ["sergels-torg"])]
    st.publish_many("intake", [("trygg.events.ReportReceived", report_received(
        new_id(), "lighting", local(2026, 3, 3), places=p, lat=la, lon=lo, night=True))
        for la, lo, p in pos])
    st.wait_applied(30)

    pic = st.picture(st.staff, period="year", at="2026-06-01")
    w = pic["walks"]
    check(w["walks"] == 2, "walks (cancelled excluded) %r" % w)
    check(w["findings"] == 4, "findings in 2026 %r" % w)
    check(w["by_status"] == {"done": 2, "declined": 1, "accepted": 1}, "by status %r" % w)
    check(abs(w["done_within_6_months_share"] - 0.25) < 1e-9, "6 months %r" % w)
    check(w["overdue"] == 1, "overdue %r" % w)
    check(w["declined"] == [{"owner": "Trafikkontoret", "count": 1}], "declined %r" % w)
    sv = by(pic["survey"], "area")["vasastan"]
    want = sum(1 for la, lo, _ in pos if inside(la, lo))
    check(sv["survey"] == "trygghetsmatning" and sv["year"] == 2025 and sv["illustrative"],
          "survey %r" % sv)
    check(sv["reports"]["value"] == want, "survey reports %r vs %d" % (sv["reports"], want))
    check({i["indicator"]: i["value"] for i in sv["indicators"]} ==
          {"worry_late_evening": 31.0, "disorder_litter": 44.5}, "indicators %r" % sv)
    # The survey area as the area: its reports and the places whose centroid
    # lies in it.
    spic = st.picture(st.staff, period="year", at="2026-06-01", area="survey:vasastan")
    check(spic["area"]["name"] == "Vasastan" and spic["totals"]["reports"]["value"] == want,
          "survey area totals %r" % spic["totals"])
    geo = json.load(open(PLACES))
    want_places = set()
    for feat in geo["features"]:
        if feat["properties"].get("kind") != "place":
            continue
        ring = feat["geometry"]["coordinates"][0]
        lat = sum(p[1] for p in ring) / len(ring)
        lon = sum(p[0] for p in ring) / len(ring)
        if inside(lat, lon):
            want_places.add(feat["properties"]["slug"])
    check(set(p["place"] for p in spic["by_place"]) == want_places,
          "places %r vs %r" % ([p["place"] for p in spic["by_place"]], want_places))
    hs = by(pic["hotspots"], "place")
    check("survey: worry late evening 31 %" in hs["vasaparken"]["explanation"],
          "explanation %r" % hs["vasaparken"])
    # A place's walks only.
    ppic = st.picture(st.staff, period="year", at="2026-06-01", area="place:sergels-torg")
    check(ppic["walks"]["walks"] == 1 and ppic["walks"]["findings"] == 2, "place walks %r"
          % ppic["walks"])
