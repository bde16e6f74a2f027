"""walk-planner (issue 10): its view of reports and tasks, hotspots, walk
proposals, the lifecycle with iCalendar invitations, findings becoming
work, the re-walk and the protocol, access, and exactly-once effects
under kill -9. Each test starts its own stack (walks_support.Stack)."""
import datetime
import json
import os
import urllib.parse

from harness import ROOT, check, http, psql, psql1, wait_for
from intake_support import pb_fields
from walks_support import (CENTRE, Stack, admin, error_field, f_bool, f_int, f_str, ics_get,
                           ics_unescape, num, outbox, parse_ics, report_received, text, us)

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC)


def ago(days, hour=12):
    d = NOW - datetime.timedelta(days=days)
    return d.replace(hour=hour, minute=0, second=0, microsecond=0)


def seed_reports(st):
    """A picture with a clear order: Centralstationen (drugs, at night,
    recurring), Klarakvarteren (lighting at night), Sergels torg (litter by
    day), Odenplan (one graffiti)."""
    ev = []
    for d in range(6):
        ev += [report_received(["norrmalm", "centralstationen"], "drug_dealing", 4, True, ago(d, 21))
               for _ in range(2)]
    for d in range(3):
        ev.append(report_received(["norrmalm", "klarakvarteren"], "lighting", 3, True, ago(d, 20)))
    ev += [report_received(["norrmalm", "sergels-torg"], "litter", 2, False, ago(1, 11))
           for _ in range(4)]
    ev.append(report_received(["norrmalm", "odenplan"], "graffiti", 2, False, ago(2, 10)))
    st.reports(ev)
    st.wait_applied("intake")
    seed_reports.last = ([ago(d, 21) for d in range(6) for _ in range(2)] +
                         [ago(d, 20) for d in range(3)] + [ago(1, 11)] * 4 + [ago(2, 10)])


def test_hotspots_rank_by_severity_recurrence_split_day_night_with_survey():
    st = Stack()
    seed_reports(st)
    status, res = st.api("GET", "/v1/hotspots")
    check(status == 200, "hotspots: %s %r" % (status, res))
    hs = res["hotspots"]
    order = [h["place"] for h in hs]
    # the district polygon holds the other places: never a hotspot itself
    check("norrmalm" not in order, "the district ranked as a place: %r" % order)
    check(order[:4] == ["centralstationen", "klarakvarteren", "sergels-torg", "odenplan"],
          "rank order %r" % order)
    top = hs[0]
    check((top["reports"], top["night"], top["day"]) == (12, 12, 0), "split %r" % top)
    check(top["repeat_reports"] == 5, "recurrence over 6 days: %r" % top)
    check(top["score"] == 12 * 4 / 3 + 0.5 * 5, "score %r" % top)
    check(hs[2]["day"] == 4 and hs[2]["night"] == 0, "Sergels torg by day %r" % hs[2])
    check(top["area"] == "city-south", "area %r" % top)
    check(top["explanation"] == "12 reports, 12 after dark, drug_dealing 12, 5 repeat; "
          "survey: worry late evening 31 %", "explanation %r" % top["explanation"])
    check(any(f["indicator"] == "police_index" and f["illustrative"] for f in top["survey"]),
          "survey beside %r" % top["survey"])
    # an area narrows it; a window without reports is empty
    status, res = st.api("GET", "/v1/hotspots?area=vasastan-east")
    check([h["place"] for h in res["hotspots"]] == ["odenplan"], "area filter %r" % res)
    # any window: whole weeks from the weekly rollup, the edges from the
    # days, the same totals as counted here
    stamps = seed_reports.last
    from zoneinfo import ZoneInfo
    local = ZoneInfo("Europe/Stockholm")
    today = datetime.datetime.now(local).date()
    for start in range(-9, 1):
        for length in (1, 2, 3, 5, 8, 12):
            f = today + datetime.timedelta(days=start)
            t = f + datetime.timedelta(days=length)
            want = sum(1 for x in stamps if f <= x.astimezone(local).date() < t)
            status, res = st.api("GET", "/v1/hotspots?from=%s&to=%s" % (f, t))
            got = sum(h["reports"] for h in res["hotspots"])
            check(got == want, "window %s..%s: %d reports, counted %d" % (f, t, got, want))
    status, res = st.api("GET", "/v1/hotspots?from=2020-01-01&to=2020-02-01")
    check(status == 200 and res["hotspots"] == [], "old window %r" % res)
    # a task reopened at a place counts
    t1, t2 = "t-1", "t-2"
    st.task_event("TaskOpened", f_str(1, t1) + f_str(2, "r1") + f_str(3, "litter")
                  + f_str(4, "odenplan") + f_int(5, us(ago(3))))
    st.task_event("TaskCompleted", f_str(1, t1) + f_int(4, us(ago(3))))
    st.task_event("TaskOpened", f_str(1, t2) + f_str(2, "r2") + f_str(3, "litter")
                  + f_str(4, "odenplan") + f_int(5, us(ago(2))))
    st.wait_applied("notifier")
    status, res = st.api("GET", "/v1/hotspots")
    od = [h for h in res["hotspots"] if h["place"] == "odenplan"][0]
    check(od["reopened"] == 1 and "1 reopened" in od["explanation"], "reopened %r" % od)
    # errors name the field; no key is 401
    status, res = st.api("GET", "/v1/hotspots?from=2026-13-01")
    check(status == 400 and error_field(res) == "from", "bad from %s %r" % (status, res))
    status, res = st.api("GET", "/v1/hotspots?limit=0")
    check(status == 400 and error_field(res) == "limit", "bad limit %s %r" % (status, res))
    status, res = st.api("GET", "/v1/hotspots", key=False)
    check(status == 401, "no key %s" % status)
    status, res = st.api("GET", "/v1/hotspots", key="ws_wrong")
    check(status == 401, "wrong key %s" % status)


