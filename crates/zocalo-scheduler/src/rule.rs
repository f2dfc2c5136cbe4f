//! The RRULE text a user writes, parsed and checked against RFC 5545 before anything expands
//! it: every part is named in the error when it is wrong.
//!
//! Accepted input: one rule `FREQ=...;...` (optionally prefixed `RRULE:`), and optionally
//! further lines `EXDATE:...` / `RDATE:...` with comma-separated date-times, each local to the
//! schedule's zone (`20260310T093000`) or UTC (`20260310T083000Z`). Lines are separated by
//! newlines. The `rrule` crate accepts several things the RFC forbids (BYMONTHDAY=0,
//! INTERVAL=0, COUNT with UNTIL); this parser rejects them.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};

use crate::SchedulerError;

/// Longest rule text accepted (a rule is a short line; this bounds the work of parsing).
pub const MAX_RULE_LEN: usize = 8192;
/// Most values in one BYxxx list, EXDATE or RDATE line.
pub const MAX_LIST: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freq {
    Secondly,
    Minutely,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Freq {
    fn parse(s: &str) -> Option<Freq> {
        Some(match s.to_ascii_uppercase().as_str() {
            "SECONDLY" => Freq::Secondly,
            "MINUTELY" => Freq::Minutely,
            "HOURLY" => Freq::Hourly,
            "DAILY" => Freq::Daily,
            "WEEKLY" => Freq::Weekly,
            "MONTHLY" => Freq::Monthly,
            "YEARLY" => Freq::Yearly,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Freq::Secondly => "SECONDLY",
            Freq::Minutely => "MINUTELY",
            Freq::Hourly => "HOURLY",
            Freq::Daily => "DAILY",
            Freq::Weekly => "WEEKLY",
            Freq::Monthly => "MONTHLY",
            Freq::Yearly => "YEARLY",
        }
    }
}

/// A date-time in an UNTIL, EXDATE or RDATE: wall time in the schedule's zone, or UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Local(NaiveDateTime),
    Utc(DateTime<Utc>),
    /// A date alone (`VALUE=DATE` style): for UNTIL, the whole local day is included.
    Date(NaiveDate),
}

/// One RRULE, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub freq: Freq,
    pub interval: u16,
    pub count: Option<u32>,
    pub until: Option<When>,
    pub wkst: Option<Weekday>,
    pub by_second: Vec<u8>,
    pub by_minute: Vec<u8>,
    pub by_hour: Vec<u8>,
    /// (ordinal, weekday): `-1FR` is (Some(-1), Fri).
    pub by_day: Vec<(Option<i16>, Weekday)>,
    pub by_month_day: Vec<i8>,
    pub by_year_day: Vec<i16>,
    pub by_week_no: Vec<i8>,
    pub by_month: Vec<u8>,
    pub by_set_pos: Vec<i32>,
}

/// The whole `--rrule` text: the rule plus EXDATE / RDATE lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleText {
    pub rule: Rule,
    pub exdates: Vec<When>,
    pub rdates: Vec<When>,
}

fn err(part: &str, reason: impl Into<String>) -> SchedulerError {
    SchedulerError::rule(part, reason)
}

/// Parses the `--rrule` text (rule line plus optional EXDATE/RDATE lines).
pub fn parse_rule_text(text: &str) -> Result<RuleText, SchedulerError> {
    if text.len() > MAX_RULE_LEN {
        return Err(err(
            &text.chars().take(40).collect::<String>(),
            format!("the rule text is longer than {MAX_RULE_LEN} bytes"),
        ));
    }
    let mut rule = None;
    let mut exdates = Vec::new();
    let mut rdates = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // A property name is a leading run of letters and '-' followed by ':' or ';'
        // (parameters); anything else is a bare rule.
        let name_len = line
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic() || *b == b'-')
            .count();
        let (name, value) = match line[name_len..].chars().next() {
            Some(':') | Some(';') if name_len > 0 => {
                let (head, value) = line.split_once(':').unwrap_or((line, ""));
                (head.trim().to_ascii_uppercase(), value.trim())
            }
            _ => ("RRULE".to_owned(), line),
        };
        if name.contains(';') {
            return Err(err(
                line,
                "property parameters (such as ;TZID=) are not supported: the zone is --tz, \
                 and a date-time ending in Z is UTC",
            ));
        }
        match name.as_str() {
            "RRULE" => {
                if rule.is_some() {
                    return Err(err(line, "only one RRULE is supported"));
                }
                rule = Some(parse_rule(value)?);
            }
            "EXDATE" => parse_dates(value, line, &mut exdates)?,
            "RDATE" => parse_dates(value, line, &mut rdates)?,
            other => {
                return Err(err(
                    line,
                    format!("unknown property `{other}`: use RRULE, EXDATE or RDATE lines"),
                ))
            }
        }
    }
    let rule = rule.ok_or_else(|| err(text.trim(), "no rule: give at least FREQ=..."))?;
    Ok(RuleText {
        rule,
        exdates,
        rdates,
    })
}

