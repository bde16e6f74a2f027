#!/usr/bin/env python3
"""history.py [--seed N] [--count N] [--end YYYY-MM-DD] > history.csv

A year of synthetic report history for the demo district, as the CSV that
`trygg-intake admin import` reads (docs/intake.md, "Importing history").
Deterministic: the same seed, count and end date give the same file, and
the external ids ("demo-<seed>-<n>") make a second import a no-op.

The picture it draws (illustrative only, never real data): litter and
vandalism concentrated around Klarakvarteren, Sergels torg and
Centralstationen, more of it after dark; graffiti along Sveavägen;
lighting complaints in the dark months, except in southern Johannes,
whose stairs and passages are dark in every season; worry-type reports
(drugs, youth at risk, vulnerable victims, sleeping outdoors) in southern
Johannes.
Positions lie inside the places' polygons (deploy/demo/places.geojson).
"""
import argparse
import csv
import datetime as dt
import json
import os
import random
import sys
from zoneinfo import ZoneInfo

HERE = os.path.dirname(os.path.abspath(__file__))
TZ = ZoneInfo("Europe/Stockholm")

BASE_MIX = {"litter": 30, "graffiti": 11, "graffiti_offensive": 2, "vandalism": 12,
            "lighting": 8, "vegetation": 5, "traffic": 6, "sleeping_outdoors": 6,
            "drug_dealing": 4, "school_incident": 2, "youth_at_risk": 3,
            "vulnerable_victim": 1, "other": 6}

# Share of reports per place ("" = elsewhere in the district) and how each
# place bends the category mix.
PLACES = {
    "klarakvarteren": (15, {"litter": 1.6, "vandalism": 1.6, "drug_dealing": 1.3}),
    "sergels-torg": (16, {"litter": 1.7, "vandalism": 1.7, "drug_dealing": 1.8,
                          "sleeping_outdoors": 1.4}),
    "centralstationen": (15, {"litter": 1.6, "vandalism": 1.5, "sleeping_outdoors": 1.8}),
    "hotorget": (8, {"litter": 1.3}),
    "kungstradgarden": (7, {"vegetation": 1.5}),
    "sveavagen": (8, {"graffiti": 3.5, "graffiti_offensive": 2.5}),
    "sodra-johannes": (6, {"drug_dealing": 3.0, "youth_at_risk": 3.0, "vulnerable_victim": 3.0,
                           "sleeping_outdoors": 2.0, "lighting": 1.5, "litter": 0.6}),
    "odenplan": (6, {"traffic": 1.8}),
    "vasaparken": (6, {"vegetation": 2.0, "school_incident": 2.0, "youth_at_risk": 1.5}),
    "observatorielunden": (5, {"lighting": 1.8, "vegetation": 1.5}),
    "": (8, {}),
}

# Lighting complaints by month: the dark months. Not at the places in
# DARK_ALL_YEAR: the stairs to Malmskillnadsgatan and the passages of
# southern Johannes are dark on summer nights too, so a walk proposed there
# starts after dark whatever the date (issue 10's journey; checked by
# tests/integration/test_run_walk_journey.py).
DARK_ALL_YEAR = {"sodra-johannes"}
LIGHTING_MONTH = {1: 1.0, 2: 0.8, 3: 0.45, 4: 0.2, 5: 0.06, 6: 0.03, 7: 0.04, 8: 0.15,
                  9: 0.4, 10: 0.8, 11: 1.0, 12: 1.0}
# Hour of day (local): more in the evening and after dark.
HOURS = [3, 2, 2, 1, 1, 1, 2, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 8, 9, 10, 10, 9, 7, 5]
AFTER_DARK = {"litter", "vandalism", "drug_dealing", "graffiti", "graffiti_offensive",
              "youth_at_risk", "vulnerable_victim"}