def aggregates_digest():
    """A digest of every aggregate row, running totals and spans included."""
    return psql("SELECT (SELECT md5(string_agg(a::text, '|' ORDER BY place, category, day))"
                " FROM walks.agg_reports a), (SELECT md5(string_agg(w::text, '|'"
                " ORDER BY place, category, week)) FROM walks.agg_weeks w)")[0]


def expected_hotspots(facts, reopened, f, t):
    """Hotspots over local days [f, t) computed straight from the reports
    sent: {place: (reports, night, severity_sum, repeat, top, top_n,
    reopened, score)}, ranked, as docs/walk-planner.md defines them."""
    from decimal import ROUND_HALF_UP, Decimal
    per = {}
    for places, cat, sev, night, day in facts:
        if not f <= day < t:
            continue
        for p in places:
            if p in ("", "norrmalm"):  # no place; the district is an area
                continue
            c = per.setdefault(p, {}).setdefault(cat, [0, 0, 0, set()])
            c[0] += 1
            c[1] += night
            c[2] += sev
            c[3].add(day)
    out = {}
    for p, cats in per.items():
        n = sum(c[0] for c in cats.values())
        nn = sum(c[1] for c in cats.values())
        sev = sum(c[2] for c in cats.values())
        rep = sum(len(c[3]) - 1 for c in cats.values())
        top = sorted(cats, key=lambda k: (-cats[k][0], k))[0]
        reop = sum(1 for place, day in reopened if place == p and f <= day < t)
        score = (Decimal(sev) / 3 + Decimal(rep) / 2 + 2 * reop).quantize(
            Decimal("0.01"), ROUND_HALF_UP)
        out[p] = (n, nn, sev, rep, top, cats[top][0], reop, float(score))
    return sorted(out.items(), key=lambda kv: (-kv[1][7], kv[0]))


def check_windows(st, facts, reopened, windows, what):
    for f, t in windows:
        status, res = st.api("GET", "/v1/hotspots?from=%s&to=%s&limit=100" % (f, t))
        check(status == 200, "%s %s..%s: %s %r" % (what, f, t, status, res))
        got = [(h["place"], (h["reports"], h["night"], h["severity_sum"], h["repeat_reports"],
                             h["top_category"], h["reopened"], h["score"]))
               for h in res["hotspots"]]
        want = expected_hotspots(facts, reopened, f, t)
        check(got == [(p, v[:5] + v[6:]) for p, v in want], "%s, window %s..%s:\n got  %r\n want %r" % (what, f, t, got, want))
        for h in res["hotspots"]:
            n, nn, _, rep, top, top_n, reop, _ = dict(want)[h["place"]]
            words = "%d %s, %d after dark, %s %d" % (n, "report" if n == 1 else "reports", nn,
                                                    top, top_n)
            words += (", %d repeat" % rep if rep else "") + (", %d reopened" % reop if reop else "")
            check(h["explanation"].split("; survey")[0] == words and h["day"] == n - nn,
                  "%s, %s: %r, wanted %r" % (what, h["place"], h, words))


