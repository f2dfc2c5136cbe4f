//! [`Schedule`]: a checked rule, a local start and a zone, expanded into UTC instants.
//!
//! How the work is split: wall times come from the `rrule` crate for DAILY and longer rules,
//! handed the start as if it were UTC (a zone without transitions), which is exactly RFC
//! 5545's wall-time iteration; HOURLY, MINUTELY and SECONDLY rules come from our own
//! `subdaily` module, because the crate loses the interval's alignment when it skips a
//! filtered day or hour. Our code then turns every wall time into an instant with
//! [`resolve_local`] (gap: the offset before it; overlap: the first instance), applies UNTIL,
//! EXDATE and RDATE on instants, and restores order. Expanding in the real zone instead, as
//! the crate would, moves a DTSTART in a gap and keeps the shifted time of day for every
//! later occurrence, and drops occurrences whose midnight falls in a gap
//! (America/Sao_Paulo, 2018-11-04); floating iteration has neither problem.
//!
//! Converting wall time to instants is not monotonic around a gap (02:30 in a gap becomes
//! 01:30Z, the 03:00 after it 01:00Z), so instants wait in a small ordered buffer until no
//! later wall time can produce an earlier instant: once the latest wall time read with the
//! highest offset in force near an instant is past it (zones change offset a few times a
//! year, so the offsets within two days of an instant are the ones that matter).

use std::collections::BTreeSet;

