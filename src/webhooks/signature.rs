//! Webhook signatures, checked over the raw bytes before anything parses
//! them.
//!
//! - Benevity: `X-Benevity-Timestamp: <unix seconds>` and
//!   `X-Benevity-Signature: sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>`,
//!   keyed by the UTF-8 bytes of the secret.
//! - Goodera and Workday: Standard Webhooks (standardwebhooks.com):
//!   `webhook-id`, `webhook-timestamp`, and `webhook-signature` holding
//!   space-separated `v1,<base64 HMAC-SHA256(key, "<id>.<ts>.<body>")>`
//!   entries, keyed by the base64 key of a `whsec_…` secret.
//!
//! Every MAC is compared whole, in constant time, after its length: an
//! empty or truncated signature (`v1,`) never matches.

use std::{fmt, time::Duration};

use axum::http::HeaderMap;
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::provider::Provider;

pub const BENEVITY_SIGNATURE: &str = "x-benevity-signature";
pub const BENEVITY_TIMESTAMP: &str = "x-benevity-timestamp";
pub const WEBHOOK_ID: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// Bytes of an HMAC-SHA256.
const MAC_LEN: usize = 32;
/// Signature entries looked at in one header: enough for a sender in the
/// middle of a rotation, few enough that a header of thousands of entries
/// costs no more than a normal one.
const MAX_ENTRIES: usize = 8;
/// The longest `webhook-id` accepted (Standard Webhooks ids are ~30 chars).
pub const MAX_EVENT_ID: usize = 255;

/// How a provider signs its webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Benevity,
    Standard,
}

impl Scheme {
    pub fn of(provider: Provider) -> Self {
        match provider {
            Provider::Benevity => Self::Benevity,
            Provider::Goodera | Provider::Workday => Self::Standard,
        }
    }
}

/// One signing key. Never printed.
#[derive(Clone)]
pub struct WebhookKey(SecretSlice<u8>);

impl fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookKey(…)")
    }
}

impl WebhookKey {
    /// A key from the text of a secret variable entry, as the scheme reads
    /// it; the error says what is wrong without quoting the value.
    pub fn parse(scheme: Scheme, raw: &str) -> Result<Self, String> {
        let bytes = match scheme {
            Scheme::Benevity => raw.as_bytes().to_vec(),
            Scheme::Standard => {
                let encoded = raw
                    .strip_prefix("whsec_")
                    .ok_or("a Standard Webhooks secret starts with whsec_")?;
                STANDARD
                    .decode(encoded)
                    .map_err(|_| "the part after whsec_ must be base64")?
            }
        };
        // HMAC accepts any key length; a short one is a guessable one.
        if bytes.len() < 16 {
            return Err("a webhook secret must hold at least 16 bytes".into());
        }
        Ok(Self(bytes.into()))
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret())
            .expect("HMAC takes a key of any length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// Every key a sender may be signing with: more than one while a secret is
/// rotated.
#[derive(Debug, Clone)]
pub struct KeyRing(Vec<WebhookKey>);

impl KeyRing {
    /// A comma-separated list of secrets (blank entries skipped).
    pub fn parse(scheme: Scheme, raw: &str) -> Result<Self, String> {
        let keys = raw
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| WebhookKey::parse(scheme, entry))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("holds no secret".into());
        }
        Ok(Self(keys))
    }
}

/// Why a request's signature is refused: what the sender reads in the 401
/// and what the refusal counter is labelled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    #[error("missing signature: {0} header is required")]
    MissingSignature(&'static str),
    #[error("timestamp outside tolerance: {0} must be Unix seconds within the tolerance of now")]
    TimestampOutsideTolerance(&'static str),
    #[error("signature mismatch: no signature in {0} matches the body with a configured secret")]
    SignatureMismatch(&'static str),
}

impl Refusal {
    pub const REASONS: [&'static str; 3] = [
        "missing_signature",
        "timestamp_outside_tolerance",
        "signature_mismatch",
    ];

    /// The short label of the reason (logs, counters).
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingSignature(_) => Self::REASONS[0],
            Self::TimestampOutsideTolerance(_) => Self::REASONS[1],
            Self::SignatureMismatch(_) => Self::REASONS[2],
        }
    }
}

