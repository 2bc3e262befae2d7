//! Benevity: JSON signed with HMAC-SHA256, authenticated by API key or, in
//! oauth2 mode, by a bearer token.

pub mod schema;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::CONTENT_TYPE;
use secrecy::ExposeSecret;
use sha2::Sha256;

use super::{
    Connector, ConnectorError, DeliveryRequest, Receipt,
    http::Outbound,
    oauth::ApiAuth,
    settings::{BenevityConfig, Signing},
};
use crate::{clock::SharedClock, provider::Provider};

#[derive(Debug)]
pub struct Benevity {
    config: BenevityConfig,
    auth: ApiAuth,
    outbound: Outbound,
    clock: SharedClock,
}

impl Benevity {
    pub(super) fn new(
        config: BenevityConfig,
        auth: ApiAuth,
        outbound: Outbound,
        clock: SharedClock,
    ) -> Self {
        Self {
            config,
            auth,
            outbound,
            clock,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.config.api_url.as_str().trim_end_matches('/')
        )
    }
}

/// Hex HMAC-SHA256 over the exact body bytes, or over `{timestamp}.{body}`.
pub fn sign(signing: &Signing, timestamp: Option<&str>, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(signing.secret.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    if let Some(timestamp) = timestamp {
        mac.update(timestamp.as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[async_trait]
impl Connector for Benevity {
    fn provider(&self) -> Provider {
        Provider::Benevity
    }

    fn schema_version(&self) -> &'static str {
        schema::SCHEMA_VERSION
    }

    async fn deliver(&self, request: DeliveryRequest<'_>) -> Result<Receipt, ConnectorError> {
        let body = serde_json::to_vec(&schema::map(request.report, request.delivery_id))
            .map_err(|err| ConnectorError::permanent(format!("cannot encode report: {err}")))?;
        let reply = self
            .auth
            .send(&self.outbound, {
                let mut post = self
                    .outbound
                    .client()
                    .post(self.url("/v1/impact-reports"))
                    .header(CONTENT_TYPE, "application/json")
                    .header("X-Idempotency-Key", request.delivery_id);
                if let Some(signing) = &self.config.signing {
                    let timestamp = signing
                        .timestamped
                        .then(|| self.clock.now().timestamp().to_string());
                    post = post.header(
                        "X-Benevity-Signature",
                        sign(signing, timestamp.as_deref(), &body),
                    );
                    if let Some(timestamp) = timestamp {
                        post = post.header("X-Benevity-Timestamp", timestamp);
                    }
                }
                post.body(body)
            })
            .await?;
        let reference = reply.json::<schema::BenevityAccepted>().map(|a| a.id);
        Ok(reply.receipt(reference))
    }

    async fn health(&self) -> Result<(), ConnectorError> {
        self.auth
            .send(
                &self.outbound,
                self.outbound.client().get(self.url("/v1/ping")),
            )
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    /// RFC 4231 test case 2: an HMAC-SHA256 vector computed independently.
    #[test]
    fn signature_matches_the_rfc_4231_vector() {
        let signing = Signing {
            secret: SecretString::from("Jefe"),
            timestamped: false,
        };
        assert_eq!(
            sign(&signing, None, b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_timestamped_variant_signs_timestamp_dot_body() {
        let signing = Signing {
            secret: SecretString::from("Jefe"),
            timestamped: true,
        };
        assert_eq!(
            sign(&signing, Some("what do ya"), b"want for nothing?"),
            sign(&signing, None, b"what do ya.want for nothing?")
        );
    }
}
