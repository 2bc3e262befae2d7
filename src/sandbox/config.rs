//! Which credentials the sandbox accepts, and how many records its ingest
//! streams start with. The default is the documented sandbox set; tests add
//! more to exercise per-tenant credentials.

use subtle::ConstantTimeEq;

use super::{
    credentials,
    ingest::{DEFAULT_RECORDS, MAX_RECORDS},
};
use crate::provider::Provider;

/// Goodera's published limit: requests per minute per client.
pub const GOODERA_PER_MINUTE: u32 = 100;

/// Accepted credentials per provider and the ingest volume. `Default` holds
/// the values of [`credentials`] and 250 records per stream; the `with_*`
/// builders add to them.
///
/// Deliberately not `Debug`: it holds secrets.
#[derive(Clone)]
pub struct SandboxConfig {
    benevity_api_keys: Vec<BenevityKey>,
    benevity_clients: Vec<Client>,
    goodera_clients: Vec<Client>,
    goodera_api_keys: Vec<String>,
    workday_tenants: Vec<String>,
    workday_clients: Vec<Client>,
    workday_users: Vec<WorkdayUser>,
    /// Where the providers post their status webhooks (the service's
    /// `/webhooks` base); `None`: they post none until told where.
    pub(crate) webhook_url: Option<String>,
    /// Records per ingest stream, after a start or a reset.
    pub(crate) records: u64,
    /// Goodera's requests per minute per client (its published 100).
    pub(crate) goodera_per_minute: u32,
    /// The generated events happened in the 90 days before this (ms since
    /// 1970): 2026-01-01 for tests, which compare with fixed dates; today
    /// in a development run, so a schedule finds recent data.
    pub(crate) events_until_ms: i64,
}

#[derive(Clone)]
struct BenevityKey {
    key: String,
    signature_secret: String,
}

/// An OAuth2 client registration.
#[derive(Clone)]
pub(crate) struct Client {
    id: String,
    secret: String,
    /// Workday registers a refresh token with each API client.
    refresh_token: Option<String>,
}

#[derive(Clone)]
struct WorkdayUser {
    username: String,
    password: String,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            benevity_api_keys: vec![BenevityKey {
                key: credentials::BENEVITY_API_KEY.into(),
                signature_secret: credentials::BENEVITY_SIGNATURE_SECRET.into(),
            }],
            benevity_clients: vec![Client::new(
                credentials::BENEVITY_CLIENT_ID,
                credentials::BENEVITY_CLIENT_SECRET,
                None,
            )],
            goodera_clients: vec![Client::new(
                credentials::GOODERA_CLIENT_ID,
                credentials::GOODERA_CLIENT_SECRET,
                None,
            )],
            goodera_api_keys: vec![credentials::GOODERA_API_KEY.into()],
            workday_tenants: vec![credentials::WORKDAY_TENANT_ID.into()],
            workday_clients: vec![Client::new(
                credentials::WORKDAY_CLIENT_ID,
                credentials::WORKDAY_CLIENT_SECRET,
                Some(credentials::WORKDAY_REFRESH_TOKEN.into()),
            )],
            workday_users: vec![WorkdayUser {
                username: credentials::WORKDAY_USERNAME.into(),
                password: credentials::WORKDAY_PASSWORD.into(),
            }],
            webhook_url: None,
            records: DEFAULT_RECORDS,
            goodera_per_minute: GOODERA_PER_MINUTE,
            events_until_ms: super::ingest::EVENTS_UNTIL_MS,
        }
    }
}

