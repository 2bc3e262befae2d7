//! SLA figures over a period: per platform and overall, for the deliveries
//! created in it, from the delivery log (docs/sla.md gives each definition).
//! The whole hours of the period are read from the `sla_hourly` rollup
//! (kept by triggers on the log), the partial hours at either end from the
//! raw rows in the same shape; then each platform's current run of
//! failures, read from its newest success onwards, and, for a few
//! successes, the exact p95.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, Utc};
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

/// Deliveries of one platform over part of the period, from the rollup
/// (one hour) or from raw rows (one latency bucket of a partial hour):
/// counts, the successes' latency sum and their histogram, counts per
/// bucket from bucket `lowest` on (see `sla_latency_bucket`).
#[derive(FromRow)]
pub(crate) struct Part {
    pub provider: Provider,
    pub total: i64,
    pub successful: i64,
    pub failed: i64,
    pub retried: i64,
    pub retried_successful: i64,
    pub latency_sum_ms: f64,
    pub lowest: Option<i32>,
    pub buckets: Option<Vec<i64>>,
}

/// One platform's parts added up, or all platforms' (or, for
/// `super::daily`, one day's of a platform).
#[derive(Default)]
pub(crate) struct Tally {
    pub counts: Counts,
    latency_sum_ms: f64,
    /// Successes per latency bucket.
    histogram: BTreeMap<i32, i64>,
}

impl Tally {
    pub(crate) fn add(&mut self, part: &Part) {
        self.counts.total += part.total;
        self.counts.successful += part.successful;
        self.counts.failed += part.failed;
        self.counts.retried += part.retried;
        self.counts.retried_successful += part.retried_successful;
        self.latency_sum_ms += part.latency_sum_ms;
        if let (Some(lowest), Some(buckets)) = (part.lowest, &part.buckets) {
            for (bucket, n) in (lowest..).zip(buckets) {
                *self.histogram.entry(bucket).or_default() += n;
            }
        }
    }

    /// Sets the average latency (from the sum, exact) and, given the
    /// histogram's `edges` (`sla_latency_edges()`), the p95 estimated from
    /// the histogram (`thresholds` as for [`Tally::p95_estimate`]). True
    /// when the p95 is still to be computed exactly from the raw rows:
    /// there are successes, and no edges or no estimate.
    pub(crate) fn set_latencies(&mut self, edges: Option<&[f64]>, thresholds: &[f64]) -> bool {
        let successful = self.counts.successful;
        self.counts.avg_latency_ms =
            (successful > 0).then(|| self.latency_sum_ms / successful as f64);
        self.counts.p95_latency_ms = edges
            .filter(|_| successful > 0)
            .and_then(|edges| self.p95_estimate(edges, thresholds));
        successful > 0 && self.counts.p95_latency_ms.is_none()
    }

    /// The successes' p95 (as `percentile_cont(0.95)`) estimated from the
    /// histogram, or `None` when only the raw rows can tell: the rank falls
    /// in the last bucket (unbounded), or the two successes it lies
    /// between sit in different buckets with a threshold between them (the
    /// status could then differ from the exact one's).
    fn p95_estimate(&self, edges: &[f64], thresholds: &[f64]) -> Option<f64> {
        // percentile_cont: position 0.95 (n - 1) among the sorted values,
        // interpolated between its neighbours.
        let position = 0.95 * (self.counts.successful - 1) as f64;
        let below = position.floor() as i64;
        let fraction = position - below as f64;
        let (low_bucket, low) = self.order_statistic(below, edges)?;
        let (high_bucket, high) = if fraction > 0.0 {
            self.order_statistic(below + 1, edges)?
        } else {
            (low_bucket, low)
        };
        let split = low_bucket != high_bucket
            && thresholds.iter().any(|&threshold| {
                edges[low_bucket as usize] <= threshold
                    && threshold <= edges[high_bucket as usize - 1]
            });
        (!split).then_some(low + fraction * (high - low))
    }

    /// The bucket of the `k`th smallest success (from 0) and an estimate
    /// of it: the successes of a bucket spread evenly over its width, so
    /// the estimate is off by less than the bucket's width. `None` past the
    /// last edge.
    fn order_statistic(&self, k: i64, edges: &[f64]) -> Option<(i32, f64)> {
        let mut before = 0;
        for (&bucket, &n) in &self.histogram {
            if n > 0 && k < before + n {
                let index = usize::try_from(bucket).ok()?;
                let upper = *edges.get(index)?;
                // Bucket 0 holds the latencies up to the first edge (~1 ms).
                let lower = index.checked_sub(1).map_or(0.0, |below| edges[below]);
                let share = ((k - before) as f64 + 0.5) / n as f64;
                return Some((bucket, lower + share * (upper - lower)));
            }
            before += n;
        }
        None
    }
}

