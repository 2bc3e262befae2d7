//! What the sandbox remembers between requests: issued tokens, queued faults,
//! latency, received deliveries, counters, Goodera's rate windows, the
//! ingest streams' datasets and what the alert receivers got. One mutex,
//! never held across an `.await`.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use axum::{
    body::Bytes,
    http::{HeaderValue, StatusCode},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strum::VariantArray;
use tokio::time::Instant;

use super::{
    alerts::{Alerts, EventAction, PerReceiver, Receiver},
    config::SandboxConfig,
    ingest::{Dataset, DatasetError, Page, Stream, Window},
    ratelimit::{Decision, FixedWindow},
    webhooks::WebhookSender,
};
use crate::provider::Provider;

/// Lifetime of an issued access token (`expires_in`).
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

pub(crate) struct SandboxState {
    pub(crate) config: SandboxConfig,
    /// Posts the providers' status webhooks to the service.
    pub(crate) webhooks: Arc<WebhookSender>,
    inner: Mutex<Inner>,
}

struct Inner {
    tokens: HashMap<String, Token>,
    /// `None` lets a request through: a fault queued `afterRequests`.
    faults: HashMap<Target, VecDeque<Option<Fault>>>,
    latency: HashMap<Target, Duration>,
    received: Vec<Received>,
    /// Position in `received` by provider and idempotency key: a repeat is
    /// found without scanning every delivery so far.
    received_index: HashMap<(Provider, String), usize>,
    tokens_issued: Counters,
    requests: Counters,
    ingest_requests: BTreeMap<Stream, u64>,
    metrics_requests: u64,
    alerts: Alerts,
    goodera_rate: FixedWindow,
    /// By `Stream as usize`.
    datasets: [Dataset; Stream::VARIANTS.len()],
}

struct Token {
    provider: Provider,
    client_id: String,
    /// Workday tokens are valid only in the tenant that issued them.
    tenant: Option<String>,
    expires_at: Instant,
}

/// Which of a provider's routes a queued fault waits for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Endpoint {
    /// Its API routes (deliveries and pings).
    #[default]
    Api,
    /// Its OAuth2 token endpoint.
    Token,
}

/// What queued faults and latency apply to: a provider's endpoint, or an
/// ingest stream's route (each stream has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Provider(Provider, Endpoint),
    Stream(Stream),
    /// The impact platform's metrics endpoint.
    ImpactMetrics,
    /// An alert receiver's one route.
    Receiver(Receiver),
}

/// A provider's API routes.
impl From<Provider> for Target {
    fn from(provider: Provider) -> Self {
        Self::Provider(provider, Endpoint::Api)
    }
}

impl From<Stream> for Target {
    fn from(stream: Stream) -> Self {
        Self::Stream(stream)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Provider(provider, Endpoint::Api) => write!(f, "{provider}"),
            Self::Provider(provider, Endpoint::Token) => write!(f, "{provider} token endpoint"),
            Self::Stream(stream) => write!(f, "{stream}"),
            Self::ImpactMetrics => f.write_str("impact metrics"),
            Self::Receiver(receiver) => write!(f, "{receiver}"),
        }
    }
}

/// What the next request to a target suffers, queued by the control API.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Close the connection without answering.
    Drop,
    Answer(Answer),
}

/// An answer given instead of the provider's.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub retry_after_secs: Option<u64>,
    /// The `Location` of a redirect.
    pub location: Option<HeaderValue>,
    /// The body and its `Content-Type`; `None`: the sandbox's JSON error.
    pub body: Option<(Bytes, HeaderValue)>,
    /// Send the status, headers and half the body, then close the
    /// connection: an answer that breaks off.
    pub cut_off: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    Unknown,
    Expired,
}

/// An accepted delivery, as `GET /_sandbox/received` lists it.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Received {
    provider: Provider,
    idempotency_key: String,
    times_received: u64,
    /// When the first copy arrived (the benchmark's accept → provider time).
    first_received_at: DateTime<Utc>,
    reference: String,
    /// The received JSON, or the raw XML string of a SOAP request.
    body: Value,
    /// Answered again, unchanged, to a repeat.
    #[serde(skip)]
    response: StoredResponse,
}

