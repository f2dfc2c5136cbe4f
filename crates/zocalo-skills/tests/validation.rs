//! Validation against fixtures written for the spec's rules, the public corpus when present,
//! and property tests proving the parser never panics or hangs on hostile input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use zocalo_skills::{check_bytes, check_dir};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn valid_fixtures_validate() {
    for name in ["hello-world", "seed-weather"] {
        let c = check_dir(&fixtures().join("valid").join(name));
        assert!(c.report.valid, "{name}: {:?}", c.report);
        assert_eq!(c.report.name.as_deref(), Some(name));
    }
    let hello = check_dir(&fixtures().join("valid/hello-world"));
    assert!(hello.report.warnings.is_empty(), "{:?}", hello.report);
    let skill = hello.skill.unwrap();
    assert_eq!(skill.metadata["version"], "1.0");
    assert_eq!(skill.license.as_deref(), Some("MIT"));
    assert!(skill.body.starts_with("# Hello world"));
    let seed = check_dir(&fixtures().join("valid/seed-weather"));
    assert_eq!(
        seed.report
            .warnings
            .iter()
            .map(|w| w.field.as_str())
            .collect::<Vec<_>>(),
        ["triggers"]
    );
}

#[test]
fn each_invalid_fixture_names_its_field() {
    let expected = [
        ("no-frontmatter", "frontmatter"),
        ("unterminated", "frontmatter"),
        ("bad-yaml", "frontmatter"),
        ("not-a-mapping", "frontmatter"),
        ("Upper-Case", "name"),
        ("mismatch", "name"),
        ("double--hyphen", "name"),
        ("no-description", "description"),
        ("empty-description", "description"),
        ("unknown-field", "version"),
        ("nested-metadata", "metadata"),
        ("list-compatibility", "compatibility"),
        ("duplicate-key", "description"),
        ("no-skill-md", "SKILL.md"),
    ];
    let on_disk = std::fs::read_dir(fixtures().join("invalid"))
        .unwrap()
        .count();
    assert_eq!(
        on_disk,
        expected.len(),
        "every invalid fixture has an expectation"
    );
    for (dir, field) in expected {
        let r = check_dir(&fixtures().join("invalid").join(dir)).report;
        assert!(!r.valid, "{dir} should be invalid");
        let fields: Vec<&str> = r.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, [field], "{dir}: {:?}", r.errors);
    }
    // Lenient loading: these bend a rule but keep a usable name and description.
    for (dir, loads) in [
        ("mismatch", true),
        ("unknown-field", true),
        ("nested-metadata", true),
        ("list-compatibility", true),
        ("duplicate-key", true),
        ("Upper-Case", true),
        ("double--hyphen", true),
        ("no-description", false),
        ("empty-description", false),
        ("bad-yaml", false),
        ("no-frontmatter", false),
    ] {
        let c = check_dir(&fixtures().join("invalid").join(dir));
        assert_eq!(c.skill.is_some(), loads, "{dir}");
    }
}

#[test]
fn report_serialises_to_the_cli_contract() {
    let r = check_dir(&fixtures().join("invalid/mismatch")).report;
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["name"], "something-else");
    assert_eq!(v["errors"][0]["field"], "name");
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("mismatch"));
    assert!(v["warnings"].is_array());
}

