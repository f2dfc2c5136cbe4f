//! [`Secret`]: API keys and passphrases. Debug and Display print `[redacted]`; the value is
//! only reachable through [`Secret::expose`], so leaking it takes a visible call.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for putting into a request header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A masked tail such as `…3f9a`, safe to show to the user who owns the key.
    pub fn masked_tail(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < 12 {
            return "…".to_owned();
        }
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("…{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_value() {
        let s = Secret::new("sk-live-0123456789abcdef");
        assert!(!format!("{s:?}").contains("0123"));
        assert!(!format!("{s}").contains("0123"));
        assert_eq!(s.masked_tail(), "…cdef");
        assert_eq!(Secret::new("short").masked_tail(), "…");
    }
}