def test_hotspots_over_any_window_equal_the_reports_counted_one_by_one():
    """Hotspots read running totals (005_prefix_sums.sql): any window is a
    difference of two of them. Against the reports counted here one by one:
    windows that start and end on any weekday, across New Year, of one day
    and of more than a year, before and after all data; after imported
    history in random order, live reports, and late reports for old weeks
    (each of which must move every later running total). After each phase
    the aggregates equal what agg_rebuild() derives from the days alone."""
    import random
    from zoneinfo import ZoneInfo
    st = Stack()
    rnd = random.Random(10)
    local = ZoneInfo("Europe/Stockholm")
    today = datetime.datetime.now(local).date()
    places = ["sergels-torg", "klarakvarteren", "centralstationen", "kungstradgarden",
              "sodra-johannes", "odenplan", "hotorget", "vasaparken"]
    cats = ["litter", "graffiti", "lighting", "drug_dealing"]
    facts = []

    def report(day, imported=False):
        # noon is daylight all year in Stockholm; night reports say so
        night = rnd.random() < 0.4
        at = datetime.datetime.combine(day, datetime.time(21 if night else 12), local)
        ps = rnd.choice([[rnd.choice(places)], ["norrmalm", rnd.choice(places)],
                         rnd.sample(places, 2), []])
        cat, sev = rnd.choice(cats), rnd.randint(1, 5)
        facts.append((ps or [""], cat, sev, int(night), day))
        body = report_received(ps, cat, sev, night, at)
        if imported:  # accepted now, reported then
            body += f_int(13, us(NOW)) + f_bool(16, True) + f_str(19, "import")
        return body

    def apply(events):
        st.reports(events)
        st.wait_applied("intake", timeout=60)
        digest = aggregates_digest()
        rebuilt = psql("BEGIN; SET LOCAL search_path = walks; SELECT agg_rebuild(); SELECT (SELECT md5(string_agg(a::text,"
                       " '|' ORDER BY place, category, day)) FROM walks.agg_reports a),"
                       " (SELECT md5(string_agg(w::text, '|' ORDER BY place, category, week))"
                       " FROM walks.agg_weeks w); ROLLBACK")[0]
        check(digest == rebuilt, "kept running totals %r differ from the rebuilt %r"
              % (digest, rebuilt))

    day = lambda n: today - datetime.timedelta(days=n)
    # history: 15 months, New Year inside, imported newest first and shuffled
    history = [day(rnd.randint(1, 450)) for _ in range(350)]
    history += [datetime.date(today.year - 1, 12, 28 + i % 4) for i in range(12)]
    history += [datetime.date(today.year, 1, 1 + i % 5) for i in range(12)]
    rnd.shuffle(history)
    apply([report(d, imported=True) for d in history])
    # a reopened task at Odenplan
    st.task_event("TaskOpened", f_str(1, "t-1") + f_str(2, "r1") + f_str(3, "litter")
                  + f_str(4, "odenplan") + f_int(5, us(ago(40))))
    st.task_event("TaskCompleted", f_str(1, "t-1") + f_int(4, us(ago(39))))
    st.task_event("TaskOpened", f_str(1, "t-2") + f_str(2, "r2") + f_str(3, "litter")
                  + f_str(4, "odenplan") + f_int(5, us(ago(30))))
    st.wait_applied("notifier")
    reopened = [("odenplan", ago(30).astimezone(local).date())]
    nye = datetime.date(today.year, 1, 1)
    windows = [(day(90), day(-1)), (day(364), day(-1)), (day(500), day(-1)),
               (nye - datetime.timedelta(days=3), nye + datetime.timedelta(days=4)),
               (nye - datetime.timedelta(days=10), nye + datetime.timedelta(days=10)),
               (nye, nye + datetime.timedelta(days=1)), (day(700), day(600)),
               (day(2), day(1)), (day(45), day(29)), (day(31), day(30))]
    for _ in range(14):  # any weekday to any weekday, a day to a year
        f = day(rnd.randint(0, 460))
        windows.append((f, f + datetime.timedelta(days=rnd.choice([1, 3, 6, 7, 8, 13, 40, 200]))))
    check_windows(st, facts, reopened, windows, "history")
    # live reports, then late ones for old weeks (and the same days again)
    apply([report(day(rnd.randint(0, 1))) for _ in range(40)])
    apply([report(day(rnd.randint(2, 400))) for _ in range(60)] +
          [report(d) for d in history[:20]])
    check_windows(st, facts, reopened, windows, "after late reports")
    # the default window and an area narrow the same figures
    status, res = st.api("GET", "/v1/hotspots?limit=100")
    want = expected_hotspots(facts, reopened, day(89), day(-1))  # [to - 90, tomorrow)
    got = [(h["place"], h["reports"], h["score"]) for h in res["hotspots"]]
    check(got == [(p, v[0], v[7]) for p, v in want], "default window %r, wanted %r" % (got, want))
    status, res = st.api("GET", "/v1/hotspots?limit=100&area=city-south")
    south = [h["place"] for h in res["hotspots"]]
    check(south and south == [p for p, _ in want
                              if psql1("SELECT area FROM walks.places WHERE slug = '%s'" % p)
                              == "city-south"], "area %r" % south)


def test_places_from_place_defined_win_over_the_file_and_reports_name_new_ones():
    st = Stack()
    square = {"type": "Polygon", "coordinates": [[[18.060, 59.3300], [18.062, 59.3300],
                                                  [18.062, 59.3310], [18.060, 59.3310],
                                                  [18.060, 59.3300]]]}
    place = lambda slug, name, removed=False: (f_str(1, slug) + f_str(2, name) +
                                               f_str(3, json.dumps(square)) + f_bool(4, removed))
    st._emit("reportpub", [("trygg.events.PlaceDefined", place("sergels-torg", "Plattan")),
                           ("trygg.events.PlaceDefined", place("new-square", "New square"))])
    st.reports([report_received(["new-square"], "litter", 3, True),
                report_received(["sergels-torg"], "litter", 3, True),
                report_received(["only-in-reports"], "vandalism", 3, False, pos=(59.3400, 18.0600))])
    st.wait_applied("intake")
    rows = {r[0]: r[1:] for r in psql("SELECT slug, name, round(lat::numeric, 4),"
                                      " round(long::numeric, 4), source FROM walks.places")}
    check(rows["new-square"] == ["New square", "59.3305", "18.0610", "event"], "centroid %r" % rows)
    check(rows["sergels-torg"][0] == "Plattan" and rows["sergels-torg"][3] == "event",
          "PlaceDefined replaced the file's place %r" % rows["sergels-torg"])
    check(rows["only-in-reports"] == ["only-in-reports", "59.3400", "18.0600", "report"],
          "a place named in a report %r" % rows["only-in-reports"])
    # the operator's file does not override intake's definition
    admin("places", "load", os.path.join(ROOT, "deploy/demo/places.geojson"))
    check(psql1("SELECT name FROM walks.places WHERE slug = 'sergels-torg'") == "Plattan",
          "the file won over PlaceDefined")
    status, res = st.api("GET", "/v1/hotspots")
    names = {h["place"]: h["name"] for h in res["hotspots"]}
    check(names.get("new-square") == "New square" and names.get("sergels-torg") == "Plattan" and
          "only-in-reports" in names, "hotspots know them %r" % names)
    st._emit("reportpub", [("trygg.events.PlaceDefined", place("new-square", "", True))])
    st.wait_applied("intake")
    status, res = st.api("GET", "/v1/hotspots")
    check("new-square" not in [h["place"] for h in res["hotspots"]], "removed place ranked")


