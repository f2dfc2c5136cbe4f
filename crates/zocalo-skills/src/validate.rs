//! `SKILL.md` parsing and validation, rule by rule from the Agent Skills specification
//! (agentskills.io/specification, and its reference validator `skills-ref`).
//!
//! What the spec says a skill *must* do is an error; what it *recommends* is a warning. Every
//! issue names the frontmatter key it is about, or `frontmatter` for a missing, unterminated or
//! unparsable block, or `SKILL.md` for the file itself. Sizes are checked before any YAML is
//! parsed, so a huge or hostile file costs a bounded amount of work.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::yaml::{self, Node};

/// A `SKILL.md` larger than this is refused unread (our limit, not the spec's).
pub const MAX_SKILL_MD_BYTES: usize = 1024 * 1024;
/// Frontmatter larger than this is refused before YAML parsing (our limit).
pub const MAX_FRONTMATTER_BYTES: usize = 64 * 1024;
/// Spec: `name` is 1-64 characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Spec: `description` is 1-1024 characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Spec: `compatibility` is 1-500 characters if present.
pub const MAX_COMPATIBILITY_CHARS: usize = 500;
/// Spec recommendation: keep `SKILL.md` under 500 lines.
pub const RECOMMENDED_MAX_LINES: usize = 500;
/// Spec recommendation: instructions under 5000 tokens.
pub const RECOMMENDED_MAX_BODY_TOKENS: usize = 5000;
/// Our recommendation for `license` ("keep it short").
pub const RECOMMENDED_MAX_LICENSE_CHARS: usize = 200;

/// The frontmatter fields the specification defines.
pub const SPEC_FIELDS: &[&str] = &[
    "name",
    "description",
    "license",
    "compatibility",
    "metadata",
    "allowed-tools",
];

/// One problem, tied to the frontmatter key (or `frontmatter` / `SKILL.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub field: String,
    pub message: String,
}

impl Issue {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The result of validating one skill: the `validate --json` document.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub valid: bool,
    /// The frontmatter name when it could be read, even if invalid.
    pub name: Option<String>,
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

/// A valid skill: its frontmatter, its instructions and where it lives.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skill {
    pub name: String,
    pub description: String,
    pub license: Option<String>,
    pub compatibility: Option<String>,
    /// String keys to string values. Seed-style `triggers` are kept here too, joined by ", ".
    pub metadata: BTreeMap<String, String>,
    /// `allowed-tools`, split on whitespace. Recorded, not enforced (experimental in the spec).
    pub allowed_tools: Vec<String>,
    /// Seed-style `triggers` (not in the spec).
    pub triggers: Vec<String>,
    /// The Markdown after the frontmatter, trimmed.
    #[serde(skip)]
    pub body: String,
    /// The skill directory (the parent of `SKILL.md`).
    pub dir: PathBuf,
}

/// Validation of one skill: the strict report, and the skill when it can be loaded.
///
/// `report.valid` is the spec's verdict. `skill` is also `Some` for a skill that breaks only
/// rules the spec's client guide says to load anyway (name differing from the directory or
/// too long, description or compatibility too long, unknown fields, malformed optional
/// fields): public skills that bend a rule still load, with their errors as warnings.
/// Unreadable frontmatter, a missing/empty name or description, or a name with characters
/// other than letters, digits and hyphens make it unloadable.
#[derive(Clone, Debug)]
pub struct Checked {
    pub report: Report,
    pub skill: Option<Skill>,
}

/// Validate the skill directory `dir`: find and read its `SKILL.md` (size-capped), then check it.
pub fn check_dir(dir: &Path) -> Checked {
    let fail = |message: String| Checked {
        report: Report {
            valid: false,
            name: None,
            errors: vec![Issue::new("SKILL.md", message)],
            warnings: Vec::new(),
        },
        skill: None,
    };
    if !dir.is_dir() {
        return fail(format!("{} is not a directory", dir.display()));
    }
    let mut warnings = Vec::new();
    let path = if dir.join("SKILL.md").is_file() {
        dir.join("SKILL.md")
    } else if dir.join("skill.md").is_file() {
        warnings.push(Issue::new(
            "SKILL.md",
            "the file is named skill.md; the spec's name is SKILL.md (accepted)",
        ));
        dir.join("skill.md")
    } else {
        return fail(format!("missing: {} has no SKILL.md", dir.display()));
    };
    let bytes = match read_capped(&path, MAX_SKILL_MD_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => {
            return fail(format!(
                "larger than {} KiB: move detail into references/",
                MAX_SKILL_MD_BYTES / 1024
            ))
        }
        Err(e) => return fail(format!("cannot read {}: {e}", path.display())),
    };
    let mut checked = check_bytes(dir, &bytes);
    warnings.append(&mut checked.report.warnings);
    checked.report.warnings = warnings;
    if let Some(skill) = &checked.skill {
        checked
            .report
            .warnings
            .extend(check_links(&skill.body, dir));
    }
    checked
}