use chrono::{
    DateTime, Datelike, Duration, Month, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;

use crate::rule::{parse_rule_text, Freq, RuleText, When};
use crate::subdaily::SubDaily;
use crate::zone::{parse_start, parse_zone, resolve_local};
use crate::SchedulerError;

/// Zones change offset at most a few times a year: the offsets in force within this many
/// days of an instant bound the offsets any nearby wall time can be read with.
const NEAR_DAYS: i64 = 2;

/// The lowest and highest UTC offsets in force within [`NEAR_DAYS`] of `u`.
fn offsets_near(tz: Tz, u: DateTime<Utc>) -> (Duration, Duration) {
    let mut lo = i32::MAX;
    let mut hi = i32::MIN;
    for d in -NEAR_DAYS..=NEAR_DAYS {
        let at = u + Duration::days(d);
        let off = tz
            .offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc();
        lo = lo.min(off);
        hi = hi.max(off);
    }
    (
        Duration::seconds(i64::from(lo)),
        Duration::seconds(i64::from(hi)),
    )
}
/// Years outside this range are refused (the expansion's date arithmetic stays far from
/// chrono's limits).
const YEARS: std::ops::RangeInclusive<i32> = 1900..=9999;

/// A rule, a local start and an IANA zone: the recurrence of one automation.
#[derive(Clone, Debug)]
pub struct Schedule {
    text: RuleText,
    start: NaiveDateTime,
    tz: Tz,
    set: rrule::RRuleSet,
    until: Option<DateTime<Utc>>,
    exdates: BTreeSet<DateTime<Utc>>,
    rdates: Vec<DateTime<Utc>>,
}

impl Schedule {
    /// Parses the three user inputs: `--rrule`, `--start` (local) and `--tz`.
    pub fn parse(rrule: &str, start: &str, tz: &str) -> Result<Schedule, SchedulerError> {
        let text = parse_rule_text(rrule)?;
        let tz = parse_zone(tz)?;
        let start = parse_start(start)?;
        Schedule::new(text, start, tz)
    }

    pub fn new(text: RuleText, start: NaiveDateTime, tz: Tz) -> Result<Schedule, SchedulerError> {
        if !YEARS.contains(&start.year()) {
            return Err(SchedulerError::Start {
                value: start.to_string(),
                reason: format!(
                    "the year must be between {} and {}",
                    YEARS.start(),
                    YEARS.end()
                ),
            });
        }
        let r = &text.rule;
        let mut rr = rrule::RRule::new(match r.freq {
            Freq::Secondly => rrule::Frequency::Secondly,
            Freq::Minutely => rrule::Frequency::Minutely,
            Freq::Hourly => rrule::Frequency::Hourly,
            Freq::Daily => rrule::Frequency::Daily,
            Freq::Weekly => rrule::Frequency::Weekly,
            Freq::Monthly => rrule::Frequency::Monthly,
            Freq::Yearly => rrule::Frequency::Yearly,
        })
        .interval(r.interval);
        if let Some(c) = r.count {
            rr = rr.count(c);
        }
        if let Some(w) = r.wkst {
            rr = rr.week_start(w);
        }
        let months: Vec<Month> = r
            .by_month
            .iter()
            .filter_map(|m| Month::try_from(*m).ok())
            .collect();
        rr = rr
            .by_second(r.by_second.clone())
            .by_minute(r.by_minute.clone())
            .by_hour(r.by_hour.clone())
            .by_weekday(
                r.by_day
                    .iter()
                    .map(|(n, d)| rrule::NWeekday::new(*n, *d))
                    .collect(),
            )
            .by_month_day(r.by_month_day.clone())
            .by_year_day(r.by_year_day.clone())
            .by_week_no(r.by_week_no.clone())
            .by_month(&months)
            .by_set_pos(r.by_set_pos.clone());
        // Floating wall time: the start "in UTC", a zone without transitions.
        let floating = rrule::Tz::UTC.from_utc_datetime(&start);
        let set = rr
            .build(floating)
            .map_err(|e| SchedulerError::rule(rule_line(&text), e.to_string()))?
            .limit();
        let instant = |w: &When| match *w {
            When::Utc(u) => u,
            When::Local(l) => resolve_local(tz, l),
            When::Date(d) => resolve_local(tz, d.and_time(NaiveTime::MIN)),
        };
        let until = r.until.map(|u| match u {
            // A date alone includes that whole local day.
            When::Date(d) => {
                resolve_local(tz, d.and_time(NaiveTime::MIN) + Duration::days(1))
                    - Duration::seconds(1)
            }
            other => instant(&other),
        });
        let exdates = text.exdates.iter().map(instant).collect();
        let mut rdates: Vec<_> = text.rdates.iter().map(instant).collect();
        rdates.sort();
        Ok(Schedule {
            until,
            exdates,
            rdates,
            text,
            start,
            tz,
            set,
        })
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }

    pub fn start(&self) -> NaiveDateTime {
        self.start
    }

    pub fn rule(&self) -> &RuleText {
        &self.text
    }

    /// Every occurrence as a UTC instant, in order, without duplicates.
    pub fn iter(&self) -> Occurrences<'_> {
        self.iter_near(None)
    }

    /// The occurrences, possibly starting late: every occurrence at or after `from` is
    /// included, and some before it may be. Sub-daily rules without COUNT start at the
    /// aligned period a day before `from`, so a minutely rule started a year ago does not
    /// walk half a million minutes on every tick.
    pub fn iter_from(&self, from: DateTime<Utc>) -> Occurrences<'_> {
        self.iter_near(Some(from))
    }

    fn iter_near(&self, from: Option<DateTime<Utc>>) -> Occurrences<'_> {
        Occurrences {
            sched: self,
            walls: match self.text.rule.freq {
                Freq::Hourly | Freq::Minutely | Freq::Secondly => {
                    let mut own = SubDaily::new(&self.text.rule, self.start);
                    if let Some(from) = from {
                        // A wall time before `from`'s wall time under the lowest nearby
                        // offset maps to an instant before `from`.
                        let (lo, _) = offsets_near(self.tz, from);
                        own.skip_to(from.naive_utc() + lo - Duration::minutes(1));
                    }
                    Walls::Own(Box::new(own))
                }
                _ => Walls::Crate(Box::new((&self.set).into_iter())),
            },
            walls_done: false,
            last_wall: None,
            pending: self.rdates.iter().copied().collect(),
        }
    }

    /// The first `limit` occurrences.
    pub fn preview(&self, limit: usize) -> Vec<DateTime<Utc>> {
        self.iter().take(limit).collect()
    }

    /// The first occurrence at or after `t`.
    pub fn first_at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.iter_from(t).find(|o| *o >= t)
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.iter_from(t).find(|o| *o > t)
    }

    /// The latest occurrence in `from..=to`, and the first one after `to`.
    pub fn latest_in(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        // After long downtime, look near `to` first: the latest occurrence is usually there.
        let near = from.max(to - Duration::days(2));
        if near > from {
            let found = self.scan(near, to);
            if found.0.is_some() {
                return found;
            }
        }
        self.scan(from, to)
    }

    /// The occurrences in `from..=to`, at most the last `max` of them, and the first one
    /// after `to`.
    pub fn occurrences_in(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max: usize,
    ) -> (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let mut kept = std::collections::VecDeque::with_capacity(max.min(1024));
        for o in self.iter_from(from).skip_while(|o| *o < from) {
            if o > to {
                return (kept.into(), Some(o));
            }
            if kept.len() == max {
                kept.pop_front();
            }
            if max > 0 {
                kept.push_back(o);
            }
        }
        (kept.into(), None)
    }

    fn scan(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let mut latest = None;
        for o in self.iter_from(from).skip_while(|o| *o < from) {
            if o > to {
                return (latest, Some(o));
            }
            latest = Some(o);
        }
        (latest, None)
    }
}

