//! Goodera: JSON with a bearer token (OAuth2 client credentials) or an API
//! key, under a limit of 100 requests per minute per credential that we
//! enforce ourselves and adjust from the provider's rate-limit headers.

pub mod schema;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use reqwest::header::CONTENT_TYPE;

use super::{
    Connector, ConnectorError, DeliveryRequest, Receipt,
    http::{Outbound, Reply},
    oauth::ApiAuth,
    rate::RateGate,
    settings::GooderaConfig,
};
use crate::{clock::SharedClock, provider::Provider};

/// Goodera's rate-limit window, and the wait a 429 without `Retry-After`
/// gets.
const ONE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Goodera {
    config: GooderaConfig,
    auth: ApiAuth,
    outbound: Outbound,
    /// Shared by every connector using the same credential.
    gate: Arc<RateGate>,
    clock: SharedClock,
}

impl Goodera {
    pub(super) fn new(
        config: GooderaConfig,
        auth: ApiAuth,
        outbound: Outbound,
        gate: Arc<RateGate>,
        clock: SharedClock,
    ) -> Self {
        Self {
            config,
            auth,
            outbound,
            gate,
            clock,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.config.api_url.as_str().trim_end_matches('/')
        )
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Reply, ConnectorError> {
        call_within_budget(&self.gate, &self.clock, &self.auth, &self.outbound, request).await
    }
}

/// One rate-limited call; the provider's view of the window wins over ours.
/// Over the limit, nothing is sent: the caller is told when to come back
/// ([`ConnectorError::Throttled`]), and a 429 says the same. Deliveries and
/// ingest (`connectors::sources`) made with one credential share its gate.
pub(crate) async fn call_within_budget(
    gate: &RateGate,
    clock: &SharedClock,
    auth: &ApiAuth,
    outbound: &Outbound,
    request: reqwest::RequestBuilder,
) -> Result<Reply, ConnectorError> {
    gate.admit()
        .map_err(|retry_after| ConnectorError::Throttled { retry_after })?;
    match auth.send(outbound, request).await {
        Ok(reply) => {
            follow_window(gate, clock, &reply);
            Ok(reply)
        }
        Err(ConnectorError::RateLimited {
            status,
            retry_after,
            excerpt,
        }) => Err(ConnectorError::RateLimited {
            status,
            retry_after: Some(gate.pause_for(retry_after.unwrap_or(ONE_WINDOW))),
            excerpt,
        }),
        Err(err) => Err(err),
    }
}

/// `X-RateLimit-Remaining: 0` holds requests until `X-RateLimit-Reset`
/// (Unix epoch seconds, GitHub's convention, which Goodera follows).
fn follow_window(gate: &RateGate, clock: &SharedClock, reply: &Reply) {
    let header = |name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    if header("x-ratelimit-remaining") == Some(0)
        && let Some(reset) = header("x-ratelimit-reset")
    {
        let wait = reset - clock.now().timestamp();
        // Bounded by one window: the header describes no more than that.
        let window = ONE_WINDOW.as_secs() as i64;
        gate.pause_for(Duration::from_secs(wait.clamp(0, window) as u64));
    }
}

#[async_trait]
impl Connector for Goodera {
    fn provider(&self) -> Provider {
        Provider::Goodera
    }

    fn schema_version(&self) -> &'static str {
        schema::SCHEMA_VERSION
    }

    async fn deliver(&self, request: DeliveryRequest<'_>) -> Result<Receipt, ConnectorError> {
        let body = serde_json::to_vec(&schema::map(request.report, request.delivery_id))
            .map_err(|err| ConnectorError::permanent(format!("cannot encode report: {err}")))?;
        let reply = self
            .call(
                self.outbound
                    .client()
                    .post(self.url("/v2/impact-data"))
                    .header(CONTENT_TYPE, "application/json")
                    .header("Idempotency-Key", request.delivery_id)
                    .body(body),
            )
            .await?;
        let reference = reply
            .json::<schema::GooderaAccepted>()
            .map(|a| a.data.submission_id);
        Ok(reply.receipt(reference))
    }

    async fn health(&self) -> Result<(), ConnectorError> {
        self.call(self.outbound.client().get(self.url("/v2/ping")))
            .await
            .map(drop)
    }
}