def test_proposal_after_dark_in_winter_loop_within_limits_and_invitees():
    st = Stack()
    seed_reports(st)
    date = (NOW + datetime.timedelta(days=14)).date()
    status, res = st.api("POST", "/v1/walks/proposals", {"date": str(date)})
    check(status == 200, "proposal %s %r" % (status, res))
    p = res["proposal"]
    places = [s["place"] for s in p["stops"]]
    # Odenplan is too far for a 3 km loop with the city-centre stops
    check(sorted(places) == ["centralstationen", "klarakvarteren", "sergels-torg"],
          "stops %r" % places)
    check(p["route_m"] <= 3000 and p["route_m"] > 0, "route %r" % p["route_m"])
    check(p["after_dark"] is True, "lighting is an issue: after dark %r" % p)
    start = datetime.datetime.fromisoformat(p["starts_at"])
    sunset = datetime.datetime.fromisoformat(p["sunset"])
    lag = (start - sunset).total_seconds() / 60
    check(45 <= lag <= 60, "start %s is %.0f min after sunset %s" % (start, lag, sunset))
    check(start.astimezone(UTC).date() == date, "same day %s" % start)
    if NOW.month in (11, 12, 1):
        check(sunset.astimezone(UTC).hour in (13, 14), "a winter sunset %s" % sunset)
    ends = datetime.datetime.fromisoformat(p["ends_at"])
    check((ends - start).total_seconds() / 60 >= p["walk_minutes"], "duration %r" % p)
    check(p["walk_minutes"] >= 30, "3 stops of 10 min plus walking %r" % p["walk_minutes"])
    roles = [i["role"] for i in p["invitees"]]
    orgs = [i["org"] for i in p["invitees"]]
    check(roles[:2] == ["district_official", "police"], "roles %r" % roles)
    check("Klara Fastigheter" in orgs and "City business association" in orgs,
          "housing and business at the stops %r" % orgs)
    check("Stockholmshem" not in orgs and "Adolf Fredriks school" not in orgs,
          "no one from elsewhere %r" % orgs)
    check(len(p["invitees"]) <= 20, "at most 20")
    # A tight limit leaves fewer stops; a daytime issue gives a daytime walk
    status, res = st.api("POST", "/v1/walks/proposals", {"date": str(date), "max_length_m": 400})
    check(status == 200 and len(res["proposal"]["stops"]) < 3, "tight %r" % res)
    status, res = st.api("POST", "/v1/walks/proposals",
                         {"date": str(date), "area": "vasastan-east"})
    p = res["proposal"]
    check(status == 200 and p["after_dark"] is False, "graffiti only: daytime %r" % p)
    check(p["starts_at"].endswith(":00:00+00:00") and
          datetime.datetime.fromisoformat(p["starts_at"]).hour in (12, 13), "14:00 local %r" % p)
    # errors name the field
    status, res = st.api("POST", "/v1/walks/proposals", {"date": "15/12/2026"})
    check(status == 400 and error_field(res) == "date", "bad date %s %r" % (status, res))
    status, res = st.api("POST", "/v1/walks/proposals", {"date": str(date), "area": "mars"})
    check(status == 400 and error_field(res) == "area", "bad area %s %r" % (status, res))
    status, res = st.api("POST", "/v1/walks/proposals", {"date": str(date), "colour": 1})
    check(status == 400 and error_field(res) == "colour", "unknown field %s %r" % (status, res))


def create_walk(st, title=None, date=None):
    date = date or (NOW + datetime.timedelta(days=14)).date()
    status, res = st.api("POST", "/v1/walks/proposals", {"date": str(date)})
    check(status == 200, "proposal %s %r" % (status, res))
    body = {k: res["proposal"][k] for k in ("area", "starts_at", "ends_at", "after_dark",
                                            "stops", "invitees")}
    body["title"] = title or res["proposal"]["title"]
    status, res = st.api("POST", "/v1/walks", body)
    check(status == 201, "create %s %r" % (status, res))
    return res["walk"]


def mails(walk_id=None, kind=None):
    out = []
    for t, f in outbox("MailRequested"):
        if (walk_id is None or text(f, 10) == walk_id) and (kind is None or text(f, 9) == kind):
            out.append(f)
    return out