fn parse_dates(value: &str, line: &str, out: &mut Vec<When>) -> Result<(), SchedulerError> {
    for v in value.split(',') {
        let v = v.trim();
        if out.len() >= MAX_LIST {
            return Err(err(line, format!("more than {MAX_LIST} dates")));
        }
        out.push(parse_when(v).map_err(|reason| err(v, reason))?);
    }
    Ok(())
}

/// `YYYYMMDD`, `YYYYMMDDTHHMMSS` or `YYYYMMDDTHHMMSSZ` (RFC 5545 DATE / DATE-TIME forms).
pub fn parse_when(v: &str) -> Result<When, String> {
    const SHAPE: &str = "expected YYYYMMDD, YYYYMMDDTHHMMSS (local) or YYYYMMDDTHHMMSSZ (UTC)";
    if !v.is_ascii() {
        return Err(SHAPE.into());
    }
    let (date, rest) = v.split_at(v.len().min(8));
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SHAPE.into());
    }
    let d =
        NaiveDate::parse_from_str(date, "%Y%m%d").map_err(|_| format!("no such date: {SHAPE}"))?;
    if rest.is_empty() {
        return Ok(When::Date(d));
    }
    let (time, utc) = match rest.strip_suffix(['Z', 'z']) {
        Some(t) => (t, true),
        None => (rest, false),
    };
    let time = time
        .strip_prefix(['T', 't'])
        .filter(|t| t.len() == 6 && t.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| SHAPE.to_owned())?;
    let t =
        NaiveTime::parse_from_str(time, "%H%M%S").map_err(|_| format!("no such time: {SHAPE}"))?;
    let dt = NaiveDateTime::new(d, t);
    Ok(if utc {
        When::Utc(dt.and_utc())
    } else {
        When::Local(dt)
    })
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_uppercase().as_str() {
        "MO" => Weekday::Mon,
        "TU" => Weekday::Tue,
        "WE" => Weekday::Wed,
        "TH" => Weekday::Thu,
        "FR" => Weekday::Fri,
        "SA" => Weekday::Sat,
        "SU" => Weekday::Sun,
        _ => return None,
    })
}

/// Integer list `a,b,c` within `lo..=hi`, zero rejected when `nonzero`.
fn int_list<T>(
    part: &str,
    value: &str,
    lo: i64,
    hi: i64,
    nonzero: bool,
) -> Result<Vec<T>, SchedulerError>
where
    T: TryFrom<i64>,
{
    let mut out = Vec::new();
    for v in value.split(',') {
        if out.len() >= MAX_LIST {
            return Err(err(part, format!("more than {MAX_LIST} values")));
        }
        let v = v.trim();
        let n = parse_int(v).ok_or_else(|| err(part, format!("`{v}` is not an integer")))?;
        if n == 0 && nonzero {
            return Err(err(
                part,
                format!("0 is not allowed: use {lo}..-1 or 1..{hi}"),
            ));
        }
        if n < lo || n > hi {
            return Err(err(part, format!("{n} is out of range {lo} to {hi}")));
        }
        out.push(T::try_from(n).map_err(|_| err(part, format!("{n} is out of range")))?);
    }
    Ok(out)
}

