//! Workday CSR Impact Report v3.0, over REST (bearer token by client
//! credentials or refresh token) or SOAP 1.1 with a WS-Security
//! UsernameToken, chosen by `WORKDAY_PROTOCOL`.

pub mod schema;
pub mod soap;

use async_trait::async_trait;
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};

use super::{
    Connector, ConnectorError, DeliveryRequest, Receipt,
    http::{Outbound, Reply},
    oauth::ApiAuth,
    settings::WorkdayConfig,
};
use crate::provider::Provider;
use soap::{FaultKind, SoapReply, UsernameToken};

#[derive(Debug)]
pub enum Transport {
    Rest(ApiAuth),
    Soap {
        /// `user@tenant`, as Workday expects it.
        username: String,
        password: SecretString,
    },
}

#[derive(Debug)]
pub struct Workday {
    config: WorkdayConfig,
    transport: Transport,
    outbound: Outbound,
}

impl Workday {
    pub(super) fn new(config: WorkdayConfig, transport: Transport, outbound: Outbound) -> Self {
        Self {
            config,
            transport,
            outbound,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.config.api_url.as_str().trim_end_matches('/')
        )
    }

    fn soap_url(&self) -> String {
        self.url(&format!(
            "/ccx/service/{}/CSR_Impact/v3.0",
            self.config.tenant
        ))
    }

    fn rest_url(&self, path: &str) -> String {
        self.url(&format!("/ccx/api/csr/v3/{}{path}", self.config.tenant))
    }

    /// Posts a SOAP document; the receipt carries the report reference when
    /// the answer was a submission's. `delivery_id` is for the log only.
    async fn post_soap(
        &self,
        action: &'static str,
        envelope: String,
        delivery_id: Option<&str>,
    ) -> Result<Receipt, ConnectorError> {
        let reply = self
            .outbound
            .send(
                self.outbound
                    .client()
                    .post(self.soap_url())
                    .header(CONTENT_TYPE, "text/xml; charset=UTF-8")
                    .header("SOAPAction", action)
                    .body(envelope),
            )
            .await?;
        match soap::parse_reply(&String::from_utf8_lossy(&reply.body)) {
            Ok(SoapReply::Fault(fault)) => Err(fault_error(&reply, fault)),
            // Not SOAP at all (a proxy's 503 page, say): judge by status.
            _ if !reply.is_success() => Err(reply.error()),
            Ok(SoapReply::Accepted { reference }) => Ok(reply.receipt(Some(reference))),
            Ok(SoapReply::Pong) => Ok(reply.receipt(None)),
            // A 2xx without a fault is the provider's acceptance even when
            // its reply does not read (a proxy's page, no reference, a DTD,
            // which is never expanded): sending the report again would not
            // change that. The receipt keeps the start of the raw reply.
            Err(unreadable) => {
                tracing::warn!(
                    delivery_id,
                    status = reply.status.as_u16(),
                    reason = %unreadable,
                    "Workday answered 2xx without a SOAP fault but its reply could not be read; \
                     taken as accepted, with no provider reference"
                );
                Ok(reply.receipt(None))
            }
        }
    }
}

fn fault_error(reply: &Reply, fault: soap::SoapFault) -> ConnectorError {
    let status = Some(reply.status.as_u16());
    let excerpt = Some(reply.excerpt());
    let message = format!("SOAP fault {}: {}", fault.code, fault.message);
    match fault.kind() {
        FaultKind::Authentication => ConnectorError::Auth {
            message,
            status,
            excerpt,
        },
        FaultKind::Client => ConnectorError::Permanent {
            message,
            status,
            details: fault.validation_messages,
            excerpt,
        },
        FaultKind::Server => ConnectorError::Transient {
            message,
            status,
            retry_after: reply.retry_after(),
            excerpt,
        },
    }
}

#[async_trait]
impl Connector for Workday {
    fn provider(&self) -> Provider {
        Provider::Workday
    }

    fn schema_version(&self) -> &'static str {
        schema::SCHEMA_VERSION
    }

    async fn deliver(&self, request: DeliveryRequest<'_>) -> Result<Receipt, ConnectorError> {
        match &self.transport {
            Transport::Rest(auth) => {
                let body = serde_json::to_vec(&schema::map(request.report, request.delivery_id))
                    .map_err(|err| {
                        ConnectorError::permanent(format!("cannot encode report: {err}"))
                    })?;
                let reply = auth
                    .send(
                        &self.outbound,
                        self.outbound
                            .client()
                            .post(self.rest_url("/impactReports"))
                            .header(CONTENT_TYPE, "application/json")
                            .body(body),
                    )
                    .await?;
                let reference = reply.json::<schema::WorkdayAccepted>().map(|a| a.id);
                Ok(reply.receipt(reference))
            }
            Transport::Soap { username, password } => {
                let token = UsernameToken {
                    username,
                    password: password.expose_secret(),
                };
                self.post_soap(
                    soap::SOAP_ACTION,
                    soap::envelope(request.report, request.delivery_id, &token),
                    Some(request.delivery_id),
                )
                .await
            }
        }
    }

    async fn health(&self) -> Result<(), ConnectorError> {
        match &self.transport {
            Transport::Rest(auth) => auth
                .send(
                    &self.outbound,
                    self.outbound.client().get(self.rest_url("/ping")),
                )
                .await
                .map(drop),
            Transport::Soap { username, password } => {
                let token = UsernameToken {
                    username,
                    password: password.expose_secret(),
                };
                self.post_soap(soap::PING_ACTION, soap::ping_envelope(&token), None)
                    .await
                    .map(drop)
            }
        }
    }
}
