//! Our own expansion of HOURLY, MINUTELY and SECONDLY rules in floating wall time.
//!
//! Why not the `rrule` crate: when a day, hour or minute is filtered out (BYHOUR, BYDAY, ...)
//! it jumps to the start of the next one, losing the INTERVAL's alignment whenever the
//! interval does not divide the day: `FREQ=MINUTELY;INTERVAL=45;BYHOUR=1,2,3` from 23:30 gives
//! 01:15, 02:00, ... instead of RFC 5545's (and python-dateutil's) 01:00, 01:45, ....
//! Here every period is `start + k * INTERVAL` exactly; skipping a filtered day or hour jumps
//! to the first aligned period after it, so sparse rules stay cheap.

use std::collections::VecDeque;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::rule::{Freq, Rule};

/// Consecutive periods (after day and hour jumps) without an occurrence before the rule is
/// taken to match nothing more.
const MAX_EMPTY: u32 = 200_000;

pub(crate) struct SubDaily {
    rule: Rule,
    start: NaiveDateTime,
    /// The first period: the start truncated to the frequency's unit.
    origin: NaiveDateTime,
    step: i64,
    k: i64,
    buf: VecDeque<NaiveDateTime>,
    left: Option<u32>,
    empty: u32,
    done: bool,
}

impl SubDaily {
    pub(crate) fn new(rule: &Rule, start: NaiveDateTime) -> SubDaily {
        let unit = match rule.freq {
            Freq::Hourly => 3600,
            Freq::Minutely => 60,
            _ => 1,
        };
        let origin = start.with_nanosecond(0).unwrap_or(start);
        let origin = match rule.freq {
            Freq::Hourly => origin.with_minute(0).and_then(|t| t.with_second(0)),
            Freq::Minutely => origin.with_second(0),
            _ => Some(origin),
        }
        .unwrap_or(origin);
        SubDaily {
            rule: rule.clone(),
            start,
            origin,
            step: unit * i64::from(rule.interval),
            k: 0,
            buf: VecDeque::new(),
            left: rule.count,
            empty: 0,
            done: false,
        }
    }

    /// Skips to the last aligned period at or before `wall` (never before the start). Only
    /// valid without COUNT, which needs every occurrence from the start counted.
    pub(crate) fn skip_to(&mut self, wall: NaiveDateTime) {
        if self.left.is_some() || wall <= self.origin {
            return;
        }
        let diff = (wall - self.origin).num_seconds();
        self.k = self.k.max(diff.div_euclid(self.step));
    }

    fn period(&self, k: i64) -> Option<NaiveDateTime> {
        let secs = k.checked_mul(self.step)?;
        self.origin.checked_add_signed(Duration::try_seconds(secs)?)
    }

    /// Moves to the first aligned period at or after `t` (at least one step on).
    fn jump_to(&mut self, t: NaiveDateTime) {
        let diff = (t - self.origin).num_seconds();
        let k = diff.div_euclid(self.step) + i64::from(diff.rem_euclid(self.step) != 0);
        self.k = k.max(self.k + 1);
    }

    fn date_ok(&self, d: NaiveDate) -> bool {
        let r = &self.rule;
        if !r.by_month.is_empty() && !r.by_month.contains(&(d.month() as u8)) {
            return false;
        }
        if !r.by_month_day.is_empty() {
            let dim = days_in_month(d);
            let day = d.day() as i32;
            if !r
                .by_month_day
                .iter()
                .any(|&n| i32::from(n) == day || i32::from(n) == day - dim - 1)
            {
                return false;
            }
        }
        if !r.by_year_day.is_empty() {
            let diy = if d.leap_year() { 366 } else { 365 };
            let yd = d.ordinal() as i32;
            if !r
                .by_year_day
                .iter()
                .any(|&n| i32::from(n) == yd || i32::from(n) == yd - diy - 1)
            {
                return false;
            }
        }
        if !r.by_day.is_empty() && !r.by_day.iter().any(|(_, w)| *w == d.weekday()) {
            return false;
        }
        true
    }

    fn fill(&mut self) {
        let Some(p) = self.period(self.k) else {
            self.done = true;
            return;
        };
        if p.year() > 9999 || self.empty > MAX_EMPTY {
            self.done = true;
            return;
        }
        let r = &self.rule;
        if !self.date_ok(p.date()) {
            self.empty += 1;
            let next_day = p.date().succ_opt().map(|d| d.and_time(NaiveTime::MIN));
            match next_day {
                Some(t) => self.jump_to(t),
                None => self.done = true,
            }
            return;
        }
        let hour_start = p.date().and_time(NaiveTime::MIN) + Duration::hours(i64::from(p.hour()));
        if !r.by_hour.is_empty() && !r.by_hour.contains(&(p.hour() as u8)) {
            self.empty += 1;
            self.jump_to(hour_start + Duration::hours(1));
            return;
        }
        if r.freq != Freq::Hourly
            && !r.by_minute.is_empty()
            && !r.by_minute.contains(&(p.minute() as u8))
        {
            self.empty += 1;
            let minute_start = hour_start + Duration::minutes(i64::from(p.minute()));
            self.jump_to(minute_start + Duration::minutes(1));
            return;
        }
        if r.freq == Freq::Secondly
            && !r.by_second.is_empty()
            && !r.by_second.contains(&(p.second() as u8))
        {
            self.empty += 1;
            self.k += 1;
            return;
        }
        let or_start = |v: &Vec<u8>, x: u32| {
            if v.is_empty() {
                vec![x as u8]
            } else {
                v.clone()
            }
        };
        let mut set: Vec<NaiveDateTime> = match r.freq {
            Freq::Hourly => {
                let mut out = Vec::new();
                for m in or_start(&r.by_minute, self.start.minute()) {
                    for s in or_start(&r.by_second, self.start.second()) {
                        out.push(hour_start + Duration::seconds(i64::from(m) * 60 + i64::from(s)));
                    }
                }
                out
            }
            Freq::Minutely => or_start(&r.by_second, self.start.second())
                .into_iter()
                .map(|s| p + Duration::seconds(i64::from(s)))
                .collect(),
            _ => vec![p],
        };
        set.sort();
        set.dedup();
        if !r.by_set_pos.is_empty() {
            let n = set.len() as i64;
            let mut picked: Vec<NaiveDateTime> = r
                .by_set_pos
                .iter()
                .filter_map(|&pos| {
                    let i = if pos > 0 {
                        i64::from(pos) - 1
                    } else {
                        n + i64::from(pos)
                    };
                    usize::try_from(i).ok().and_then(|i| set.get(i).copied())
                })
                .collect();
            picked.sort();
            picked.dedup();
            set = picked;
        }
        let before = self.buf.len();
        self.buf
            .extend(set.into_iter().filter(|w| *w >= self.start));
        if self.buf.len() == before {
            self.empty += 1;
        } else {
            self.empty = 0;
        }
        self.k += 1;
    }
}

fn days_in_month(d: NaiveDate) -> i32 {
    let (y, m) = (d.year(), d.month());
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    };
    next.and_then(|n| n.pred_opt())
        .map_or(31, |l| l.day() as i32)
}

impl Iterator for SubDaily {
    type Item = NaiveDateTime;

    fn next(&mut self) -> Option<NaiveDateTime> {
        loop {
            if self.left == Some(0) {
                return None;
            }
            if let Some(w) = self.buf.pop_front() {
                if let Some(l) = &mut self.left {
                    *l -= 1;
                }
                return Some(w);
            }
            if self.done {
                return None;
            }
            self.fill();
        }
    }
}
