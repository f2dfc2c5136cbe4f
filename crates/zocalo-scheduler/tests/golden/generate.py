#!/usr/bin/env python3
"""Generates golden.json: expected occurrences from an independent RRULE implementation.

The expander is python-dateutil (pinned: 2.9.0.post0), the zone data Python's zoneinfo (the
system tzdata). Neither shares code with the Rust side (the `rrule` crate and chrono-tz).

dateutil iterates naive wall times, which is RFC 5545's wall-time iteration. Each wall time is
turned into a UTC instant here with PEP 495's fold=0: an ambiguous time (the clocks went back)
is its first instance, and a nonexistent one (the clocks went forward) is read with the offset
in force before the gap -- exactly DESIGN section 4. Like the Rust side, UNTIL (always UTC
here, dateutil refuses an aware UNTIL with a naive start), EXDATE and RDATE apply to instants;
the expected list is the first LIMIT instants of the sorted, de-duplicated set.

Run (installs nothing in the repository):
    python3 -m venv ~/.cache/zocalo-py
    ~/.cache/zocalo-py/bin/pip install python-dateutil==2.9.0.post0
    ~/.cache/zocalo-py/bin/python crates/zocalo-scheduler/tests/golden/generate.py
"""

import json
import os
import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dateutil
from dateutil.rrule import rrulestr

PINNED = "2.9.0.post0"
if dateutil.__version__ != PINNED:
    sys.exit(f"python-dateutil {PINNED} is required, found {dateutil.__version__}")

LIMIT = 12
WINDOW = timedelta(hours=26)
UTC = timezone.utc


