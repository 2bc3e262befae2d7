//! NATS: the connection (retried while the server is down), the report
//! stream and its durable pull consumer, and the events stream the relay
//! publishes to, each created idempotently.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    stream::{DiscardPolicy, RetentionPolicy, StorageType},
};
use tokio_util::sync::CancellationToken;

use crate::config::BusConfig;

/// Connects once; the client then reconnects by itself for as long as the
/// process runs.
pub async fn connect(config: &BusConfig) -> Result<jetstream::Context, async_nats::ConnectError> {
    let client = async_nats::ConnectOptions::new()
        .name("impact-in")
        .connection_timeout(Duration::from_secs(5))
        .connect(config.url())
        .await?;
    Ok(jetstream::new(client))
}

/// Connects and sets up the report stream and its consumer, retrying while
/// NATS is down (see [`retry`]); `None` when `shutdown` comes first.
pub async fn connect_with_retry(
    config: &BusConfig,
    shutdown: &CancellationToken,
) -> Option<PullConsumer> {
    crate::backoff::until_ready("NATS", shutdown, || async {
        let js = connect(config).await?;
        ensure_stream(&js, config).await?;
        anyhow::Ok(ensure_consumer(&js, config).await?)
    })
    .await
}

/// Connects and sets up the events stream, for the relay, retrying while
/// NATS is down; `None` when `shutdown` comes first.
pub async fn connect_events_with_retry(
    config: &BusConfig,
    shutdown: &CancellationToken,
) -> Option<jetstream::Context> {
    crate::backoff::until_ready("NATS", shutdown, || async {
        let js = connect(config).await?;
        ensure_events_stream(&js, config).await?;
        anyhow::Ok(js)
    })
    .await
}

/// The report stream as configured: created, or brought to this
/// configuration when it exists (the same call at every start and from
/// `impact-in migrate`).
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &BusConfig,
) -> Result<(), jetstream::context::CreateStreamError> {
    ensure_limits_stream(
        js,
        config,
        &config.stream,
        vec![config.report_subject.clone()],
    )
    .await
}

/// The events stream as configured: every subject the relay publishes
/// (`ingest.>` and `impact.delivery.>` under the prefix). Its duplicate
/// window is what makes a re-published event (its `Nats-Msg-Id` seen) a
/// no-op.
pub async fn ensure_events_stream(
    js: &jetstream::Context,
    config: &BusConfig,
) -> Result<(), jetstream::context::CreateStreamError> {
    let prefix = &config.events_prefix;
    let subjects = vec![
        format!("{prefix}ingest.>"),
        format!("{prefix}impact.delivery.>"),
    ];
    ensure_limits_stream(js, config, &config.events_stream, subjects).await
}

/// A stream `name` over `subjects`, created or updated to the bus's limits
/// and duplicate window.
async fn ensure_limits_stream(
    js: &jetstream::Context,
    config: &BusConfig,
    name: &str,
    subjects: Vec<String>,
) -> Result<(), jetstream::context::CreateStreamError> {
    js.create_or_update_stream(jetstream::stream::Config {
        name: name.to_owned(),
        subjects,
        // Limits, not work queue: a message is kept (to be read again by
        // ops or a late subscriber) until its age or the stream's size ends
        // it, acked or not.
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        storage: StorageType::File,
        max_age: config.max_age,
        duplicate_window: config.duplicate_window,
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// The durable pull consumer all replicas share: explicit acks, at most
/// `max_in_flight` messages unacknowledged, redelivered after `ack_wait`.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    config: &BusConfig,
) -> anyhow::Result<PullConsumer> {
    let stream = js.get_stream(&config.stream).await?;
    Ok(stream
        .get_or_create_consumer(
            &config.consumer,
            pull::Config {
                durable_name: Some(config.consumer.clone()),
                filter_subject: config.report_subject.clone(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: i64::try_from(config.max_in_flight).unwrap_or(i64::MAX),
                ..Default::default()
            },
        )
        .await?)
}
