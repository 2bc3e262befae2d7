//! The monitor's notifications: what a change of alert state tells
//! PagerDuty (Events API v2) and Slack (incoming webhook), queued in the
//! evaluation's transaction, then sent in order per channel, retried with
//! backoff until the receiver accepts, and marked sent only then.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::{FromRow, Postgres, Transaction};

use super::{
    MonitorContext,
    objective::{Breach, Metric, SlaStatus},
};
use crate::{config::SlaConfig, ids::CompanyId, provider::Provider};

#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type, strum::IntoStaticStr)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Channel {
    PagerDuty,
    Slack,
}

impl Channel {
    const ALL: [Channel; 2] = [Channel::PagerDuty, Channel::Slack];

    fn as_str(self) -> &'static str {
        self.into()
    }

    /// One sender per channel at a time, across replicas, so each channel's
    /// messages leave in the order they were queued.
    fn lock(self) -> i64 {
        match self {
            Self::PagerDuty => 0x051a_0001,
            Self::Slack => 0x051a_0002,
        }
    }
}

/// PagerDuty's limits (Events API v2).
const SUMMARY_MAX_CHARS: usize = 1024;
const DEDUP_KEY_MAX_CHARS: usize = 255;
/// Slack accepts about one message a second per webhook.
const SLACK_SPACING: chrono::Duration = chrono::Duration::seconds(1);
const FIRST_RETRY: Duration = Duration::from_secs(5);
const LONGEST_RETRY: Duration = Duration::from_secs(300);
/// Sends per channel per call, so one call never runs for ever.
const BATCH: usize = 50;

/// One alert changing state.
#[derive(Debug, Clone)]
pub struct Transition {
    pub company: CompanyId,
    pub provider: Provider,
    pub metric: Metric,
    pub before: SlaStatus,
    pub after: SlaStatus,
    /// The figures now; `None` when healthy again.
    pub breach: Option<Breach>,
    pub window: Duration,
}

impl Transition {
    /// The same key for trigger and resolve, whatever the figures: company,
    /// platform and metric.
    pub fn dedup_key(&self) -> String {
        let key = format!(
            "impact-in/sla/{}/{}/{}",
            self.company,
            self.provider.as_str(),
            self.metric.as_str()
        );
        key.chars().take(DEDUP_KEY_MAX_CHARS).collect()
    }

    fn what(&self) -> String {
        let Some(breach) = &self.breach else {
            return format!("{} is back within its objective", label(self.metric));
        };
        let percent = |v: f64| format!("{:.2} %", v * 100.0);
        let minutes = |ms: f64| format!("{:.1} min", ms / 60_000.0);
        let (value, threshold) = match self.metric {
            Metric::SuccessRate | Metric::RetrySuccessRate => {
                (percent(breach.value), percent(breach.threshold))
            }
            Metric::P95DeliveryLatencyMs => (minutes(breach.value), minutes(breach.threshold)),
            Metric::ConsecutiveFailures => {
                (format!("{}", breach.value), format!("{}", breach.threshold))
            }
            Metric::ErrorBudgetBurnRate => (
                format!("{:.1}×", breach.value),
                format!("{:.1}×", breach.threshold),
            ),
        };
        // Past the breach bound on too few deliveries: say why it is
        // only a warning.
        let capped = if breach.capped {
            ", too few to breach"
        } else {
            ""
        };
        format!(
            "{} {value} (threshold {threshold}, {} deliveries{capped})",
            label(self.metric),
            breach.samples
        )
    }