def to_utc(wall, zone):
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def parse_when(v, zone):
    if v.endswith("Z"):
        return datetime.strptime(v, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return to_utc(datetime.strptime(v, "%Y%m%dT%H%M%S"), zone)


def expand(text, start, tz, limit):
    zone = ZoneInfo(tz)
    rule, exdates, rdates = None, set(), set()
    for line in text.split("\n"):
        if line.startswith("EXDATE:"):
            exdates |= {parse_when(v, zone) for v in line[7:].split(",")}
        elif line.startswith("RDATE:"):
            rdates |= {parse_when(v, zone) for v in line[6:].split(",")}
        else:
            rule = line
    until = None
    kept = []
    for part in rule.split(";"):
        key, value = part.split("=", 1)
        if key == "UNTIL":
            until = parse_when(value, zone)
        else:
            kept.append(part)
    dtstart = datetime.strptime(start, "%Y-%m-%dT%H:%M:%S")
    walls = rrulestr(";".join(kept), dtstart=dtstart)
    found = set(rdates)
    done = False
    for n, wall in enumerate(walls):
        u = to_utc(wall, zone)
        if until is None or u <= until:
            found.add(u)
        if until is not None and (wall - WINDOW).replace(tzinfo=UTC) > until:
            done = True
        settled = sorted(x for x in found - exdates if x < (wall - WINDOW).replace(tzinfo=UTC))
        if len(settled) >= limit or done or n > 200000:
            break
    result = sorted(found - exdates)[:limit]
    return [x.strftime("%Y-%m-%dT%H:%M:%SZ") for x in result]


# Rules, each run from several starts in several zones. Every FREQ and BYxxx part appears.
RULES = [
    "FREQ=YEARLY;COUNT=5",
    "FREQ=YEARLY;INTERVAL=2;BYMONTH=1,7;BYMONTHDAY=15",
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
    "FREQ=YEARLY;BYYEARDAY=1,100,-1",
    "FREQ=YEARLY;BYYEARDAY=366",
    "FREQ=YEARLY;BYWEEKNO=1,20,-1;BYDAY=MO",
    "FREQ=YEARLY;BYWEEKNO=53;BYDAY=TH",
    "FREQ=YEARLY;BYDAY=20MO",
    "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU;BYHOUR=2;BYMINUTE=30",
    "FREQ=YEARLY;BYMONTH=11;BYDAY=1SU;BYHOUR=1;BYMINUTE=30",
    "FREQ=YEARLY;BYDAY=MO,FR;BYSETPOS=1,-1",
    "FREQ=MONTHLY;COUNT=6",
    "FREQ=MONTHLY;BYMONTHDAY=31",
    "FREQ=MONTHLY;BYMONTHDAY=-1,1",
    "FREQ=MONTHLY;BYDAY=-1FR",
    "FREQ=MONTHLY;BYDAY=2TU,-2TH",
    "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
    "FREQ=MONTHLY;INTERVAL=3;BYDAY=1MO;BYHOUR=9,17",
    "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13",
    "FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=28,29,30",
    "FREQ=WEEKLY;COUNT=8",
    "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SU;WKST=MO",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SU;WKST=SU",
    "FREQ=WEEKLY;BYMONTH=3,10;BYDAY=SU;BYHOUR=0,2,3",
    "FREQ=WEEKLY;BYDAY=SA,SU;BYSETPOS=2",
    "FREQ=DAILY;COUNT=10",
    "FREQ=DAILY;INTERVAL=3;BYHOUR=0,12",
    "FREQ=DAILY;BYHOUR=2;BYMINUTE=0,15,30,45",
    "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=28,29",
    "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0",
    "FREQ=DAILY;BYHOUR=1,2,3;BYSETPOS=2",
    "FREQ=DAILY;UNTIL=20261231T000000Z",
    "FREQ=HOURLY;COUNT=12",
    "FREQ=HOURLY;INTERVAL=5",
    "FREQ=HOURLY;BYMINUTE=0,30",
    "FREQ=HOURLY;BYHOUR=0,1,2,3,4;BYMINUTE=15",
    "FREQ=HOURLY;BYDAY=SU;BYHOUR=1,2,3",
    "FREQ=MINUTELY;INTERVAL=30;COUNT=12",
    "FREQ=MINUTELY;INTERVAL=45;BYHOUR=1,2,3",
    "FREQ=MINUTELY;BYSECOND=0,30;COUNT=6",
    "FREQ=HOURLY;INTERVAL=5;BYDAY=SU",
    "FREQ=HOURLY;INTERVAL=7;BYYEARDAY=-1,60;BYMINUTE=10,50;BYSETPOS=-1",
    "FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=-1;BYMINUTE=0,20,40;BYSETPOS=1,3",
    "FREQ=MINUTELY;INTERVAL=7;BYMONTHDAY=-1;BYHOUR=23",
    "FREQ=MINUTELY;INTERVAL=90;UNTIL=20290101T000000Z",
    "FREQ=SECONDLY;INTERVAL=17;COUNT=5",
    "FREQ=SECONDLY;INTERVAL=7;BYMINUTE=2;BYHOUR=3;COUNT=9",
    "FREQ=SECONDLY;BYSECOND=0;BYMINUTE=0;BYHOUR=12;COUNT=3",
    "FREQ=DAILY;COUNT=6\nEXDATE:{d1}\nRDATE:{d2}",
]

# (zone, starts): starts sit on or next to DST gaps and overlaps where the zone has them.
STARTS = [
    ("UTC", ["2024-02-28T09:00:00", "2026-01-01T00:00:00"]),
    ("Europe/Berlin", ["2026-03-28T02:30:00", "2026-03-29T02:30:00", "2026-10-24T02:30:00"]),
    ("America/New_York", ["2026-03-07T02:30:00", "2026-10-31T01:30:00"]),
    ("America/Sao_Paulo", ["2018-11-02T00:00:00", "2019-02-15T23:30:00"]),
    ("Australia/Lord_Howe", ["2026-10-03T02:15:00", "2026-04-04T01:45:00"]),
    ("Pacific/Auckland", ["2026-09-26T02:30:00"]),
    ("Asia/Kolkata", ["2028-02-29T05:30:00"]),
]


def fill(rule, start):
    d = datetime.strptime(start, "%Y-%m-%dT%H:%M:%S")
    return rule.format(
        d1=(d + timedelta(days=2)).strftime("%Y%m%dT%H%M%S"),
        d2=(d + timedelta(days=3, hours=5)).strftime("%Y%m%dT%H%M%SZ"),
    )


def main():
    cases = []
    for rule in RULES:
        for tz, starts in STARTS:
            for start in starts:
                text = fill(rule, start)
                cases.append(
                    {
                        "rrule": text,
                        "start": start,
                        "tz": tz,
                        "limit": LIMIT,
                        "expected": expand(text, start, tz, LIMIT),
                    }
                )
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json")
    with open(out, "w") as f:
        json.dump(
            {
                "generator": f"python-dateutil {dateutil.__version__}, zoneinfo (tzdata)",
                "cases": cases,
            },
            f,
            indent=1,
        )
        f.write("\n")
    print(f"{len(cases)} cases -> {out}")


if __name__ == "__main__":
    main()
