//! Webhooks: signed requests in (`POST /hooks/NAME` on the server) and signed deliveries out
//! (automation results to `[hooks.NAME] url`).
//!
//! Two signature schemes are accepted inbound, both HMAC-SHA256 with the hook's secret and
//! compared in constant time:
//! - zocalo's own: `X-Zocalo-Timestamp: <unix seconds>` and `X-Zocalo-Signature:
//!   sha256=<hex of HMAC("<timestamp>.<body>")>`. A timestamp more than [`TOLERANCE`] away
//!   from now is refused, so a captured request cannot be replayed later; within the window
//!   the inbox refuses the same signature twice.
//! - GitHub's: `X-Hub-Signature-256: sha256=<hex of HMAC(body)>`, with the delivery id
//!   `X-GitHub-Delivery` as the message's id (GitHub signs no timestamp: a replay is refused
//!   because the delivery id was seen).
//!
//! Outbound deliveries carry zocalo's headers, so a receiver checks them with [`verify`].

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::ChannelError;

type HmacSha256 = Hmac<Sha256>;

pub const SIGNATURE_HEADER: &str = "x-zocalo-signature";
pub const TIMESTAMP_HEADER: &str = "x-zocalo-timestamp";
pub const GITHUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const GITHUB_DELIVERY_HEADER: &str = "x-github-delivery";
/// How far a signed timestamp may be from now.
pub const TOLERANCE: Duration = Duration::from_secs(300);
/// Largest inbound body.
pub const MAX_BODY: usize = 1024 * 1024;

/// Why a signed request was refused (the server answers 401 with this text).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookRefusal {
    #[error(
        "no signature: send X-Zocalo-Signature with X-Zocalo-Timestamp, or X-Hub-Signature-256"
    )]
    Unsigned,
    #[error("malformed signature header: expected sha256=<64 hex digits>")]
    Malformed,
    #[error("malformed timestamp: expected unix seconds")]
    BadTimestamp,
    #[error("the timestamp is more than 5 minutes from now: refused as a possible replay")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
}

fn mac(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"))
}

/// zocalo's signature header value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// GitHub's `X-Hub-Signature-256` for `body`.
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

fn digest(header: &str) -> Result<Vec<u8>, HookRefusal> {
    let hex_part = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(HookRefusal::Malformed)?;
    if hex_part.len() != 64 {
        return Err(HookRefusal::Malformed);
    }
    hex::decode(hex_part).map_err(|_| HookRefusal::Malformed)
}

/// A verified request: the id the inbox keeps it under (replays have the same one).
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub delivery_id: String,
}