def test_invitations_are_valid_icalendar_with_rsvp_links_sequence_and_cancel():
    st = Stack()
    seed_reports(st)
    title = ("Trygghetsvandring, Klara och Centralstationen: kvällsvandring med polisen, "
             "bostadsbolagen och föreningarna")
    w = create_walk(st, title)
    wid = w["walk_id"]
    check(mails(wid) == [], "no mail before invitations are sent")
    status, res = st.api("POST", "/v1/walks/%s/status" % wid, {"status": "invitations_sent"})
    check(status == 200 and res["walk"]["status"] == "invitations_sent", "sent %r" % res)
    invites = mails(wid, "invitation")
    check(len(invites) == len(w["invitees"]) >= 4, "one per invitee: %d" % len(invites))
    uids = set()
    for m in invites:
        check(text(m, 6) == "invite.ics" and text(m, 7).startswith("text/calendar; method=REQUEST"),
              "attachment %r" % m)
        props = parse_ics(m[8][0])
        check(ics_get(props, "METHOD")[0][2] == "REQUEST", "method")
        uids.add(ics_get(props, "UID")[0][2])
        check(ics_get(props, "SEQUENCE")[0][2] == "0", "sequence 0")
        check(ics_unescape(ics_get(props, "SUMMARY")[0][2]) == title, "summary %r" % props)
        check(ics_get(props, "SUMMARY")[0][2].startswith("Trygghetsvandring\\,"), "comma escaped")
        start = ics_get(props, "DTSTART")[0][2]
        check(datetime.datetime.strptime(start, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) ==
              datetime.datetime.fromisoformat(w["starts_at"]), "DTSTART in UTC %s" % start)
        check(ics_get(props, "DTEND")[0][2].endswith("Z"), "DTEND in UTC")
        att = ics_get(props, "ATTENDEE")
        check(len(att) == 1 and att[0][1].get("RSVP") == "TRUE" and
              att[0][2] == "mailto:" + text(m, 2), "attendee %r" % att)
        check(ics_get(props, "ORGANIZER")[0][2].startswith("mailto:"), "organizer")
    check(len(uids) == 1, "one UID per walk %r" % uids)
    # the accept link in the mail answers; a changed answer or signature does not
    m = invites[0]
    link = [l for l in text(m, 5).splitlines() if l.startswith("Accept: ")][0][8:]
    path = link[link.index("/v1/rsvp"):]
    status, _, page = http("GET", st.wp.base + path.replace("a=accept", "a=decline"))
    check(status == 403, "a forged answer %s" % status)
    status, _, page = http("GET", st.wp.base + path[:-1] + ("0" if path[-1] != "0" else "1"))
    check(status == 403, "a forged signature %s" % status)
    status, _, page = http("GET", st.wp.base + path)
    check(status == 200 and b"You have accepted" in page, "accept %s %r" % (status, page[:200]))
    status, res = st.api("GET", "/v1/walks/%s" % wid)
    answers = {i["email"]: i["answer"] for i in res["invitees"]}
    check(answers[text(m, 2)] == "accepted", "answer recorded %r" % answers)
    # an edit raises SEQUENCE and mails the update with the same UID
    later = datetime.datetime.fromisoformat(w["starts_at"]) + datetime.timedelta(hours=1)
    status, res = st.api("PATCH", "/v1/walks/%s" % wid,
                         {"starts_at": later.isoformat(), "ends_at": (later + datetime.timedelta(hours=2)).isoformat()})
    check(status == 200, "patch %s %r" % (status, res))
    status, res = st.api("PATCH", "/v1/walks/%s" % wid, {"starts_at": "tomorrow"})
    check(status == 400 and error_field(res) == "starts_at", "bad time %r" % res)
    updates = mails(wid, "invitation")[len(invites):]
    check(len(updates) == len(invites), "updates %d" % len(updates))
    props = parse_ics(updates[0][8][0])
    check(ics_get(props, "SEQUENCE")[0][2] == "1" and ics_get(props, "UID")[0][2] in uids,
          "sequence raised, same UID")
    # cancellation: METHOD:CANCEL, higher SEQUENCE
    status, res = st.api("POST", "/v1/walks/%s/status" % wid, {"status": "cancelled"})
    check(status == 200, "cancel %r" % res)
    cancels = mails(wid, "cancellation")
    check(len(cancels) == len(invites), "cancel mails %d" % len(cancels))
    props = parse_ics(cancels[0][8][0])
    check(ics_get(props, "METHOD")[0][2] == "CANCEL" and ics_get(props, "SEQUENCE")[0][2] == "2"
          and ics_get(props, "STATUS")[0][2] == "CANCELLED", "cancel ics %r" % props)
    check(text(cancels[0], 7).startswith("text/calendar; method=CANCEL"), "cancel type")
    status, res = st.api("POST", "/v1/walks/%s/status" % wid, {"status": "walked"})
    check(status == 409, "a cancelled walk stays cancelled %s" % status)
    # the lifecycle only moves forward and names bad values
    w2 = create_walk(st)
    status, res = st.api("POST", "/v1/walks/%s/status" % w2["walk_id"], {"status": "strolled"})
    check(status == 400 and error_field(res) == "status", "bad status %r" % res)
    status, res = st.api("POST", "/v1/walks/%s/status" % w2["walk_id"],
                         {"status": "walked", "date": "2026-12-01", "by": "Anna Berg"})
    check(status == 200 and res["walk"]["steps"][-1] == {"status": "walked", "date": "2026-12-01",
          "by": "Anna Berg", "note": ""}, "step with date and who %r" % res["walk"]["steps"])
    status, res = st.api("POST", "/v1/walks/%s/status" % w2["walk_id"], {"status": "planned"})
    check(status == 409, "backwards %s" % status)


FINDING = {"stop_index": 0, "category": "lighting", "severity": 4,
           "scores": {"lighting": 3, "openness": 2}, "description": "Dark underpass",
           "photo_url": "https://photos.example/1.jpg", "lat": 59.3303, "long": 18.0586,
           "night": True, "responsible_kind": "district_unit", "responsible": "park-north"}


def finding(st, wid, body, key, auth=True):
    return st.api("POST", "/v1/walks/%s/findings" % wid, body, key=auth,
                  headers={"Idempotency-Key": key} if key else {})


