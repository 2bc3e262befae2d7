//! Builds the connector for a company and provider from its credentials,
//! once, and keeps what must be shared across companies: the HTTP client,
//! one circuit breaker per provider endpoint and one rate gate per credential.

use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
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
    vault::{Vault, VaultEntries, VaultError},
    workday::{Transport, Workday},
};
use crate::{clock::SharedClock, ingest::stream::System, provider::Provider};

type Key = (Uuid, Provider);

/// The largest page a source may answer: 1000 SCIM users with every
/// attribute fit several times over. A larger answer is cut there and
/// refused as not the documented page.
const MAX_SOURCE_PAGE_BYTES: usize = 32 * 1024 * 1024;
type SourceKey = (Uuid, System);

/// Why no connector or source could be built for a company.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// A built connector or source, and the vault contents it was built from.
struct Cached<T: ?Sized> {
    value: Arc<T>,
    stamp: Vec<(String, DateTime<Utc>)>,
    checked_at: DateTime<Utc>,
}

/// Whether a company's credentials for a provider are complete, for
/// deliveries and for ingest; `Err` says what is missing or malformed.
#[derive(Debug)]
pub struct Readiness {
    pub delivery: Result<(), SettingsError>,
    pub ingest: Result<(), SettingsError>,
}

pub struct ConnectorRegistry {
    settings: ProviderSettings,
    outbound: Outbound,
    /// The same client for ingest sources, whose pages of up to 1000
    /// records are far larger than a provider's answer to a delivery.
    source_outbound: Outbound,
    tokens: TokenStore,
    vault: Vault,
    /// How long a built connector is used before the vault is read again
    /// for changes made through another replica (`CREDENTIALS_REFRESH_SECS`);
    /// changes made through this one apply at once.
    refresh: Duration,
    clock: SharedClock,
    breaker_config: BreakerConfig,
    breakers: Mutex<HashMap<String, (Provider, Arc<CircuitBreaker>)>>,
    gates: Mutex<HashMap<String, Arc<RateGate>>>,
    connectors: Mutex<HashMap<Key, Cached<dyn Connector>>>,
    sources: Mutex<HashMap<SourceKey, Cached<dyn Source>>>,
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
        vault: Vault,
        refresh: Duration,
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
            vault,
            refresh,
            clock,
            breaker_config,
            breakers: Mutex::default(),
            gates: Mutex::default(),
            connectors: Mutex::default(),
            sources: Mutex::default(),
        })
    }

    /// The connector for `provider` on behalf of `company`, built on first
    /// use from its vaulted values and variables; an error says which
    /// variable is missing or malformed.
    pub async fn connector(
        &self,
        company: Uuid,
        provider: Provider,
    ) -> Result<Arc<dyn Connector>, CredentialsError> {
        self.cached(
            &self.connectors,
            (company, (company, provider)),
            Some(provider),
            |vault| {
                let config = self.settings.resolve_with(provider, Some(company), vault)?;
                Ok(self.build(company, config))
            },
        )
        .await
    }

    /// The ingest source of `system` on behalf of `company`, built on first
    /// use, with the company's credentials.
    pub async fn source(
        &self,
        company: Uuid,
        system: System,
    ) -> Result<Arc<dyn Source>, CredentialsError> {
        self.cached(
            &self.sources,
            (company, (company, system)),
            system.provider(),
            |vault| {
                let config = self.settings.resolve_source(system, Some(company), vault)?;
                Ok(self.build_source(company, config))
            },
        )
        .await
    }

    /// The value under `key` while it is fresh or its vault contents have
    /// not changed; else built again by `build` from the vault's values.
    /// When the vault cannot be read, a value already built is kept.
    async fn cached<K, T>(
        &self,
        cache: &Mutex<HashMap<K, Cached<T>>>,
        (company, key): (Uuid, K),
        provider: Option<Provider>,
        build: impl FnOnce(&BTreeMap<String, SecretString>) -> Result<Arc<T>, SettingsError>,
    ) -> Result<Arc<T>, CredentialsError>
    where
        K: Hash + Eq + Copy,
        T: ?Sized,
    {
        let now = self.clock.now();
        let known = cache
            .lock()
            .expect("registry cache lock")
            .get(&key)
            .map(|c| {
                let fresh = (now - c.checked_at)
                    .to_std()
                    .is_ok_and(|age| age < self.refresh);
                (Arc::clone(&c.value), c.stamp.clone(), fresh)
            });
        let Some(provider) = provider else {
            // Internal services have no vault: their variables never change.
            if let Some((value, _, _)) = known {
                return Ok(value);
            }
            let built = build(&BTreeMap::new())?;
            return Ok(self.keep(cache, key, built, Vec::new(), now));
        };
        if let Some((value, _, true)) = &known {
            return Ok(Arc::clone(value));
        }
        let vault = match self.vault.load(company, provider).await {
            Ok(vault) => vault,
            Err(err) => match known {
                Some((value, _, _)) => {
                    tracing::warn!(%provider, error = %err, "cannot read the credential vault; keeping the credentials already in use");
                    return Ok(value);
                }
                None => return Err(err.into()),
            },
        };
        let VaultEntries { values, stamp } = vault;
        if let Some((value, known_stamp, _)) = known
            && known_stamp == stamp
        {
            return Ok(self.keep(cache, key, value, stamp, now));
        }
        let built = build(&values)?;
        Ok(self.keep(cache, key, built, stamp, now))
    }

    /// Caches `value`, unless a value built from the same vault contents
    /// is there already: callers racing to build one all get the first
    /// (one connector, so one OAuth token and one breaker per company).
    fn keep<K: Hash + Eq, T: ?Sized>(
        &self,
        cache: &Mutex<HashMap<K, Cached<T>>>,
        key: K,
        value: Arc<T>,
        stamp: Vec<(String, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> Arc<T> {
        let mut cache = cache.lock().expect("registry cache lock");
        let entry = cache.entry(key).or_insert_with(|| Cached {
            value: Arc::clone(&value),
            stamp: stamp.clone(),
            checked_at: now,
        });
        if entry.stamp != stamp {
            entry.value = value;
            entry.stamp = stamp;
        }
        entry.checked_at = now;
        Arc::clone(&entry.value)
    }

    /// Drops what was built for `company` with `provider`'s credentials, so
    /// the next use reads the vault again.
    fn forget(&self, company: Uuid, provider: Provider) {
        self.connectors
            .lock()
            .expect("registry cache lock")
            .remove(&(company, provider));
        self.sources
            .lock()
            .expect("registry cache lock")
            .retain(|(c, system), _| !(*c == company && system.provider() == Some(provider)));
    }

    /// Replaces the company's vaulted credentials for `provider`; they apply
    /// to this process's next delivery or run at once.
    pub async fn store_credentials(
        &self,
        company: Uuid,
        provider: Provider,
        values: &BTreeMap<String, SecretString>,
    ) -> Result<(), VaultError> {
        self.vault.replace(company, provider, values).await?;
        self.forget(company, provider);
        Ok(())
    }

    /// Removes the company's vaulted credentials for `provider`; how many
    /// names it held.
    pub async fn remove_credentials(
        &self,
        company: Uuid,
        provider: Provider,
    ) -> Result<u64, VaultError> {
        let removed = self.vault.remove(company, provider).await?;
        self.forget(company, provider);
        Ok(removed)
    }

    /// The shared outbound client (the providers' bounds), for the
    /// service's own calls beyond connectors: the impact platform's
    /// metrics (`scheduler::metrics`).
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Whether `values` (vaulted, or about to be), with the variables,
    /// configure `provider` for `company`, for deliveries and for ingest.
    pub fn readiness(
        &self,
        company: Uuid,
        provider: Provider,
        values: &BTreeMap<String, SecretString>,
    ) -> Readiness {
        let system = match provider {
            Provider::Benevity => System::Benevity,
            Provider::Goodera => System::Goodera,
            Provider::Workday => System::Workday,
        };
        Readiness {
            delivery: self
                .settings
                .resolve_with(provider, Some(company), values)
                .map(drop),
            ingest: self
                .settings
                .resolve_source(system, Some(company), values)
                .map(drop),
        }
    }

    fn build_source(&self, company: Uuid, config: SourceConfig) -> Arc<dyn Source> {
        let outbound = self.source_outbound.clone();
        match config {
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
        }
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

impl From<CredentialsError> for ConnectorError {
    /// Missing or malformed credentials cannot change by retrying; a vault
    /// that cannot be read right now can.
    fn from(err: CredentialsError) -> Self {
        match err {
            CredentialsError::Vault(VaultError::Database(_)) => ConnectorError::Transient {
                message: err.to_string(),
                status: None,
                retry_after: None,
                excerpt: None,
            },
            err => ConnectorError::Unsendable {
                message: err.to_string(),
            },
        }
    }
}
