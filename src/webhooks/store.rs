//! SQL for webhook events: record one and apply it to its delivery in one
//! statement, list them tenant-scoped, and read a delivery's events.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};

use crate::group_commit::BatchFuture;
use uuid::Uuid;

use super::event::InboundEvent;
use crate::{
    auth::CompanyScope,
    cursor::{self, Cursor, Order, Start},
    delivery::{DeliveryStatus, ProviderStatus},
    ids::{CompanyId, RecordId},
    provider::Provider,
};

/// What became of an event this service had not seen before.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    sqlx::Type,
    serde::Serialize,
    strum::Display,
    utoipa::ToSchema,
)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Outcome {
    /// It set the delivery's provider status (and maybe its status).
    Applied,
    /// The delivery already holds a newer provider status.
    Stale,
    /// No delivery of this provider (and route company) has that id.
    Unmatched,
    /// A type this service does not act on.
    Ignored,
}

/// The stored event and what it changed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recorded {
    pub id: Uuid,
    pub outcome: Outcome,
    pub delivery_record_id: Option<RecordId>,
    pub company_id: Option<CompanyId>,
    pub status_before: Option<DeliveryStatus>,
    pub status_after: Option<DeliveryStatus>,
    pub payload_hash: Option<String>,
    /// The trace of the request that created the delivery.
    pub traceparent: Option<String>,
}

/// A verified event on its way to the database.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub provider: Provider,
    /// The company of a per-company route.
    pub route_company: Option<CompanyId>,
    pub event: InboundEvent,
    pub received_at: DateTime<Utc>,
    /// The delivery's `lastError` should the event turn a success into a
    /// failure.
    pub rejection: String,
    /// Whether a status it applies is an event for the bus's outbox.
    pub publish: bool,
}

/// What one event came to: `None` when its id was already stored for this
/// provider and route (a repeat: nothing changed).
pub type EventResult = Result<Option<Recorded>, sqlx::Error>;

/// Records a batch of events in one transaction (see
/// [`crate::group_commit`]); should the transaction fail, each event is
/// tried again in one of its own, so that one event's failure is only its
/// own.
pub fn record_batch(db: PgPool, events: Vec<NewEvent>) -> BatchFuture<EventResult> {
    Box::pin(async move {
        match record(&db, &events).await {
            Ok(recorded) => Ok(recorded.into_iter().map(Ok).collect()),
            Err(err) if events.len() == 1 => Ok(vec![Err(err)]),
            Err(err) => {
                tracing::debug!(error = %err, events = events.len(), "recording one by one");
                let mut results = Vec::with_capacity(events.len());
                for event in events {
                    results.push(
                        record(&db, std::slice::from_ref(&event))
                            .await
                            .map(|mut recorded| recorded.pop().expect("one result per event")),
                    );
                }
                Ok(results)
            }
        }
    })
}

/// Stores each event unless its id was already stored for its provider and
/// route, and applies it to the delivery it names, in one transaction:
///
/// 1. find each event's delivery (by `deliveryId` or provider reference,
///    of its provider, and of the route's company when there is one);
/// 2. lock those deliveries, in id order (so concurrent batches cannot
///    deadlock on them);
/// 3. store and apply the events in rounds, each round naming a delivery
///    at most once, so events for one delivery apply one after the other,
///    each against the state the previous one left.
///
/// A status is applied only if it is newer than the one held (later time,
/// or the same time and a later stage). Applied, `processed` turns a
/// `failed` delivery into `success` (it timed out on our side, but the
/// provider has it) and `rejected` turns a `success` into `failed`, with
/// the event's rejection text as its `lastError`.
async fn record(db: &PgPool, events: &[NewEvent]) -> Result<Vec<Option<Recorded>>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let found: Vec<(i32, Uuid)> = sqlx::query_as(
        "SELECT i.n, d.id
         FROM unnest($1::int4[], $2::text[], $3::uuid[], $4::uuid[], $5::text[])
             AS i (n, provider, route_company, delivery_id, reference)
         CROSS JOIN LATERAL (
             SELECT id FROM impact_deliveries
             WHERE provider = i.provider
               AND (delivery_id = i.delivery_id OR provider_response ->> 'reference' = i.reference)
               AND (i.route_company IS NULL OR company_id = i.route_company)
             ORDER BY created_at DESC
             LIMIT 1
         ) AS d",
    )
    .bind((0..events.len() as i32).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.provider.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|e| e.route_company.map(|c| c.0))
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|e| e.event.delivery_id.map(|d| d.0))
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|e| e.event.reference.as_deref())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut targets: Vec<Option<Uuid>> = vec![None; events.len()];
    for (n, id) in &found {
        targets[*n as usize] = Some(*id);
    }
    let mut locked: Vec<Uuid> = found.iter().map(|(_, id)| *id).collect();
    locked.sort_unstable();
    locked.dedup();
    if !locked.is_empty() {
        sqlx::query("SELECT id FROM impact_deliveries WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&locked)
            .fetch_all(&mut *tx)
            .await?;
    }

    // Round k holds each delivery's k-th event (unmatched ones go first).
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut seen: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
    for (n, target) in targets.iter().enumerate() {
        let round = match target {
            Some(id) => {
                let count = seen.entry(*id).or_default();
                *count += 1;
                *count - 1
            }
            None => 0,
        };
        if rounds.len() <= round {
            rounds.resize_with(round + 1, Vec::new);
        }
        rounds[round].push(n);
    }

    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
    let mut recorded: std::collections::HashMap<Uuid, Recorded> = std::collections::HashMap::new();
    for round in rounds {
        let rows: Vec<Recorded> = apply_round(&mut tx, &round, events, &targets, &ids).await?;
        recorded.extend(rows.into_iter().map(|r| (r.id, r)));
    }
    tx.commit().await?;
    Ok(ids.iter().map(|id| recorded.remove(id)).collect())
}