def test_findings_validate_are_idempotent_and_follow_the_notifiers_task_events():
    st = Stack()
    seed_reports(st)
    wid = create_walk(st)["walk_id"]
    status, res = finding(st, wid, FINDING, "f-1")
    check(status == 201, "finding %s %r" % (status, res))
    f = res["finding"]
    check(f["status"] == "proposed" and f["scores"] == {"lighting": 3, "openness": 2},
          "finding %r" % f)
    deadline = datetime.date.fromisoformat(f["deadline"])
    check(170 <= (deadline - NOW.date()).days <= 190, "default deadline 6 months %s" % deadline)
    status, res = finding(st, wid, FINDING, "f-1")
    check(status == 200 and res["finding"]["finding_id"] == f["finding_id"], "replay %s" % status)
    status, res = finding(st, wid, dict(FINDING, description="Other"), "f-1")
    check(status == 409, "same key, other body %s" % status)
    check(int(psql1("SELECT count(*) FROM walks.findings")) == 1, "one finding")
    for body, field in [(dict(FINDING, scores={"lighting": 4}), "lighting"),
                        (dict(FINDING, scores={"smell": 1}), "scores.smell"),
                        (dict(FINDING, category="ufo"), "category"),
                        (dict(FINDING, severity=9), "severity"),
                        (dict(FINDING, stop_index=99), "stop_index"),
                        (dict(FINDING, responsible_kind="mayor"), "responsible_kind"),
                        ({k: v for k, v in FINDING.items() if k != "responsible"}, "responsible"),
                        (dict(FINDING, photo_url="ftp://x"), "photo_url"),
                        (dict(FINDING, deadline="soon"), "deadline")]:
        status, res = finding(st, wid, body, "bad-" + field)
        check(status == 400 and error_field(res) == field, "%s: %s %r" % (field, status, res))
    status, res = finding(st, wid, FINDING, None)
    check(status == 400 and error_field(res) == "Idempotency-Key", "no key %r" % res)
    # a district unit's finding is work for the notifier
    reqs = [e for t, e in outbox("FindingTaskRequested") if text(e, 1) == f["finding_id"]]
    check(len(reqs) == 1 and text(reqs[0], 10) == "park-north" and text(reqs[0], 3) == "lighting"
          and text(reqs[0], 2) == wid and num(reqs[0], 8) == 4, "task requested %r" % reqs)
    ups = [e for t, e in outbox("FindingUpdated") if text(e, 1) == f["finding_id"]]
    check(len(ups) == 1 and text(ups[0], 16) == "proposed", "FindingUpdated %r" % ups)
    # the notifier's task events move it
    fid = f["finding_id"]
    st.task_event("TaskOpened", f_str(1, "task-9") + f_str(2, fid) + f_str(3, "lighting")
                  + f_str(4, "centralstationen") + f_int(5, us(NOW)))
    st.task_event("TaskAcknowledged", f_str(1, "task-9") + f_str(3, "park-north")
                  + f_str(4, "on it") + f_int(5, us(NOW)))
    st.wait_applied("notifier")
    status, res = st.api("GET", "/v1/findings/%s" % fid)
    check(res["finding"]["status"] == "accepted", "acknowledged -> accepted %r" % res)
    st.task_event("TaskCompleted", f_str(1, "task-9") + f_str(3, "new lamp") + f_int(4, us(NOW)))
    st.wait_applied("notifier")
    status, res = st.api("GET", "/v1/findings/%s" % fid)
    check(res["finding"]["status"] == "done", "completed -> done %r" % res)
    check([h["status"] for h in res["history"]] == ["proposed", "accepted", "done"],
          "history %r" % res["history"])
    ups = [text(e, 16) for t, e in outbox("FindingUpdated") if text(e, 1) == fid]
    check(ups == ["proposed", "accepted", "done"], "each change published %r" % ups)
    # declined by the unit: the owner it names
    status, res = finding(st, wid, dict(FINDING, description="Broken fence"), "f-2")
    fid2 = res["finding"]["finding_id"]
    st.task_event("TaskOpened", f_str(1, "task-10") + f_str(2, fid2) + f_int(5, us(NOW)))
    st.task_event("TaskDeclined", f_str(1, "task-10") + f_int(3, 1) + f_str(4, "railway land")
                  + f_int(5, us(NOW)) + f_str(6, "Trafikverket"))
    st.wait_applied("notifier")
    status, res = st.api("GET", "/v1/findings/%s" % fid2)
    check(res["finding"]["status"] == "declined" and res["finding"]["declined_owner"] ==
          "Trafikverket" and res["finding"]["declined_reason"] == "railway land", "declined %r" % res)
    # staff decline: a reason that names the owner is required
    status, res = finding(st, wid, dict(FINDING, description="Bench"), "f-3")
    fid3 = res["finding"]["finding_id"]
    status, res = st.api("PATCH", "/v1/findings/%s" % fid3,
                         {"status": "declined", "declined_reason": "not ours"})
    check(status == 400 and error_field(res) == "declined_owner", "owner required %r" % res)
    status, res = st.api("PATCH", "/v1/findings/%s" % fid3, {"status": "declined"})
    check(status == 400 and error_field(res) == "declined_reason", "reason required %r" % res)
    status, res = st.api("PATCH", "/v1/findings/%s" % fid3,
                         {"status": "declined", "declined_reason": "private courtyard",
                          "declined_owner": "Brf Klara 3"})
    check(status == 200 and res["finding"]["declined_owner"] == "Brf Klara 3", "declined %r" % res)


def test_outside_owner_gets_a_signed_progress_link():
    st = Stack()
    seed_reports(st)
    wid = create_walk(st)["walk_id"]
    body = dict(FINDING, responsible_kind="housing", responsible="Klara Fastigheter",
                description="Broken door lock")
    status, res = finding(st, wid, body, "o-1")
    check(status == 201 and res["routed"] == "mail", "routed %r" % res)
    fid = res["finding"]["finding_id"]
    check(not [e for t, e in outbox("FindingTaskRequested") if text(e, 1) == fid], "no task")
    m = mails(wid, "finding_progress")
    check(len(m) == 1 and text(m[0], 2) == "erik.holm@klara.invalid", "mail to contact %r" % m)
    link = [l for l in text(m[0], 5).splitlines() if "/progress?sig=" in l][0]
    path = link[link.index("/v1/findings"):]
    status, _, page = http("GET", st.wp.base + path)
    check(status == 200 and b"Broken door lock" in page and b"<form" in page, "page %s" % status)
    status, _, page = http("GET", st.wp.base + path + "x")
    check(status == 403, "bad signature %s" % status)
    bad = path.replace(fid, wid)
    status, _, _ = http("POST", st.wp.base + bad, b"status=done",
                        {"Content-Type": "application/x-www-form-urlencoded"})
    check(status in (403, 404), "another id %s" % status)
    status, _, page = http("POST", st.wp.base + path, b"status=in_progress&note=ordered+a+lock",
                           {"Content-Type": "application/x-www-form-urlencoded"})
    check(status == 200 and b"Thank you" in page, "form post %s %r" % (status, page[:300]))
    status, res = st.api("GET", "/v1/findings/%s" % fid)
    check(res["finding"]["status"] == "in_progress" and res["history"][-1]["note"] ==
          "ordered a lock" and res["history"][-1]["by"] == "Klara Fastigheter", "progress %r" % res)
    status, res = st.api("POST", path, {"status": "declined", "declined_reason": "not ours"},
                         key=False)
    check(status == 400 and error_field(res) == "declined_owner", "owner named %r" % res)
    status, res = st.api("POST", path, {"status": "done"}, key=False)
    check(status == 200 and res["finding"]["status"] == "done", "done %r" % res)