    fn headline(&self) -> &'static str {
        match (self.before, self.after) {
            (_, SlaStatus::Breach) => "SLA breach",
            (SlaStatus::Breach, SlaStatus::Warning) => "SLA breach over, still a warning",
            (_, SlaStatus::Warning) => "SLA warning",
            (_, SlaStatus::Healthy) => "SLA recovered",
        }
    }

    fn sentence(&self) -> String {
        let hours = self.window.as_secs() / 3600;
        let window = if hours.is_multiple_of(24) && hours > 24 {
            format!("{} days", hours / 24)
        } else {
            format!("{hours} h")
        };
        format!(
            "{}: {} for company {}: {} over the last {window}.",
            self.headline(),
            platform_name(self.provider),
            self.company,
            self.what(),
        )
    }

    fn timeline(&self, config: &SlaConfig) -> String {
        let path = format!("/v1/impact-in/delivery-timeline?companyId={}", self.company);
        match &config.public_base_url {
            Some(base) => format!("{}{path}", base.as_str().trim_end_matches('/')),
            None => path,
        }
    }

    /// The PagerDuty event, without its routing key (added when sent):
    /// a trigger when a breach starts, a resolve when it ends.
    fn pagerduty(&self, config: &SlaConfig) -> Option<Value> {
        let action = match (self.before, self.after) {
            (_, SlaStatus::Breach) => "trigger",
            (SlaStatus::Breach, _) => "resolve",
            _ => return None,
        };
        let mut event = json!({"event_action": action, "dedup_key": self.dedup_key()});
        if action == "trigger" {
            let summary: String = self.sentence().chars().take(SUMMARY_MAX_CHARS).collect();
            let breach = self.breach.as_ref();
            event["payload"] = json!({
                "summary": summary,
                "source": "impact-in",
                "severity": "critical",
                "component": self.provider.as_str(),
                "group": self.company.to_string(),
                "class": self.metric.as_str(),
                "custom_details": {
                    "companyId": self.company,
                    "platform": self.provider,
                    "metric": self.metric,
                    "value": breach.map(|b| b.value),
                    "threshold": breach.map(|b| b.threshold),
                    "samples": breach.map(|b| b.samples),
                    "windowHours": self.window.as_secs() / 3600,
                    "timeline": self.timeline(config),
                },
            });
            event["links"] = json!([{"href": self.timeline(config), "text": "Delivery timeline"}]);
        }
        Some(event)
    }

    /// The Slack message: every change of state.
    fn slack(&self, config: &SlaConfig) -> Value {
        let icon = match self.after {
            SlaStatus::Breach => ":rotating_light:",
            SlaStatus::Warning => ":warning:",
            SlaStatus::Healthy => ":white_check_mark:",
        };
        let timeline = self.timeline(config);
        let link = if timeline.starts_with('/') {
            format!("timeline: `{timeline}`")
        } else {
            format!("<{timeline}|Delivery timeline>")
        };
        json!({"text": format!("{icon} *{}* {link}", self.sentence())})
    }
}

fn label(metric: Metric) -> &'static str {
    match metric {
        Metric::SuccessRate => "success rate",
        Metric::P95DeliveryLatencyMs => "p95 delivery latency",
        Metric::RetrySuccessRate => "retry success rate",
        Metric::ConsecutiveFailures => "consecutive failed deliveries",
        Metric::ErrorBudgetBurnRate => "error budget burn rate",
    }
}

fn platform_name(provider: Provider) -> &'static str {
    match provider {
        Provider::Benevity => "Benevity",
        Provider::Goodera => "Goodera",
        Provider::Workday => "Workday",
    }
}

