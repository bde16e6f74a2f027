"""Reporting (issue 11) the joint document: staff and police write
commentary per section beside the figures and publish versions, frozen
and immutable; earlier versions stay readable; the public reads the
suppressed rendition."""
import subprocess

from harness import SUPER_URL, check, psql, psql1
from reporting_support import Stack, local, new_id, report_received


def test_reporting_comments_and_versions():
    st = Stack()
    st.publish_many("intake", [("trygg.events.ReportReceived", report_received(
        new_id(), "litter", local(2026, 3, 10))) for _ in range(3)] + [
        ("trygg.events.ReportReceived", report_received(new_id(), "graffiti", local(2026, 3, 11)))
        for _ in range(9)])
    st.wait_applied(30)
    body = {"period": "month", "at": "2026-03-01", "area": "district", "section": "summary",
            "text": "Litter down, graffiti up."}
    status, res = st.call("PUT", "/v1/comments", body)
    check(status == 401, "anonymous comment %s" % status)
    status, res = st.call("PUT", "/v1/comments", body, key=st.partner)
    check(status == 403, "partner comment %s" % status)
    status, res = st.call("PUT", "/v1/comments", dict(body, section="nonsense"), key=st.staff)
    check(status == 400 and res["error"]["field"] == "section", "bad section %s" % status)
    status, res = st.call("PUT", "/v1/comments", body, key=st.staff)
    check(status == 200 and res["comment"]["author"] == "Anna Staff", "comment %s %r" % (status, res))
    # The period as the picture names it works the same.
    status, res = st.call("PUT", "/v1/comments", {
        "period": {"kind": "month", "from": "2026-03-01", "to": "2026-04-01"},
        "area": "district", "section": "place:sergels-torg", "text": "Night cleaning helps."},
        key=st.police)
    check(status == 200 and res["comment"]["author"] == "Polisen", "police comment %r" % res)
    pic = st.picture(st.staff, period="month", at="2026-03-15")
    check(pic["comments"] == {"summary": "Litter down, graffiti up.",
                              "place:sergels-torg": "Night cleaning helps."},
          "comments %r" % pic["comments"])
    check(pic["version"] is None, "no version yet")

    status, res = st.call("POST", "/v1/versions", {"period": "month", "at": "2026-03-01"},
                          key=st.partner)
    check(status == 403, "partner publishes %s" % status)
    status, res = st.call("POST", "/v1/versions", {"period": "month", "at": "2026-03-01",
                                                   "area": "district"}, key=st.staff)
    check(status == 201, "publish %s %r" % (status, res))
    v1 = res["version"]
    check(v1["published_by"] == "Anna Staff" and v1["period"]["from"] == "2026-03-01", "%r" % v1)
    # Later changes do not touch the published version.
    st.call("PUT", "/v1/comments", dict(body, text="Rewritten later."), key=st.staff)
    st.publish("intake", "trygg.events.ReportReceived",
               report_received(new_id(), "litter", local(2026, 3, 20)))
    st.wait_applied(30)
    status, res = st.call("POST", "/v1/versions", {"period": "month", "at": "2026-03-01"},
                          key=st.police)
    check(status == 201, "second version %s" % status)
    v2 = res["version"]
    status, listing = st.call("GET", "/v1/versions")
    check(status == 200 and [v["id"] for v in listing["versions"]] == [v2["id"], v1["id"]],
          "listing %r" % listing)
    status, doc = st.call("GET", "/v1/versions/" + v1["id"], key=st.staff)
    check(status == 200 and doc["comments"]["summary"] == "Litter down, graffiti up.",
          "frozen text %r" % doc.get("comments"))
    litter = [c for c in doc["by_category"] if c["category"] == "litter"][0]
    check(litter["count"]["value"] == 3 and doc["version"]["id"] == v1["id"]
          and doc["version"]["published_by"] == "Anna Staff", "frozen figures %r" % litter)
    status, doc2 = st.call("GET", "/v1/versions/" + v2["id"], key=st.staff)
    check([c for c in doc2["by_category"] if c["category"] == "litter"][0]["count"]["value"] == 4
          and doc2["comments"]["summary"] == "Rewritten later.", "second version")
    # The public reads the suppressed rendition of the same version.
    status, pdoc = st.call("GET", "/v1/versions/" + v1["id"])
    plitter = [c for c in pdoc["by_category"] if c["category"] == "litter"][0]
    check(status == 200 and pdoc["audience"] == "public" and plitter["count"]["value"] is None,
          "public version %r" % plitter)
    status, _ = st.call("GET", "/v1/versions/00000000-0000-4000-8000-000000000000")
    check(status == 404, "unknown version %s" % status)
    # Immutable: no UPDATE or DELETE path, and the database refuses both.
    for sql in ("UPDATE reporting.versions SET published_by = 'x'",
                "DELETE FROM reporting.versions", "TRUNCATE reporting.versions"):
        p = subprocess.run(["/usr/lib/postgresql/15/bin/psql", "-X", "-q", SUPER_URL, "-c", sql],
                           capture_output=True, text=True)
        check(p.returncode != 0 and "immutable" in p.stderr, "%s: %s" % (sql, p.stderr))
    check(psql1("SELECT count(*) FROM reporting.versions") == "2", "versions kept")
    status, _, _ = st.raw("DELETE", "/v1/versions/" + v1["id"], key=st.staff)
    check(status == 405, "a DELETE route exists: %s" % status)