async fn apply_round(
    tx: &mut sqlx::PgConnection,
    round: &[usize],
    events: &[NewEvent],
    targets: &[Option<Uuid>],
    ids: &[Uuid],
) -> Result<Vec<Recorded>, sqlx::Error> {
    let pick = |n: &&usize| &events[**n];
    sqlx::query_as(
        "WITH input AS (
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[],
                                  $6::text[], $7::int4[], $8::timestamptz[], $9::timestamptz[],
                                  $10::jsonb[], $11::text[], $12::uuid[], $13::bool[])
                 AS i (id, provider, route_company_id, event_id, event_type, provider_status,
                       stage, occurred_at, received_at, body, rejection, target, publish)
         ), found AS (
             SELECT i.*, d.company_id, d.status AS status_before, d.payload_hash, d.traceparent,
                    CASE WHEN i.provider_status IS NULL THEN 'ignored'
                         WHEN d.id IS NULL THEN 'unmatched'
                         WHEN d.provider_status_at IS NULL OR i.occurred_at > d.provider_status_at
                              OR (i.occurred_at = d.provider_status_at
                                  AND i.stage > CASE d.provider_status WHEN 'received' THEN 1
                                                                       WHEN 'retrying' THEN 2
                                                                       ELSE 3 END)
                         THEN 'applied' ELSE 'stale' END AS outcome
             FROM input i LEFT JOIN impact_deliveries d ON d.id = i.target
         ), decided AS (
             SELECT *,
                    CASE WHEN outcome <> 'applied' THEN status_before
                         WHEN provider_status = 'processed' AND status_before = 'failed'
                             THEN 'success'
                         WHEN provider_status = 'rejected' AND status_before = 'success'
                             THEN 'failed'
                         ELSE status_before END AS status_after
             FROM found
         ), event AS (
             INSERT INTO impact_webhook_events
                 (id, provider, route_company_id, event_id, event_type, provider_status,
                  occurred_at, received_at, company_id, delivery_record_id, matched, outcome,
                  status_before, status_after, body)
             SELECT id, provider, route_company_id, event_id, event_type, provider_status,
                    occurred_at, received_at, COALESCE(company_id, route_company_id), target,
                    target IS NOT NULL, outcome, status_before, status_after, body
             FROM decided
             ON CONFLICT DO NOTHING
             RETURNING id
         ), applied AS (
             UPDATE impact_deliveries x
             SET provider_status = d.provider_status, provider_status_at = d.occurred_at,
                 provider_status_seen_at = now(), status = d.status_after,
                 last_error = CASE WHEN d.status_after = 'failed' AND d.status_before = 'success'
                                   THEN d.rejection
                                   WHEN d.status_after = 'success' AND d.status_before = 'failed'
                                   THEN NULL
                                   ELSE x.last_error END,
                 delivered_at = CASE WHEN d.status_after = 'success' AND d.status_before = 'failed'
                                     THEN COALESCE(x.delivered_at, d.occurred_at)
                                     ELSE x.delivered_at END,
                 updated_at = now()
             FROM event e JOIN decided d ON d.id = e.id
             WHERE x.id = d.target AND d.outcome = 'applied'
             RETURNING x.id, x.company_id, x.delivery_id, x.provider,
                       d.id AS event_row, d.publish, d.provider_status, d.occurred_at,
                       d.status_before, d.status_after
         ), published AS (
             -- The applied status's event for the bus's relay (docs/bus.md),
             -- caused by the stored webhook event; not its body.
             INSERT INTO bus_outbox (subject, company_id, correlation_id, causation_id, data)
             SELECT 'impact.delivery.provider-status', company_id, id, event_row,
                    jsonb_build_object('id', id, 'deliveryId', delivery_id,
                                       'companyId', company_id, 'provider', provider,
                                       'providerStatus', provider_status,
                                       'occurredAt', occurred_at,
                                       'statusBefore', status_before,
                                       'statusAfter', status_after)
             FROM applied WHERE publish
         )
         SELECT d.id, d.outcome, d.target AS delivery_record_id,
                COALESCE(d.company_id, d.route_company_id) AS company_id, d.status_before,
                d.status_after, d.payload_hash, d.traceparent
         FROM event e JOIN decided d ON d.id = e.id",
    )
    .bind(round.iter().map(|n| ids[*n]).collect::<Vec<_>>())
    .bind(
        round
            .iter()
            .map(|n| pick(&n).provider.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        round
            .iter()
            .map(|n| pick(&n).route_company.map(|c| c.0))
            .collect::<Vec<_>>(),
    )
    .bind(
        round
            .iter()
            .map(|n| pick(&n).event.event_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        round
            .iter()
            .map(|n| pick(&n).event.event_type.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        round
            .iter()
            .map(|n| pick(&n).event.status.map(ProviderStatus::as_str))
            .collect::<Vec<_>>(),
    )
    .bind(
        round
            .iter()
            .map(|n| pick(&n).event.status.map_or(0, ProviderStatus::stage))
            .collect::<Vec<_>>(),
    )
    .bind(
        round
            .iter()
            .map(|n| pick(&n).event.occurred_at)
            .collect::<Vec<_>>(),
    )
    .bind(
        round
            .iter()
            .map(|n| pick(&n).received_at)
            .collect::<Vec<_>>(),
    )
    .bind(
        round
            .iter()
            .map(|n| &pick(&n).event.body)
            .collect::<Vec<_>>(),
    )
    .bind(
        round
            .iter()
            .map(|n| pick(&n).rejection.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(round.iter().map(|n| targets[*n]).collect::<Vec<_>>())
    .bind(round.iter().map(|n| pick(&n).publish).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await
}

/// A stored event as the lists show it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    pub id: Uuid,
    pub provider: Provider,
    pub event_id: String,
    pub event_type: String,
    pub provider_status: Option<ProviderStatus>,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub company_id: Option<CompanyId>,
    pub delivery_record_id: Option<RecordId>,
    pub matched: bool,
    pub outcome: Outcome,
    pub status_before: Option<DeliveryStatus>,
    pub status_after: Option<DeliveryStatus>,
    pub body: serde_json::Value,
}

const COLUMNS: &str = "id, provider, event_id, event_type, provider_status, occurred_at, \
                       received_at, company_id, delivery_record_id, matched, outcome, \
                       status_before, status_after, body";

#[derive(Debug, Clone)]
pub struct EventFilter {
    pub scope: CompanyScope,
    pub provider: Option<Provider>,
    pub matched: Option<bool>,
    pub received_from: Option<DateTime<Utc>>,
    pub received_to: Option<DateTime<Utc>>,
}

pub struct EventPage {
    pub rows: Vec<StoredEvent>,
    pub total: Option<i64>,
    pub next: Option<Cursor>,
}

/// One page, newest received first; counted for pages by number only (as
/// the delivery list).
pub async fn list(
    pool: &PgPool,
    filter: &EventFilter,
    limit: u32,
    start: Start,
) -> Result<EventPage, sqlx::Error> {
    let (after, offset) = start.split();
    let mut page = QueryBuilder::new(format!("SELECT {COLUMNS} FROM impact_webhook_events"));
    push_filter(&mut page, filter, after);
    page.push(" ORDER BY received_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1)
        .push(" OFFSET ")
        .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
    let rows: Vec<StoredEvent> = page.build_query_as().fetch_all(pool).await?;
    let total = match after {
        Some(_) => None,
        None => {
            let mut count = QueryBuilder::new("SELECT count(*) FROM impact_webhook_events");
            push_filter(&mut count, filter, None);
            Some(count.build_query_scalar().fetch_one(pool).await?)
        }
    };
    let (rows, next) = cursor::page(rows, limit, |e| Cursor {
        at: e.received_at,
        id: e.id,
    });
    Ok(EventPage { rows, total, next })
}

fn push_filter(query: &mut QueryBuilder<Postgres>, filter: &EventFilter, after: Option<Cursor>) {
    query.push(" WHERE true");
    if let Some(companies) = filter.scope.as_filter() {
        query
            .push(" AND company_id = ANY(")
            .push_bind(companies.to_vec())
            .push(")");
    }
    if let Some(provider) = filter.provider {
        query.push(" AND provider = ").push_bind(provider);
    }
    if let Some(matched) = filter.matched {
        query.push(" AND matched = ").push_bind(matched);
    }
    if let Some(from) = filter.received_from {
        query.push(" AND received_at >= ").push_bind(from);
    }
    if let Some(to) = filter.received_to {
        query.push(" AND received_at <= ").push_bind(to);
    }
    if let Some(cursor) = after {
        query.push(" AND ");
        cursor::push_past(query, "received_at", Order::NewestFirst, cursor);
    }
}

/// A delivery's events, in the order they happened.
pub async fn for_delivery(
    pool: &PgPool,
    delivery: RecordId,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM impact_webhook_events
         WHERE delivery_record_id = $1 ORDER BY occurred_at, received_at"
    )))
    .bind(delivery)
    .fetch_all(pool)
    .await
}
