//! The delivery timeline of the cockpit's SLA widget: the newest deliveries,
//! each with what the SLA is judged on (outcome, attempts, latency).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::{
    auth::CompanyScope,
    delivery::{
        Delivery, DeliveryStatus, ProviderStatus,
        store::{self, ListFilter},
    },
    ids::{CompanyId, DeliveryId, RecordId, ScheduleId},
    provider::Provider,
};

/// The longest `errorSummary`, in characters.
pub const SUMMARY_CHARS: usize = 200;

/// One delivery on the timeline.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    pub id: RecordId,
    pub delivery_id: DeliveryId,
    pub company_id: CompanyId,
    pub platform: Provider,
    pub status: DeliveryStatus,
    /// Provider calls made so far.
    pub attempts: i32,
    /// Creation to the provider's accepting answer; successes only.
    pub latency_ms: Option<i64>,
    /// The first line of the last error, at most 200 characters; null when
    /// there was none.
    pub error_summary: Option<String>,
    pub schedule_id: Option<ScheduleId>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// What the provider said last by webhook.
    pub provider_status: Option<ProviderStatus>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    /// Newest first.
    pub data: Vec<TimelineEntry>,
}

/// The newest `limit` deliveries in `scope`.
pub async fn newest(db: &PgPool, scope: CompanyScope, limit: u32) -> Result<Timeline, sqlx::Error> {
    let filter = ListFilter {
        scope,
        provider: None,
        status: None,
        created_from: None,
        created_to: None,
    };
    let rows = store::newest(db, &filter, limit).await?;
    Ok(Timeline {
        data: rows.into_iter().map(TimelineEntry::from).collect(),
    })
}

impl From<Delivery> for TimelineEntry {
    fn from(d: Delivery) -> Self {
        let latency_ms = match (d.status, d.delivered_at) {
            (DeliveryStatus::Success, Some(at)) => Some((at - d.created_at).num_milliseconds()),
            _ => None,
        };
        Self {
            id: d.id,
            delivery_id: d.delivery_id,
            company_id: d.company_id,
            platform: d.provider,
            status: d.status,
            attempts: d.attempt_count,
            latency_ms,
            error_summary: d.last_error.as_deref().and_then(summary),
            schedule_id: d.schedule_id,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
            provider_status: d.provider_status,
        }
    }
}

/// The first non-blank line, trimmed, cut at [`SUMMARY_CHARS`] characters
/// (the last of them an ellipsis when cut).
fn summary(error: &str) -> Option<String> {
    let line = error.lines().map(str::trim).find(|line| !line.is_empty())?;
    Some(if line.chars().count() <= SUMMARY_CHARS {
        line.to_owned()
    } else {
        let mut cut: String = line.chars().take(SUMMARY_CHARS - 1).collect();
        cut.push('…');
        cut
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_one_line_of_at_most_200_characters() {
        assert_eq!(summary(""), None);
        assert_eq!(summary(" \n "), None);
        assert_eq!(
            summary("\n  goodera answered 503 \nbody: …").as_deref(),
            Some("goodera answered 503")
        );
        let long = "é".repeat(300);
        let cut = summary(&long).unwrap();
        assert_eq!(cut.chars().count(), SUMMARY_CHARS);
        assert!(cut.ends_with('…'));
        let exact = "x".repeat(SUMMARY_CHARS);
        assert_eq!(summary(&exact).unwrap(), exact);
    }
}
