//! Prefixed identifiers built on UUIDv7, so they sort by creation time as plain strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// A new `prefix_<uuidv7 hex>` string. UUIDv7 starts with a millisecond timestamp, so ids made
/// later sort later (within one millisecond the random tail decides).
pub fn new_prefixed(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn new() -> Self {
                Self(new_prefixed($prefix))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = CoreError;

            /// Accepts `prefix_` followed by 1..=64 ASCII letters, digits, `-` or `_`.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let ok = s
                    .strip_prefix(concat!($prefix, "_"))
                    .is_some_and(|rest| {
                        !rest.is_empty()
                            && rest.len() <= 64
                            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    });
                if ok {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(CoreError::BadId { prefix: $prefix, value: s.to_owned() })
                }
            }
        }
    };
}

prefixed_id!(
    /// A conversation: an ordered list of messages.
    ConversationId,
    "conv"
);
prefixed_id!(
    /// One stored message of a conversation.
    MessageId,
    "msg"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_sort_by_time() {
        let a = ConversationId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = ConversationId::new();
        assert!(a.as_str().starts_with("conv_"));
        assert!(a < b, "{a} should sort before {b}");
    }

    #[test]
    fn parse_rejects_wrong_prefix_and_garbage() {
        assert!("conv_0193abc".parse::<ConversationId>().is_ok());
        for bad in ["", "conv_", "msg_123", "conv_a b", "conv_é", "xconv_1"] {
            assert!(bad.parse::<ConversationId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn round_trips_through_display() {
        let id = MessageId::new();
        assert_eq!(id.to_string().parse::<MessageId>().ok(), Some(id));
    }
}
