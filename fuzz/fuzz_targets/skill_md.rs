//! SKILL.md as `zocalo skills validate` and discovery read it: any bytes give a report.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let checked = zocalo_skills::check_bytes(std::path::Path::new("skills/demo"), data);
    // Valid means no errors, and a valid skill always loads (an invalid one may load too,
    // when it only bends rules the spec's client guide says to tolerate).
    assert_eq!(checked.report.valid, checked.report.errors.is_empty());
    if checked.report.valid {
        assert!(checked.skill.is_some());
    }
});
