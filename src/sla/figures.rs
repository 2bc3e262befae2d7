//! SLA figures over a period: per platform and overall, for the deliveries
//! created in it, from the delivery log (docs/sla.md gives each definition).
//! Two statements: one aggregate over the period (an index-only scan of
//! `impact_deliveries_sla_idx` for one company), then each platform's
//! current run of failures, read from its newest success onwards.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool, QueryBuilder};

use super::objective::{Breach, Judged, Metric, SlaStatus, Thresholds};
use crate::{
    auth::CompanyScope,
    delivery::stats::{MEASURE_DECIMALS, RATE_DECIMALS, round},
    ids::ScheduleId,
    provider::Provider,
};

/// `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
// The scheduler's firing period is `Period` in the spec.
#[schema(as = SlaPeriod)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// One platform's figures, or all platforms' (`platform` absent).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Provider>,
    pub total_deliveries: i64,
    pub successful_deliveries: i64,
    pub failed_deliveries: i64,
    /// Pending or retrying: not counted in any rate yet.
    pub in_flight: i64,
    /// Successful ÷ finished (success or failed), 0 to 1, 4 decimals;
    /// null when none has finished.
    pub success_rate: Option<f64>,
    /// Finished deliveries that needed more than one attempt.
    pub retried_deliveries: i64,
    /// Of those, the share that ended in success; null when none.
    pub retry_success_rate: Option<f64>,
    /// Creation to the provider's accepting answer, successful deliveries.
    pub avg_delivery_latency_ms: Option<f64>,
    /// 95th percentile (interpolated) of the same.
    pub p95_delivery_latency_ms: Option<f64>,
    /// The current run of failed outcomes, newest first, up to the newest
    /// success (overall: the longest platform's).
    pub consecutive_failures: i64,
    pub sla_status: SlaStatus,
    /// Each metric out of bounds, with its value and the bound crossed.
    pub breaches: Vec<Breach>,
    /// Metrics computed over fewer than `SLA_MIN_SAMPLES` deliveries: they
    /// cannot breach on their own (shown as `warning` at worst).
    pub low_samples: Vec<Metric>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlaFigures {
    pub overall: Figures,
    /// Every platform, with zeros when it had no deliveries.
    pub by_platform: Vec<Figures>,
}

impl SlaFigures {
    /// The worst status of all.
    pub fn status(&self) -> SlaStatus {
        self.by_platform
            .iter()
            .map(|figures| figures.sla_status)
            .chain([self.overall.sla_status])
            .max()
            .unwrap_or(SlaStatus::Healthy)
    }
}

/// The counts one group of the aggregate yields.
#[derive(Debug, Clone, Copy, Default, FromRow)]
pub(crate) struct Counts {
    pub total: i64,
    pub successful: i64,
    pub failed: i64,
    pub retried: i64,
    pub retried_successful: i64,
    pub avg_latency_ms: Option<f64>,
    pub p95_latency_ms: Option<f64>,
}

/// The aggregate's select list over `impact_deliveries`, counting the rows
/// for which `only` (SQL) holds: the routes take every row of the period,
/// the monitor the rows of its window within a longer scan. Latencies are
/// float8 from the start: `extract` gives numeric, whose sort for the
/// percentile made a week of 60,000 deliveries cost 130 ms instead of 90.
pub(crate) fn aggregates(only: &str) -> String {
    format!(
        "count(*) FILTER (WHERE {only}) AS total,
         count(*) FILTER (WHERE {only} AND status = 'success') AS successful,
         count(*) FILTER (WHERE {only} AND status = 'failed') AS failed,
         count(*) FILTER (WHERE {only} AND attempt_count > 1
                          AND status IN ('success', 'failed')) AS retried,
         count(*) FILTER (WHERE {only} AND attempt_count > 1 AND status = 'success')
             AS retried_successful,
         avg(extract(epoch FROM delivered_at - created_at)::float8 * 1000)
             FILTER (WHERE {only} AND status = 'success') AS avg_latency_ms,
         percentile_cont(0.95) WITHIN GROUP
             (ORDER BY extract(epoch FROM delivered_at - created_at)::float8 * 1000)
             FILTER (WHERE {only} AND status = 'success') AS p95_latency_ms"
    )
}

impl Counts {
    pub(crate) fn judged(&self, consecutive_failures: i64) -> Judged {
        Judged {
            finished: self.successful + self.failed,
            successful: self.successful,
            retried: self.retried,
            retried_successful: self.retried_successful,
            p95_latency_ms: self.p95_latency_ms,
            consecutive_failures,
        }
    }

    fn figures(
        &self,
        platform: Option<Provider>,
        consecutive_failures: i64,
        thresholds: &Thresholds,
        schedule_breaches: Vec<Breach>,
    ) -> Figures {
        let judged = self.judged(consecutive_failures);
        let mut assessment = thresholds.assess(&judged);
        assessment.breaches.extend(schedule_breaches);
        let rate = |part: i64, whole: i64| {
            (whole > 0).then(|| round(part as f64 / whole as f64, RATE_DECIMALS))
        };
        Figures {
            platform,
            total_deliveries: self.total,
            successful_deliveries: self.successful,
            failed_deliveries: self.failed,
            in_flight: self.total - self.successful - self.failed,
            success_rate: rate(self.successful, judged.finished),
            retried_deliveries: self.retried,
            retry_success_rate: rate(self.retried_successful, self.retried),
            avg_delivery_latency_ms: self.avg_latency_ms.map(|v| round(v, MEASURE_DECIMALS)),
            p95_delivery_latency_ms: self.p95_latency_ms.map(|v| round(v, MEASURE_DECIMALS)),
            consecutive_failures,
            sla_status: assessment
                .breaches
                .iter()
                .map(|breach| breach.status)
                .max()
                .unwrap_or(SlaStatus::Healthy),
            breaches: assessment.breaches,
            low_samples: assessment.low_samples,
        }
    }
}