def test_rewalk_verifies_findings_and_the_public_protocol_names_organisations_only():
    st = Stack()
    seed_reports(st)
    w = create_walk(st)
    wid = w["walk_id"]
    _, a = finding(st, wid, FINDING, "p-1")
    _, b = finding(st, wid, dict(FINDING, stop_index=1, category="litter", scores={},
                                 description="Overflowing bins", responsible_kind="housing",
                                 responsible="Klara Fastigheter"), "p-2")
    status, res = st.api("GET", "/v1/walks/%s/protocol?public=1" % wid, key=False)
    check(status == 401, "not public before it is published %s" % status)
    for s in ("invitations_sent", "pre_meeting_held", "walked", "protocol_published"):
        status, res = st.api("POST", "/v1/walks/%s/status" % wid, {"status": s})
        check(status == 200, "%s %r" % (s, res))
    status, res = st.api("GET", "/v1/walks/%s/protocol?public=1" % wid, key=False)
    check(status == 200 and len(res["findings"]) == 2, "public protocol %s %r" % (status, res))
    dump = json.dumps(res, ensure_ascii=False)
    for i in w["invitees"]:
        check(i["name"] not in dump and i["email"] not in dump, "a person in public: %s" % i["name"])
    check("Klara Fastigheter" in dump and "Police, Norrmalm" in dump, "organisations named")
    check("lead" not in [s.get("by") for s in res["steps"]], "no staff names")
    status, hdr, page = st.raw("GET", "/v1/walks/%s/protocol.html?public=1" % wid, key=False)
    check(status == 200 and b"@page{size:A4" in page and b"Dark underpass" in page and
          b"Anna Berg" not in page and b"Klara Fastigheter" in page, "html %s" % status)
    check(hdr.get("Content-Type", "").startswith("text/html"), "html type")
    status, hdr, page = st.raw("GET", "/v1/walks/%s/protocol.html" % wid)
    check(b"Anna Berg" in page, "the staff protocol names participants")
    status, hdr, csv_data = st.raw("GET", "/v1/walks/%s/protocol.csv" % wid)
    import csv
    import io
    rows = list(csv.DictReader(io.StringIO(csv_data.decode())))
    check(len(rows) == 2 and rows[0]["lighting"] == "3" and rows[0]["openness"] == "2" and
          rows[1]["responsible"] == "Klara Fastigheter", "csv %r" % rows)
    # the re-walk checks each earlier finding
    status, res = st.api("POST", "/v1/walks/%s/rewalk" % wid, {})
    check(status == 201 and res["walk"]["rewalk_of"] == wid and len(res["to_verify"]) == 2,
          "rewalk %r" % res)
    rid = res["walk"]["walk_id"]
    rkey = res["walk"]["phone_url"].split("#key=")[1]
    status, res = st.api("POST", "/v1/findings/%s/verify" % a["finding"]["finding_id"],
                         {"photo_url": "https://photos.example/after.jpg"}, key=rkey)
    check(status == 400 and error_field(res) == "fixed", "fixed required %r" % res)
    status, res = st.api("POST", "/v1/findings/%s/verify" % a["finding"]["finding_id"],
                         {"fixed": True, "photo_url": "https://photos.example/after.jpg"}, key=rkey)
    check(status == 200 and res["finding"]["status"] == "verified" and
          res["finding"]["verified_in"] == rid, "verified with the re-walk's key %r" % res)
    status, res = st.api("POST", "/v1/findings/%s/verify" % b["finding"]["finding_id"],
                         {"fixed": False, "photo_url": "https://photos.example/still.jpg"})
    check(status == 200 and res["finding"]["status"] == "not_fixed", "not fixed %r" % res)
    for s in ("follow_up_held", "rewalk_done"):
        status, res = st.api("POST", "/v1/walks/%s/status" % wid, {"status": s})
        check(status == 200, "%s %r" % (s, res))
    status, res = st.api("GET", "/v1/walks/%s/protocol" % wid)
    check([f["status"] for f in res["findings"]] == ["verified", "not_fixed"], "protocol %r" % res)


