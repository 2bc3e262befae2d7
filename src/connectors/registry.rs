//! Builds the connector for a company and provider from its credentials,
//! once, and keeps what must be shared across companies: the HTTP client,
//! one circuit breaker per provider endpoint and one rate gate per credential.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    BreakerConfig, CircuitState, Connector, ConnectorError, DeliveryRequest, Receipt,
    benevity::Benevity,
    breaker::CircuitBreaker,
    goodera::Goodera,
    http::{Outbound, OutboundConfig},
    oauth::{ApiAuth, TokenSource},
    rate::RateGate,
    settings::{
        BenevityAuth, GooderaAuth, OAuthCredentials, ProviderConfig, ProviderSettings,
        SettingsError, SourceConfig, WorkdayProtocol,
    },
    sources::{CursorSource, GooderaSource, ScimSource, Source},
    tokens::TokenStore,
    workday::{Transport, Workday},
};
use crate::{clock::SharedClock, ingest::stream::System, provider::Provider};

type Key = (Uuid, Provider);

/// The largest page a source may answer: 1000 SCIM users with every
/// attribute fit several times over. A larger answer is cut there and
/// refused as not the documented page.
const MAX_SOURCE_PAGE_BYTES: usize = 32 * 1024 * 1024;
type SourceKey = (Uuid, System);

pub struct ConnectorRegistry {
    settings: ProviderSettings,
    outbound: Outbound,
    /// The same client for ingest sources, whose pages of up to 1000
    /// records are far larger than a provider's answer to a delivery.
    source_outbound: Outbound,
    tokens: TokenStore,
    clock: SharedClock,
    breaker_config: BreakerConfig,
    breakers: Mutex<HashMap<String, (Provider, Arc<CircuitBreaker>)>>,
    gates: Mutex<HashMap<String, Arc<RateGate>>>,
    connectors: Mutex<HashMap<Key, Arc<dyn Connector>>>,
    sources: Mutex<HashMap<SourceKey, Arc<dyn Source>>>,
}

/// One circuit's state, for health and metrics.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitReport {
    pub provider: Provider,
    pub endpoint: String,
    pub state: CircuitState,
}