/// Public skills must validate unchanged. Point ZOCALO_SKILLS_CORPUS at a checkout of a
/// public collection (for example anthropics/skills): every `*/SKILL.md` under it is checked
/// and the ones that fail are printed. Without the variable there is nothing to check.
#[test]
fn public_corpus_when_given() {
    let Some(root) = std::env::var_os("ZOCALO_SKILLS_CORPUS") else {
        eprintln!("ZOCALO_SKILLS_CORPUS not set: corpus check skipped");
        return;
    };
    let mut dirs = Vec::new();
    let mut stack = vec![PathBuf::from(root)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !e.file_name().to_string_lossy().starts_with('.') {
                stack.push(p);
            } else if e.file_name() == "SKILL.md" {
                dirs.push(d.clone());
            }
        }
    }
    dirs.sort();
    assert!(!dirs.is_empty(), "no SKILL.md found in the corpus");
    let mut invalid = Vec::new();
    for d in &dirs {
        let r = check_dir(d).report;
        println!(
            "{} {} errors={:?} warnings={:?}",
            if r.valid { "VALID  " } else { "INVALID" },
            d.display(),
            r.errors,
            r.warnings.iter().map(|w| &w.message).collect::<Vec<_>>()
        );
        if !r.valid {
            invalid.push(d.display().to_string());
        }
    }
    println!(
        "{} skills, {} invalid: {invalid:?}",
        dirs.len(),
        invalid.len()
    );
    let expected: Vec<String> = std::env::var("ZOCALO_SKILLS_CORPUS_INVALID")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let names: Vec<String> = invalid
        .iter()
        .map(|p| p.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        names, expected,
        "set ZOCALO_SKILLS_CORPUS_INVALID to the known-invalid dirs"
    );
    // The registry still loads every one of them (lenient loading, errors as warnings).
    for d in &dirs {
        assert!(
            check_dir(d).skill.is_some(),
            "{} does not load",
            d.display()
        );
    }
}

fn quick(bytes: &[u8]) {
    let start = Instant::now();
    let c = check_bytes(Path::new("x"), bytes);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    // Invalid reports always say why.
    assert!(c.report.valid || !c.report.errors.is_empty());
    // A valid skill always loads; an invalid one may load leniently, but then it has a name
    // and a description.
    assert!(!c.report.valid || c.skill.is_some());
    if let Some(s) = &c.skill {
        assert!(!s.name.trim().is_empty() && !s.description.trim().is_empty());
    }
}

#[test]
fn hostile_frontmatter_is_refused_quickly() {
    let deep_flow = format!("---\nname: x\ndescription: {}\n---\n", "[".repeat(200_000));
    quick(deep_flow.as_bytes());
    let deep_map = format!(
        "---\nname: x\ndescription: d\nmetadata:\n{}\n---\n",
        (1..2000)
            .map(|i| format!("{}k{i}:", " ".repeat(i)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    quick(deep_map.as_bytes());
    let mut laughs =
        String::from("---\nname: x\ndescription: d\nmetadata:\n  a: &a [x,x,x,x,x,x,x,x,x,x]\n");
    for i in 0..12 {
        let p = if i == 0 {
            "a".to_string()
        } else {
            format!("b{}", i - 1)
        };
        laughs.push_str(&format!(
            "  b{i}: &b{i} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        ));
    }
    laughs.push_str("---\n");
    quick(laughs.as_bytes());
    let huge = format!("---\nname: x\ndescription: {}\n---\n", "y".repeat(900_000));
    quick(huge.as_bytes());
    let too_big = vec![b'a'; 2 * 1024 * 1024];
    quick(&too_big);
    let unclosed = format!("---\n{}", "k: v\n".repeat(200_000));
    quick(unclosed.as_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        quick(&bytes);
    }

    #[test]
    fn arbitrary_frontmatter_never_panics(front in "[ -~\n\t\u{e9}\u{feff}]{0,400}", body in ".{0,40}") {
        quick(format!("---\n{front}\n---\n{body}").as_bytes());
    }

    #[test]
    fn yaml_punctuation_soup_never_panics(front in "[-:&*!|>'\"\\[\\]{},#?% \nabc01]{0,300}") {
        quick(format!("---\nname: x\ndescription: d\n{front}\n---\n").as_bytes());
    }

    #[test]
    fn generated_names_follow_the_rules(name in "[a-zA-Z0-9_ -]{0,70}") {
        let c = check_bytes(Path::new(&name), format!("---\nname: \"{name}\"\ndescription: d\n---\nx\n").as_bytes());
        let ok = !name.is_empty()
            && name.chars().count() <= 64
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-') && !name.ends_with('-') && !name.contains("--");
        prop_assert_eq!(c.report.valid, ok, "{:?}: {:?}", name, c.report.errors);
    }
}
