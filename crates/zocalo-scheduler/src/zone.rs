//! IANA zones and wall time: parsing a zone name (with suggestions), parsing a local start,
//! and turning a wall time into an instant with RFC 5545's rules for DST gaps and overlaps.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use crate::SchedulerError;

/// Parses an IANA zone name such as `Europe/Berlin`; an unknown name gets up to three close
/// names as suggestions.
pub fn parse_zone(name: &str) -> Result<Tz, SchedulerError> {
    let name = name.trim();
    if let Ok(tz) = name.parse::<Tz>() {
        return Ok(tz);
    }
    Err(SchedulerError::UnknownZone {
        name: name.to_owned(),
        suggestions: suggestions(name),
    })
}

fn suggestions(name: &str) -> Vec<String> {
    let lower = name.to_ascii_lowercase().replace(' ', "_");
    if lower.is_empty() {
        return Vec::new();
    }
    let names = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
    let mut scored: Vec<(usize, &str)> = names
        .filter_map(|n| {
            let l = n.to_ascii_lowercase();
            let city = l.rsplit('/').next().unwrap_or(&l);
            let score = if l == lower {
                0
            } else if city == lower || l.ends_with(&format!("/{lower}")) {
                1
            } else if lower.len() >= 3 && l.contains(&lower) {
                2
            } else {
                let d = levenshtein(&l, &lower).min(levenshtein(city, &lower) + 1);
                if d <= 3 {
                    2 + d
                } else {
                    return None;
                }
            };
            Some((score, n))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(3)
        .map(|(_, n)| n.to_owned())
        .collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses a local start `YYYY-MM-DDTHH:MM:SS` (or `YYYY-MM-DDTHH:MM`); an offset or `Z` is
/// refused, because the zone is given separately.
pub fn parse_start(value: &str) -> Result<NaiveDateTime, SchedulerError> {
    let v = value.trim();
    let bad = |reason: &str| SchedulerError::Start {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    if v.ends_with(['Z', 'z']) || v.get(19..).is_some_and(|rest| rest.starts_with(['+', '-'])) {
        return Err(bad(
            "give the local wall time without an offset or Z; the zone goes in --tz",
        ));
    }
    NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M"))
        .map_err(|_| {
            bad("expected YYYY-MM-DDTHH:MM:SS, a real date and time (e.g. 2026-03-08T07:30:00)")
        })
}

/// The instant of wall time `w` in `tz`, per RFC 5545 section 3.3.5: a time that occurs twice
/// (the clocks went back) is its first occurrence; a time that does not occur (the clocks
/// went forward) is read with the UTC offset in force before the gap, so 02:30 in Berlin's
/// spring-forward gap is 03:30 CEST (01:30Z).
pub fn resolve_local(tz: Tz, w: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&w) {
        LocalResult::Single(d) => d.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.with_timezone(&Utc).min(b.with_timezone(&Utc)),
        LocalResult::None => {
            // Step back in wall time until it exists again: that is before the gap, and the
            // offset there is the one in force before it. Gaps are at most a day long.
            for k in 1..=200 {
                let earlier = w - Duration::minutes(15 * k);
                let off = match tz.from_local_datetime(&earlier) {
                    LocalResult::Single(d) => d.offset().fix(),
                    // The later of two offsets is the one right before the gap.
                    LocalResult::Ambiguous(_, b) => b.offset().fix(),
                    LocalResult::None => continue,
                };
                return (w - Duration::seconds(i64::from(off.local_minus_utc()))).and_utc();
            }
            // Not reached for any real zone; fall back to the offset at that instant.
            let off = tz.offset_from_utc_datetime(&w).fix();
            (w - Duration::seconds(i64::from(off.local_minus_utc()))).and_utc()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        parse_start(s).unwrap()
    }

    #[test]
    fn gap_takes_the_offset_before_it() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let u = resolve_local(berlin, at("2026-03-29T02:30:00"));
        assert_eq!(u.to_rfc3339(), "2026-03-29T01:30:00+00:00");
        // Lord Howe moves by 30 minutes: 02:15 does not exist on 2026-10-04.
        let lh: Tz = "Australia/Lord_Howe".parse().unwrap();
        let u = resolve_local(lh, at("2026-10-04T02:15:00"));
        // Before the gap the offset is +10:30, so 02:15 is 15:45Z the day before.
        assert_eq!(u.to_rfc3339(), "2026-10-03T15:45:00+00:00");
        // Sao Paulo 2018-11-04: midnight did not exist.
        let sp: Tz = "America/Sao_Paulo".parse().unwrap();
        let u = resolve_local(sp, at("2018-11-04T00:00:00"));
        assert_eq!(u.to_rfc3339(), "2018-11-04T03:00:00+00:00");
    }

    #[test]
    fn overlap_takes_the_first_instance() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let u = resolve_local(ny, at("2026-11-01T01:30:00"));
        assert_eq!(u.to_rfc3339(), "2026-11-01T05:30:00+00:00");
    }

    #[test]
    fn unknown_zones_get_suggestions() {
        let e = parse_zone("Europe/Berln").unwrap_err().to_string();
        assert!(e.contains("Europe/Berlin"), "{e}");
        let e = parse_zone("berlin").unwrap_err().to_string();
        assert!(e.contains("Europe/Berlin"), "{e}");
        let e = parse_zone("Mars/Olympus").unwrap_err().to_string();
        assert!(e.contains("unknown time zone `Mars/Olympus`"), "{e}");
    }

    #[test]
    fn start_must_be_local() {
        assert!(parse_start("2026-03-08T07:30:00Z").is_err());
        assert!(parse_start("2026-03-08T07:30:00+01:00").is_err());
        assert!(parse_start("2026-02-30T07:30:00").is_err());
        assert!(parse_start("tomorrow").is_err());
        assert_eq!(at("2026-03-08T07:30"), at("2026-03-08T07:30:00"));
    }
}
