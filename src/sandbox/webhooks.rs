//! The sandbox's webhook sender: after accepting a delivery, each provider
//! posts signed status events to the service's `/webhooks/{provider}`, as
//! the real ones do (`docs/connectors.md`, "Webhooks in"): `received`, then
//! `processed` (or `rejected`), a configurable delay apart. The control API
//! can twist the next delivery's final event: a rejection, a duplicate, an
//! expired timestamp, a bad signature.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::credentials;
use crate::{
    provider::Provider,
    webhooks::signature::{
        BENEVITY_SIGNATURE, BENEVITY_TIMESTAMP, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
        sign_benevity, sign_standard,
    },
};

/// How long the sender waits for the service's answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A signed timestamp this far in the past is refused by any receiver.
const EXPIRED_BY: i64 = 3600;

/// What to do to the next delivery's final event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Twist {
    /// `rejected` instead of `processed`, with a reason.
    Reject,
    /// The final event sent twice, same id.
    Duplicate,
    /// Signed with a timestamp an hour old.
    ExpiredTimestamp,
    /// Signed with a key the service does not hold.
    BadSignature,
}

/// One event posted, as `GET /_sandbox/webhooks` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Sent {
    provider: Provider,
    event_id: String,
    event_type: String,
    /// The idempotency key of the delivery it is about.
    delivery_id: String,
    twist: Option<Twist>,
    /// What the service answered; `None` when it could not be reached.
    answer: Option<u16>,
    error: Option<String>,
}

pub(crate) struct WebhookSender {
    client: reqwest::Client,
    inner: Mutex<Inner>,
}

struct Inner {
    /// The service's webhook base, e.g. `http://127.0.0.1:3007/webhooks`;
    /// `None`: send nothing.
    url: Option<String>,
    delay: Duration,
    twists: VecDeque<Twist>,
    sent: Vec<Sent>,
}