#[derive(FromRow)]
struct Group {
    provider: Option<Provider>,
    #[sqlx(flatten)]
    counts: Counts,
    last_success_at: Option<DateTime<Utc>>,
}

/// The figures of the deliveries in `scope` created in `period`.
pub async fn compute(
    db: &PgPool,
    scope: &CompanyScope,
    period: Period,
    thresholds: &Thresholds,
) -> Result<SlaFigures, sqlx::Error> {
    let mut query = QueryBuilder::new("SELECT provider, ");
    query.push(aggregates("true")).push(
        ", max(created_at) FILTER (WHERE status = 'success') AS last_success_at
         FROM impact_deliveries WHERE created_at >= ",
    );
    query
        .push_bind(period.start)
        .push(" AND created_at < ")
        .push_bind(period.end);
    scope.push_and(&mut query);
    query.push(" GROUP BY ROLLUP (provider)");
    let groups: Vec<Group> = query.build_query_as().fetch_all(db).await?;

    let runs = failure_runs(db, scope, period, &groups).await?;
    let schedules = failing_schedules(db, scope, thresholds).await?;
    let mut overall = Counts::default();
    let mut by_platform = Vec::with_capacity(Provider::ALL.len());
    for provider in Provider::ALL {
        let counts = groups
            .iter()
            .find(|group| group.provider == Some(provider))
            .map(|group| group.counts)
            .unwrap_or_default();
        let run = runs
            .iter()
            .find(|(p, _)| *p == provider)
            .map_or(0, |(_, run)| *run);
        let breaches = schedules
            .iter()
            .filter(|(p, _)| *p == provider)
            .map(|(_, breach)| breach.clone())
            .collect();
        by_platform.push(counts.figures(Some(provider), run, thresholds, breaches));
    }
    if let Some(all) = groups.iter().find(|group| group.provider.is_none()) {
        overall = all.counts;
    }
    let longest = by_platform
        .iter()
        .map(|figures| figures.consecutive_failures)
        .max()
        .unwrap_or(0);
    let schedule_breaches = schedules.into_iter().map(|(_, breach)| breach).collect();
    Ok(SlaFigures {
        overall: overall.figures(None, longest, thresholds, schedule_breaches),
        by_platform,
    })
}

/// Each platform's failed deliveries created after its newest success in
/// the period (finished ones only: pending deliveries neither break nor
/// extend a run). Reads the `(company_id, provider, created_at)` index from
/// that success on, so a long healthy history costs nothing.
async fn failure_runs(
    db: &PgPool,
    scope: &CompanyScope,
    period: Period,
    groups: &[Group],
) -> Result<Vec<(Provider, i64)>, sqlx::Error> {
    let (providers, since): (Vec<Provider>, Vec<DateTime<Utc>>) = groups
        .iter()
        .filter_map(|group| {
            let provider = group.provider?;
            (group.counts.failed > 0).then_some((
                provider,
                // No success in the period: the run starts with it.
                group
                    .last_success_at
                    .unwrap_or(period.start - chrono::Duration::microseconds(1)),
            ))
        })
        .unzip();
    if providers.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = QueryBuilder::new(
        "SELECT d.provider, count(*) FROM impact_deliveries d
         JOIN unnest(",
    );
    query
        .push_bind(providers)
        .push("::text[], ")
        .push_bind(since)
        .push(
            "::timestamptz[]) AS run(provider, since) ON d.provider = run.provider
             WHERE d.status = 'failed' AND d.created_at > run.since AND d.created_at >= ",
        )
        .push_bind(period.start)
        .push(" AND d.created_at < ")
        .push_bind(period.end);
    scope.push_and(&mut query);
    query.push(" GROUP BY d.provider");
    query.build_query_as().fetch_all(db).await
}

/// Export schedules whose current run of failed firings is a breach. The
/// run is kept on the schedule by the queue, so it is today's whatever the
/// period asked for.
async fn failing_schedules(
    db: &PgPool,
    scope: &CompanyScope,
    thresholds: &Thresholds,
) -> Result<Vec<(Provider, Breach)>, sqlx::Error> {
    let mut query = QueryBuilder::new(
        "SELECT platform, id, consecutive_failures::int8 FROM scheduled_deliveries
         WHERE consecutive_failures >= ",
    );
    query.push_bind(thresholds.consecutive_failures as i32);
    scope.push_and(&mut query);
    query.push(" ORDER BY consecutive_failures DESC, id");
    let rows: Vec<(Provider, ScheduleId, i64)> = query.build_query_as().fetch_all(db).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(provider, schedule, run)| {
            Some((provider, thresholds.schedule_breach(schedule, run)?))
        })
        .collect())
}