fn rule_line(text: &RuleText) -> String {
    let r = &text.rule;
    format!("FREQ={}", r.freq.as_str())
}

/// Wall times: the `rrule` crate for DAILY and longer, our own code below a day.
enum Walls {
    Crate(Box<rrule::RRuleSetIter>),
    Own(Box<SubDaily>),
}

/// The occurrences of a [`Schedule`], in order.
pub struct Occurrences<'a> {
    sched: &'a Schedule,
    walls: Walls,
    walls_done: bool,
    last_wall: Option<NaiveDateTime>,
    pending: BTreeSet<DateTime<Utc>>,
}

impl Iterator for Occurrences<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        loop {
            if let Some(&first) = self.pending.first() {
                let settled = self.walls_done
                    || self.last_wall.is_some_and(|w| {
                        first < (w - offsets_near(self.sched.tz, first).1).and_utc()
                    });
                if settled {
                    self.pending.pop_first();
                    if self.sched.exdates.contains(&first) {
                        continue;
                    }
                    return Some(first);
                }
            } else if self.walls_done {
                return None;
            }
            let wall = match &mut self.walls {
                Walls::Crate(it) => it.next().map(|dt| dt.naive_utc()),
                Walls::Own(it) => it.next(),
            };
            match wall {
                Some(w) => {
                    self.last_wall = Some(w);
                    if !YEARS.contains(&w.year()) {
                        self.walls_done = true;
                        continue;
                    }
                    let u = resolve_local(self.sched.tz, w);
                    match self.sched.until {
                        Some(until) if u > until => {
                            if (w - offsets_near(self.sched.tz, until).1).and_utc() > until {
                                self.walls_done = true;
                            }
                        }
                        _ => {
                            self.pending.insert(u);
                        }
                    }
                }
                None => self.walls_done = true,
            }
        }
    }
}

