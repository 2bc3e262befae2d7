//! Delivery statistics for the cockpit: counts by status and provider, the
//! success rate, attempts and latency, for the rows a [`ListFilter`] selects.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::{FromRow, PgPool, QueryBuilder};

use super::store::{ListFilter, push_filter};
use crate::provider::Provider;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub total: i64,
    pub by_status: StatusCounts,
    /// Every provider, with zeros when it has no deliveries.
    pub by_provider: BTreeMap<Provider, ProviderStats>,
    /// Success among finished deliveries (success or failed), from 0 to 1,
    /// to 4 decimals; `None` when none has finished.
    pub success_rate: Option<f64>,
    /// Mean `attempt_count` of finished deliveries, to 2 decimals.
    pub average_attempts: Option<f64>,
    /// Mean time from creation to delivery of successful deliveries, to 2
    /// decimals.
    pub average_latency_ms: Option<f64>,
    /// 95th percentile (interpolated) of the same, to 2 decimals.
    pub p95_latency_ms: Option<f64>,
    /// Deliveries by the status their provider last reported by webhook.
    pub by_provider_status: ProviderStatusCounts,
}

/// Deliveries by `providerStatus`; `none`: no webhook about them yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct ProviderStatusCounts {
    #[sqlx(rename = "ps_none")]
    pub none: i64,
    #[sqlx(rename = "ps_received")]
    pub received: i64,
    #[sqlx(rename = "ps_retrying")]
    pub retrying: i64,
    #[sqlx(rename = "ps_processed")]
    pub processed: i64,
    #[sqlx(rename = "ps_rejected")]
    pub rejected: i64,
}

/// A dashboard shows a rate as a percentage with at most two decimals, and
/// attempts or milliseconds to a hundredth; more digits are noise
/// (`0.6666666666666666`) every client would have to trim.
pub(crate) const RATE_DECIMALS: i32 = 4;
pub(crate) const MEASURE_DECIMALS: i32 = 2;

/// `value` rounded half away from zero to `decimals` places. The division
/// of two exact values is correctly rounded, so the result is the double
/// nearest the decimal and serialises as `0.6667`, not `0.6667000000000001`.
pub(crate) fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct StatusCounts {
    pub pending: i64,
    pub retrying: i64,
    pub success: i64,
    pub failed: i64,
}

impl StatusCounts {
    fn total(&self) -> i64 {
        self.pending + self.retrying + self.success + self.failed
    }

    fn success_rate(&self) -> Option<f64> {
        let finished = self.success + self.failed;
        (finished > 0).then(|| round(self.success as f64 / finished as f64, RATE_DECIMALS))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStats {
    pub total: i64,
    #[serde(flatten)]
    pub by_status: StatusCounts,
    pub success_rate: Option<f64>,
}

impl From<StatusCounts> for ProviderStats {
    fn from(by_status: StatusCounts) -> Self {
        Self {
            total: by_status.total(),
            by_status,
            success_rate: by_status.success_rate(),
        }
    }
}

/// A row of the rollup: one per provider present, and the grand total with
/// `provider` NULL (the column itself is NOT NULL).
#[derive(FromRow)]
struct Group {
    provider: Option<Provider>,
    #[sqlx(flatten)]
    counts: StatusCounts,
    #[sqlx(flatten)]
    provider_status: ProviderStatusCounts,
    average_attempts: Option<f64>,
    average_latency_ms: Option<f64>,
    p95_latency_ms: Option<f64>,
}

/// One statement: `ROLLUP` yields the per-provider counts and the grand
/// total together, and always the total row, even over no rows. The means
/// and percentile are computed for every group but read from the total only.
const SELECT: &str = "SELECT provider,
         count(*) FILTER (WHERE status = 'pending') AS pending,
         count(*) FILTER (WHERE status = 'retrying') AS retrying,
         count(*) FILTER (WHERE status = 'success') AS success,
         count(*) FILTER (WHERE status = 'failed') AS failed,
         count(*) FILTER (WHERE provider_status IS NULL) AS ps_none,
         count(*) FILTER (WHERE provider_status = 'received') AS ps_received,
         count(*) FILTER (WHERE provider_status = 'retrying') AS ps_retrying,
         count(*) FILTER (WHERE provider_status = 'processed') AS ps_processed,
         count(*) FILTER (WHERE provider_status = 'rejected') AS ps_rejected,
         avg(attempt_count) FILTER (WHERE status IN ('success', 'failed'))::float8
             AS average_attempts,
         avg(latency_ms) FILTER (WHERE status = 'success') AS average_latency_ms,
         percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
             FILTER (WHERE status = 'success') AS p95_latency_ms
     FROM impact_deliveries
     CROSS JOIN LATERAL (
         SELECT (extract(epoch FROM delivered_at - created_at) * 1000)::float8 AS latency_ms
     ) AS latency";

pub async fn compute(pool: &PgPool, filter: &ListFilter) -> Result<Stats, sqlx::Error> {
    let mut query = QueryBuilder::new(SELECT);
    push_filter(&mut query, filter, None);
    query.push(" GROUP BY ROLLUP (provider)");
    let groups: Vec<Group> = query.build_query_as().fetch_all(pool).await?;

    let mut by_provider: BTreeMap<Provider, ProviderStats> = Provider::ALL
        .into_iter()
        .map(|provider| (provider, StatusCounts::default().into()))
        .collect();
    let mut all = None;
    for group in groups {
        match group.provider {
            Some(provider) => {
                by_provider.insert(provider, group.counts.into());
            }
            None => all = Some(group),
        }
    }
    let all = all.ok_or(sqlx::Error::RowNotFound)?;
    Ok(Stats {
        total: all.counts.total(),
        by_status: all.counts,
        by_provider,
        success_rate: all.counts.success_rate(),
        average_attempts: all.average_attempts.map(|v| round(v, MEASURE_DECIMALS)),
        average_latency_ms: all.average_latency_ms.map(|v| round(v, MEASURE_DECIMALS)),
        p95_latency_ms: all.p95_latency_ms.map(|v| round(v, MEASURE_DECIMALS)),
        by_provider_status: all.provider_status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_measures_serialise_with_few_decimals() {
        let counts = StatusCounts {
            success: 2,
            failed: 1,
            ..StatusCounts::default()
        };
        assert_eq!(counts.success_rate(), Some(0.6667));
        assert_eq!(round(8.0 / 3.0, MEASURE_DECIMALS).to_string(), "2.67");
        assert_eq!(round(1234.5678, MEASURE_DECIMALS).to_string(), "1234.57");
        assert_eq!(round(-0.125, MEASURE_DECIMALS), -0.13);
        assert_eq!(round(0.1 + 0.2, RATE_DECIMALS).to_string(), "0.3");
    }
}
