//! Reading the events stream from the command line (`impact-in
//! watch-events`), as a subscriber of the platform would: for the README's
//! tour and for ops.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use futures::StreamExt;

use super::stream;
use crate::config::BusConfig;

/// Prints the events on `subject` (under the prefix; every subject when
/// `None`) as JSON lines, each with its subject and envelope: from the last
/// one per subject with `last`, else only new ones; until `count` are
/// printed or none came for `wait`. How many were printed.
pub async fn events(
    config: &BusConfig,
    subject: Option<&str>,
    last: bool,
    count: usize,
    wait: Duration,
) -> anyhow::Result<usize> {
    let js = stream::connect(config).await?;
    stream::ensure_events_stream(&js, config).await?;
    let filter = subject.map_or_else(
        || format!("{}>", config.events_prefix),
        |s| format!("{}{s}", config.events_prefix),
    );
    let consumer: PullConsumer = js
        .get_stream(&config.events_stream)
        .await?
        .create_consumer(pull::Config {
            filter_subject: filter,
            deliver_policy: if last {
                DeliverPolicy::LastPerSubject
            } else {
                DeliverPolicy::New
            },
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut printed = 0;
    while printed < count {
        let Ok(Some(message)) = tokio::time::timeout(wait, messages.next()).await else {
            break;
        };
        let message = message?;
        let envelope: serde_json::Value = serde_json::from_slice(&message.payload)?;
        let subject = message.subject.as_str();
        println!(
            "{}",
            serde_json::json!({
                "subject": subject.strip_prefix(config.events_prefix.as_str()).unwrap_or(subject),
                "event": envelope,
            })
        );
        printed += 1;
    }
    Ok(printed)
}