#[derive(Clone)]
pub(crate) struct StoredResponse {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Counters {
    benevity: u64,
    goodera: u64,
    workday: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stats {
    tokens_issued: Counters,
    requests: Counters,
    /// Distinct deliveries accepted (repeats of a key not counted).
    deliveries: Counters,
    /// Requests to each stream's route, refused and faulted ones included.
    ingest_requests: BTreeMap<Stream, u64>,
    /// Requests to the impact platform's metrics, likewise.
    metrics_requests: u64,
    /// Requests to each alert receiver, likewise.
    alert_requests: PerReceiver,
}

/// How an API or ingest request is to be treated before its route looks at
/// it.
pub(crate) struct Arrival {
    pub fault: Option<Fault>,
    pub latency: Duration,
}

/// The answer to an accepted delivery and how often its key was seen.
pub(crate) struct Accepted {
    pub response: StoredResponse,
    pub times_received: u64,
    /// The provider's reference for the delivery.
    pub reference: String,
}

impl SandboxState {
    pub(crate) fn new(config: SandboxConfig) -> Self {
        Self {
            webhooks: Arc::new(WebhookSender::new(config.webhook_url.clone())),
            inner: Mutex::new(Inner::new(&config)),
            config,
        }
    }

    // A panic while holding the lock leaves plain data behind, still usable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts an API or ingest request and takes the next queued fault for
    /// its target.
    pub(crate) fn arrive(&self, target: Target) -> Arrival {
        let mut inner = self.lock();
        match target {
            Target::Provider(provider, _) => inner.requests.bump(provider),
            Target::Stream(stream) => *inner.ingest_requests.entry(stream).or_default() += 1,
            Target::ImpactMetrics => inner.metrics_requests += 1,
            Target::Receiver(receiver) => inner.alerts.arrived(receiver),
        }
        Arrival {
            fault: inner.next_fault(target),
            latency: inner.latency.get(&target).copied().unwrap_or_default(),
        }
    }

    /// The next queued fault for a provider's token endpoint.
    pub(crate) fn token_fault(&self, provider: Provider) -> Option<Fault> {
        self.lock()
            .next_fault(Target::Provider(provider, Endpoint::Token))
    }

    /// A new random opaque token bound to the provider, the client and (for
    /// Workday) the tenant.
    pub(crate) fn issue_token(
        &self,
        provider: Provider,
        client_id: &str,
        tenant: Option<&str>,
    ) -> String {
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let mut inner = self.lock();
        inner.tokens.insert(
            token.clone(),
            Token {
                provider,
                client_id: client_id.to_owned(),
                tenant: tenant.map(str::to_owned),
                expires_at: Instant::now() + TOKEN_LIFETIME,
            },
        );
        inner.tokens_issued.bump(provider);
        token
    }

    /// The client a bearer token was issued to, if it is valid here. A token
    /// of another provider or tenant is as unknown as a made-up one.
    pub(crate) fn check_token(
        &self,
        provider: Provider,
        tenant: Option<&str>,
        token: &str,
    ) -> Result<String, TokenProblem> {
        let inner = self.lock();
        let issued = inner
            .tokens
            .get(token)
            .filter(|t| t.provider == provider && t.tenant.as_deref() == tenant)
            .ok_or(TokenProblem::Unknown)?;
        if Instant::now() >= issued.expires_at {
            return Err(TokenProblem::Expired);
        }
        Ok(issued.client_id.clone())
    }

    pub(crate) fn expire_tokens(&self) {
        let now = Instant::now();
        for token in self.lock().tokens.values_mut() {
            token.expires_at = token.expires_at.min(now);
        }
    }

    pub(crate) fn goodera_rate_limit(&self, client: &str) -> Decision {
        self.lock().goodera_rate.hit(client, Instant::now())
    }

    /// Records a delivery under its idempotency key, or, for a key already
    /// accepted, counts the repeat and hands back the original answer.
    /// `respond` makes the provider reference and the answer for a new one.
    pub(crate) fn accept(
        &self,
        provider: Provider,
        idempotency_key: &str,
        body: Value,
        respond: impl FnOnce() -> (String, StoredResponse),
    ) -> Accepted {
        let mut inner = self.lock();
        let key = (provider, idempotency_key.to_owned());
        if let Some(&position) = inner.received_index.get(&key) {
            let seen = &mut inner.received[position];
            seen.times_received += 1;
            return Accepted {
                response: seen.response.clone(),
                times_received: seen.times_received,
                reference: seen.reference.clone(),
            };
        }
        let (reference, response) = respond();
        let position = inner.received.len();
        inner.received_index.insert(key, position);
        inner.received.push(Received {
            provider,
            idempotency_key: idempotency_key.to_owned(),
            times_received: 1,
            first_received_at: Utc::now(),
            reference: reference.clone(),
            body,
            response: response.clone(),
        });
        Accepted {
            response,
            times_received: 1,
            reference,
        }
    }

