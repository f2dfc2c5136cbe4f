//! The golden set: occurrences computed by python-dateutil + zoneinfo (tests/golden/generate.py,
//! which documents how wall times become instants) must match ours exactly.

use zocalo_scheduler::{fmt_utc, Schedule};

#[test]
fn matches_the_independent_implementation() {
    let text = include_str!("golden/golden.json");
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 300, "only {} golden cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let rule = case["rrule"].as_str().unwrap();
        let start = case["start"].as_str().unwrap();
        let tz = case["tz"].as_str().unwrap();
        let limit = case["limit"].as_u64().unwrap() as usize;
        let expected: Vec<String> = case["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        match Schedule::parse(rule, start, tz) {
            Ok(s) => {
                let got: Vec<String> = s.preview(limit).into_iter().map(fmt_utc).collect();
                if got != expected {
                    failures.push(format!(
                        "{rule:?} from {start} in {tz}:\n  expected {expected:?}\n  got      {got:?}"
                    ));
                }
            }
            Err(e) => failures.push(format!("{rule:?} from {start} in {tz}: rejected: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
