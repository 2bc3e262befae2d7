//! What the SLA routes answer: the status over a period, and the weekly
//! report, whose recommendations are derived from the figures and from
//! what the period's failed attempts say (their classes and HTTP statuses;
//! never their text, which may quote a report's personal data).

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::{FromRow, PgPool, QueryBuilder};

use super::{Breach, Figures, Metric, Period, SlaFigures, SlaStatus, Thresholds, figures};
use crate::{auth::CompanyScope, connectors::ErrorClass, provider::Provider};

/// A breach of the overall figures (`platform` null) or of one platform's.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformBreach {
    pub platform: Option<Provider>,
    #[serde(flatten)]
    pub breach: Breach,
}

/// `GET /v1/impact-in/sla-status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlaStatusAnswer {
    pub period: Period,
    #[serde(flatten)]
    pub figures: SlaFigures,
    /// The worst status of the overall figures and of every platform's.
    pub sla_status: SlaStatus,
    /// Every breach of the overall figures and of each platform's.
    pub breaches: Vec<PlatformBreach>,
}

/// `GET /v1/impact-in/sla-report`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlaReport {
    #[serde(flatten)]
    pub status: SlaStatusAnswer,
    /// What to do, platform by platform, derived from the figures and the
    /// failed attempts; one sentence with the figures when all is healthy.
    pub recommendations: Vec<String>,
}

impl SlaStatusAnswer {
    fn new(period: Period, figures: SlaFigures) -> Self {
        let breaches = std::iter::once(&figures.overall)
            .chain(&figures.by_platform)
            .flat_map(|of| {
                of.breaches.iter().map(|breach| PlatformBreach {
                    platform: of.platform,
                    breach: breach.clone(),
                })
            })
            .collect();
        Self {
            period,
            sla_status: figures.status(),
            figures,
            breaches,
        }
    }
}

/// The status of the deliveries in `scope` created in `period`.
pub async fn status(
    db: &PgPool,
    scope: &CompanyScope,
    period: Period,
    thresholds: &Thresholds,
) -> Result<SlaStatusAnswer, sqlx::Error> {
    let figures = figures::compute(db, scope, period, thresholds).await?;
    Ok(SlaStatusAnswer::new(period, figures))
}

/// The report of a week: its status and the recommendations.
pub async fn weekly(
    db: &PgPool,
    scope: &CompanyScope,
    period: Period,
    thresholds: &Thresholds,
) -> Result<SlaReport, sqlx::Error> {
    let (figures, failures) = tokio::try_join!(
        figures::compute(db, scope, period, thresholds),
        failed_attempts(db, scope, period),
    )?;
    let recommendations = recommend(&figures, &failures, thresholds);
    Ok(SlaReport {
        status: SlaStatusAnswer::new(period, figures),
        recommendations,
    })
}

/// Failed attempts of one platform, class and HTTP status (none: no answer,
/// a timeout or a refused connection).
#[derive(Debug, Clone, FromRow)]
pub struct FailedAttempts {
    pub provider: Provider,
    pub error_class: ErrorClass,
    pub http_status: Option<i32>,
    pub attempts: i64,
}

/// The failed attempts of the deliveries in `scope` created in `period`,
/// counted by platform, class and status. A delivery that succeeded at its
/// first attempt has no failed one, so only the others are joined: for a
/// healthy week that is a small part of the period's deliveries.
async fn failed_attempts(
    db: &PgPool,
    scope: &CompanyScope,
    period: Period,
) -> Result<Vec<FailedAttempts>, sqlx::Error> {
    let mut query = QueryBuilder::new(
        "SELECT d.provider, a.error_class, a.http_status, count(*) AS attempts
         FROM impact_deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id
         WHERE a.error_class IS NOT NULL
           AND (d.status <> 'success' OR d.attempt_count > 1)
           AND d.created_at >= ",
    );
    query
        .push_bind(period.start)
        .push(" AND d.created_at < ")
        .push_bind(period.end);
    scope.push_and(&mut query);
    query.push(" GROUP BY d.provider, a.error_class, a.http_status");
    query.build_query_as().fetch_all(db).await
}

