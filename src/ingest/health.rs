//! Per source system: is it reachable now, and how have its runs gone
//! (`GET /integrations/health`, seed 002). Counts only: no company, no
//! record, no credential.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{
    IngestContext, store,
    stream::{Stream, System},
};
use crate::connectors::sources::PageRequest;

/// A probe slower than this marks its source degraded.
const SLOW_PROBE: Duration = Duration::from_secs(5);
/// Runs over this window make the success rate (here and on `/metrics`).
pub const WINDOW_HOURS: i32 = 24;
/// Below this success rate (with runs to judge by) a source is degraded.
const DEGRADED_BELOW: f64 = 0.9;
/// How long a report is reused: probes cost requests, and Goodera's share a
/// per-minute budget with deliveries.
const REUSE_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    External,
    Internal,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceHealth {
    pub name: System,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub status: Status,
    /// The probe's time, ms.
    pub response_time: u64,
    pub last_check: DateTime<Utc>,
    /// Why it is not healthy (the probe's error class and text, or the
    /// success rate); no secret, no record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub metrics: RunMetrics,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunMetrics {
    /// Runs that ended in the last 24 hours, all companies.
    pub total_ingests: i64,
    /// Of those, the share that succeeded (0 with none).
    pub success_rate: f64,
    /// Seconds since a run of this source last succeeded (null: never).
    pub avg_lag: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub total_connectors: usize,
    pub healthy: usize,
    pub degraded: usize,
    pub unhealthy: usize,
    pub overall_status: Status,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub status: Status,
    pub summary: Summary,
    pub connectors: Vec<SourceHealth>,
    pub timestamp: DateTime<Utc>,
}

/// The last report and when it was made.
#[derive(Default)]
pub struct HealthCache(Mutex<Option<(Instant, Report)>>);

pub const SYSTEMS: [System; 7] = [
    System::Benevity,
    System::Goodera,
    System::Workday,
    System::Kintell,
    System::Upskilling,
    System::Buddy,
    System::Mentorship,
];

/// Every source's health, probed at most every 30 s.
pub async fn report(ctx: &IngestContext) -> Result<Report, sqlx::Error> {
    let mut cached = ctx.health.0.lock().await;
    if let Some((at, report)) = cached.as_ref()
        && at.elapsed() < REUSE_FOR
    {
        return Ok(report.clone());
    }
    let metrics = run_metrics(ctx).await?;
    let probes = futures::future::join_all(SYSTEMS.map(|system| probe(ctx, system))).await;
    let connectors: Vec<SourceHealth> = SYSTEMS
        .into_iter()
        .zip(probes)
        .map(|(system, (elapsed, failure))| {
            let metrics = metrics
                .iter()
                .find(|(s, _)| *s == system)
                .map(|(_, m)| m.clone())
                .unwrap_or(RunMetrics {
                    total_ingests: 0,
                    success_rate: 0.0,
                    avg_lag: None,
                });
            let (status, reason) = match failure {
                Some(reason) => (Status::Unhealthy, Some(reason)),
                None if metrics.total_ingests > 0 && metrics.success_rate < DEGRADED_BELOW => (
                    Status::Degraded,
                    Some(format!(
                        "{:.0} % of the runs of the last 24 h succeeded",
                        metrics.success_rate * 100.0
                    )),
                ),
                None if elapsed > SLOW_PROBE => {
                    (Status::Degraded, Some("the probe took over 5 s".into()))
                }
                None => (Status::Healthy, None),
            };
            SourceHealth {
                name: system,
                kind: match system {
                    System::Benevity | System::Goodera | System::Workday => Kind::External,
                    _ => Kind::Internal,
                },
                status,
                response_time: elapsed.as_millis() as u64,
                last_check: Utc::now(),
                reason,
                metrics,
            }
        })
        .collect();
    let count = |status| connectors.iter().filter(|c| c.status == status).count();
    let overall = connectors
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Healthy);
    let report = Report {
        status: overall,
        summary: Summary {
            total_connectors: connectors.len(),
            healthy: count(Status::Healthy),
            degraded: count(Status::Degraded),
            unhealthy: count(Status::Unhealthy),
            overall_status: overall,
        },
        connectors,
        timestamp: Utc::now(),
    };
    *cached = Some((Instant::now(), report.clone()));
    Ok(report)
}

/// One page of nothing (records from now on, at most one) with the
/// installation's own credentials; its time, and why it failed.
async fn probe(ctx: &IngestContext, system: System) -> (Duration, Option<String>) {
    let started = Instant::now();
    let stream = Stream::ALL
        .into_iter()
        .find(|s| s.system() == system)
        .expect("every system has a stream");
    // The nil company has no variables of its own: the global ones answer.
    let source = match ctx.delivery.connectors.source(Uuid::nil(), system).await {
        Ok(source) => source,
        Err(err) => return (started.elapsed(), Some(err.to_string())),
    };
    let request = PageRequest {
        since: Some(Utc::now()),
        position: None,
        limit: 1,
    };
    let outcome = tokio::time::timeout(SLOW_PROBE * 2, source.page(stream, &request)).await;
    let failure = match outcome {
        Ok(Ok(_)) => None,
        Ok(Err(err)) => Some(format!(
            "{}: {}",
            <&str>::from(err.class()),
            ctx.redactor.redact_text(&err.to_string())
        )),
        Err(_) => Some("the probe did not answer within 10 s".into()),
    };
    (started.elapsed(), failure)
}

/// Per system: runs ended in the window, their success rate, and seconds
/// since the last success.
async fn run_metrics(ctx: &IngestContext) -> Result<Vec<(System, RunMetrics)>, sqlx::Error> {
    let rows = store::stream_runs(ctx.db(), WINDOW_HOURS).await?;
    let now = Utc::now();
    Ok(SYSTEMS
        .into_iter()
        .map(|system| {
            let mine = rows.iter().filter(|runs| runs.stream.system() == system);
            let (ended, succeeded, last) = mine.fold((0, 0, None), |(e, s, l), runs| {
                (e + runs.ended, s + runs.succeeded, l.max(runs.last_success))
            });
            (
                system,
                RunMetrics {
                    total_ingests: ended,
                    success_rate: if ended > 0 {
                        succeeded as f64 / ended as f64
                    } else {
                        0.0
                    },
                    avg_lag: last
                        .map(|at: DateTime<Utc>| (now - at).num_milliseconds() as f64 / 1000.0),
                },
            )
        })
        .collect())
}
