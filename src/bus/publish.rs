//! Publishing a report-ready event, as the platform does: for
//! `impact-in publish-report` and the tests.

use async_nats::HeaderMap;
use serde_json::json;

use super::{event::ReportReady, stream};
use crate::config::BusConfig;

/// Publishes `event` on the report subject with `Nats-Msg-Id` = its event
/// id (JetStream drops a repeat within the duplicate window), after making
/// sure the stream exists; what the stream said.
pub async fn report_ready(
    config: &BusConfig,
    event: ReportReady,
) -> anyhow::Result<serde_json::Value> {
    let js = stream::connect(config).await?;
    stream::ensure_stream(&js, config).await?;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
    let ack = js
        .publish_with_headers(
            config.report_subject.clone(),
            headers,
            serde_json::to_vec(&event)?.into(),
        )
        .await?
        .await?;
    Ok(json!({
        "eventId": event.event_id,
        "stream": ack.stream,
        "sequence": ack.sequence,
        "duplicate": ack.duplicate,
    }))
}