/// Formats an instant the way the CLI prints it: `2026-03-08T07:30:00Z`.
pub fn fmt_utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preview(rule: &str, start: &str, tz: &str, n: usize) -> Vec<String> {
        Schedule::parse(rule, start, tz)
            .unwrap()
            .preview(n)
            .into_iter()
            .map(fmt_utc)
            .collect()
    }

    #[test]
    fn dtstart_in_a_gap_keeps_the_written_time_of_day() {
        // 02:30 does not exist on 2026-03-29 in Berlin: that day it is 01:30Z; the next days
        // are 02:30 CEST again (00:30Z), not 03:30.
        assert_eq!(
            preview(
                "FREQ=DAILY;COUNT=3",
                "2026-03-29T02:30:00",
                "Europe/Berlin",
                10
            ),
            [
                "2026-03-29T01:30:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z"
            ]
        );
    }

    #[test]
    fn a_gap_at_midnight_drops_nothing() {
        assert_eq!(
            preview(
                "FREQ=DAILY;COUNT=3",
                "2018-11-03T00:00:00",
                "America/Sao_Paulo",
                10
            ),
            [
                "2018-11-03T03:00:00Z",
                "2018-11-04T03:00:00Z",
                "2018-11-05T02:00:00Z"
            ]
        );
    }

    #[test]
    fn a_skipped_day_maps_onto_the_next_and_fires_once() {
        // Samoa skipped 2011-12-30 entirely (-10:00 to +14:00): its 09:00 read with the
        // offset before the gap is the same instant as 09:00 on the 31st.
        assert_eq!(
            preview(
                "FREQ=DAILY;COUNT=4",
                "2011-12-28T09:00:00",
                "Pacific/Apia",
                10
            ),
            [
                "2011-12-28T19:00:00Z",
                "2011-12-29T19:00:00Z",
                "2011-12-30T19:00:00Z"
            ]
        );
    }

    #[test]
    fn overlap_fires_once_at_its_first_instance() {
        assert_eq!(
            preview(
                "FREQ=DAILY;COUNT=2",
                "2026-10-31T01:30:00",
                "America/New_York",
                10
            ),
            ["2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z"]
        );
    }

    #[test]
    fn hourly_across_a_gap_is_sorted_and_unique() {
        let out = preview(
            "FREQ=MINUTELY;INTERVAL=30;COUNT=6",
            "2026-03-29T01:00:00",
            "Europe/Berlin",
            10,
        );
        // 01:00 01:30 02:00(gap→01:00Z) 02:30(gap→01:30Z) 03:00(=01:00Z) 03:30(=01:30Z)
        assert_eq!(
            out,
            [
                "2026-03-29T00:00:00Z",
                "2026-03-29T00:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:30:00Z"
            ]
        );
    }

    #[test]
    fn until_exdate_and_rdate_work_on_instants() {
        let out = preview(
            "FREQ=DAILY;UNTIL=20260305T080000Z\nEXDATE:20260303T090000\nRDATE:20260310T120000",
            "2026-03-01T09:00:00",
            "Europe/Berlin",
            10,
        );
        assert_eq!(
            out,
            [
                "2026-03-01T08:00:00Z",
                "2026-03-02T08:00:00Z",
                "2026-03-04T08:00:00Z",
                "2026-03-05T08:00:00Z",
                "2026-03-10T11:00:00Z"
            ]
        );
    }

    #[test]
    fn last_friday_of_the_month() {
        assert_eq!(
            preview(
                "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0;BYSECOND=0",
                "2026-01-01T00:00:00",
                "UTC",
                3
            ),
            [
                "2026-01-30T17:00:00Z",
                "2026-02-27T17:00:00Z",
                "2026-03-27T17:00:00Z"
            ]
        );
    }

    #[test]
    fn a_rule_that_never_matches_ends() {
        assert!(preview(
            "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
            "2026-01-01T00:00:00",
            "UTC",
            3
        )
        .is_empty());
    }

    #[test]
    fn starting_late_gives_the_same_occurrences() {
        for (rule, tz) in [
            ("FREQ=MINUTELY;INTERVAL=7;BYHOUR=1,2,3", "Europe/Berlin"),
            (
                "FREQ=HOURLY;INTERVAL=5;BYDAY=SU;BYMINUTE=0,30",
                "Australia/Lord_Howe",
            ),
            (
                "FREQ=SECONDLY;INTERVAL=97;BYMINUTE=1,2",
                "America/Sao_Paulo",
            ),
        ] {
            let s = Schedule::parse(rule, "2026-01-01T00:17:00", tz).unwrap();
            for days in [0, 3, 40, 87, 300] {
                let t = "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
                    + Duration::days(days)
                    + Duration::minutes(days * 13);
                let full: Vec<_> = s.iter().filter(|o| *o >= t).take(50).collect();
                let late: Vec<_> = s.iter_from(t).filter(|o| *o >= t).take(50).collect();
                assert_eq!(full, late, "{rule} from {t}");
                assert_eq!(s.first_at_or_after(t), full.first().copied());
                let to = t + Duration::days(5);
                let (latest, next) = s.latest_in(t - Duration::days(1), to);
                let all: Vec<_> = s
                    .iter()
                    .take_while(|o| *o <= to + Duration::days(8))
                    .collect();
                assert_eq!(
                    latest,
                    all.iter()
                        .rev()
                        .find(|o| **o <= to && **o >= t - Duration::days(1))
                        .copied()
                );
                assert_eq!(next, all.iter().find(|o| **o > to).copied());
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Whatever parses also expands without panicking, quickly, in order.
        #[test]
        fn any_valid_rule_expands_without_panicking(
            parts in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "INTERVAL", "COUNT", "WKST", "BYSECOND", "BYMINUTE", "BYHOUR", "BYDAY",
                        "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYMONTH", "BYSETPOS",
                    ]),
                    proptest::sample::select(vec![
                        "1", "2", "-1", "3,17", "59", "23", "12", "31", "-31", "366", "-366",
                        "53", "-53", "60000", "MO", "-1FR", "5SU", "20MO", "MO,WE,FR", "SU",
                    ]),
                ),
                0..4,
            ),
            freq in proptest::sample::select(vec![
                "SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY",
            ]),
            year in 1900i32..2200,
            tz in proptest::sample::select(vec!["UTC", "Europe/Berlin", "Australia/Lord_Howe", "Pacific/Apia"]),
        ) {
            let mut rule = format!("FREQ={freq}");
            for (k, v) in &parts {
                rule.push_str(&format!(";{k}={v}"));
            }
            if let Ok(s) = Schedule::parse(&rule, &format!("{year}-02-28T23:30:00"), tz) {
                let out = s.preview(5);
                for w in out.windows(2) {
                    proptest::prop_assert!(w[0] < w[1]);
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn expansion_is_sorted_unique_and_bounded(
            freq in proptest::sample::select(vec!["HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"]),
            interval in 1u16..5,
            count in proptest::option::of(1u32..40),
            until_days in proptest::option::of(0i64..400),
            byhour in proptest::option::of(0u8..24),
            tz in proptest::sample::select(vec!["Europe/Berlin", "America/Sao_Paulo", "Australia/Lord_Howe", "UTC", "America/New_York"]),
            day in 0i64..730,
            minute in 0u32..1440,
        ) {
            let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap()
                + Duration::days(day) + Duration::minutes(i64::from(minute));
            let mut rule = format!("FREQ={freq};INTERVAL={interval}");
            if let Some(h) = byhour { rule.push_str(&format!(";BYHOUR={h}")); }
            let until = until_days.map(|d| (start + Duration::days(d)).and_utc());
            match (count, until) {
                (Some(c), _) => rule.push_str(&format!(";COUNT={c}")),
                (None, Some(u)) => rule.push_str(&format!(";UNTIL={}", u.format("%Y%m%dT%H%M%SZ"))),
                _ => {}
            }
            let s = Schedule::parse(&rule, &start.format("%Y-%m-%dT%H:%M:%S").to_string(), tz).unwrap();
            let out = s.preview(60);
            for w in out.windows(2) {
                proptest::prop_assert!(w[0] < w[1], "{rule}: {:?}", out);
            }
            if let Some(c) = count {
                proptest::prop_assert!(out.len() <= c as usize);
            }
            if let (None, Some(u)) = (count, until) {
                proptest::prop_assert!(out.iter().all(|o| *o <= u));
            }
        }
    }
}
