//! Where a notification or an automation's answer goes: `telegram:CHAT_ID`, `email:ADDR`,
//! `webhook:NAME`.

use std::fmt;
use std::str::FromStr;

use crate::ChannelError;

/// Longest target text accepted.
const MAX_TARGET: usize = 320;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A Telegram chat (negative ids are groups).
    Telegram { chat_id: i64 },
    /// A mail address.
    Email { address: String },
    /// `[hooks.NAME]`'s outbound `url`.
    Webhook { name: String },
}

impl Target {
    /// The channel whose transport sends to it (`telegram`, `email`, `webhook`).
    pub fn channel(&self) -> &'static str {
        match self {
            Target::Telegram { .. } => "telegram",
            Target::Email { .. } => "email",
            Target::Webhook { .. } => "webhook",
        }
    }

    /// The part after `channel:`.
    pub fn address(&self) -> String {
        match self {
            Target::Telegram { chat_id } => chat_id.to_string(),
            Target::Email { address } => address.clone(),
            Target::Webhook { name } => name.clone(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.channel(), self.address())
    }
}

const SHAPE: &str = "use telegram:CHAT_ID, email:ADDRESS or webhook:NAME";

/// A hook name: letters, digits, `-` and `_` (it is a URL path segment and a config key).
pub fn check_hook_name(name: &str) -> Result<(), ChannelError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ChannelError::Invalid(format!(
            "bad hook name {name:?}: use 1 to 64 letters, digits, `-` or `_`"
        )));
    }
    Ok(())
}

/// A mail address as we accept it for sending: one `local@domain`, nothing that could end a
/// header line or add a recipient.
pub fn check_address(address: &str) -> Result<(), ChannelError> {
    let bad = |why: &str| {
        Err(ChannelError::Invalid(format!(
            "bad mail address {address:?}: {why}"
        )))
    };
    if address.len() > 254 {
        return bad("longer than 254 characters");
    }
    if address
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | ';' | '<' | '>' | '"'))
    {
        return bad("it has spaces, control characters or one of , ; < > \"");
    }
    match address.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(())
        }
        _ => bad("expected local@domain"),
    }
}

impl FromStr for Target {
    type Err = ChannelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_TARGET {
            return Err(ChannelError::Invalid(format!(
                "target longer than {MAX_TARGET} characters: {SHAPE}"
            )));
        }
        let Some((channel, rest)) = s.split_once(':') else {
            return Err(ChannelError::Invalid(format!("bad target {s:?}: {SHAPE}")));
        };
        match channel {
            "telegram" => rest
                .parse::<i64>()
                .ok()
                .filter(|id| *id != 0)
                .map(|chat_id| Target::Telegram { chat_id })
                .ok_or_else(|| {
                    ChannelError::Invalid(format!(
                        "bad Telegram chat id {rest:?}: a non-zero integer (your user id for a private chat, negative for groups)"
                    ))
                }),
            "email" => {
                check_address(rest)?;
                Ok(Target::Email {
                    address: rest.to_owned(),
                })
            }
            "webhook" => {
                check_hook_name(rest)?;
                Ok(Target::Webhook {
                    name: rest.to_owned(),
                })
            }
            other => Err(ChannelError::Invalid(format!(
                "unknown channel {other:?} in target {s:?}: {SHAPE}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn targets_parse_and_print_back() {
        for t in [
            "telegram:42",
            "telegram:-1001234",
            "email:me@example.org",
            "webhook:ci_done-2",
        ] {
            let parsed: Target = t.parse().unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(parsed.to_string(), t);
        }
        assert_eq!(
            "telegram:42".parse::<Target>().ok(),
            Some(Target::Telegram { chat_id: 42 })
        );
    }

    #[test]
    fn malformed_targets_are_refused_with_the_shape() {
        for bad in [
            "",
            "telegram",
            "telegram:",
            "telegram:abc",
            "telegram:0",
            "telegram:99999999999999999999",
            "email:",
            "email:nobody",
            "email:a@b@c",
            "email:a@.org",
            "email:me@example.org\r\nBcc: x@y.z",
            "email:a@b.org,c@d.org",
            "email:<a@b.org>",
            "webhook:",
            "webhook:../x",
            "webhook:a b",
            "sms:+34600000000",
        ] {
            let e = bad.parse::<Target>().err();
            assert!(e.is_some(), "{bad:?} was accepted");
            assert!(
                matches!(e, Some(ChannelError::Invalid(_))),
                "{bad:?}: {e:?}"
            );
        }
        let long = format!("email:{}@example.org", "a".repeat(400));
        assert!(long.parse::<Target>().is_err());
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(s in "\\PC{0,80}") {
            if let Ok(t) = s.parse::<Target>() {
                // What parses prints back to itself (no normalisation hides a second meaning).
                prop_assert_eq!(t.to_string(), s);
            }
        }

        #[test]
        fn telegram_ids_round_trip(id in any::<i64>().prop_filter("non-zero", |i| *i != 0)) {
            let t: Target = format!("telegram:{id}").parse().map_err(|e: ChannelError| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(t, Target::Telegram { chat_id: id });
        }
    }
}
