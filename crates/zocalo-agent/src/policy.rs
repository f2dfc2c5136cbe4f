//! Permissions: which tools the model is offered, and for each call whether it runs
//! ([`Decision::Allow`]), waits for someone's approval ([`Decision::Ask`], see
//! [`crate::approval`]) or never happens ([`Decision::Deny`]).
//!
//! A decision comes from the first layer that has a rule for the tool:
//!
//! 1. the persona's `permissions` (`[personas.NAME.permissions]`), when an ask uses one;
//! 2. `[permissions]` in config.toml;
//! 3. the built-in default: [`Decision::Allow`] for the read-only tools in
//!    [`READ_ONLY_TOOLS`], [`Decision::Ask`] for everything else (MCP tools included).
//!
//! Within a layer an exact name beats any glob, a longer glob beats a shorter one, and of two
//! globs of the same length that both match, the stricter decision wins. A glob is a tool name
//! where `*` stands for any run of characters (`mcp__github__*`, `file_*`, `*`).
//!
//! A persona's `tools` list filters what is offered at all; a tool whose decision is `deny` is
//! not offered either. A call to a tool that is not offered is refused like a call to a tool
//! that does not exist, so hiding a tool also keeps it from running.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use zocalo_core::config::Decision;
use zocalo_core::config::{check_tool_pattern, Config};

use crate::AgentError;

/// Tools that only read, allowed without asking unless a rule says otherwise:
///
/// - `current_time`, `memory_search`, `schedule_list`, `services_list`: read zocalo's own
///   state;
/// - `file_read`, `file_list`, `file_search`: read inside the workspace root only;
/// - `web_fetch`: GETs a public URL (private networks refused unless
///   `[tools.web_fetch] allow_private`);
/// - `skill_open`, `skill_read`: read an installed skill's instructions and files;
/// - `browser_snapshot`: reads the page already open in the conversation's tab.
///
/// Not here on purpose: `services_logs` (a service's output may carry its secrets),
/// `browser_navigate` (reaches any address, private networks included, and GETs can act),
/// `browser_screenshot` (writes a file), `memory_save`, `spawn_agents` (spends tokens) and
/// every tool that writes, runs or sends.
pub const READ_ONLY_TOOLS: &[&str] = &[
    "current_time",
    "memory_search",
    "file_read",
    "file_list",
    "file_search",
    "schedule_list",
    "services_list",
    "web_fetch",
    "skill_open",
    "skill_read",
    "browser_snapshot",
];

/// The built-in decision for `tool`: allow the read-only tools, ask for the rest.
pub fn default_decision(tool: &str) -> Decision {
    if READ_ONLY_TOOLS.contains(&tool) {
        Decision::Allow
    } else {
        Decision::Ask
    }
}

/// A tool name, or a glob where `*` matches any run of characters (none included).
/// Case-sensitive, like tool names.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ToolPattern(String);