impl SandboxConfig {
    /// Post status webhooks to this base (`…/webhooks`), as the providers
    /// would after accepting a delivery.
    pub fn with_webhook_url(mut self, url: impl Into<String>) -> Self {
        self.webhook_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Serve `records` generated records per ingest stream (at most
    /// 100,000,000; more is capped).
    pub fn with_records(mut self, records: u64) -> Self {
        self.records = records.min(MAX_RECORDS);
        self
    }

    /// Date the generated events in the 90 days before `until` instead of
    /// before 2026-01-01.
    pub fn with_events_until(mut self, until: chrono::NaiveDate) -> Self {
        self.events_until_ms = until
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis();
        self
    }

    /// Let each Goodera client make `per_minute` requests a minute instead
    /// of Goodera's published 100 (benchmarks that measure impact-in, not
    /// Goodera's limit).
    pub fn with_goodera_per_minute(mut self, per_minute: u32) -> Self {
        self.goodera_per_minute = per_minute.max(1);
        self
    }

    /// Also accept this Benevity API key, whose requests are signed with
    /// `signature_secret`.
    pub fn with_benevity_api_key(
        mut self,
        key: impl Into<String>,
        signature_secret: impl Into<String>,
    ) -> Self {
        self.benevity_api_keys.push(BenevityKey {
            key: key.into(),
            signature_secret: signature_secret.into(),
        });
        self
    }

    /// Also accept this Benevity OAuth2 client.
    pub fn with_benevity_client(
        mut self,
        id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.benevity_clients
            .push(Client::new(id.into(), secret.into(), None));
        self
    }

    /// Also accept this Goodera OAuth2 client.
    pub fn with_goodera_client(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.goodera_clients
            .push(Client::new(id.into(), secret.into(), None));
        self
    }

    /// Also accept this Goodera API key.
    pub fn with_goodera_api_key(mut self, key: impl Into<String>) -> Self {
        self.goodera_api_keys.push(key.into());
        self
    }

    /// Also serve this Workday tenant (clients and users are valid in every
    /// tenant; tokens only in the tenant that issued them).
    pub fn with_workday_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.workday_tenants.push(tenant.into());
        self
    }

    /// Also accept this Workday API client with its registered refresh token.
    pub fn with_workday_client(
        mut self,
        id: impl Into<String>,
        secret: impl Into<String>,
        refresh_token: impl Into<String>,
    ) -> Self {
        self.workday_clients.push(Client::new(
            id.into(),
            secret.into(),
            Some(refresh_token.into()),
        ));
        self
    }

    /// Also accept this Workday SOAP user (sent as `{username}@{tenant}`).
    pub fn with_workday_user(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.workday_users.push(WorkdayUser {
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// The signature secret of a known Benevity API key.
    pub(crate) fn benevity_signature_secret(&self, api_key: &str) -> Option<&str> {
        self.benevity_api_keys
            .iter()
            .find(|k| secret_eq(&k.key, api_key))
            .map(|k| k.signature_secret.as_str())
    }

    /// The secret that signs Benevity requests made with a bearer token: the
    /// documented one, as the connector signs with `BENEVITY_SIGNATURE_SECRET`.
    pub(crate) fn benevity_default_signature_secret(&self) -> &str {
        &self.benevity_api_keys[0].signature_secret
    }

    pub(crate) fn client(&self, provider: Provider, id: &str) -> Option<&Client> {
        let clients = match provider {
            Provider::Benevity => &self.benevity_clients,
            Provider::Goodera => &self.goodera_clients,
            Provider::Workday => &self.workday_clients,
        };
        clients.iter().find(|c| c.id == id)
    }

    pub(crate) fn goodera_api_key_known(&self, key: &str) -> bool {
        self.goodera_api_keys.iter().any(|k| secret_eq(k, key))
    }

    pub(crate) fn workday_tenant_known(&self, tenant: &str) -> bool {
        self.workday_tenants.iter().any(|t| t == tenant)
    }

    /// `presented_username` is `{username}@{tenant}` as sent in the
    /// UsernameToken.
    pub(crate) fn workday_user_valid(
        &self,
        tenant: &str,
        presented_username: &str,
        password: &str,
    ) -> bool {
        self.workday_users.iter().any(|u| {
            presented_username == format!("{}@{tenant}", u.username)
                && secret_eq(&u.password, password)
        })
    }
}

impl Client {
    fn new(
        id: impl Into<String>,
        secret: impl Into<String>,
        refresh_token: Option<String>,
    ) -> Self {
        Self {
            id: id.into(),
            secret: secret.into(),
            refresh_token,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn secret_matches(&self, presented: &str) -> bool {
        secret_eq(&self.secret, presented)
    }

    pub(crate) fn refresh_token_matches(&self, presented: &str) -> bool {
        self.refresh_token
            .as_deref()
            .is_some_and(|token| secret_eq(token, presented))
    }
}

/// Constant-time comparison, so response timing does not leak how much of a
/// secret matched.
pub(crate) fn secret_eq(expected: &str, presented: &str) -> bool {
    expected.as_bytes().ct_eq(presented.as_bytes()).into()
}
