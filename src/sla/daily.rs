//! The delivery figures per UTC day and platform over a period, for the
//! console's charts: counts by outcome, average and p95 latency. Read as
//! `figures` reads a period: the whole hours from the `sla_hourly` rollup,
//! the partial hours at either end from the raw rows in the same shape,
//! added up with its `Tally` (which also estimates the p95 from the
//! histogram); docs/sla.md, "Daily figures".

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool, QueryBuilder};

use super::{
    Period,
    figures::{EXACT_P95_UP_TO, Grouping, Part, Tally, parts_query},
};
use crate::{
    auth::CompanyScope,
    delivery::stats::{MEASURE_DECIMALS, round},
    provider::Provider,
};

/// The longest period the daily route covers: a quarter.
pub const MAX_DAYS: i64 = 92;

/// The default period's days, today's included.
pub const DEFAULT_DAYS: u64 = 14;

/// The default period: from 00:00 UTC [`DEFAULT_DAYS`] − 1 days before
/// `now` up to `now`, so the last 14 UTC days with today so far, each
/// whole but today.
pub fn last_days(now: DateTime<Utc>) -> Period {
    let first = now.date_naive() - Days::new(DEFAULT_DAYS - 1);
    Period {
        start: first.and_time(NaiveTime::MIN).and_utc(),
        end: now,
    }
}

/// One platform's deliveries created on one UTC day (within the period).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlaDay {
    /// The UTC day the deliveries were created.
    pub date: NaiveDate,
    pub platform: Provider,
    /// Created that day; at least 1.
    pub total: i64,
    /// Of those, now `success`.
    pub successful: i64,
    /// Of those, now `failed` (the rest are pending or retrying).
    pub failed: i64,
    /// Creation to the provider's accepting answer over the successful
    /// ones, 2 decimals; null when none.
    #[schema(required = true)]
    pub avg_latency_ms: Option<f64>,
    /// 95th percentile (interpolated) of the same; null when none.
    #[schema(required = true)]
    pub p95_latency_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SlaDaily {
    pub period: Period,
    /// Ordered by date, then platform; only the days a platform had
    /// deliveries.
    pub days: Vec<SlaDay>,
}

/// A part of `figures` (an hour of the rollup, or a bucket of a partial
/// hour's raw rows) with its UTC day.
#[derive(FromRow)]
struct DayPart {
    day: NaiveDate,
    #[sqlx(flatten)]
    part: Part,
}

/// The figures of the deliveries in `scope` created in `period`, per UTC
/// day and platform.
pub async fn compute(
    db: &PgPool,
    scope: &CompanyScope,
    period: Period,
) -> Result<SlaDaily, sqlx::Error> {
    let mut query = parts_query(scope, period, Grouping::Day);
    let parts: Vec<DayPart> = query.build_query_as().fetch_all(db).await?;

    let mut days: BTreeMap<(NaiveDate, Provider), Tally> = BTreeMap::new();
    for DayPart { day, part } in &parts {
        days.entry((*day, part.provider)).or_default().add(part);
    }
    days.retain(|_, tally| tally.counts.total > 0);
    latencies(db, scope, period, &mut days).await?;
    Ok(SlaDaily {
        period,
        days: days
            .into_iter()
            .map(|((date, platform), tally)| SlaDay {
                date,
                platform,
                total: tally.counts.total,
                successful: tally.counts.successful,
                failed: tally.counts.failed,
                avg_latency_ms: tally
                    .counts
                    .avg_latency_ms
                    .map(|v| round(v, MEASURE_DECIMALS)),
                p95_latency_ms: tally
                    .counts
                    .p95_latency_ms
                    .map(|v| round(v, MEASURE_DECIMALS)),
            })
            .collect(),
    })
}

/// Sets each day's average latency (from the sum) and p95: exact
/// (`percentile_cont` over the raw rows) when the whole answer counts at
/// most `EXACT_P95_UP_TO` successes, so the raw rows read are few;
/// otherwise estimated from the histogram (within 4.57 %), and exact only
/// where the histogram cannot tell (past its last edge). No threshold is
/// judged here, so none splits a bucket.
async fn latencies(
    db: &PgPool,
    scope: &CompanyScope,
    period: Period,
    days: &mut BTreeMap<(NaiveDate, Provider), Tally>,
) -> Result<(), sqlx::Error> {
    let successful: i64 = days.values().map(|tally| tally.counts.successful).sum();
    let edges: Option<Vec<f64>> = if successful > EXACT_P95_UP_TO {
        Some(
            sqlx::query_scalar("SELECT sla_latency_edges()")
                .fetch_one(db)
                .await?,
        )
    } else {
        None
    };
    let exact: Vec<(NaiveDate, Provider)> = days
        .iter_mut()
        .filter_map(|(key, tally)| tally.set_latencies(edges.as_deref(), &[]).then_some(*key))
        .collect();
    if exact.is_empty() {
        return Ok(());
    }
    let (dates, providers): (Vec<NaiveDate>, Vec<Provider>) = exact.into_iter().unzip();
    let mut query = QueryBuilder::new(
        "SELECT (created_at AT TIME ZONE 'UTC')::date, provider,
                percentile_cont(0.95) WITHIN GROUP
                    (ORDER BY extract(epoch FROM delivered_at - created_at)::float8 * 1000)
         FROM impact_deliveries WHERE status = 'success' AND created_at >= ",
    );
    query
        .push_bind(period.start)
        .push(" AND created_at < ")
        .push_bind(period.end);
    scope.push_and(&mut query);
    query
        .push(" AND ((created_at AT TIME ZONE 'UTC')::date, provider) IN (SELECT * FROM unnest(")
        .push_bind(dates)
        .push("::date[], ")
        .push_bind(providers)
        .push("::text[])) GROUP BY 1, 2");
    let rows: Vec<(NaiveDate, Provider, Option<f64>)> =
        query.build_query_as().fetch_all(db).await?;
    for (date, provider, p95) in rows {
        if let Some(tally) = days.get_mut(&(date, provider)) {
            tally.counts.p95_latency_ms = p95;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_period_is_the_last_14_utc_days_up_to_now() {
        let now: DateTime<Utc> = "2026-12-09T12:34:56Z".parse().unwrap();
        let period = last_days(now);
        assert_eq!(
            period.start,
            "2026-11-26T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(period.end, now);
        let midnight: DateTime<Utc> = "2026-12-09T00:00:00Z".parse().unwrap();
        assert_eq!(last_days(midnight).start, period.start);
    }
}