    /// Queues `count` faults for `target` behind what is queued already,
    /// after letting `after_requests` requests through.
    pub(crate) fn queue_faults(
        &self,
        target: Target,
        after_requests: u32,
        count: u32,
        fault: Fault,
    ) {
        let mut inner = self.lock();
        let queue = inner.faults.entry(target).or_default();
        queue.extend(std::iter::repeat_n(None, after_requests as usize));
        queue.extend(std::iter::repeat_n(Some(fault), count as usize));
    }

    pub(crate) fn set_latency(&self, target: Target, latency: Duration) {
        self.lock().latency.insert(target, latency);
    }

    /// The records of a stream's page, to generate outside the lock.
    pub(crate) fn ingest_page(&self, stream: Stream, window: &Window) -> Page {
        self.lock().datasets[stream as usize].page(window)
    }

    /// The volume of one stream, or of all.
    pub(crate) fn set_ingest_records(
        &self,
        stream: Option<Stream>,
        records: u64,
    ) -> Result<(), DatasetError> {
        let mut inner = self.lock();
        // A volume one stream refuses, every stream refuses: the first
        // refusal leaves all unchanged.
        for &each in Stream::VARIANTS {
            if stream.is_none_or(|stream| stream == each) {
                inner.datasets[each as usize].set_records(records)?;
            }
        }
        Ok(())
    }

    pub(crate) fn change_records(&self, stream: Stream, count: u64) -> Result<(), DatasetError> {
        self.lock().datasets[stream as usize].change(count)
    }

    pub(crate) fn mark_malformed(
        &self,
        stream: Stream,
        indices: &[u64],
    ) -> Result<(), DatasetError> {
        self.lock().datasets[stream as usize].mark_malformed(indices)
    }

    /// Back to a fresh sandbox, except that issued tokens stay as they are.
    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        let tokens = std::mem::take(&mut inner.tokens);
        *inner = Inner::new(&self.config);
        inner.tokens = tokens;
        self.webhooks.reset();
    }

    /// Counts a request an alert receiver refused as invalid.
    pub(crate) fn reject_alert(&self, receiver: Receiver) {
        self.lock().alerts.reject(receiver);
    }

    pub(crate) fn accept_slack(&self, path: String, body: Value) {
        self.lock().alerts.accept_slack(path, body);
    }

    pub(crate) fn accept_pagerduty(&self, action: EventAction, dedup_key: String, body: Value) {
        self.lock().alerts.accept_pagerduty(action, dedup_key, body);
    }

    pub(crate) fn alerts(&self) -> Alerts {
        self.lock().alerts.clone()
    }

    /// Oldest first.
    pub(crate) fn received(&self, provider: Option<Provider>) -> Vec<Received> {
        self.lock()
            .received
            .iter()
            .filter(|r| provider.is_none_or(|p| r.provider == p))
            .cloned()
            .collect()
    }

    pub(crate) fn stats(&self) -> Stats {
        let inner = self.lock();
        let mut deliveries = Counters::default();
        for received in &inner.received {
            deliveries.bump(received.provider);
        }
        Stats {
            tokens_issued: inner.tokens_issued,
            requests: inner.requests,
            deliveries,
            ingest_requests: inner.ingest_requests.clone(),
            metrics_requests: inner.metrics_requests,
            alert_requests: inner.alerts.requests(),
        }
    }
}

impl Inner {
    fn new(config: &SandboxConfig) -> Self {
        Self {
            tokens: HashMap::new(),
            faults: HashMap::new(),
            latency: HashMap::new(),
            received: Vec::new(),
            received_index: HashMap::new(),
            tokens_issued: Counters::default(),
            requests: Counters::default(),
            ingest_requests: Stream::VARIANTS.iter().map(|&s| (s, 0)).collect(),
            metrics_requests: 0,
            alerts: Alerts::default(),
            goodera_rate: FixedWindow::new(config.goodera_per_minute, Duration::from_secs(60)),
            datasets: std::array::from_fn(|_| Dataset::new(config.records)),
        }
    }

    fn next_fault(&mut self, target: Target) -> Option<Fault> {
        self.faults
            .get_mut(&target)
            .and_then(VecDeque::pop_front)
            .flatten()
    }
}

impl Counters {
    fn bump(&mut self, provider: Provider) {
        let counter = match provider {
            Provider::Benevity => &mut self.benevity,
            Provider::Goodera => &mut self.goodera,
            Provider::Workday => &mut self.workday,
        };
        *counter += 1;
    }
}
