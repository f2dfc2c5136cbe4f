//! `--rrule`, `--start` and `--tz` (one per line), then the first occurrences: parsing and
//! expansion must end, in order, whatever the rule.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let rrule = parts.next().unwrap_or_default();
    let start = parts.next().unwrap_or("2026-03-01T07:30:00");
    let tz = parts.next().unwrap_or("Europe/Madrid");
    if let Ok(s) = zocalo_scheduler::Schedule::parse(rrule, start, tz) {
        let first = s.preview(20);
        assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
        if let Some(t) = first.first() {
            assert!(s.next_after(*t).is_none_or(|n| n > *t));
        }
    }
});