/// Read at most `limit` bytes; `None` if the file is larger.
pub(crate) fn read_capped(path: &Path, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut buf)?;
    Ok((buf.len() <= limit).then_some(buf))
}

/// Validate `SKILL.md` content for a skill living in `dir` (only its last component is used:
/// the name must equal it). Never panics, whatever the bytes.
pub fn check_bytes(dir: &Path, bytes: &[u8]) -> Checked {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let done = |errors: Vec<Issue>, warnings: Vec<Issue>, name: Option<String>| Checked {
        report: Report {
            valid: false,
            name,
            errors,
            warnings,
        },
        skill: None,
    };
    if bytes.len() > MAX_SKILL_MD_BYTES {
        errors.push(Issue::new(
            "SKILL.md",
            format!("larger than {} KiB", MAX_SKILL_MD_BYTES / 1024),
        ));
        return done(errors, warnings, None);
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            errors.push(Issue::new(
                "SKILL.md",
                format!("not valid UTF-8 (at byte {})", e.valid_up_to()),
            ));
            return done(errors, warnings, None);
        }
    };
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => {
            warnings.push(Issue::new(
                "SKILL.md",
                "starts with a byte-order mark; save it as plain UTF-8",
            ));
            rest
        }
        None => text,
    };
    let (front, body) = match split_frontmatter(text) {
        Ok(parts) => parts,
        Err(issue) => {
            errors.push(issue);
            return done(errors, warnings, None);
        }
    };
    let root = match yaml::parse(front) {
        Ok(Some(Node::Map(entries))) => entries,
        Ok(Some(other)) => {
            errors.push(Issue::new(
                "frontmatter",
                format!(
                    "must be a YAML mapping of fields (name: ..., description: ...), not a {}",
                    other.kind()
                ),
            ));
            return done(errors, warnings, None);
        }
        Ok(None) => {
            errors.push(Issue::new(
                "frontmatter",
                "is empty: it needs at least `name` and `description`",
            ));
            return done(errors, warnings, None);
        }
        Err(e) => {
            let hint = if e.contains("mapping values are not allowed") {
                " (a value containing \": \" must be quoted)"
            } else {
                ""
            };
            errors.push(Issue::new(
                "frontmatter",
                format!("is not valid YAML: {e}{hint}"),
            ));
            return done(errors, warnings, None);
        }
    };

    let mut fields: BTreeMap<String, Node> = BTreeMap::new();
    for (key, value) in root {
        let Node::Scalar(key) = key else {
            errors.push(Issue::new(
                "frontmatter",
                format!("keys must be plain strings, found {}", key.key_text()),
            ));
            continue;
        };
        if fields.contains_key(&key) {
            errors.push(Issue::new(&key, "appears more than once"));
            continue;
        }
        fields.insert(key, value);
    }

    let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = required_text(&fields, "name", &mut errors);
    let mut loadable = name.is_some();
    if let Some(name) = &name {
        loadable &= check_name(name, dir_name.as_deref(), &mut errors, &mut warnings);
    }
    let description = required_text(&fields, "description", &mut errors);
    loadable &= description.is_some();
    if let Some(d) = &description {
        let n = d.chars().count();
        if n > MAX_DESCRIPTION_CHARS {
            errors.push(Issue::new(
                "description",
                format!("is {n} characters; the limit is {MAX_DESCRIPTION_CHARS}"),
            ));
        }
    }
    let license = optional_text(&fields, "license", &mut errors, &mut warnings);
    if let Some(l) = &license {
        if l.chars().count() > RECOMMENDED_MAX_LICENSE_CHARS {
            warnings.push(Issue::new(
                "license",
                "is long: the spec recommends a license name or the name of a bundled license file",
            ));
        }
    }
    let compatibility = match fields.get("compatibility") {
        None => None,
        Some(Node::Scalar(s)) if !s.trim().is_empty() => {
            let n = s.chars().count();
            if n > MAX_COMPATIBILITY_CHARS {
                errors.push(Issue::new(
                    "compatibility",
                    format!("is {n} characters; the limit is {MAX_COMPATIBILITY_CHARS}"),
                ));
            }
            Some(s.clone())
        }
        Some(Node::Scalar(_)) | Some(Node::Null) => {
            errors.push(Issue::new(
                "compatibility",
                format!("must be 1-{MAX_COMPATIBILITY_CHARS} characters when present; remove it if there are no requirements"),
            ));
            None
        }
        Some(other) => {
            errors.push(Issue::new(
                "compatibility",
                format!("must be a string, not a {}", other.kind()),
            ));
            None
        }
    };
    let mut metadata = BTreeMap::new();
    match fields.get("metadata") {
        None => {}
        Some(Node::Null) => warnings.push(Issue::new("metadata", "is empty; remove it")),
        Some(Node::Map(entries)) => {
            for (k, v) in entries {
                let Node::Scalar(k) = k else {
                    errors.push(Issue::new(
                        "metadata",
                        format!("keys must be strings, found {}", k.key_text()),
                    ));
                    continue;
                };
                let value = match v {
                    Node::Scalar(s) => s.clone(),
                    Node::Null => String::new(),
                    other => {
                        errors.push(Issue::new(
                            "metadata",
                            format!(
                                "metadata.{k} must be a string value, not a {} (the spec's metadata maps strings to strings)",
                                other.kind()
                            ),
                        ));
                        continue;
                    }
                };
                if metadata.insert(k.clone(), value).is_some() {
                    errors.push(Issue::new(
                        "metadata",
                        format!("metadata.{k} appears more than once"),
                    ));
                }
            }
        }
        Some(other) => errors.push(Issue::new(
            "metadata",
            format!(
                "must be a mapping of string keys to string values, not a {}",
                other.kind()
            ),
        )),
    }
    let allowed_tools = match fields.get("allowed-tools") {
        None => Vec::new(),
        Some(Node::Scalar(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Node::Null) => {
            warnings.push(Issue::new("allowed-tools", "is empty; remove it"));
            Vec::new()
        }
        Some(Node::Seq(items)) if items.iter().all(|i| matches!(i, Node::Scalar(_))) => {
            warnings.push(Issue::new(
                "allowed-tools",
                "the spec wants one space-separated string, not a list (accepted)",
            ));
            items
                .iter()
                .filter_map(|i| match i {
                    Node::Scalar(s) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        }
        Some(other) => {
            errors.push(Issue::new(
                "allowed-tools",
                format!(
                    "must be a space-separated string of tool names, not a {}",
                    other.kind()
                ),
            ));
            Vec::new()
        }
    };
    if !allowed_tools.is_empty() {
        warnings.push(Issue::new(
            "allowed-tools",
            "is experimental in the spec; zocalo records it but does not enforce it",
        ));
    }
    let mut triggers = Vec::new();
    if let Some(t) = fields.get("triggers") {
        match t {
            Node::Scalar(s) => triggers.push(s.clone()),
            Node::Seq(items) if items.iter().all(|i| matches!(i, Node::Scalar(_))) => triggers
                .extend(items.iter().filter_map(|i| match i {
                    Node::Scalar(s) => Some(s.clone()),
                    _ => None,
                })),
            Node::Null => {}
            other => errors.push(Issue::new(
                "triggers",
                format!(
                    "must be a string or a list of strings, not a {}",
                    other.kind()
                ),
            )),
        }
        warnings.push(Issue::new(
            "triggers",
            "is not in the Agent Skills spec (seed-style); kept as metadata.triggers",
        ));
        if !triggers.is_empty() {
            metadata
                .entry("triggers".to_owned())
                .or_insert_with(|| triggers.join(", "));
        }
    }
    for key in fields.keys() {
        if !SPEC_FIELDS.contains(&key.as_str()) && key != "triggers" {
            errors.push(Issue::new(
                key,
                format!(
                    "unknown field: the spec allows only {}; put extra data under `metadata`",
                    SPEC_FIELDS.join(", ")
                ),
            ));
        }
    }

    let body = body.trim();
    if body.is_empty() {
        warnings.push(Issue::new(
            "SKILL.md",
            "has no instructions after the frontmatter",
        ));
    }
    let lines = text.lines().count();
    if lines > RECOMMENDED_MAX_LINES {
        warnings.push(Issue::new(
            "SKILL.md",
            format!("is {lines} lines; the spec recommends under {RECOMMENDED_MAX_LINES}: move detail into references/"),
        ));
    }
    let tokens = zocalo_core::protocol::estimate_tokens(body);
    if tokens > RECOMMENDED_MAX_BODY_TOKENS {
        warnings.push(Issue::new(
            "SKILL.md",
            format!("instructions are about {tokens} tokens; the spec recommends under {RECOMMENDED_MAX_BODY_TOKENS}"),
        ));
    }

    let skill = match (loadable, &name, &description) {
        (true, Some(name), Some(description)) => Some(Skill {
            name: name.clone(),
            description: description.clone(),
            license,
            compatibility,
            metadata,
            allowed_tools,
            triggers,
            body: body.to_owned(),
            dir: dir.to_path_buf(),
        }),
        _ => None,
    };
    Checked {
        report: Report {
            valid: errors.is_empty(),
            name,
            errors,
            warnings,
        },
        skill,
    }
}

/// Split `---\nYAML\n---\nbody`. The delimiters are lines of exactly `---` (trailing spaces
/// and CRLF tolerated).
fn split_frontmatter(text: &str) -> Result<(&str, &str), Issue> {
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or_default();
    if first.trim_end() != "---" {
        return Err(Issue::new(
            "frontmatter",
            "missing: SKILL.md must start with a line `---`, then the YAML fields, then a closing `---`",
        ));
    }
    let start = first.len();
    let mut offset = start;
    for line in lines {
        if line.trim_end() == "---" {
            let front = &text[start..offset];
            if front.len() > MAX_FRONTMATTER_BYTES {
                break;
            }
            return Ok((front, &text[offset + line.len()..]));
        }
        offset += line.len();
        if offset - start > MAX_FRONTMATTER_BYTES {
            return Err(Issue::new(
                "frontmatter",
                format!(
                    "larger than {} KiB (or never closed)",
                    MAX_FRONTMATTER_BYTES / 1024
                ),
            ));
        }
    }
    if offset - start > MAX_FRONTMATTER_BYTES {
        return Err(Issue::new(
            "frontmatter",
            format!("larger than {} KiB", MAX_FRONTMATTER_BYTES / 1024),
        ));
    }
    Err(Issue::new(
        "frontmatter",
        "unterminated: no closing `---` line after the fields",
    ))
}

/// A required text field: present, a string, not blank.
fn required_text(
    fields: &BTreeMap<String, Node>,
    key: &str,
    errors: &mut Vec<Issue>,
) -> Option<String> {
    match fields.get(key) {
        None => {
            errors.push(Issue::new(key, "is required"));
            None
        }
        Some(Node::Scalar(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Node::Scalar(_)) | Some(Node::Null) => {
            errors.push(Issue::new(key, "must not be empty"));
            None
        }
        Some(other) => {
            errors.push(Issue::new(
                key,
                format!("must be a string, not a {}", other.kind()),
            ));
            None
        }
    }
}

fn optional_text(
    fields: &BTreeMap<String, Node>,
    key: &str,
    errors: &mut Vec<Issue>,
    warnings: &mut Vec<Issue>,
) -> Option<String> {
    match fields.get(key) {
        None => None,
        Some(Node::Scalar(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Node::Scalar(_)) | Some(Node::Null) => {
            warnings.push(Issue::new(key, "is empty; remove it"));
            None
        }
        Some(other) => {
            errors.push(Issue::new(
                key,
                format!("must be a string, not a {}", other.kind()),
            ));
            None
        }
    }
}

/// The spec's name rules: 1-64 characters, lowercase letters, digits and hyphens, no leading,
/// trailing or doubled hyphen, equal to the directory name. Returns false when the name has
/// characters that make it unusable as a skill's key and directory name.
fn check_name(
    name: &str,
    dir_name: Option<&str>,
    errors: &mut Vec<Issue>,
    warnings: &mut Vec<Issue>,
) -> bool {
    let mut usable = true;
    let n = name.chars().count();
    if n > MAX_NAME_CHARS {
        errors.push(Issue::new(
            "name",
            format!("is {n} characters; the limit is {MAX_NAME_CHARS}"),
        ));
    }
    if name.chars().any(char::is_uppercase) {
        errors.push(Issue::new("name", format!("{name:?} must be lowercase")));
    }
    if let Some(bad) = name.chars().find(|c| !(*c == '-' || c.is_alphanumeric())) {
        errors.push(Issue::new(
            "name",
            format!(
                "{name:?} contains {bad:?}: only lowercase letters, digits and hyphens are allowed"
            ),
        ));
        usable = false;
    } else if !name.is_ascii() {
        warnings.push(Issue::new(
            "name",
            "uses non-ASCII letters; a-z, 0-9 and hyphens are the most portable",
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        errors.push(Issue::new("name", "must not start or end with a hyphen"));
    }
    if name.contains("--") {
        errors.push(Issue::new(
            "name",
            "must not contain consecutive hyphens (--)",
        ));
    }
    if let Some(dir) = dir_name {
        if dir != name {
            errors.push(Issue::new(
                "name",
                format!("{name:?} must equal the skill's directory name {dir:?}"),
            ));
        }
    }
    usable
}

/// Relative Markdown links should point at files inside the skill (a recommendation).
fn check_links(body: &str, dir: &Path) -> Vec<Issue> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split_whitespace().next().unwrap_or_default();
        let target = target.split('#').next().unwrap_or_default();
        rest = &rest[end..];
        if target.is_empty() || target.contains(':') || target.starts_with('<') {
            continue; // URLs, mailto:, anchors
        }
        let p = Path::new(target);
        if p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
            out.push(Issue::new(
                "SKILL.md",
                format!("links to {target:?}: reference files by paths relative to the skill root, inside it"),
            ));
        } else if !dir.join(p).exists() {
            out.push(Issue::new(
                "SKILL.md",
                format!("links to {target:?}, which does not exist in the skill"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dir: &str, text: &str) -> Report {
        check_bytes(Path::new(dir), text.as_bytes()).report
    }

    fn fields(r: &Report) -> Vec<&str> {
        r.errors.iter().map(|i| i.field.as_str()).collect()
    }

    #[test]
    fn minimal_skill_is_valid() {
        let r = check(
            "pdf",
            "---\nname: pdf\ndescription: Read PDFs.\n---\n# Do it\n",
        );
        assert!(r.valid, "{r:?}");
        assert_eq!(r.name.as_deref(), Some("pdf"));
        assert!(r.warnings.is_empty(), "{r:?}");
    }

    #[test]
    fn name_rules_follow_the_spec() {
        for (name, why) in [
            ("PDF-Processing", "lowercase"),
            ("-pdf", "hyphen"),
            ("pdf-", "hyphen"),
            ("pdf--processing", "consecutive"),
            ("pdf_processing", "contains"),
            ("pdf processing", "contains"),
        ] {
            let r = check(
                name,
                &format!("---\nname: {name}\ndescription: d\n---\nx\n"),
            );
            assert!(!r.valid, "{name}");
            assert!(
                r.errors
                    .iter()
                    .any(|e| e.field == "name" && e.message.contains(why)),
                "{name}: {r:?}"
            );
        }
        let long = "a".repeat(65);
        let r = check(
            &long,
            &format!("---\nname: {long}\ndescription: d\n---\nx\n"),
        );
        assert_eq!(fields(&r), ["name"]);
        let ok = "a".repeat(64);
        assert!(check(&ok, &format!("---\nname: {ok}\ndescription: d\n---\nx\n")).valid);
        let r = check("other", "---\nname: pdf\ndescription: d\n---\nx\n");
        assert!(r.errors[0].message.contains("directory"), "{r:?}");
        // Unicode lowercase letters are allowed, with a portability warning.
        let r = check("café", "---\nname: café\ndescription: d\n---\nx\n");
        assert!(r.valid && r.warnings[0].field == "name", "{r:?}");
    }

    #[test]
    fn description_rules() {
        assert_eq!(
            fields(&check("a", "---\nname: a\n---\nx\n")),
            ["description"]
        );
        assert_eq!(
            fields(&check("a", "---\nname: a\ndescription: \"  \"\n---\nx\n")),
            ["description"]
        );
        assert_eq!(
            fields(&check("a", "---\nname: a\ndescription: [x]\n---\nx\n")),
            ["description"]
        );
        let d = "é".repeat(1024);
        assert!(check("a", &format!("---\nname: a\ndescription: {d}\n---\nx\n")).valid);
        let d = "é".repeat(1025);
        assert_eq!(
            fields(&check(
                "a",
                &format!("---\nname: a\ndescription: {d}\n---\nx\n")
            )),
            ["description"]
        );
    }

    #[test]
    fn optional_fields() {
        let r = check(
            "a",
            "---\nname: a\ndescription: d\nlicense: MIT\ncompatibility: Needs git\nmetadata:\n  author: me\n  version: 1.0\nallowed-tools: Bash(git:*) Read\n---\nx\n",
        );
        assert!(r.valid, "{r:?}");
        let s = check_bytes(
            Path::new("a"),
            b"---\nname: a\ndescription: d\nmetadata:\n  version: 1.0\nallowed-tools: Bash(git:*) Read\n---\nx\n",
        )
        .skill
        .unwrap();
        assert_eq!(s.metadata["version"], "1.0");
        assert_eq!(s.allowed_tools, ["Bash(git:*)", "Read"]);

        let c = "x".repeat(501);
        for (text, field) in [
            (format!("compatibility: {c}"), "compatibility"),
            ("compatibility: ''".to_string(), "compatibility"),
            ("compatibility: [a]".to_string(), "compatibility"),
            ("metadata: [a, b]".to_string(), "metadata"),
            ("metadata:\n  a:\n    b: c".to_string(), "metadata"),
            ("license: {a: b}".to_string(), "license"),
            ("allowed-tools: {a: b}".to_string(), "allowed-tools"),
            ("version: 1".to_string(), "version"),
            ("name: b".to_string(), "name"),
        ] {
            let r = check(
                "a",
                &format!("---\nname: a\ndescription: d\n{text}\n---\nx\n"),
            );
            assert!(fields(&r).contains(&field), "{text}: {r:?}");
        }
    }

    #[test]
    fn seed_triggers_are_a_warning_and_kept() {
        let c = check_bytes(
            Path::new("weather"),
            b"---\nname: weather\ndescription: d\ntriggers:\n  - forecast\n  - rain\n---\nx\n",
        );
        assert!(c.report.valid, "{:?}", c.report);
        assert!(c.report.warnings.iter().any(|w| w.field == "triggers"));
        let s = c.skill.unwrap();
        assert_eq!(s.triggers, ["forecast", "rain"]);
        assert_eq!(s.metadata["triggers"], "forecast, rain");
    }

    #[test]
    fn frontmatter_problems_name_the_block() {
        for text in [
            "# no frontmatter\n",
            "",
            "---\nname: a\ndescription: d\n",
            "---\n---\nx\n",
            "---\n- a\n- b\n---\nx\n",
            "---\nname: a\ndescription: Use when: it rains\n---\nx\n",
            "---\nname: [unclosed\n---\n",
        ] {
            let r = check("a", text);
            assert_eq!(fields(&r), ["frontmatter"], "{text:?}: {r:?}");
        }
        let r = check(
            "a",
            "---\nname: a\ndescription: Use when: it rains\n---\nx\n",
        );
        assert!(r.errors[0].message.contains("quoted"), "{r:?}");
        let huge = format!(
            "---\nname: a\ndescription: d\nx: {}\n---\n",
            "y".repeat(70_000)
        );
        let r = check("a", &huge);
        assert!(r.errors[0].message.contains("KiB"), "{r:?}");
        let r = check_bytes(Path::new("a"), b"---\nname: \xff\n---\n").report;
        assert_eq!(fields(&r), ["SKILL.md"]);
    }

    #[test]
    fn recommendations_are_warnings() {
        let body = "line\n".repeat(600);
        let r = check("a", &format!("---\nname: a\ndescription: d\n---\n{body}"));
        assert!(r.valid);
        assert!(
            r.warnings.iter().any(|w| w.message.contains("500")),
            "{r:?}"
        );
        let r = check("a", "---\r\nname: a\r\ndescription: d\r\n---\r\n");
        assert!(r.valid, "{r:?}");
        assert!(r
            .warnings
            .iter()
            .any(|w| w.message.contains("no instructions")));
    }
}