/// The recommendations: when the worst status is healthy, first a sentence
/// with the overall figures; then, for each platform that is not healthy
/// or had failures, each breach, what its failed attempts say, and whether
/// its figures rest on too few deliveries to breach.
pub fn recommend(
    figures: &SlaFigures,
    failures: &[FailedAttempts],
    thresholds: &Thresholds,
) -> Vec<String> {
    let mut out = Vec::new();
    if figures.status() == SlaStatus::Healthy {
        out.push(healthy(&figures.overall));
    }
    for of in &figures.by_platform {
        let Some(platform) = of.platform else {
            continue;
        };
        let own: Vec<&FailedAttempts> =
            failures.iter().filter(|f| f.provider == platform).collect();
        if of.sla_status == SlaStatus::Healthy && own.is_empty() && of.failed_deliveries == 0 {
            continue;
        }
        out.extend(of.breaches.iter().map(|b| breach(platform, b, thresholds)));
        out.extend(failure_mix(platform, &own));
        let finished = of.successful_deliveries + of.failed_deliveries;
        if of.low_samples.contains(&Metric::SuccessRate) {
            out.push(format!(
                "{platform}: only {finished} finished deliveries, fewer than the {} a success \
                 rate needs to breach on its own (SLA_MIN_SAMPLES): read its rates with care",
                thresholds.min_samples
            ));
        }
    }
    out
}

fn healthy(overall: &Figures) -> String {
    let finished = overall.successful_deliveries + overall.failed_deliveries;
    if overall.total_deliveries == 0 {
        return "No deliveries were created in the period: nothing to judge.".to_owned();
    }
    if finished == 0 {
        return format!(
            "All platforms healthy: no delivery has finished yet ({} in flight).",
            overall.in_flight
        );
    }
    let latency = overall
        .p95_delivery_latency_ms
        .map_or_else(|| "none".to_owned(), duration);
    let retries = match overall.retry_success_rate {
        Some(rate) => format!(
            "{} retried, {} of them recovered",
            overall.retried_deliveries,
            percent(rate)
        ),
        None => "none retried".to_owned(),
    };
    format!(
        "All platforms healthy: {} of {finished} finished deliveries succeeded ({}), \
         p95 delivery latency {latency}, {retries}.",
        overall.successful_deliveries,
        percent(overall.successful_deliveries as f64 / finished as f64),
    )
}

fn breach(platform: Provider, breach: &Breach, thresholds: &Thresholds) -> String {
    let status = match (breach.status, breach.capped) {
        (_, true) => format!(
            "past the breach bound, but over fewer than {} deliveries, so a warning",
            thresholds.min_samples
        ),
        (SlaStatus::Breach, false) => "a breach".to_owned(),
        _ => "a warning".to_owned(),
    };
    let (value, bound, samples) = (breach.value, breach.threshold, breach.samples);
    match (breach.metric, breach.schedule_id) {
        (Metric::SuccessRate, _) => format!(
            "{platform}: success rate {} over {samples} finished deliveries, below {} ({status})",
            percent(value),
            percent(bound)
        ),
        (Metric::P95DeliveryLatencyMs, _) => format!(
            "{platform}: p95 delivery latency {} over {samples} successful deliveries, above {} \
             ({status}): deliveries wait in the queue or in retries; check the queue backlog \
             and {platform}'s response times",
            duration(value),
            duration(bound)
        ),
        (Metric::RetrySuccessRate, _) => format!(
            "{platform}: {} of {samples} retried deliveries ended in success, below {} \
             ({status}): retries are not recovering the failures",
            percent(value),
            percent(bound)
        ),
        (Metric::ConsecutiveFailures, Some(schedule)) => format!(
            "{platform}: schedule {schedule} failed {value} times in a row ({status} at {bound}): \
             check its last error (GET /v1/impact-in/schedules/{schedule}), then run it again"
        ),
        (Metric::ConsecutiveFailures, None) => format!(
            "{platform}: the last {value} finished deliveries all failed ({status} at {bound} \
             in a row)"
        ),
        (Metric::ErrorBudgetBurnRate, _) => format!(
            "{platform}: the error budget burns {value:.1} times as fast as the objective allows \
             ({status})"
        ),
    }
}