impl ConnectorRegistry {
    pub fn new(
        settings: ProviderSettings,
        outbound: OutboundConfig,
        breaker_config: BreakerConfig,
        tokens: TokenStore,
        clock: SharedClock,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            settings,
            source_outbound: Outbound::new(OutboundConfig {
                max_response_bytes: MAX_SOURCE_PAGE_BYTES,
                ..outbound.clone()
            })?,
            outbound: Outbound::new(outbound)?,
            tokens,
            clock,
            breaker_config,
            breakers: Mutex::default(),
            gates: Mutex::default(),
            connectors: Mutex::default(),
            sources: Mutex::default(),
        })
    }

    /// The connector for `provider` on behalf of `company`, built on first
    /// use; an error says which variable is missing or malformed.
    pub fn connector(
        &self,
        company: Uuid,
        provider: Provider,
    ) -> Result<Arc<dyn Connector>, SettingsError> {
        if let Some(found) = self.lock_connectors().get(&(company, provider)) {
            return Ok(Arc::clone(found));
        }
        let built = self.build(company, self.settings.resolve(provider, Some(company))?);
        Ok(Arc::clone(
            self.lock_connectors()
                .entry((company, provider))
                .or_insert(built),
        ))
    }

    /// The ingest source of `system` on behalf of `company`, built on first
    /// use, with the company's credentials.
    pub fn source(&self, company: Uuid, system: System) -> Result<Arc<dyn Source>, SettingsError> {
        let key = (company, system);
        if let Some(found) = self.sources.lock().expect("sources lock").get(&key) {
            return Ok(Arc::clone(found));
        }
        let outbound = self.source_outbound.clone();
        let built: Arc<dyn Source> = match self.settings.resolve_source(system, Some(company))? {
            SourceConfig::Benevity {
                api_url,
                oauth,
                tenant_id,
            } => Arc::new(CursorSource::benevity(
                &api_url,
                &tenant_id,
                self.bearer(company, Provider::Benevity, oauth),
                outbound,
            )),
            SourceConfig::Goodera {
                api_url,
                api_key,
                project_id,
                requests_per_minute,
            } => Arc::new(GooderaSource::new(
                &api_url,
                &project_id,
                ApiAuth::Header {
                    name: "x-api-key",
                    value: api_key.clone(),
                },
                outbound,
                self.gate(digest(api_key.expose_secret()), requests_per_minute),
                self.clock.clone(),
            )),
            SourceConfig::Workday {
                api_url,
                tenant,
                oauth,
            } => Arc::new(ScimSource::new(
                &api_url,
                &tenant,
                self.bearer(company, Provider::Workday, oauth),
                outbound,
            )),
            SourceConfig::Internal { base_url, api_key } => Arc::new(CursorSource::internal(
                &base_url,
                ApiAuth::Header {
                    name: "authorization",
                    value: format!("Bearer {}", api_key.expose_secret()).into(),
                },
                outbound,
            )),
        };
        Ok(Arc::clone(
            self.sources
                .lock()
                .expect("sources lock")
                .entry(key)
                .or_insert(built),
        ))
    }

    /// The rate gate of one credential, shared by every connector and source
    /// that uses it.
    fn gate(&self, credential: String, per_minute: std::num::NonZeroU32) -> Arc<RateGate> {
        Arc::clone(
            self.gates
                .lock()
                .expect("gates lock")
                .entry(credential)
                .or_insert_with(|| Arc::new(RateGate::per_minute(per_minute))),
        )
    }

    pub fn circuits(&self) -> Vec<CircuitReport> {
        let mut reports: Vec<CircuitReport> = self
            .breakers
            .lock()
            .expect("breakers lock")
            .iter()
            .map(|(endpoint, (provider, breaker))| CircuitReport {
                provider: *provider,
                endpoint: endpoint.clone(),
                state: breaker.state(),
            })
            .collect();
        reports.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        reports
    }

    fn lock_connectors(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<dyn Connector>>> {
        self.connectors.lock().expect("connectors lock")
    }

    fn build(&self, company: Uuid, config: ProviderConfig) -> Arc<dyn Connector> {
        let outbound = self.outbound.clone();
        let clock = self.clock.clone();
        let (endpoint, connector): (String, Box<dyn Connector>) = match config {
            ProviderConfig::Benevity(config) => {
                let auth = match &config.auth {
                    BenevityAuth::ApiKey(key) => ApiAuth::Header {
                        name: "X-API-Key",
                        value: key.clone(),
                    },
                    BenevityAuth::OAuth2(oauth) => {
                        self.bearer(company, Provider::Benevity, oauth.clone())
                    }
                };
                (
                    config.api_url.to_string(),
                    Box::new(Benevity::new(config, auth, outbound, clock)),
                )
            }
            ProviderConfig::Goodera(config) => {
                let (auth, credential) = match &config.auth {
                    GooderaAuth::ApiKey(key) => (
                        ApiAuth::Header {
                            name: "x-api-key",
                            value: key.clone(),
                        },
                        digest(key.expose_secret()),
                    ),
                    GooderaAuth::OAuth2(oauth) => (
                        self.bearer(company, Provider::Goodera, oauth.clone()),
                        digest(&format!("{}\n{}", oauth.token_url, oauth.client_id)),
                    ),
                };
                let gate = self.gate(credential, config.requests_per_minute);
                (
                    config.api_url.to_string(),
                    Box::new(Goodera::new(config, auth, outbound, gate, clock)),
                )
            }
            ProviderConfig::Workday(config) => {
                let transport = match &config.protocol {
                    WorkdayProtocol::Rest(oauth) => {
                        Transport::Rest(self.bearer(company, Provider::Workday, oauth.clone()))
                    }
                    WorkdayProtocol::Soap { username, password } => Transport::Soap {
                        username: format!("{username}@{}", config.tenant),
                        password: password.clone(),
                    },
                };
                (
                    format!("{}#{}", config.api_url, config.tenant),
                    Box::new(Workday::new(config, transport, outbound)),
                )
            }
        };
        let provider = connector.provider();
        let breaker = Arc::clone(
            &self
                .breakers
                .lock()
                .expect("breakers lock")
                .entry(endpoint)
                .or_insert_with(|| {
                    (
                        provider,
                        CircuitBreaker::new(self.breaker_config.clone(), self.clock.clone()),
                    )
                })
                .1,
        );
        Arc::new(Guarded {
            inner: connector,
            breaker,
        })
    }

    fn bearer(&self, company: Uuid, provider: Provider, oauth: OAuthCredentials) -> ApiAuth {
        ApiAuth::Bearer(Box::new(TokenSource::new(
            company,
            provider,
            oauth,
            self.outbound.clone(),
            self.tokens.clone(),
            self.clock.clone(),
        )))
    }
}

fn digest(value: &str) -> String {
    hex::encode(&Sha256::digest(value)[..16])
}

/// A connector behind its endpoint's circuit breaker.
struct Guarded {
    inner: Box<dyn Connector>,
    breaker: Arc<CircuitBreaker>,
}

#[async_trait]
impl Connector for Guarded {
    fn provider(&self) -> Provider {
        self.inner.provider()
    }

    fn schema_version(&self) -> &'static str {
        self.inner.schema_version()
    }

    async fn deliver(&self, request: DeliveryRequest<'_>) -> Result<Receipt, ConnectorError> {
        let permit = self.breaker.acquire()?;
        let outcome = self.inner.deliver(request).await;
        permit.record(&outcome);
        outcome
    }

    /// A connection test goes through even when the circuit is open: it is
    /// how an operator finds out whether the provider is back.
    async fn health(&self) -> Result<(), ConnectorError> {
        self.inner.health().await
    }
}