impl ToolPattern {
    pub fn new(pattern: &str) -> Result<Self, AgentError> {
        check_tool_pattern(pattern)
            .map_err(|why| AgentError::BadToolPattern(format!("the tool pattern {why}")))?;
        Ok(Self(pattern.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this has a `*` (else it names one tool).
    pub fn is_glob(&self) -> bool {
        self.0.contains('*')
    }

    pub fn matches(&self, tool: &str) -> bool {
        glob_match(self.0.as_bytes(), tool.as_bytes())
    }
}

impl FromStr for ToolPattern {
    type Err = AgentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Debug for ToolPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for ToolPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `*` matches any run of bytes. Literal parts are whole UTF-8 sequences, so matching bytes
/// matches characters. Linear backtracking to the last star: no exponential blow-up.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where the last star was, and the name position it currently stands up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                // Let the star swallow one more byte and retry from there.
                Some((sp, sn)) => {
                    star = Some((sp, sn + 1));
                    p = sp + 1;
                    n = sn + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A set of names and globs (a persona's `tools`, `--allow` flags).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolPatterns(Vec<ToolPattern>);

impl ToolPatterns {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses each item; the first bad one is the error.
    pub fn parse<I, S>(items: I) -> Result<Self, AgentError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        items
            .into_iter()
            .map(|s| ToolPattern::new(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn push(&mut self, pattern: ToolPattern) {
        self.0.push(pattern);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any pattern matches `tool`.
    pub fn matches(&self, tool: &str) -> bool {
        self.0.iter().any(|p| p.matches(tool))
    }

    pub fn iter(&self) -> impl Iterator<Item = &ToolPattern> {
        self.0.iter()
    }
}

/// One layer of rules (`[permissions]`, or a persona's): name or glob -> decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    exact: BTreeMap<String, Decision>,
    globs: Vec<(ToolPattern, Decision)>,
}

impl Rules {
    /// `what` names the table in errors (`permissions`, `personas.NAME.permissions`).
    pub fn new(table: &BTreeMap<String, Decision>, what: &str) -> Result<Self, AgentError> {
        let mut rules = Rules::default();
        for (key, decision) in table {
            let pattern = ToolPattern::new(key)
                .map_err(|e| AgentError::BadToolPattern(format!("{what}: {e}")))?;
            if pattern.is_glob() {
                rules.globs.push((pattern, *decision));
            } else {
                rules.exact.insert(key.clone(), *decision);
            }
        }
        Ok(rules)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_empty()
    }

    /// The rule for `tool` in this layer: the exact name, else the longest matching glob
    /// (the stricter decision on a tie).
    pub fn lookup(&self, tool: &str) -> Option<Decision> {
        if let Some(d) = self.exact.get(tool) {
            return Some(*d);
        }
        self.globs
            .iter()
            .filter(|(p, _)| p.matches(tool))
            .max_by_key(|(p, d)| (p.as_str().len(), *d))
            .map(|(_, d)| *d)
    }
}

/// The permissions of one kind of ask: config rules, optionally a persona on top.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    config: Rules,
    persona: Option<PersonaRules>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PersonaRules {
    name: String,
    rules: Rules,
    /// None: every tool is offered.
    tools: Option<ToolPatterns>,
}

impl Policy {
    /// The built-in defaults alone (read-only tools allowed, the rest asked).
    pub fn defaults() -> Self {
        Self::default()
    }

    /// `[permissions]` of `config`, and the persona `persona` on top of it. An unknown
    /// persona is a usage error that lists the defined ones.
    pub fn from_config(config: &Config, persona: Option<&str>) -> Result<Self, AgentError> {
        let mut policy = Policy {
            config: Rules::new(&config.permissions, "permissions")?,
            persona: None,
        };
        if let Some(name) = persona {
            let p = config
                .personas
                .get(name)
                .ok_or_else(|| AgentError::UnknownPersona {
                    name: name.to_owned(),
                    defined: config.personas.keys().cloned().collect(),
                })?;
            policy = policy.with_persona(
                name,
                Rules::new(&p.permissions, &format!("personas.{name}.permissions"))?,
                p.tools.as_deref().map(ToolPatterns::parse).transpose()?,
            );
        }
        Ok(policy)
    }

    /// Replaces the `[permissions]` layer.
    pub fn with_rules(mut self, rules: Rules) -> Self {
        self.config = rules;
        self
    }

    /// Puts a persona on top: its rules win over `[permissions]`; `tools`, when given, is
    /// the whole set offered.
    pub fn with_persona(mut self, name: &str, rules: Rules, tools: Option<ToolPatterns>) -> Self {
        self.persona = Some(PersonaRules {
            name: name.to_owned(),
            rules,
            tools,
        });
        self
    }

    /// The persona in force, if any.
    pub fn persona(&self) -> Option<&str> {
        self.persona.as_ref().map(|p| p.name.as_str())
    }

    /// What happens when the model calls `tool` (offered or not).
    pub fn decide(&self, tool: &str) -> Decision {
        self.persona
            .as_ref()
            .and_then(|p| p.rules.lookup(tool))
            .or_else(|| self.config.lookup(tool))
            .unwrap_or_else(|| default_decision(tool))
    }

    /// Whether the model is shown `tool` at all: the persona's `tools` list lets it through
    /// and its decision is not `deny`.
    pub fn offers(&self, tool: &str) -> bool {
        let listed = match self.persona.as_ref().and_then(|p| p.tools.as_ref()) {
            Some(tools) => tools.matches(tool),
            None => true,
        };
        listed && self.decide(tool) != Decision::Deny
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious exponential definition, to check the fast matcher against.
    fn reference(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| reference(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && reference(rest, &n[1..]),
        }
    }

    fn pat(s: &str) -> ToolPattern {
        ToolPattern::new(s).unwrap()
    }

    #[test]
    fn globs_match_like_shell_stars() {
        for (p, n, want) in [
            ("shell", "shell", true),
            ("shell", "shells", false),
            ("shell", "Shell", false),
            ("*", "", true),
            ("*", "anything", true),
            ("file_*", "file_read", true),
            ("file_*", "file_", true),
            ("file_*", "files", false),
            ("mcp__github__*", "mcp__github__create_issue", true),
            ("mcp__github__*", "mcp__gitlab__create_issue", false),
            ("*__*", "github__x", true),
            ("*_list", "services_list", true),
            ("*_list", "services_list_all", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXcYYb", false),
            ("**", "x", true),
            ("é*", "éa", true),
        ] {
            assert_eq!(pat(p).matches(n), want, "{p} vs {n}");
        }
    }

    proptest! {
        #[test]
        fn matcher_agrees_with_reference(p in "[ab*]{0,8}", n in "[ab]{0,10}") {
            prop_assert_eq!(glob_match(p.as_bytes(), n.as_bytes()), reference(p.as_bytes(), n.as_bytes()));
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in ["", "a b", "tab\there", "x\n"] {
            assert!(ToolPattern::new(p).is_err(), "{p:?}");
        }
        assert!(ToolPatterns::parse(["shell", ""]).is_err());
    }

    #[test]
    fn defaults_allow_reading_and_ask_the_rest() {
        let p = Policy::defaults();
        for t in READ_ONLY_TOOLS {
            assert_eq!(p.decide(t), Decision::Allow, "{t}");
        }
        for t in [
            "shell",
            "file_write",
            "file_edit",
            "memory_save",
            "spawn_agents",
            "skill_run",
            "browser_navigate",
            "services_logs",
            "mcp__github__create_issue",
        ] {
            assert_eq!(p.decide(t), Decision::Ask, "{t}");
            assert!(p.offers(t), "{t}");
        }
    }

    fn rules(pairs: &[(&str, Decision)]) -> Rules {
        let table = pairs.iter().map(|(k, d)| (k.to_string(), *d)).collect();
        Rules::new(&table, "permissions").unwrap()
    }

    #[test]
    fn exact_beats_glob_and_longer_glob_beats_shorter() {
        use Decision::*;
        let r = rules(&[
            ("*", Deny),
            ("mcp__*", Ask),
            ("mcp__github__*", Allow),
            ("mcp__github__delete_repo", Deny),
            ("a*c", Allow),
            ("ab*", Ask),
        ]);
        assert_eq!(r.lookup("mcp__github__list_issues"), Some(Allow));
        assert_eq!(r.lookup("mcp__github__delete_repo"), Some(Deny));
        assert_eq!(r.lookup("mcp__slack__post"), Some(Ask));
        assert_eq!(r.lookup("shell"), Some(Deny));
        // Same length, both match: the stricter one.
        assert_eq!(r.lookup("abc"), Some(Ask));
        assert_eq!(rules(&[]).lookup("shell"), None);
    }

    #[test]
    fn config_overrides_defaults_and_persona_overrides_config() {
        use Decision::*;
        let policy = Policy::defaults().with_rules(rules(&[
            ("shell", Allow),
            ("file_*", Deny),
            ("web_fetch", Deny),
        ]));
        assert_eq!(policy.decide("shell"), Allow);
        assert_eq!(policy.decide("file_read"), Deny);
        assert!(!policy.offers("file_read"), "denied tools are not offered");
        assert_eq!(policy.decide("current_time"), Allow);

        // The persona's glob wins over config's exact name: layers first, then specificity.
        let persona = policy.clone().with_persona(
            "ops",
            rules(&[("sh*", Ask), ("file_read", Allow)]),
            Some(ToolPatterns::parse(["shell", "file_*", "current_time"]).unwrap()),
        );
        assert_eq!(persona.persona(), Some("ops"));
        assert_eq!(persona.decide("shell"), Ask);
        assert_eq!(persona.decide("file_read"), Allow);
        assert_eq!(
            persona.decide("file_write"),
            Deny,
            "config still applies below"
        );
        assert!(persona.offers("file_read") && persona.offers("shell"));
        assert!(!persona.offers("file_write"), "listed but denied");
        assert!(!persona.offers("memory_search"), "allowed but not listed");
        assert!(!persona.offers("web_fetch"));
    }

    #[test]
    fn from_config_reads_permissions_and_personas() {
        let cfg = Config::parse(
            r#"
            [permissions]
            shell = "allow"
            "mcp__*" = "deny"
            [personas.reader]
            tools = ["file_read", "web_*"]
            permissions = { web_fetch = "ask" }
            "#,
            std::path::Path::new("config.toml"),
        )
        .unwrap();
        let p = Policy::from_config(&cfg, None).unwrap();
        assert_eq!(p.decide("shell"), Decision::Allow);
        assert_eq!(p.decide("mcp__x__y"), Decision::Deny);
        assert_eq!(p.persona(), None);
        let r = Policy::from_config(&cfg, Some("reader")).unwrap();
        assert_eq!(r.decide("web_fetch"), Decision::Ask);
        assert!(r.offers("web_fetch") && r.offers("file_read"));
        assert!(!r.offers("shell"));
        let e = Policy::from_config(&cfg, Some("writer")).unwrap_err();
        assert!(e.is_usage());
        assert!(e.to_string().contains("writer") && e.to_string().contains("reader"));
    }
}
