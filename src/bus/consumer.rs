//! One report-ready message to its deliveries, and the loop `serve` runs.
//!
//! Never two deliveries for one (event, provider): the delivery id is
//! derived from both (UUID v5), and the intake inserts a `deliveryId` once.
//! A message is acked only after its deliveries are committed, so a crash
//! before the ack redelivers it, and the repeat finds them there. Two
//! replicas given the same message (after an `ack_wait` ran out) meet the
//! same way at the unique index.

use std::collections::BTreeSet;

use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    BusContext,
    event::{self, RejectCode, Rejection},
    rejected::{self, Origin},
    rules,
};
use crate::{
    delivery::store::{self, Created, NewDelivery},
    ids::DeliveryId,
    provider::Provider,
};

/// Where the delivery ids of bus events live (UUID v5).
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x8c1d_54e2_7a3b_4f90_b2c6_1e0a_9d47_53f8);

/// The delivery id of `event`'s delivery to `provider`: the same for every
/// replica and every redelivery.
pub fn delivery_id(event: Uuid, provider: Provider) -> DeliveryId {
    let name = format!("{event}/{provider}");
    DeliveryId(Uuid::new_v5(&EVENT_NAMESPACE, name.as_bytes()))
}

/// What became of a message, and so how it is settled.
#[derive(Debug)]
pub enum Outcome {
    /// Its deliveries are committed (new or already there): ack.
    Delivered(Vec<DeliveryId>),
    /// It can never succeed, and that is stored: term.
    Rejected(RejectCode),
    /// A passing failure (Postgres down): nak, to come back after the delay.
    Failed(sqlx::Error),
}

/// Does everything a message asks except settling it.
pub async fn process(ctx: &BusContext, body: &[u8], origin: &Origin<'_>) -> Outcome {
    let rejection = match deliver(ctx, body).await {
        Ok(Ok(ids)) => return Outcome::Delivered(ids),
        Ok(Err(rejection)) => rejection,
        Err(err) => return Outcome::Failed(err),
    };
    match rejected::record(ctx.db(), origin, &rejection).await {
        Ok(()) => {
            // The code, not the reason: the reason may quote the message.
            tracing::warn!(
                stream_sequence = origin.stream_sequence,
                event = ?rejection.event_id,
                company = ?rejection.company_id.map(|c| c.0),
                reason = rejection.code.as_str(),
                "report-ready message rejected; kept in bus_rejected"
            );
            crate::metrics::bus_message(rejection.code.as_str());
            Outcome::Rejected(rejection.code)
        }
        Err(err) => Outcome::Failed(err),
    }
}