def test_walk_key_reaches_only_its_walk_and_sees_no_personal_data():
    st = Stack()
    seed_reports(st)
    w1, w2 = create_walk(st), create_walk(st)
    k1 = w1["phone_url"].split("#key=")[1]
    check(w1["phone_url"].startswith(st.wp.base + "/phone/?walk=" + w1["walk_id"]), "phone_url")
    status, res = st.api("GET", "/v1/walks/%s" % w1["walk_id"], key=k1)
    check(status == 200 and "phone_url" not in res and "invitees" not in res and
          len(res["stops"]) == len(w1["stops"]), "walk-key view %r" % res)
    check(all(set(s) == {"index", "place", "name", "lat", "long", "minutes"} for s in res["stops"]),
          "stops %r" % res["stops"])
    status, res = finding(st, w1["walk_id"], FINDING, "k-1", auth=k1)
    check(status == 201, "finding with the walk key %r" % res)
    status, res = st.api("GET", "/v1/walks/%s/findings" % w1["walk_id"], key=k1)
    check(status == 200 and len(res["findings"]) == 1, "list %r" % res)
    for path in ("/v1/walks/%s" % w2["walk_id"], "/v1/walks/%s/findings" % w2["walk_id"],
                 "/v1/hotspots", "/v1/walks"):
        status, res = st.api("GET", path, key=k1)
        check(status == 401, "%s with another walk's key: %s" % (path, status))
    status, res = st.api("PATCH", "/v1/walks/%s" % w1["walk_id"], {"title": "x"}, key=k1)
    check(status == 401, "staff only %s" % status)
    status, res = st.api("GET", "/v1/meta", key=False)
    check(status == 200 and len(res["parameters"]) == 9 and
          {"code": "lighting", "name": "Broken lighting"} in res["categories"], "meta %r" % res)
    # a revoked staff key stops working
    admin("key", "revoke", st.key)
    status, res = st.api("GET", "/v1/walks")
    check(status == 401, "revoked %s" % status)
    # SIGTERM drains cleanly (exit 0; under ASan, nothing leaked)
    rc = st.wp.stop()
    check(rc == 0, "walk-planner exited %s; log:\n%s" % (rc, st.wp.tail()))


def test_kill9_under_load_applies_every_event_exactly_once():
    """Reports keep arriving (a writer thread, 300 per 0.1 s) while
    walk-planner is killed three times; afterwards each aggregate equals
    what was published."""
    import threading
    st = Stack()
    places = ["sergels-torg", "klarakvarteren", "centralstationen", "odenplan"]
    cats = ["litter", "graffiti", "lighting"]
    want = {}
    batches = []
    for b in range(24):
        ev = []
        for i in range(300):
            p, c, night = places[(b + i) % 4], cats[i % 3], i % 5 == 0
            key = (p, c, night)
            want[key] = want.get(key, 0) + 1
            ev.append(report_received([p], c, 1 + i % 5, night, ago(i % 7)))
        batches.append(ev)
    errors = []

    def writer():
        try:
            for ev in batches:
                st.reports(ev)
                import time
                time.sleep(0.1)
        except Exception as e:  # surfaced below
            errors.append(e)
    t = threading.Thread(target=writer)
    t.start()
    n = 0
    for _ in range(3):
        wait_for(lambda: st.applied("intake") > n + 200, 30, "progress")
        n = st.applied("intake")
        st.wp.kill9()
        st.wp.start()
    t.join(60)
    check(not errors, "writer: %r" % errors)
    st.wait_applied("intake", timeout=60)
    got = {}
    for place, cat, day, night in psql("SELECT place, category, sum(reports - night), sum(night)"
                                       " FROM walks.agg_reports GROUP BY place, category"):
        got.update({(place, cat, False): int(day), (place, cat, True): int(night)})
    weeks = psql("SELECT place, category, sum(reports), sum(night) FROM walks.agg_weeks"
                 " GROUP BY place, category ORDER BY 1, 2")
    days = psql("SELECT place, category, sum(reports), sum(night) FROM walks.agg_reports"
                " GROUP BY place, category ORDER BY 1, 2")
    check(weeks == days, "weekly rollup %r != daily %r" % (weeks, days))
    check(psql1("SELECT sum(days) FROM walks.agg_weeks") == psql1("SELECT count(*) FROM walks.agg_reports"),
          "days with reports per week")
    check(got == want, "aggregates %r != %r" % (got, want))
    sev = int(psql1("SELECT sum(severity_sum) FROM walks.agg_reports"))
    check(sev == sum(1 + i % 5 for i in range(300)) * 24, "severity sums %d" % sev)
    check(st.wp.starts == 4, "restarted three times")


def test_admin_survey_load_refuses_bad_rows_and_publishes_figures():
    st = Stack(demo=False)
    import os
    import tempfile
    from walks_support import AREAS, SURVEY
    d = tempfile.mkdtemp()
    bad = os.path.join(d, "bad.csv")
    with open(bad, "w") as f:
        f.write("area,indicator,value,unit\ncity-south,happiness,3,percent\n")
    rc, out, err = admin("survey", "load", bad, "--areas", AREAS, "--survey", "s", "--year", "2025",
                         rc=1)
    check("line 2" in err and "happiness" in err, "names the line: %r" % err)
    rc, out, err = admin("survey", "load", SURVEY, "--survey", "s", "--year", "2025", rc=2)
    rc, out, err = admin("participant", "add", "X", "--org", "O", "--role", "mayor", "--email",
                         "x@y.invalid", rc=2)
    check("mayor" in err, "names the role %r" % err)
    rc, out, err = admin("survey", "load", SURVEY, "--areas", AREAS, "--survey", "police_index",
                         "--year", "2024", "--illustrative")
    check("28" in out, "loaded %r" % out)
    ev = outbox("SurveyFiguresLoaded")
    check(len(ev) == 1, "one event %r" % ev)
    f = ev[0][1]
    check(text(f, 1) == "police_index" and num(f, 2) == 2024 and num(f, 4) == 1,
          "survey, year, illustrative %r" % f)
    check(len(f[5]) == 4 and len(f[6]) == 28, "areas and figures %d %d" % (len(f[5]), len(f[6])))
    fig = pb_fields(f[6][0])
    check(text(fig, 1) == "city-south" and text(fig, 4) in ("percent", "index"), "figure %r" % fig)