WORDS = {
    "litter": ["Overflowing bin", "Rubbish dumped by the entrance", "Broken glass on the steps",
               "Fast-food litter all over the square"],
    "graffiti": ["New tags on the wall", "Graffiti on the bus shelter", "Tags on the shop shutters"],
    "graffiti_offensive": ["Offensive slogan sprayed on the wall"],
    "vandalism": ["Bench broken", "Smashed glass in the shelter", "Sign torn down",
                  "Bike stand kicked over"],
    "lighting": ["Street lamp out", "Lamp flickering on the path", "Whole row of lights dark"],
    "vegetation": ["Bushes block the view of the path", "Branches cover the street light"],
    "traffic": ["Cars parked on the cycle lane", "Crossing signal broken"],
    "sleeping_outdoors": ["Person sleeping in the passage", "People sleeping by the entrance"],
    "drug_dealing": ["Dealing by the stairs again", "Needles in the planters"],
    "school_incident": ["Fight outside the school gate"],
    "youth_at_risk": ["Young teenagers out late, looked lost", "Group of kids drinking"],
    "vulnerable_victim": ["Elderly person harassed at the stop"],
    "other": ["Unsafe feeling in the underpass", "Loud group blocking the path"],
}


def inside(ring, lon, lat):
    """Even-odd ray casting over one ring of [lon, lat] positions."""
    hit = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i][0], ring[i][1]
        xj, yj = ring[j][0], ring[j][1]
        if (yi > lat) != (yj > lat) and lon < (xj - xi) * (lat - yi) / (yj - yi) + xi:
            hit = not hit
        j = i
    return hit


def polygons(geom):
    return [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]


def contains(geom, lon, lat):
    return any(inside(p[0], lon, lat) and not any(inside(h, lon, lat) for h in p[1:])
               for p in polygons(geom))


def bbox(geom):
    pts = [pt for p in polygons(geom) for pt in p[0]]
    return (min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts),
            max(p[1] for p in pts))


def point_in(rng, geom, avoid=()):
    x0, y0, x1, y1 = bbox(geom)
    for _ in range(1000):
        lon, lat = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if contains(geom, lon, lat) and not any(contains(g, lon, lat) for g in avoid):
            return lat, lon
    raise SystemExit("no point found inside a polygon")


def pick(rng, weights):
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--count", type=int, default=11000)
    ap.add_argument("--end", help="last day (default: yesterday, local time)")
    ap.add_argument("--places", default=os.path.join(HERE, "places.geojson"))
    a = ap.parse_args()
    rng = random.Random(a.seed)
    end = (dt.date.fromisoformat(a.end) if a.end
           else dt.datetime.now(TZ).date() - dt.timedelta(days=1))
    start = end - dt.timedelta(days=364)
    with open(a.places) as f:
        features = json.load(f)["features"]
    geoms = {ft["properties"]["slug"]: ft["geometry"] for ft in features}
    district = [ft["geometry"] for ft in features if ft["properties"].get("kind") == "district"][0]
    ordinary = [g for s, g in geoms.items() if s in PLACES and s]
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["reported_at", "category", "lat", "long", "description", "address",
                  "closed_at", "status", "external_id"])
    horizon = dt.datetime(end.year, end.month, end.day, tzinfo=TZ) + dt.timedelta(days=1)
    for n in range(a.count):
        place = pick(rng, {p: v[0] for p, v in PLACES.items()})
        bend = PLACES[place][1]
        for _ in range(100):
            day = start + dt.timedelta(days=rng.randrange(365))
            hour = rng.choices(range(24), weights=HOURS)[0]
            cat = pick(rng, {c: w * bend.get(c, 1.0) for c, w in BASE_MIX.items()})
            if (cat == "lighting" and place not in DARK_ALL_YEAR
                    and rng.random() > LIGHTING_MONTH[day.month]):
                continue
            dark_hour = hour >= 18 or hour < 6
            if cat in AFTER_DARK and not dark_hour and rng.random() < 0.35:
                continue  # these lean towards the evening and night
            break
        t = dt.datetime(day.year, day.month, day.day, hour, rng.randrange(60), rng.randrange(60),
                        tzinfo=TZ)
        lat, lon = (point_in(rng, geoms[place]) if place
                    else point_in(rng, district, avoid=ordinary))
        # Most were closed within about their response time; the newest
        # may still be open.
        hours = rng.expovariate(1 / {"lighting": 72, "vegetation": 160}.get(cat, 30))
        closed = (t + dt.timedelta(hours=hours, minutes=rng.randrange(60))).replace(microsecond=0)
        is_open = closed >= horizon or rng.random() < 0.04
        out.writerow([t.isoformat(), cat, "%.6f" % lat, "%.6f" % lon,
                      rng.choice(WORDS[cat]), "", "" if is_open else closed.isoformat(),
                      "open" if is_open else "closed", "demo-%d-%d" % (a.seed, n)])


if __name__ == "__main__":
    main()