/// Checks a request's signature. `header` looks up a header by lowercase name; `now` is unix
/// seconds.
pub fn verify(
    secret: &[u8],
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
    now: i64,
) -> Result<Verified, HookRefusal> {
    if let Some(sig) = header(SIGNATURE_HEADER) {
        let expected = digest(&sig)?;
        let ts: i64 = header(TIMESTAMP_HEADER)
            .ok_or(HookRefusal::BadTimestamp)?
            .trim()
            .parse()
            .map_err(|_| HookRefusal::BadTimestamp)?;
        if now.abs_diff(ts) > TOLERANCE.as_secs() {
            return Err(HookRefusal::Stale);
        }
        let mut m = mac(secret);
        m.update(ts.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        m.verify_slice(&expected)
            .map_err(|_| HookRefusal::Mismatch)?;
        return Ok(Verified {
            delivery_id: hex::encode(expected),
        });
    }
    if let Some(sig) = header(GITHUB_SIGNATURE_HEADER) {
        let expected = digest(&sig)?;
        let mut m = mac(secret);
        m.update(body);
        m.verify_slice(&expected)
            .map_err(|_| HookRefusal::Mismatch)?;
        let delivery_id = header(GITHUB_DELIVERY_HEADER)
            .map(|d| d.chars().filter(|c| !c.is_control()).take(100).collect())
            .unwrap_or_else(|| hex::encode(expected));
        return Ok(Verified { delivery_id });
    }
    Err(HookRefusal::Unsigned)
}

/// POSTs `payload` to `url`, signed with `secret`. Any answer but 2xx is an error (transient
/// for 429 and 5xx and unreachable hosts).
pub async fn deliver(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&[u8]>,
    payload: &Value,
) -> Result<(), ChannelError> {
    let body = serde_json::to_vec(payload)
        .map_err(|e| ChannelError::Invalid(format!("webhook payload: {e}")))?;
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(30));
    if let Some(secret) = secret {
        let ts = chrono::Utc::now().timestamp();
        req = req
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sign(secret, ts, &body));
    }
    let resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| ChannelError::Transport(format!("webhook {url}: {e}")))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    Err(ChannelError::Api {
        service: "webhook",
        code: i64::from(status.as_u16()),
        description: text.chars().take(200).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"s3cret";

    fn headers(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn a_signed_request_is_accepted_and_the_same_signature_is_its_id() {
        let body = br#"{"event":"push"}"#;
        let sig = sign(SECRET, 1_700_000_000, body);
        let h = headers(vec![
            (SIGNATURE_HEADER, sig.clone()),
            (TIMESTAMP_HEADER, "1700000000".into()),
        ]);
        let v = verify(SECRET, &h, body, 1_700_000_100);
        assert_eq!(
            v,
            Ok(Verified {
                delivery_id: sig.trim_start_matches("sha256=").to_owned()
            })
        );
    }

    #[test]
    fn a_known_vector_matches() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign_github(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn wrong_secret_body_or_timestamp_is_refused() {
        let body = b"{}";
        let sig = sign(SECRET, 1_700_000_000, body);
        let ok = |s: String, t: &str| {
            headers(vec![
                (SIGNATURE_HEADER, s),
                (TIMESTAMP_HEADER, t.to_owned()),
            ])
        };
        let now = 1_700_000_000;
        assert_eq!(
            verify(b"other", ok(sig.clone(), "1700000000"), body, now),
            Err(HookRefusal::Mismatch)
        );
        assert_eq!(
            verify(SECRET, ok(sig.clone(), "1700000000"), b"{ }", now),
            Err(HookRefusal::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(
            verify(SECRET, ok(sig.clone(), "1700000001"), body, now),
            Err(HookRefusal::Mismatch)
        );
        assert_eq!(
            verify(SECRET, ok(sig.clone(), "1700000000"), body, now + 301),
            Err(HookRefusal::Stale)
        );
        assert_eq!(
            verify(SECRET, ok(sig.clone(), "1700000000"), body, now - 301),
            Err(HookRefusal::Stale)
        );
        assert_eq!(
            verify(SECRET, ok(sig.clone(), "soon"), body, now),
            Err(HookRefusal::BadTimestamp)
        );
        assert_eq!(
            verify(SECRET, headers(vec![(SIGNATURE_HEADER, sig)]), body, now),
            Err(HookRefusal::BadTimestamp)
        );
        for bad in [
            "",
            "sha256=",
            "sha1=abcd",
            "sha256=zz",
            &format!("sha256={}", "a".repeat(63)),
        ] {
            assert_eq!(
                verify(SECRET, ok(bad.to_owned(), "1700000000"), body, now),
                Err(HookRefusal::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify(SECRET, headers(vec![]), body, now),
            Err(HookRefusal::Unsigned)
        );
    }

    #[test]
    fn github_signatures_use_the_delivery_id() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let h = headers(vec![
            (GITHUB_SIGNATURE_HEADER, sign_github(SECRET, body)),
            (
                GITHUB_DELIVERY_HEADER,
                "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
            ),
        ]);
        assert_eq!(
            verify(SECRET, &h, body, 0).map(|v| v.delivery_id),
            Ok("72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned())
        );
        assert_eq!(verify(SECRET, &h, b"{}", 0), Err(HookRefusal::Mismatch));
    }

    proptest! {
        #[test]
        fn any_headers_and_body_never_panic(sig in "\\PC{0,80}", ts in "\\PC{0,20}", body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let h = headers(vec![(SIGNATURE_HEADER, sig), (TIMESTAMP_HEADER, ts)]);
            prop_assert!(verify(SECRET, &h, &body, 1_700_000_000).is_err());
        }

        #[test]
        fn what_sign_makes_verify_accepts(body in proptest::collection::vec(any::<u8>(), 0..200), ts in 0i64..4_000_000_000) {
            let h = headers(vec![(SIGNATURE_HEADER, sign(SECRET, ts, &body)), (TIMESTAMP_HEADER, ts.to_string())]);
            prop_assert!(verify(SECRET, &h, &body, ts).is_ok());
        }
    }
}