/// Queues what `transition` calls for on the channels configured now.
pub async fn enqueue(
    tx: &mut Transaction<'_, Postgres>,
    config: &SlaConfig,
    transition: &Transition,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut messages = Vec::new();
    if config.pagerduty_key.is_some() {
        messages.extend(
            transition
                .pagerduty(config)
                .map(|body| (Channel::PagerDuty, body)),
        );
    }
    if config.slack_webhook.is_some() {
        messages.push((Channel::Slack, transition.slack(config)));
    }
    for (channel, body) in messages {
        sqlx::query(
            "INSERT INTO sla_notifications
                 (channel, company_id, provider, metric, transition, body, created_at,
                  next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(channel)
        .bind(transition.company)
        .bind(transition.provider)
        .bind(transition.metric.as_str())
        .bind(format!(
            "{}->{}",
            transition.before.as_str(),
            transition.after.as_str()
        ))
        .bind(body)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[derive(FromRow)]
struct Pending {
    id: i64,
    body: Value,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
}

/// What a receiver made of a message.
#[derive(Debug)]
enum Outcome {
    Sent,
    /// 429, 5xx, no answer: again after a backoff (or its Retry-After).
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Refused as invalid (400): sending it again cannot help.
    Refused(String),
    /// The Slack webhook no longer exists (403, 404, 410).
    Gone(String),
}

/// Sends what is due, in order per channel; the earliest time something
/// queued is due next, if any.
pub async fn deliver_due(
    ctx: &MonitorContext,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let mut next: Option<DateTime<Utc>> = None;
    for channel in Channel::ALL {
        for _ in 0..BATCH {
            let mut tx = ctx.db.begin().await?;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(channel.lock())
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                tx.rollback().await?;
                break;
            }
            let head: Option<Pending> = sqlx::query_as(
                "SELECT id, body, attempts, next_attempt_at FROM sla_notifications
                 WHERE channel = $1 AND sent_at IS NULL AND abandoned_at IS NULL
                 ORDER BY id LIMIT 1",
            )
            .bind(channel)
            .fetch_optional(&mut *tx)
            .await?;
            // Ended explicitly: a dropped transaction's rollback waits for
            // the connection's next use, holding the lock until then.
            let Some(head) = head else {
                tx.rollback().await?;
                break;
            };
            let mut due = head.next_attempt_at;
            if channel == Channel::Slack {
                let last: Option<DateTime<Utc>> = sqlx::query_scalar(
                    "SELECT max(sent_at) FROM sla_notifications WHERE channel = 'slack'",
                )
                .fetch_one(&mut *tx)
                .await?;
                if let Some(last) = last {
                    due = due.max(last + SLACK_SPACING);
                }
            }
            if due > now {
                tx.rollback().await?;
                next = Some(next.map_or(due, |next| next.min(due)));
                break;
            }
            let outcome = send(ctx, channel, head.body).await;
            settle(&mut tx, channel, head.id, head.attempts, outcome, now).await?;
            tx.commit().await?;
        }
    }
    Ok(next)
}

async fn settle(
    tx: &mut Transaction<'_, Postgres>,
    channel: Channel,
    id: i64,
    attempts: i32,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    match outcome {
        Outcome::Sent => {
            sqlx::query(
                "UPDATE sla_notifications SET sent_at = $2, attempts = attempts + 1,
                     last_error = NULL
                 WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Outcome::Retry { error, after } => {
            let delay = backoff(attempts).max(after.unwrap_or_default());
            tracing::warn!(
                channel = channel.as_str(),
                notification = id,
                retry_in_secs = delay.as_secs(),
                error = %error,
                "SLA notification not accepted; retrying"
            );
            sqlx::query(
                "UPDATE sla_notifications SET attempts = attempts + 1, last_error = $3,
                     next_attempt_at = $2
                 WHERE id = $1",
            )
            .bind(id)
            .bind(now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX))
            .bind(error)
            .execute(&mut **tx)
            .await?;
        }
        Outcome::Refused(error) => {
            tracing::error!(
                channel = channel.as_str(),
                notification = id,
                error = %error,
                "SLA notification refused as invalid; not retrying"
            );
            abandon(tx, "id = $1", id, &error, now).await?;
        }
        Outcome::Gone(error) => {
            // Every queued Slack message would meet the same answer.
            tracing::error!(
                channel = channel.as_str(),
                error = %error,
                "the Slack webhook is gone (SLACK_WEBHOOK_URL); dropping queued Slack alerts"
            );
            abandon(
                tx,
                "channel = 'slack' AND sent_at IS NULL AND abandoned_at IS NULL AND id >= $1",
                id,
                &error,
                now,
            )
            .await?;
        }
    }
    Ok(())
}

async fn abandon(
    tx: &mut Transaction<'_, Postgres>,
    which: &str,
    id: i64,
    error: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    // `which` is one of two constant conditions.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE sla_notifications SET abandoned_at = $2, last_error = $3,
             attempts = attempts + 1
         WHERE {which}"
    )))
    .bind(id)
    .bind(now)
    .bind(error)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// 5 s, doubling, at most 5 minutes: a receiver back after an outage gets
/// the backlog within minutes.
fn backoff(attempts: i32) -> Duration {
    let doublings = attempts.clamp(0, 16) as u32;
    FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(LONGEST_RETRY)
}

async fn send(ctx: &MonitorContext, channel: Channel, mut body: Value) -> Outcome {
    let request = match channel {
        Channel::PagerDuty => {
            let Some(key) = &ctx.config.pagerduty_key else {
                return Outcome::Refused("PAGERDUTY_INTEGRATION_KEY is no longer set".into());
            };
            body["routing_key"] = Value::String(key.expose_secret().to_owned());
            ctx.http.post(ctx.config.pagerduty_url.clone())
        }
        Channel::Slack => {
            let Some(url) = &ctx.config.slack_webhook else {
                return Outcome::Gone("SLACK_WEBHOOK_URL is no longer set".into());
            };
            ctx.http.post(url.expose_secret())
        }
    };
    let response = match request.json(&body).send().await {
        Ok(response) => response,
        // The Slack URL is the credential: never in a message.
        Err(err) => {
            return Outcome::Retry {
                error: err.without_url().to_string(),
                after: None,
            };
        }
    };
    let status = response.status();
    let retry_after = crate::connectors::retry_after(response.headers(), LONGEST_RETRY);
    let answer: String = response
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let error = format!("HTTP {}: {answer}", status.as_u16());
    classify(channel, status, error, retry_after)
}

fn classify(
    channel: Channel,
    status: StatusCode,
    error: String,
    after: Option<Duration>,
) -> Outcome {
    match (channel, status.as_u16()) {
        (_, 200..=299) => Outcome::Sent,
        (Channel::Slack, 403 | 404 | 410) => Outcome::Gone(error),
        (_, 400) => Outcome::Refused(error),
        _ => Outcome::Retry { error, after },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_five_minutes() {
        let secs: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn receivers_answers_are_classified_as_their_docs_say() {
        let at = |channel, code| {
            classify(
                channel,
                StatusCode::from_u16(code).unwrap(),
                String::new(),
                None,
            )
        };
        assert!(matches!(at(Channel::PagerDuty, 202), Outcome::Sent));
        assert!(matches!(at(Channel::PagerDuty, 400), Outcome::Refused(_)));
        assert!(matches!(at(Channel::PagerDuty, 429), Outcome::Retry { .. }));
        assert!(matches!(at(Channel::PagerDuty, 503), Outcome::Retry { .. }));
        assert!(matches!(at(Channel::PagerDuty, 404), Outcome::Retry { .. }));
        assert!(matches!(at(Channel::Slack, 200), Outcome::Sent));
        assert!(matches!(at(Channel::Slack, 404), Outcome::Gone(_)));
        assert!(matches!(at(Channel::Slack, 410), Outcome::Gone(_)));
        assert!(matches!(at(Channel::Slack, 400), Outcome::Refused(_)));
        assert!(matches!(at(Channel::Slack, 500), Outcome::Retry { .. }));
    }

    #[test]
    fn a_trigger_carries_pagerduty_s_fields_and_no_routing_key() {
        let transition = Transition {
            company: CompanyId(uuid::Uuid::nil()),
            provider: Provider::Goodera,
            metric: Metric::SuccessRate,
            before: SlaStatus::Healthy,
            after: SlaStatus::Breach,
            breach: Some(Breach {
                metric: Metric::SuccessRate,
                status: SlaStatus::Breach,
                value: 0.9,
                threshold: 0.95,
                samples: 40,
                capped: false,
                schedule_id: None,
            }),
            window: Duration::from_secs(24 * 3600),
        };
        let config = SlaConfig {
            thresholds: super::super::Thresholds::default(),
            monitoring: true,
            interval: Duration::from_secs(300),
            window: Duration::from_secs(24 * 3600),
            slack_webhook: None,
            pagerduty_key: None,
            pagerduty_url: "https://events.pagerduty.com/v2/enqueue".parse().unwrap(),
            public_base_url: None,
        };
        let event = transition.pagerduty(&config).unwrap();
        let summary = event["payload"]["summary"].as_str().unwrap();
        assert!(summary.chars().count() <= SUMMARY_MAX_CHARS);
        assert_eq!(event["event_action"], "trigger");
        assert_eq!(event["payload"]["severity"], "critical");
        assert!(event.get("routing_key").is_none());
        assert_eq!(
            transition.dedup_key(),
            "impact-in/sla/00000000-0000-0000-0000-000000000000/goodera/successRate"
        );
    }
}