async fn deliver(
    ctx: &BusContext,
    body: &[u8],
) -> Result<Result<Vec<DeliveryId>, Rejection>, sqlx::Error> {
    let checked = match event::read(body) {
        Ok(checked) => checked,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let event = &checked.event;
    let reject = |code, reason: String| {
        Ok(Err(Rejection {
            code,
            reason,
            event_id: Some(event.event_id),
            company_id: Some(event.company_id),
        }))
    };
    let rules = rules::get(ctx.db(), event.company_id).await?;
    if rules.providers.is_empty() {
        return reject(
            RejectCode::NoRules,
            "the company has no delivery rules".into(),
        );
    }
    let providers: BTreeSet<Provider> = match &event.providers {
        Some(wanted) => rules.providers.intersection(wanted).copied().collect(),
        None => rules.providers,
    };
    if providers.is_empty() {
        return reject(
            RejectCode::NoProvider,
            "none of the event's providers is in the company's delivery rules".into(),
        );
    }
    let mut ids = Vec::with_capacity(providers.len());
    let mut queued = false;
    for provider in providers {
        let id = delivery_id(event.event_id, provider);
        let new = NewDelivery {
            company_id: event.company_id,
            provider,
            delivery_id: id,
            idempotency_key: None,
            payload: checked.payload.clone(),
            cause_event_id: Some(event.event_id),
        };
        match store::insert(ctx.db(), &ctx.delivery.intake, new).await? {
            Created::New(_) => queued = true,
            // Made by an earlier delivery of this message.
            Created::Existing(_) => {}
            Created::Conflict | Created::IdTaken => {
                return reject(
                    RejectCode::EventIdReused,
                    format!(
                        "event {} was already delivered with another report",
                        event.event_id
                    ),
                );
            }
        }
        ids.push(id);
    }
    if queued {
        ctx.delivery.queue.queued();
    }
    tracing::info!(event = %event.event_id, company = %event.company_id, deliveries = ids.len(), "report-ready event delivered");
    crate::metrics::bus_message("delivered");
    Ok(Ok(ids))
}

/// Settles a message after [`process`]: ack, term or nak with the delay.
pub async fn settle(ctx: &BusContext, message: &Message, outcome: &Outcome) {
    let kind = match outcome {
        Outcome::Delivered(_) => AckKind::Ack,
        Outcome::Rejected(_) => AckKind::Term,
        Outcome::Failed(err) => {
            tracing::warn!(error = %err, retry_in = ?ctx.config.nak_delay, "report-ready message not handled; it comes back");
            crate::metrics::bus_message("retried");
            AckKind::Nak(Some(ctx.config.nak_delay))
        }
    };
    // A lost ack only means a redelivery, which finds its deliveries.
    if let Err(err) = message.ack_with(kind).await {
        tracing::warn!(error = %err, "cannot settle a report-ready message; it will be redelivered");
    }
}

/// Consumes until `shutdown`: connects (retrying while NATS is down), then
/// handles up to `max_in_flight` messages at once. On shutdown it stops
/// pulling, settles the messages it holds, and returns.
pub async fn run(ctx: BusContext, shutdown: CancellationToken) {
    tracing::info!(subject = %ctx.config.report_subject, stream = %ctx.config.stream, consumer = %ctx.config.consumer, "bus consumer starting");
    while let Some(consumer) = super::stream::connect_with_retry(&ctx.config, &shutdown).await {
        let messages = match consumer
            .stream()
            .max_messages_per_batch(ctx.config.max_in_flight)
            .messages()
            .await
        {
            Ok(messages) => messages,
            Err(err) => {
                tracing::warn!(error = %err, "cannot pull from the report consumer; reconnecting");
                backoff_or_stop(&shutdown).await;
                continue;
            }
        };
        messages
            .take_until(shutdown.cancelled())
            .for_each_concurrent(ctx.config.max_in_flight, |message| {
                let ctx = ctx.clone();
                async move {
                    match message {
                        Ok(message) => handle(&ctx, &message).await,
                        // Missed heartbeats and the like while NATS is
                        // away: the client reconnects, the pull resumes.
                        Err(err) => tracing::warn!(error = %err, "report consumer interrupted"),
                    }
                }
            })
            .await;
        if shutdown.is_cancelled() {
            break;
        }
        // The pull ended by itself (its consumer deleted, say): set up
        // again, without spinning if that keeps happening.
        tracing::warn!("the report consumer's pull ended; setting it up again");
        backoff_or_stop(&shutdown).await;
    }
    tracing::info!("bus consumer stopped");
}

async fn backoff_or_stop(shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        () = shutdown.cancelled() => {}
    }
}

async fn handle(ctx: &BusContext, message: &Message) {
    let (stream, stream_sequence) = match message.info() {
        Ok(info) => (info.stream.to_owned(), info.stream_sequence),
        Err(err) => {
            tracing::warn!(error = %err, "a message without JetStream metadata; skipped");
            return;
        }
    };
    let origin = Origin {
        stream: &stream,
        stream_sequence,
        subject: message.subject.as_str(),
    };
    let outcome = process(ctx, &message.payload, &origin).await;
    settle(ctx, message, &outcome).await;
}