impl WebhookSender {
    pub(crate) fn new(url: Option<String>) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(SEND_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a plain HTTP client builds"),
            inner: Mutex::new(Inner {
                url,
                delay: Duration::from_millis(500),
                twists: VecDeque::new(),
                sent: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where to send (`None` stops sending) and the delay before each event.
    pub(crate) fn configure(&self, url: Option<Option<String>>, delay: Option<Duration>) {
        let mut inner = self.lock();
        if let Some(url) = url {
            inner.url = url.map(|u| u.trim_end_matches('/').to_owned());
        }
        if let Some(delay) = delay {
            inner.delay = delay;
        }
    }

    pub(crate) fn twist_next(&self, twist: Twist, count: u32) {
        self.lock()
            .twists
            .extend(std::iter::repeat_n(twist, count as usize));
    }

    pub(crate) fn sent(&self) -> Vec<Sent> {
        self.lock().sent.clone()
    }

    /// Forgets what was sent and the queued twists; keeps where to send.
    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        inner.twists.clear();
        inner.sent.clear();
    }

    /// Called once per newly accepted delivery: posts its events in the
    /// background.
    pub(crate) fn accepted(self: &Arc<Self>, provider: Provider, key: &str, reference: &str) {
        let (url, delay, twist) = {
            let mut inner = self.lock();
            let Some(url) = inner.url.clone() else {
                return;
            };
            (url, inner.delay, inner.twists.pop_front())
        };
        let sender = Arc::clone(self);
        let (key, reference) = (key.to_owned(), reference.to_owned());
        tokio::spawn(async move {
            let url = format!("{url}/{provider}");
            tokio::time::sleep(delay).await;
            let received = Event::new(provider, Stage::Received, &key, &reference);
            sender.post(&url, &received, None).await;
            tokio::time::sleep(delay).await;
            let stage = if twist == Some(Twist::Reject) {
                Stage::Rejected
            } else {
                Stage::Processed
            };
            let last = Event::new(provider, stage, &key, &reference);
            sender.post(&url, &last, twist).await;
            if twist == Some(Twist::Duplicate) {
                sender.post(&url, &last, twist).await;
            }
        });
    }

    async fn post(&self, url: &str, event: &Event, twist: Option<Twist>) {
        let mut timestamp = Utc::now().timestamp();
        if twist == Some(Twist::ExpiredTimestamp) {
            timestamp -= EXPIRED_BY;
        }
        let body = event.body.to_string();
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        let bad = twist == Some(Twist::BadSignature);
        match event.provider {
            Provider::Benevity => {
                let secret = if bad {
                    b"not-the-benevity-webhook-secret".as_slice()
                } else {
                    credentials::BENEVITY_WEBHOOK_SECRET.as_bytes()
                };
                request = request
                    .header(BENEVITY_TIMESTAMP, timestamp.to_string())
                    .header(
                        BENEVITY_SIGNATURE,
                        sign_benevity(secret, timestamp, body.as_bytes()),
                    );
            }
            Provider::Goodera | Provider::Workday => {
                let secret = if event.provider == Provider::Goodera {
                    credentials::GOODERA_WEBHOOK_SECRET
                } else {
                    credentials::WORKDAY_WEBHOOK_SECRET
                };
                let mut key = standard_key(secret);
                if bad {
                    key.reverse();
                }
                request = request
                    .header(WEBHOOK_ID, &event.id)
                    .header(WEBHOOK_TIMESTAMP, timestamp.to_string())
                    .header(
                        WEBHOOK_SIGNATURE,
                        sign_standard(&key, &event.id, timestamp, body.as_bytes()),
                    );
            }
        }
        let (answer, error) = match request.body(body).send().await {
            Ok(response) => (Some(response.status().as_u16()), None),
            Err(err) => {
                tracing::warn!(provider = %event.provider, error = %err, "sandbox could not post a webhook");
                (None, Some(err.to_string()))
            }
        };
        self.lock().sent.push(Sent {
            provider: event.provider,
            event_id: event.id.clone(),
            event_type: event.event_type.to_owned(),
            delivery_id: event.key.clone(),
            twist,
            answer,
            error,
        });
    }
}

/// The key a `whsec_` secret stands for.
pub(crate) fn standard_key(secret: &str) -> Vec<u8> {
    STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("the sandbox's webhook secrets are valid base64")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Received,
    Processed,
    Rejected,
}

struct Event {
    provider: Provider,
    id: String,
    event_type: &'static str,
    key: String,
    body: Value,
}

impl Event {
    /// The documented body of each provider's event.
    fn new(provider: Provider, stage: Stage, key: &str, reference: &str) -> Self {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let reason = "sandbox rejection: the report failed the provider's validation";
        let (id, event_type, body) = match provider {
            Provider::Benevity => {
                let id = format!("evt_{}", Uuid::new_v4().simple());
                let event_type = match stage {
                    Stage::Received => "delivery.received",
                    Stage::Processed => "delivery.success",
                    Stage::Rejected => "delivery.failed",
                };
                let reasons: Vec<&str> = if stage == Stage::Rejected {
                    vec![reason]
                } else {
                    vec![]
                };
                let body = json!({
                    "event_id": id, "event_type": event_type, "occurred_at": now,
                    "data": {"delivery_id": key, "id": reference, "reasons": reasons},
                });
                (id, event_type, body)
            }
            Provider::Goodera => {
                let event_type = match stage {
                    Stage::Received => "data.received",
                    Stage::Processed => "data.processed",
                    Stage::Rejected => "data.failed",
                };
                let errors: Vec<Value> = if stage == Stage::Rejected {
                    vec![json!({"code": "VALIDATION", "message": reason})]
                } else {
                    vec![]
                };
                let body = json!({
                    "type": event_type, "timestamp": now,
                    "data": {"idempotency_key": key, "submission_id": reference, "errors": errors},
                });
                (format!("msg_{}", Uuid::new_v4().simple()), event_type, body)
            }
            Provider::Workday => {
                let event_type = match stage {
                    Stage::Received => "report.received",
                    Stage::Processed => "report.processed",
                    Stage::Rejected => "report.rejected",
                };
                let messages: Vec<&str> = if stage == Stage::Rejected {
                    vec![reason]
                } else {
                    vec![]
                };
                let body = json!({
                    "type": event_type, "timestamp": now,
                    "data": {"externalReferenceId": key, "id": reference, "messages": messages},
                });
                (format!("msg_{}", Uuid::new_v4().simple()), event_type, body)
            }
        };
        Self {
            provider,
            id,
            event_type,
            key: key.to_owned(),
            body,
        }
    }
}