/// Up to this many successes a p95 is computed exactly from the raw rows
/// (an exact sort of a few thousand latencies is cheap); above, it is read
/// from the rollup's histogram (docs/sla.md gives the error bound).
pub(crate) const EXACT_P95_UP_TO: i64 = 2_000;

/// The figures of the deliveries in `scope` created in `period`: the whole
/// hours from the `sla_hourly` rollup, the partial hours at either end
/// from the raw rows in the same shape.
pub async fn compute(
    db: &PgPool,
    scope: &CompanyScope,
    period: Period,
    thresholds: &Thresholds,
) -> Result<SlaFigures, sqlx::Error> {
    let mut query = parts_query(scope, period, Grouping::Period);
    let parts: Vec<Part> = query.build_query_as().fetch_all(db).await?;

    let mut overall = Tally::default();
    let mut platforms: Vec<(Provider, Tally)> = Provider::ALL
        .into_iter()
        .map(|provider| (provider, Tally::default()))
        .collect();
    for part in &parts {
        overall.add(part);
        if let Some((_, tally)) = platforms.iter_mut().find(|(p, _)| *p == part.provider) {
            tally.add(part);
        }
    }
    latencies(db, scope, period, thresholds, &mut overall, &mut platforms).await?;

    let runs = failure_runs(db, scope, period, &platforms).await?;
    let schedules = failing_schedules(db, scope, thresholds).await?;
    let mut by_platform = Vec::with_capacity(Provider::ALL.len());
    for (provider, tally) in &platforms {
        let run = runs
            .iter()
            .find(|(p, _)| p == provider)
            .map_or(0, |(_, run)| *run);
        let breaches = schedules
            .iter()
            .filter(|(p, _)| p == provider)
            .map(|(_, breach)| breach.clone())
            .collect();
        by_platform.push(
            tally
                .counts
                .figures(Some(*provider), run, thresholds, breaches),
        );
    }
    let longest = by_platform
        .iter()
        .map(|figures| figures.consecutive_failures)
        .max()
        .unwrap_or(0);
    let schedule_breaches = schedules.into_iter().map(|(_, breach)| breach).collect();
    Ok(SlaFigures {
        overall: overall
            .counts
            .figures(None, longest, thresholds, schedule_breaches),
        by_platform,
    })
}

/// What the parts of a period's figures are grouped by, besides platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grouping {
    /// The whole period.
    Period,
    /// Each UTC day, as a leading `day` column.
    Day,
}