/// A signed decimal integer of at most 9 digits (RFC values are small; this bounds them).
fn parse_int(v: &str) -> Option<i64> {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Parses one rule `FREQ=...;KEY=VALUE;...` and checks it against RFC 5545 section 3.3.10.
pub fn parse_rule(text: &str) -> Result<Rule, SchedulerError> {
    let mut freq = None;
    let mut rule = Rule {
        freq: Freq::Daily,
        interval: 1,
        count: None,
        until: None,
        wkst: None,
        by_second: vec![],
        by_minute: vec![],
        by_hour: vec![],
        by_day: vec![],
        by_month_day: vec![],
        by_year_day: vec![],
        by_week_no: vec![],
        by_month: vec![],
        by_set_pos: vec![],
    };
    let mut seen: Vec<String> = Vec::new();
    for part in text.split(';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| err(part, "expected KEY=VALUE"))?;
        let key = key.trim().to_ascii_uppercase();
        let value = value.trim();
        if value.is_empty() {
            return Err(err(part, "empty value"));
        }
        if seen.contains(&key) {
            return Err(err(part, format!("{key} appears twice")));
        }
        seen.push(key.clone());
        match key.as_str() {
            "FREQ" => {
                freq = Some(Freq::parse(value).ok_or_else(|| {
                    err(
                        part,
                        "unknown frequency: use SECONDLY, MINUTELY, HOURLY, DAILY, WEEKLY, \
                         MONTHLY or YEARLY",
                    )
                })?)
            }
            "INTERVAL" => {
                let n = parse_int(value).ok_or_else(|| err(part, "not an integer"))?;
                if n < 1 {
                    return Err(err(part, "INTERVAL must be a positive integer (1 or more)"));
                }
                rule.interval = u16::try_from(n)
                    .map_err(|_| err(part, "INTERVAL above 65535 is not supported"))?;
            }
            "COUNT" => {
                let n = parse_int(value).ok_or_else(|| err(part, "not an integer"))?;
                if n < 1 {
                    return Err(err(part, "COUNT must be a positive integer (1 or more)"));
                }
                rule.count = Some(u32::try_from(n).map_err(|_| err(part, "COUNT is too large"))?);
            }
            "UNTIL" => rule.until = Some(parse_when(value).map_err(|r| err(part, r))?),
            "WKST" => {
                rule.wkst =
                    Some(weekday(value).ok_or_else(|| {
                        err(part, "expected a weekday: MO, TU, WE, TH, FR, SA or SU")
                    })?)
            }
            "BYSECOND" => rule.by_second = int_list(part, value, 0, 59, false)?,
            "BYMINUTE" => rule.by_minute = int_list(part, value, 0, 59, false)?,
            "BYHOUR" => rule.by_hour = int_list(part, value, 0, 23, false)?,
            "BYMONTHDAY" => rule.by_month_day = int_list(part, value, -31, 31, true)?,
            "BYYEARDAY" => rule.by_year_day = int_list(part, value, -366, 366, true)?,
            "BYWEEKNO" => rule.by_week_no = int_list(part, value, -53, 53, true)?,
            "BYMONTH" => rule.by_month = int_list(part, value, 1, 12, false)?,
            "BYSETPOS" => rule.by_set_pos = int_list(part, value, -366, 366, true)?,
            "BYDAY" => {
                for v in value.split(',') {
                    if rule.by_day.len() >= MAX_LIST {
                        return Err(err(part, format!("more than {MAX_LIST} values")));
                    }
                    let v = v.trim();
                    let bad = || {
                        err(
                            part,
                            format!("`{v}` is not a weekday such as MO, 2TU or -1FR"),
                        )
                    };
                    if v.len() < 2 || !v.is_ascii() {
                        return Err(bad());
                    }
                    let (num, day) = v.split_at(v.len() - 2);
                    let day = weekday(day).ok_or_else(bad)?;
                    let num = if num.is_empty() {
                        None
                    } else {
                        let n = parse_int(num).ok_or_else(bad)?;
                        if n == 0 || !(-53..=53).contains(&n) {
                            return Err(err(
                                part,
                                format!("`{v}`: the ordinal must be 1 to 53 or -1 to -53"),
                            ));
                        }
                        Some(n as i16)
                    };
                    rule.by_day.push((num, day));
                }
            }
            other => {
                return Err(err(
                    part,
                    format!(
                        "unknown rule part `{other}`: use FREQ, INTERVAL, COUNT, UNTIL, WKST, \
                         BYSECOND, BYMINUTE, BYHOUR, BYDAY, BYMONTHDAY, BYYEARDAY, BYWEEKNO, \
                         BYMONTH or BYSETPOS"
                    ),
                ))
            }
        }
    }
    rule.freq = freq.ok_or_else(|| err(text.trim(), "FREQ is required (e.g. FREQ=DAILY)"))?;
    check_combinations(&rule, text.trim())?;
    Ok(rule)
}

/// The combinations RFC 5545 forbids.
fn check_combinations(r: &Rule, text: &str) -> Result<(), SchedulerError> {
    if r.count.is_some() && r.until.is_some() {
        return Err(err(
            text,
            "COUNT and UNTIL must not both be given (RFC 5545)",
        ));
    }
    if !r.by_month_day.is_empty() && r.freq == Freq::Weekly {
        return Err(err("BYMONTHDAY", "not allowed with FREQ=WEEKLY (RFC 5545)"));
    }
    if !r.by_year_day.is_empty() && matches!(r.freq, Freq::Daily | Freq::Weekly | Freq::Monthly) {
        return Err(err(
            "BYYEARDAY",
            format!("not allowed with FREQ={} (RFC 5545)", r.freq.as_str()),
        ));
    }
    if !r.by_week_no.is_empty() && r.freq != Freq::Yearly {
        return Err(err("BYWEEKNO", "only allowed with FREQ=YEARLY (RFC 5545)"));
    }
    let ordinals = r.by_day.iter().any(|(n, _)| n.is_some());
    if ordinals {
        if !matches!(r.freq, Freq::Monthly | Freq::Yearly) {
            return Err(err(
                "BYDAY",
                "a numbered weekday (such as 1MO) needs FREQ=MONTHLY or FREQ=YEARLY (RFC 5545)",
            ));
        }
        if r.freq == Freq::Yearly && !r.by_week_no.is_empty() {
            return Err(err(
                "BYDAY",
                "a numbered weekday must not be combined with BYWEEKNO (RFC 5545)",
            ));
        }
        let monthly = r.freq == Freq::Monthly || !r.by_month.is_empty();
        if monthly {
            if let Some((Some(n), _)) = r
                .by_day
                .iter()
                .find(|(n, _)| n.is_some_and(|n| n.abs() > 5))
            {
                return Err(err(
                    "BYDAY",
                    format!("a month has at most 5 of each weekday, not {n}"),
                ));
            }
        }
    }
    if !r.by_set_pos.is_empty()
        && r.by_second.is_empty()
        && r.by_minute.is_empty()
        && r.by_hour.is_empty()
        && r.by_day.is_empty()
        && r.by_month_day.is_empty()
        && r.by_year_day.is_empty()
        && r.by_week_no.is_empty()
        && r.by_month.is_empty()
    {
        return Err(err(
            "BYSETPOS",
            "needs another BYxxx part to select from (RFC 5545)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(text: &str) -> String {
        parse_rule_text(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_a_full_rule() {
        let r = parse_rule("FREQ=MONTHLY;INTERVAL=2;BYDAY=-1FR,2MO;BYMONTH=1,6;WKST=SU;COUNT=4")
            .unwrap();
        assert_eq!(r.freq, Freq::Monthly);
        assert_eq!(r.interval, 2);
        assert_eq!(
            r.by_day,
            vec![(Some(-1), Weekday::Fri), (Some(2), Weekday::Mon)]
        );
        assert_eq!(r.by_month, vec![1, 6]);
        assert_eq!(r.wkst, Some(Weekday::Sun));
        assert_eq!(r.count, Some(4));
    }

    #[test]
    fn rejects_what_rfc_5545_forbids_naming_the_part() {
        for (text, needle) in [
            ("FREQ=FORTNIGHTLY", "FREQ=FORTNIGHTLY"),
            ("FREQ=YEARLY;BYMONTH=13", "BYMONTH=13"),
            ("FREQ=DAILY;BYHOUR=24", "BYHOUR=24"),
            ("FREQ=DAILY;INTERVAL=0", "INTERVAL=0"),
            ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY=0"),
            (
                "FREQ=DAILY;COUNT=3;UNTIL=20260101T000000Z",
                "COUNT and UNTIL",
            ),
            ("FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY"),
            ("FREQ=DAILY;BYDAY=1MO", "numbered weekday"),
            ("FREQ=DAILY;BYSETPOS=1", "BYSETPOS"),
            ("FREQ=DAILY;BYWEEKNO=3", "BYWEEKNO"),
            ("INTERVAL=2", "FREQ is required"),
            ("FREQ=DAILY;FOO=1", "unknown rule part `FOO`"),
            ("FREQ=DAILY;FREQ=WEEKLY", "appears twice"),
            ("FREQ=DAILY;UNTIL=2026-01-01", "UNTIL=2026-01-01"),
            ("FREQ=DAILY\nEXDATE:20260230T100000", "no such date"),
            (
                "FREQ=DAILY\nEXDATE;TZID=Europe/Berlin:20260301T100000",
                "parameters",
            ),
            ("", "no rule"),
        ] {
            let e = bad(text);
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn reads_exdate_and_rdate_lines() {
        let t = parse_rule_text(
            "RRULE:FREQ=DAILY\nEXDATE:20260310T090000,20260311T080000Z\nRDATE:20260401",
        )
        .unwrap();
        assert_eq!(t.exdates.len(), 2);
        assert!(matches!(t.exdates[1], When::Utc(_)));
        assert!(matches!(t.rdates[0], When::Date(_)));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in ".{0,200}") {
            let _ = parse_rule_text(&s);
        }

        #[test]
        fn never_panics_on_rule_shaped_text(
            parts in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYSECOND", "BYMINUTE",
                        "BYHOUR", "BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYMONTH",
                        "BYSETPOS", "X",
                    ]),
                    "[-+0-9A-Za-z,]{0,12}",
                ),
                0..8,
            )
        ) {
            let text: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = parse_rule_text(&text.join(";"));
        }
    }
}