/// What a platform's failed attempts say: the most frequent class, its
/// share, its HTTP statuses, and the action that class calls for.
fn failure_mix(platform: Provider, failures: &[&FailedAttempts]) -> Option<String> {
    let total: i64 = failures.iter().map(|f| f.attempts).sum();
    let by_class = CLASSES.map(|class| {
        let count: i64 = failures
            .iter()
            .filter(|f| f.error_class == class)
            .map(|f| f.attempts)
            .sum();
        (class, count)
    });
    // The most frequent class; of equals, the first in `CLASSES`.
    let (class, count) = by_class
        .iter()
        .fold(None, |best, &(class, count)| match best {
            Some((_, most)) if most >= count => best,
            _ if count > 0 => Some((class, count)),
            _ => best,
        })?;
    let mut statuses: BTreeMap<Option<i32>, i64> = BTreeMap::new();
    for f in failures.iter().filter(|f| f.error_class == class) {
        *statuses.entry(f.http_status).or_default() += f.attempts;
    }
    let mut statuses: Vec<(Option<i32>, i64)> = statuses.into_iter().collect();
    statuses.sort_by_key(|(status, count)| (std::cmp::Reverse(*count), *status));
    let statuses = statuses
        .iter()
        .map(|(status, n)| match status {
            Some(status) => format!("HTTP {status} ×{n}"),
            None => format!("no answer ×{n}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let what = match class {
        ErrorClass::Auth => format!(
            "refused as unauthorized ({statuses}): check the company's {platform} credentials \
             (PUT /v1/integrations/credentials/{platform})"
        ),
        ErrorClass::RateLimited => format!(
            "rate limited ({statuses}): spread the company's {platform} schedules over the day \
             or lower their frequency"
        ),
        ErrorClass::Transient => format!(
            "timeouts or server errors ({statuses}): {platform} was unavailable; retries cover \
             short outages, so check {platform}'s status, then replay what failed \
             (POST /v1/impact-in/deliveries/retry-all-failed)"
        ),
        ErrorClass::Permanent => format!(
            "rejected ({statuses}): {platform} refused the report as sent; fix the payload or \
             its mapping, then replay the failed deliveries"
        ),
    };
    let rest = by_class
        .iter()
        .filter(|(other, n)| *other != class && *n > 0)
        .map(|(other, n)| format!("{n} {other}"))
        .collect::<Vec<_>>();
    let rest = if rest.is_empty() {
        String::new()
    } else {
        format!(" (the rest: {})", rest.join(", "))
    };
    Some(format!(
        "{platform}: {count} of {total} failed attempts ({}) were {what}{rest}",
        percent(count as f64 / total as f64)
    ))
}

/// The classes, in the order their advice is given when counts are equal:
/// the ones an operator can fix first.
const CLASSES: [ErrorClass; 4] = [
    ErrorClass::Auth,
    ErrorClass::Permanent,
    ErrorClass::RateLimited,
    ErrorClass::Transient,
];

/// A share as a percentage, at most two decimals: `0.8` is `80 %`.
fn percent(share: f64) -> String {
    format!("{} %", trim(share * 100.0))
}

/// Milliseconds in the unit that reads best: `90 ms`, `12.5 s`, `4.2 min`.
fn duration(ms: f64) -> String {
    if ms >= 60_000.0 {
        format!("{} min", trim(ms / 60_000.0))
    } else if ms >= 1000.0 {
        format!("{} s", trim(ms / 1000.0))
    } else {
        format!("{} ms", trim(ms))
    }
}

/// Two decimals at most, no trailing zeros.
fn trim(value: f64) -> String {
    let text = format!("{:.2}", (value * 100.0).round() / 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(percent(0.8), "80 %");
        assert_eq!(percent(0.9333), "93.33 %");
        assert_eq!(percent(1.0), "100 %");
        assert_eq!(duration(240_000.0), "4 min");
        assert_eq!(duration(301_000.0), "5.02 min");
        assert_eq!(duration(1500.0), "1.5 s");
        assert_eq!(duration(90.0), "90 ms");
    }

    fn failed(class: ErrorClass, status: Option<i32>, attempts: i64) -> FailedAttempts {
        FailedAttempts {
            provider: Provider::Goodera,
            error_class: class,
            http_status: status,
            attempts,
        }
    }

    #[test]
    fn the_most_frequent_class_decides_the_advice() {
        let failures = [
            failed(ErrorClass::RateLimited, Some(429), 12),
            failed(ErrorClass::Transient, Some(503), 2),
            failed(ErrorClass::Transient, None, 1),
        ];
        let refs: Vec<&FailedAttempts> = failures.iter().collect();
        let advice = failure_mix(Provider::Goodera, &refs).unwrap();
        assert_eq!(
            advice,
            "goodera: 12 of 15 failed attempts (80 %) were rate limited (HTTP 429 ×12): spread \
             the company's goodera schedules over the day or lower their frequency (the rest: \
             3 transient)"
        );
        assert_eq!(failure_mix(Provider::Goodera, &[]), None);
    }
}
