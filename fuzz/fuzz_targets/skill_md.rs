//! SKILL.md as `zocalo skills validate` and discovery read it: any bytes give a report.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let checked = zocalo_skills::check_bytes(std::path::Path::new("skills/demo"), data);
    // A valid report has a skill and no errors; an invalid one has at least one error.
    assert_eq!(checked.report.valid, checked.skill.is_some());
    assert_eq!(checked.report.valid, checked.report.errors.is_empty());
});
