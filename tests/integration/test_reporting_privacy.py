"""Reporting (issue 11) access and privacy: no key gets the public picture,
where a count of 4 is suppressed, 5 is shown, a count that could be
recovered by subtraction is suppressed too, and sensitive categories never
show below district level; a partner sees its own reports; staff and
police see everything; a wrong or revoked key is refused."""
import datetime

from harness import check
from reporting_support import Stack, admin, by, local, new_id, report_received


def rep(cat, at, place="sergels-torg", partner="trygg-app", sensitive=False, night=False):
    return ("trygg.events.ReportReceived", report_received(
        new_id(), cat, at, places=[place], partner=partner, sensitive=sensitive, night=night,
        focus={"litter": "physical_environment", "graffiti": "physical_environment",
               "traffic": "traffic_safety", "drug_dealing": "crime"}[cat]))


def test_reporting_public_suppression_and_access():
    st = Stack()
    q3, q2 = local(2026, 8, 10), local(2026, 5, 10)
    ev = []
    # Q3: litter 4, graffiti 5, traffic 12, drug dealing 6 (sensitive).
    ev += [rep("litter", q3) for _ in range(4)]
    ev += [rep("graffiti", q3) for _ in range(5)]
    ev += [rep("traffic", q3, partner="polisen-norrmalm") for _ in range(12)]
    ev += [rep("drug_dealing", q3, partner="polisen-norrmalm", sensitive=True)
           for _ in range(6)]
    # Q2 (previous): litter 5, graffiti 7, traffic 12: nothing below 5.
    ev += [rep("litter", q2) for _ in range(5)]
    ev += [rep("graffiti", q2) for _ in range(7)]
    ev += [rep("traffic", q2) for _ in range(12)]
    st.publish_many("intake", ev)
    st.wait_applied(30)

    staff = st.picture(st.staff, period="quarter", at="2026-08-01")
    pub = st.picture(None, period="quarter", at="2026-08-01")
    check(pub["audience"] == "public" and pub["suppression"]["threshold"] == 5, "public")
    cats, scats = by(pub["by_category"], "category"), by(staff["by_category"], "category")
    check(scats["litter"]["count"]["value"] == 4 and scats["graffiti"]["count"]["value"] == 5,
          "staff sees the small counts %r" % scats["litter"])
    # 4: suppressed.
    check(cats["litter"]["count"]["value"] is None and cats["litter"]["count"]["suppressed"],
          "4 shown: %r" % cats["litter"])
    # 5 is not below the threshold, but the row's total (27) minus the other
    # shown counts would give litter's 4 back: the next smallest (graffiti,
    # 5) is suppressed too.
    check(cats["graffiti"]["count"]["value"] is None, "recoverable 5 shown: %r" % cats["graffiti"])
    check(cats["traffic"]["count"]["value"] == 12, "12 hidden")
    check(pub["totals"]["reports"]["value"] == 27, "total %r" % pub["totals"])
    # 5 in a row with nothing to protect: shown.
    check(cats["litter"]["count"]["previous"] == 5, "previous 5 hidden: %r" % cats["litter"])
    # Sensitive at district level: shown (6 >= 5).
    check(cats["drug_dealing"]["count"]["value"] == 6, "district sensitive %r"
          % cats["drug_dealing"])
    # No subtraction recovers a suppressed count: for every row, the
    # shown parts and total never leave exactly one unknown.
    for col in ("value", "previous", "last_year"):
        parts = [c["count"][col] for c in pub["by_category"]]
        total = pub["totals"]["reports"][col]
        unknown = sum(1 for p in parts if p is None) + (total is None)
        check(unknown != 1, "%s: one unknown in %r / %r" % (col, parts, total))
    check(pub["suppression"]["suppressed_cells"] >= 4, "cells %r" % pub["suppression"])
    # Below district level the public never sees sensitive categories.
    place = by(pub["by_place"], "place")["sergels-torg"]
    check(place["count"]["value"] == 21, "public place count includes sensitive: %r" % place)
    check(by(staff["by_place"], "place")["sergels-torg"]["count"]["value"] == 27, "staff place")
    ppub = st.picture(None, period="quarter", at="2026-08-01", area="place:sergels-torg")
    check("drug_dealing" not in by(ppub["by_category"], "category"), "sensitive at a place")
    check(ppub["totals"]["reports"]["value"] == 21, "place total %r" % ppub["totals"])
    geo = st.call("GET", "/v1/picture.geojson?period=quarter&at=2026-08-01")[1]
    check(by([f["properties"] for f in geo["features"]], "slug")["sergels-torg"]["count"] == 21,
          "geojson sensitive")
    status, _, csv = st.raw("GET", "/v1/picture.csv?period=quarter&at=2026-08-01")
    line = [l for l in csv.decode().splitlines() if l.startswith('"category","litter"')][0]
    check(line.split(",")[3] == "", "csv shows the suppressed count: %r" % line)
    # Police see everything; the partner only its own reports, unsuppressed.
    pol = st.picture(st.police, period="quarter", at="2026-08-01")
    check(pol["audience"] == "police" and pol["totals"]["reports"]["value"] == 27, "police")
    part = st.picture(st.partner, period="quarter", at="2026-08-01")
    check(part["totals"]["reports"]["value"] == 9 and part["audience"] == "partner",
          "partner sees %r" % part["totals"])
    check(by(part["by_category"], "category")["litter"]["count"]["value"] == 4, "own 4 shown")
    check(by(part["by_category"], "category")["traffic"]["count"]["value"] == 0, "others' hidden")
    # Wrong and revoked keys are refused, never served as public.
    status, body = st.call("GET", "/v1/picture", key="rk_wrong")
    check(status == 401 and body["error"]["code"] == "unauthorized", "wrong key %s" % status)
    admin("key", "revoke", st.partner)
    status, _ = st.call("GET", "/v1/picture", key=st.partner)
    check(status == 401, "revoked key answered %s" % status)
    # Bad parameters name the field.
    for q, field in (("period=week", "period"), ("at=2026-02-30", "at"),
                     ("period=custom&from=2026-01-01", "to"), ("area=town", "area")):
        status, body = st.call("GET", "/v1/picture?" + q)
        check(status == 400 and body["error"]["field"] == field, "%s: %s %r" % (q, status, body))
    status, body = st.call("GET", "/v1/picture?area=place:nowhere")
    check(status == 404 and body["error"]["field"] == "area", "unknown place %s" % status)