/// The parts of the figures of the deliveries in `scope` created in
/// `period`, per platform (and per UTC day with [`Grouping::Day`]): the
/// whole hours' rows of the `sla_hourly` rollup, and the partial hours at
/// either end from the raw rows in the same shape. Rows read as [`Part`].
pub(crate) fn parts_query(
    scope: &CompanyScope,
    period: Period,
    grouping: Grouping,
) -> QueryBuilder<sqlx::Postgres> {
    let (first_hour, last_hour) = whole_hours(period);
    let by_day = grouping == Grouping::Day;
    let (rollup_day, raw_day, outer_day, group_by) = if by_day {
        (
            "(hour AT TIME ZONE 'UTC')::date AS day, ",
            "(created_at AT TIME ZONE 'UTC')::date AS day, ",
            "day, ",
            "day, provider, 9",
        )
    } else {
        ("", "", "", "provider, 8")
    };
    let mut query = QueryBuilder::new(format!(
        "SELECT {rollup_day}provider, total, successful, failed, retried, retried_successful,
                latency_sum_ms, array_lower(latency_buckets, 1) AS lowest,
                -- sliced: sqlx decodes arrays numbered from 1 only
                latency_buckets[:] AS buckets
         FROM sla_hourly WHERE hour >= "
    ));
    query
        .push_bind(first_hour)
        .push(" AND hour < ")
        .push_bind(last_hour);
    scope.push_and(&mut query);
    query.push(format!(
        " UNION ALL
         SELECT {outer_day}provider, count(*), count(*) FILTER (WHERE status = 'success'),
                count(*) FILTER (WHERE status = 'failed'),
                count(*) FILTER (WHERE attempt_count > 1 AND status IN ('success', 'failed')),
                count(*) FILTER (WHERE attempt_count > 1 AND status = 'success'),
                coalesce(sum(ms), 0), sla_latency_bucket(ms),
                CASE WHEN sla_latency_bucket(ms) IS NOT NULL THEN ARRAY[count(*)] END
         FROM (SELECT {raw_day}provider, status, attempt_count,
                      CASE WHEN status = 'success'
                           THEN extract(epoch FROM delivered_at - created_at)::float8 * 1000
                      END AS ms
               FROM impact_deliveries
               WHERE (created_at >= "
    ));
    query
        .push_bind(period.start)
        .push(" AND created_at < ")
        .push_bind(first_hour)
        .push(" OR created_at >= ")
        .push_bind(last_hour)
        .push(" AND created_at < ")
        .push_bind(period.end)
        .push(")");
    scope.push_and(&mut query);
    query.push(format!(") AS raw GROUP BY {group_by}"));
    query
}

/// The whole UTC hours of `period`, `[first, last)`; when it has none,
/// an empty range at its end, so that the raw rows cover all of it.
pub(crate) fn whole_hours(period: Period) -> (DateTime<Utc>, DateTime<Utc>) {
    let hour = chrono::Duration::hours(1);
    let floor = |at: DateTime<Utc>| at.duration_trunc(hour).unwrap_or(at);
    let first = match floor(period.start) {
        start if start == period.start => start,
        start => start + hour,
    };
    let last = floor(period.end);
    if first < last {
        (first, last)
    } else {
        (period.end, period.end)
    }
}

/// Sets each tally's average and p95 latency: the average from the sum;
/// the p95 from the histogram, or exactly (`percentile_cont` over the raw
/// rows) for a few successes or when the histogram cannot tell.
async fn latencies(
    db: &PgPool,
    scope: &CompanyScope,
    period: Period,
    thresholds: &Thresholds,
    overall: &mut Tally,
    platforms: &mut [(Provider, Tally)],
) -> Result<(), sqlx::Error> {
    let bounds = [
        thresholds.p95_latency_ms.healthy,
        thresholds.p95_latency_ms.warning,
    ];
    let edges: Vec<f64> = if overall.counts.successful > EXACT_P95_UP_TO {
        sqlx::query_scalar("SELECT sla_latency_edges()")
            .fetch_one(db)
            .await?
    } else {
        Vec::new()
    };
    let estimate = |tally: &mut Tally| {
        let histogram = tally.counts.successful > EXACT_P95_UP_TO;
        tally.set_latencies(histogram.then_some(edges.as_slice()), &bounds)
    };
    let overall_exact = estimate(overall);
    let exact: Vec<Provider> = platforms
        .iter_mut()
        .filter_map(|(provider, tally)| estimate(tally).then_some(*provider))
        .collect();
    if exact.is_empty() && !overall_exact {
        return Ok(());
    }
    // The overall p95 needs every platform's rows; a platform's, its own.
    let providers = if overall_exact {
        Provider::ALL.to_vec()
    } else {
        exact
    };
    let mut query = QueryBuilder::new(
        "SELECT provider, percentile_cont(0.95) WITHIN GROUP
                    (ORDER BY extract(epoch FROM delivered_at - created_at)::float8 * 1000)
         FROM impact_deliveries WHERE status = 'success' AND provider = ANY(",
    );
    query
        .push_bind(providers)
        .push("::text[]) AND created_at >= ")
        .push_bind(period.start)
        .push(" AND created_at < ")
        .push_bind(period.end);
    scope.push_and(&mut query);
    query.push(" GROUP BY ROLLUP (provider)");
    let rows: Vec<(Option<Provider>, Option<f64>)> = query.build_query_as().fetch_all(db).await?;
    for (provider, p95) in rows {
        match provider {
            None if overall_exact => overall.counts.p95_latency_ms = p95,
            None => {}
            Some(provider) => {
                if let Some((_, tally)) = platforms.iter_mut().find(|(p, _)| *p == provider) {
                    tally.counts.p95_latency_ms = tally.counts.p95_latency_ms.or(p95);
                }
            }
        }
    }
    Ok(())
}

/// Each platform's failed deliveries created after its newest success in
/// the period (finished ones only: pending deliveries neither break nor
/// extend a run). Reads the `(company_id, created_at)` index backwards to
/// that success, then on from it, so a long healthy history costs nothing.
async fn failure_runs(
    db: &PgPool,
    scope: &CompanyScope,
    period: Period,
    platforms: &[(Provider, Tally)],
) -> Result<Vec<(Provider, i64)>, sqlx::Error> {
    let providers: Vec<Provider> = platforms
        .iter()
        .filter(|(_, tally)| tally.counts.failed > 0)
        .map(|(provider, _)| *provider)
        .collect();
    if providers.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = QueryBuilder::new("SELECT run.provider, count(*) FROM unnest(");
    query
        .push_bind(providers)
        .push(
            "::text[]) AS run(provider)
             CROSS JOIN LATERAL (SELECT max(created_at) AS since FROM impact_deliveries
                      WHERE provider = run.provider AND status = 'success'
                        AND created_at >= ",
        )
        .push_bind(period.start)
        .push(" AND created_at < ")
        .push_bind(period.end);
    scope.push_and(&mut query);
    query
        .push(
            ") AS last
             JOIN impact_deliveries d ON d.provider = run.provider
             WHERE d.status = 'failed' AND d.created_at > coalesce(last.since, '-infinity')
               AND d.created_at >= ",
        )
        .push_bind(period.start)
        .push(" AND d.created_at < ")
        .push_bind(period.end);
    scope.push_and(&mut query);
    query.push(" GROUP BY run.provider");
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