/// What a verified request carries besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The `webhook-id` (Standard Webhooks), covered by the signature; a
    /// Benevity event's id is inside its signed body.
    pub webhook_id: Option<String>,
}

/// Checks a request's signature headers against `keys`, at `now`.
pub fn verify(
    scheme: Scheme,
    keys: &KeyRing,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<Verified, Refusal> {
    match scheme {
        Scheme::Benevity => {
            let signature = header(headers, BENEVITY_SIGNATURE)
                .ok_or(Refusal::MissingSignature(BENEVITY_SIGNATURE))?;
            let timestamp = header(headers, BENEVITY_TIMESTAMP)
                .ok_or(Refusal::MissingSignature(BENEVITY_TIMESTAMP))?;
            check_timestamp(timestamp, BENEVITY_TIMESTAMP, now, tolerance)?;
            let presented = signature
                .strip_prefix("sha256=")
                .and_then(|hex_mac| hex::decode(hex_mac).ok());
            let matches = presented.is_some_and(|presented| {
                keys.0
                    .iter()
                    .any(|key| same_mac(&key.mac(&[timestamp.as_bytes(), b".", body]), &presented))
            });
            if !matches {
                return Err(Refusal::SignatureMismatch(BENEVITY_SIGNATURE));
            }
            Ok(Verified { webhook_id: None })
        }
        Scheme::Standard => {
            let id = header(headers, WEBHOOK_ID).ok_or(Refusal::MissingSignature(WEBHOOK_ID))?;
            let timestamp = header(headers, WEBHOOK_TIMESTAMP)
                .ok_or(Refusal::MissingSignature(WEBHOOK_TIMESTAMP))?;
            let signatures = header(headers, WEBHOOK_SIGNATURE)
                .ok_or(Refusal::MissingSignature(WEBHOOK_SIGNATURE))?;
            check_timestamp(timestamp, WEBHOOK_TIMESTAMP, now, tolerance)?;
            let presented: Vec<Vec<u8>> = signatures
                .split(' ')
                .filter_map(|entry| entry.strip_prefix("v1,"))
                .take(MAX_ENTRIES)
                .filter_map(|encoded| STANDARD.decode(encoded).ok())
                .collect();
            let matches = id.len() <= MAX_EVENT_ID
                && keys.0.iter().any(|key| {
                    let expected =
                        key.mac(&[id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
                    presented.iter().any(|p| same_mac(&expected, p))
                });
            if !matches {
                return Err(Refusal::SignatureMismatch(WEBHOOK_SIGNATURE));
            }
            Ok(Verified {
                webhook_id: Some(id.to_owned()),
            })
        }
    }
}

/// `sha256=<hex>` for Benevity's `X-Benevity-Signature` (the sandbox's
/// sender, the tests and the benchmark sign with it).
pub fn sign_benevity(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = WebhookKey(secret.to_vec().into());
    let mac = key.mac(&[timestamp.to_string().as_bytes(), b".", body]);
    format!("sha256={}", hex::encode(mac))
}

/// `v1,<base64>` for a Standard Webhooks `webhook-signature`, with the key
/// a `whsec_` secret decodes to.
pub fn sign_standard(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = WebhookKey(key.to_vec().into());
    let mac = key.mac(&[
        id.as_bytes(),
        b".",
        timestamp.to_string().as_bytes(),
        b".",
        body,
    ]);
    format!("v1,{}", STANDARD.encode(mac))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn check_timestamp(
    raw: &str,
    name: &'static str,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), Refusal> {
    let sent: i64 = raw
        .parse()
        .map_err(|_| Refusal::TimestampOutsideTolerance(name))?;
    let skew = now.timestamp().abs_diff(sent);
    if skew > tolerance.as_secs() {
        return Err(Refusal::TimestampOutsideTolerance(name));
    }
    Ok(())
}

/// Whole-MAC equality in constant time; a presented value of another length
/// (empty, truncated, padded) is unequal without comparing any byte.
fn same_mac(expected: &[u8; MAC_LEN], presented: &[u8]) -> bool {
    presented.len() == MAC_LEN && bool::from(expected.as_slice().ct_eq(presented))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(300);
    /// The example of the Standard Webhooks specification.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(timestamp: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(timestamp, 0).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn standard(signature: &str, id: &str, timestamp: i64) -> HeaderMap {
        headers(&[
            (WEBHOOK_ID, id),
            (WEBHOOK_TIMESTAMP, &timestamp.to_string()),
            (WEBHOOK_SIGNATURE, signature),
        ])
    }

    fn spec_ring() -> KeyRing {
        KeyRing::parse(Scheme::Standard, SPEC_SECRET).unwrap()
    }

    #[test]
    fn the_standard_webhooks_spec_example_verifies() {
        let key = STANDARD.decode(&SPEC_SECRET[6..]).unwrap();
        assert_eq!(
            sign_standard(&key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
        let verified = verify(
            Scheme::Standard,
            &spec_ring(),
            &standard(SPEC_SIGNATURE, SPEC_ID, SPEC_TIMESTAMP),
            SPEC_BODY,
            at(SPEC_TIMESTAMP),
            TOLERANCE,
        );
        assert_eq!(
            verified,
            Ok(Verified {
                webhook_id: Some(SPEC_ID.into())
            })
        );
    }

    /// Our own vector, computed independently (`openssl dgst -sha256 -hmac
    /// benevity-webhook-secret-0001` over `1700000000.{"event_id":"evt_1"}`).
    #[test]
    fn benevity_known_answer() {
        let body = br#"{"event_id":"evt_1"}"#;
        let signature = sign_benevity(b"benevity-webhook-secret-0001", 1_700_000_000, body);
        assert_eq!(signature, BENEVITY_KAT);
        let ring = KeyRing::parse(Scheme::Benevity, "benevity-webhook-secret-0001").unwrap();
        let request = headers(&[
            (BENEVITY_SIGNATURE, &signature),
            (BENEVITY_TIMESTAMP, "1700000000"),
        ]);
        assert!(
            verify(
                Scheme::Benevity,
                &ring,
                &request,
                body,
                at(1_700_000_000),
                TOLERANCE
            )
            .is_ok()
        );
    }

    const BENEVITY_KAT: &str =
        "sha256=c17e3257aa0e7c1734afd2fc6f10bff3ab32681e7ede09399a0555db5cac54b7";

    #[test]
    fn empty_truncated_and_padded_signatures_never_match() {
        let full = SPEC_SIGNATURE.strip_prefix("v1,").unwrap();
        let raw = STANDARD.decode(full).unwrap();
        let mut padded = raw.clone();
        padded.push(0);
        for signature in [
            "v1,".to_owned(),
            "v1, ".to_owned(),
            format!("v1,{}", STANDARD.encode(&raw[..16])),
            format!("v1,{}", STANDARD.encode(&raw[..1])),
            format!("v1,{}", STANDARD.encode(padded)),
            format!("v2,{full}"),
            full.to_owned(),
            "v1,not base64!".to_owned(),
        ] {
            let refused = verify(
                Scheme::Standard,
                &spec_ring(),
                &standard(&signature, SPEC_ID, SPEC_TIMESTAMP),
                SPEC_BODY,
                at(SPEC_TIMESTAMP),
                TOLERANCE,
            );
            assert_eq!(
                refused,
                Err(Refusal::SignatureMismatch(WEBHOOK_SIGNATURE)),
                "{signature}"
            );
        }
        let ring = KeyRing::parse(Scheme::Benevity, "benevity-webhook-secret-0001").unwrap();
        for signature in ["sha256=", "sha256=00", "", "sha256=zz"] {
            let request = headers(&[(BENEVITY_TIMESTAMP, "1700000000")]);
            let mut request = request;
            if !signature.is_empty() {
                request.insert(
                    BENEVITY_SIGNATURE,
                    HeaderValue::from_str(signature).unwrap(),
                );
            }
            assert!(
                verify(
                    Scheme::Benevity,
                    &ring,
                    &request,
                    b"{}",
                    at(1_700_000_000),
                    TOLERANCE
                )
                .is_err(),
                "{signature}"
            );
        }
    }

    #[test]
    fn any_key_of_a_rotation_verifies_and_an_entry_for_another_key_is_skipped() {
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let new = format!("whsec_{}", STANDARD.encode([7u8; 32]));
        let ring = KeyRing::parse(Scheme::Standard, &format!("{new}, {old}")).unwrap();
        let signed_with_new = sign_standard(&[7u8; 32], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
        for signature in [
            SPEC_SIGNATURE.to_owned(),
            signed_with_new.clone(),
            format!("v1,AAAA {signed_with_new}"),
        ] {
            assert!(
                verify(
                    Scheme::Standard,
                    &ring,
                    &standard(&signature, SPEC_ID, SPEC_TIMESTAMP),
                    SPEC_BODY,
                    at(SPEC_TIMESTAMP),
                    TOLERANCE
                )
                .is_ok(),
                "{signature}"
            );
        }
        // Only the new secret configured: the old signature is refused.
        let rotated = KeyRing::parse(Scheme::Standard, &new).unwrap();
        assert!(
            verify(
                Scheme::Standard,
                &rotated,
                &standard(SPEC_SIGNATURE, SPEC_ID, SPEC_TIMESTAMP),
                SPEC_BODY,
                at(SPEC_TIMESTAMP),
                TOLERANCE
            )
            .is_err()
        );
    }

    #[test]
    fn the_tolerance_holds_to_the_second_both_ways() {
        let check = |now: i64| {
            verify(
                Scheme::Standard,
                &spec_ring(),
                &standard(SPEC_SIGNATURE, SPEC_ID, SPEC_TIMESTAMP),
                SPEC_BODY,
                at(now),
                TOLERANCE,
            )
        };
        assert!(check(SPEC_TIMESTAMP + 300).is_ok());
        assert!(check(SPEC_TIMESTAMP - 300).is_ok());
        let late = Err(Refusal::TimestampOutsideTolerance(WEBHOOK_TIMESTAMP));
        assert_eq!(check(SPEC_TIMESTAMP + 301), late);
        assert_eq!(check(SPEC_TIMESTAMP - 301), late);
        for timestamp in ["soon", "1614265330.5", "", "99999999999999999999"] {
            let mut request = standard(SPEC_SIGNATURE, SPEC_ID, SPEC_TIMESTAMP);
            if timestamp.is_empty() {
                request.remove(WEBHOOK_TIMESTAMP);
            } else {
                request.insert(WEBHOOK_TIMESTAMP, HeaderValue::from_static(timestamp));
            }
            assert!(
                verify(
                    Scheme::Standard,
                    &spec_ring(),
                    &request,
                    SPEC_BODY,
                    at(SPEC_TIMESTAMP),
                    TOLERANCE
                )
                .is_err(),
                "{timestamp}"
            );
        }
    }

    #[test]
    fn each_missing_header_is_named() {
        for missing in [WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE] {
            let mut request = standard(SPEC_SIGNATURE, SPEC_ID, SPEC_TIMESTAMP);
            request.remove(missing);
            assert_eq!(
                verify(
                    Scheme::Standard,
                    &spec_ring(),
                    &request,
                    SPEC_BODY,
                    at(SPEC_TIMESTAMP),
                    TOLERANCE
                ),
                Err(Refusal::MissingSignature(missing))
            );
        }
    }

    #[test]
    fn secrets_that_cannot_be_keys_are_refused_without_quoting_them() {
        for (scheme, raw) in [
            (Scheme::Standard, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            (Scheme::Standard, "whsec_not*base64"),
            (Scheme::Standard, "whsec_c2hvcnQ="),
            (Scheme::Benevity, "short"),
            (Scheme::Benevity, " , "),
        ] {
            let err = KeyRing::parse(scheme, raw).unwrap_err();
            assert!(!err.contains(raw.trim()) || raw.trim().is_empty(), "{err}");
        }
        assert!(format!("{:?}", spec_ring()).contains('…'));
    }

    proptest! {
        /// Changing any one byte of the body, the id or the timestamp of a
        /// signed request makes it refused.
        #[test]
        fn any_single_byte_change_is_refused(
            body in proptest::collection::vec(any::<u8>(), 1..200),
            field in 0usize..3,
            position in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let key = [42u8; 32];
            let ring = KeyRing::parse(Scheme::Standard, &format!("whsec_{}", STANDARD.encode(key))).unwrap();
            let id = "msg_2c5bM4Zr8Jq1";
            let timestamp = 1_700_000_000i64;
            let signature = sign_standard(&key, id, timestamp, &body);
            let (mut body2, mut id2, mut ts2) = (body.clone(), id.as_bytes().to_vec(), timestamp.to_string().into_bytes());
            let target = match field { 0 => &mut body2, 1 => &mut id2, _ => &mut ts2 };
            let i = position.index(target.len());
            target[i] ^= flip;
            // A header must stay a visible-ASCII string to be sent at all.
            let (Ok(id2), Ok(ts2)) = (String::from_utf8(id2), String::from_utf8(ts2)) else {
                return Ok(());
            };
            let Ok(id_header) = HeaderValue::from_str(&id2) else { return Ok(()) };
            let Ok(ts_header) = HeaderValue::from_str(&ts2) else { return Ok(()) };
            let mut request = HeaderMap::new();
            request.insert(WEBHOOK_ID, id_header);
            request.insert(WEBHOOK_TIMESTAMP, ts_header);
            request.insert(WEBHOOK_SIGNATURE, HeaderValue::from_str(&signature).unwrap());
            // A huge tolerance: only the signature can refuse it.
            let refused = verify(Scheme::Standard, &ring, &request, &body2, at(timestamp), Duration::from_secs(u64::MAX / 4));
            prop_assert!(refused.is_err());
        }

        #[test]
        fn any_single_byte_change_is_refused_by_benevity(
            body in proptest::collection::vec(any::<u8>(), 1..200),
            in_body in any::<bool>(),
            position in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let secret = b"benevity-webhook-secret-0001";
            let ring = KeyRing::parse(Scheme::Benevity, "benevity-webhook-secret-0001").unwrap();
            let timestamp = 1_700_000_000i64;
            let signature = sign_benevity(secret, timestamp, &body);
            let (mut body2, mut ts2) = (body.clone(), timestamp.to_string().into_bytes());
            let target = if in_body { &mut body2 } else { &mut ts2 };
            let i = position.index(target.len());
            target[i] ^= flip;
            let Ok(ts2) = String::from_utf8(ts2) else { return Ok(()) };
            let Ok(ts_header) = HeaderValue::from_str(&ts2) else { return Ok(()) };
            let mut request = HeaderMap::new();
            request.insert(BENEVITY_TIMESTAMP, ts_header);
            request.insert(BENEVITY_SIGNATURE, HeaderValue::from_str(&signature).unwrap());
            let refused = verify(Scheme::Benevity, &ring, &request, &body2, at(timestamp), Duration::from_secs(u64::MAX / 4));
            prop_assert!(refused.is_err());
        }
    }
}
