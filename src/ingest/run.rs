//! Runs: a durable job per company and stream that pages through what is
//! new at the source, reads, redacts and stores each page with its
//! checkpoint, and ends `succeeded`, `partial` or `failed`. A run is leased
//! to the process executing it; one whose process died is taken over once
//! its lease runs out and resumes from its last stored page.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    IngestContext,
    record::{self, Record},
    store::{self, NewRecord, NewRun, Progress, Run, RunStatus},
    stream::Stream,
};
use crate::{
    connectors::{
        ConnectorError,
        sources::{PageRequest, Source},
    },
    ids::CompanyId,
};

/// What asking for a run did.
pub enum Started {
    /// A new run, now executing in the background.
    New(Run),
    /// One was already running for that company and stream: that one.
    Running(Run),
}

impl Started {
    pub fn run(&self) -> &Run {
        match self {
            Self::New(run) | Self::Running(run) => run,
        }
    }
}

/// Starts a run of `stream` for `company`, unless one is running.
pub async fn start(
    ctx: &IngestContext,
    company: CompanyId,
    stream: Stream,
    since: Option<DateTime<Utc>>,
    page_size: u32,
    record_limit: Option<u32>,
) -> Result<Started, sqlx::Error> {
    let new = NewRun {
        company,
        stream,
        since,
        record_limit,
        page_size,
    };
    match store::create_run(ctx.db(), &new, &ctx.owner, ctx.config.lease).await? {
        Ok(run) => {
            tokio::spawn(execute(ctx.clone(), run.clone()));
            Ok(Started::New(run))
        }
        Err(running) => Ok(Started::Running(running)),
    }
}

/// Waits up to `wait` for a run to end; the run as it then stands.
pub async fn wait_for(ctx: &IngestContext, run: &Run, wait: Duration) -> Result<Run, sqlx::Error> {
    let mut finished = ctx.finished.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    let scope = crate::auth::CompanyScope::Only(vec![run.company_id]);
    loop {
        // Read after subscribing: an end in between is not missed.
        let now = store::find_run(ctx.db(), &scope, run.id)
            .await?
            .unwrap_or_else(|| run.clone());
        if now.status != RunStatus::Running {
            return Ok(now);
        }
        loop {
            match tokio::time::timeout_at(deadline, finished.recv()).await {
                Err(_) => return Ok(now),
                Ok(Ok(id)) if id != run.id => continue,
                // Ours, or missed messages (lagged): read the row again.
                Ok(_) => break,
            }
        }
    }
}

/// Takes over, every `interval`, the runs whose process died.
pub async fn resume_abandoned(ctx: IngestContext, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(ctx.config.resume_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match store::claim_abandoned(ctx.db(), &ctx.owner, ctx.config.lease).await {
            Ok(runs) => {
                for run in runs {
                    tracing::warn!(run = %run.id, stream = %run.stream, "resuming an ingest run whose process stopped");
                    tokio::spawn(execute(ctx.clone(), run));
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot look for abandoned ingest runs"),
        }
    }
}

/// How a run's page loop ended.
enum Ended {
    /// Nothing new left.
    Done,
    /// The run's record bound was reached with more at the source.
    Bounded,
    Source(ConnectorError),
    /// Another process took the run over (this one lost its lease).
    LostLease,
    Database(sqlx::Error),
}

/// Executes a run to its end (once a slot is free), then announces it.
pub async fn execute(ctx: IngestContext, run: Run) {
    let _slot = ctx.slots.clone().acquire_owned().await;
    let ended = match ctx
        .delivery
        .connectors
        .source(run.company_id.0, run.stream.system())
        .await
    {
        Ok(source) => pages(&ctx, &run, source).await,
        Err(err) => Ended::Source(err.into()),
    };
    let (status, has_more, error) = match ended {
        Ended::Done => (RunStatus::Succeeded, false, None),
        Ended::Bounded => (RunStatus::Succeeded, true, None),
        Ended::LostLease => {
            tracing::warn!(run = %run.id, "ingest run taken over by another process");
            return;
        }
        Ended::Source(err) => (
            RunStatus::Failed,
            true,
            Some(json!({
                "kind": "source",
                "errorClass": err.class(),
                "message": ctx.redactor.redact_text(&err.to_string()),
            })),
        ),
        Ended::Database(err) => {
            tracing::error!(run = %run.id, error = %err, "ingest run stopped: the database failed; it resumes when its lease runs out");
            return;
        }
    };
    let finished = store::finish_run(ctx.db(), run.id, &ctx.owner, status, has_more, error).await;
    match finished {
        Ok(Some(done)) => {
            // A run that stored pages before failing kept them: partial.
            let done = if done.status == RunStatus::Failed && done.pages > 0 {
                mark_partial(&ctx, done).await
            } else {
                done
            };
            tracing::info!(
                run = %done.id,
                stream = %done.stream,
                status = %done.status,
                records = done.records_processed,
                failed = done.records_failed,
                "ingest run finished"
            );
        }
        Ok(None) => tracing::warn!(run = %run.id, "ingest run taken over before it ended"),
        Err(err) => {
            tracing::error!(run = %run.id, error = %err, "cannot record the end of an ingest run")
        }
    }
    let _ = ctx.finished.send(run.id);
}

async fn mark_partial(ctx: &IngestContext, run: Run) -> Run {
    let updated = sqlx::query("UPDATE ingest_runs SET status = 'partial' WHERE id = $1")
        .bind(run.id)
        .execute(ctx.db())
        .await;
    match updated {
        Ok(_) => Run {
            status: RunStatus::Partial,
            ..run
        },
        Err(_) => run,
    }
}

/// The page loop: from the run's own progress (a resumed run), else its
/// `since`, else the company's cursor.
async fn pages(ctx: &IngestContext, run: &Run, source: Arc<dyn Source>) -> Ended {
    let since = match run.last_source_time.or(run.since) {
        Some(since) => Some(since),
        None => match store::high_water(ctx.db(), run.company_id, run.stream).await {
            Ok(saved) => saved,
            Err(err) => return Ended::Database(err),
        },
    };
    let page_size = u32::try_from(run.page_size).unwrap_or(100);
    let mut remaining = run.record_limit.map(|n| {
        u64::try_from(n)
            .unwrap_or(0)
            .saturating_sub(run.records_total as u64)
    });
    let mut request = PageRequest {
        since,
        position: None,
        limit: page_size,
    };
    loop {
        if remaining == Some(0) {
            return Ended::Bounded;
        }
        request.limit = remaining.map_or(page_size, |r| page_size.min(r as u32));
        let page = match fetch(ctx, source.as_ref(), run.stream, &request).await {
            Ok(page) => page,
            Err(err) => return Ended::Source(err),
        };
        let fetched = page.records.len() as u64;
        let (records, errors) = read_page(ctx, run, page.records);
        let failed = errors.len() as u64;
        let progress = Progress {
            fetched,
            failed,
            errors: &errors,
        };
        match store::store_page(
            ctx.db(),
            run,
            &ctx.owner,
            ctx.config.lease,
            records,
            progress,
            ctx.delivery.config.publish_events,
        )
        .await
        {
            Ok(Some(stored)) => {
                crate::metrics::ingest_page(
                    run.stream,
                    stored.inserted + stored.updated + stored.unchanged,
                    failed,
                );
            }
            Ok(None) => return Ended::LostLease,
            Err(err) => return Ended::Database(err),
        }
        if let Some(left) = remaining.as_mut() {
            *left = left.saturating_sub(fetched);
        }
        match page.next {
            Some(next) => request.position = Some(next),
            None => return Ended::Done,
        }
    }
}

/// One page, tried again on transient failures and rate limits (after the
/// source's `Retry-After`, or a doubling pause), up to
/// `INGEST_RETRY_ATTEMPTS` times.
async fn fetch(
    ctx: &IngestContext,
    source: &dyn Source,
    stream: Stream,
    request: &PageRequest,
) -> Result<crate::connectors::sources::Page, ConnectorError> {
    let mut pause = ctx.config.retry_initial_delay;
    let mut attempt = 1;
    loop {
        let err = match source.page(stream, request).await {
            Ok(page) => return Ok(page),
            Err(err) => err,
        };
        crate::metrics::ingest_error(stream, err.class().into());
        if !err.is_retryable() || attempt >= ctx.config.retry_attempts {
            return Err(err);
        }
        let wait = retry_wait(&err, pause, ctx.config.retry_max_delay);
        tracing::info!(%stream, attempt, error = %ctx.redactor.redact_text(&err.to_string()), wait_ms = wait.as_millis() as u64, "ingest page failed; trying again");
        tokio::time::sleep(wait).await;
        pause = (pause * 2).min(ctx.config.retry_max_delay);
        attempt += 1;
    }
}

/// How long to pause before asking again: as long as the source (its
/// `Retry-After`) or our own rate gate said, else the doubling `pause`;
/// never more than `max`.
fn retry_wait(err: &ConnectorError, pause: Duration, max: Duration) -> Duration {
    err.retry_after().unwrap_or(pause).min(max)
}

/// Reads and redacts a page: the records to store, and one error per
/// record refused (its position and field, never a value).
fn read_page(
    ctx: &IngestContext,
    run: &Run,
    raw: Vec<serde_json::Value>,
) -> (Vec<NewRecord>, Vec<serde_json::Value>) {
    let mut records = Vec::with_capacity(raw.len());
    let mut errors = Vec::new();
    for (index, raw) in raw.into_iter().enumerate() {
        match record::read(run.stream, raw) {
            Ok(record) => records.push(envelope(ctx, run, record)),
            Err(err) => errors.push(json!({
                "kind": "record",
                "page": run.pages + 1,
                "index": index,
                "field": err.field,
                "reason": err.reason,
            })),
        }
    }
    (records, errors)
}

/// Namespace of event ids: a record's event id is derived from the company,
/// stream, source id and source time, so every run gives one version of a
/// record the same id.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x6a1c_0b2e_5d7f_4e0a_9c3b_8f1e_2d4a_6b70);

/// The seed's `BaseEvent` around the typed body, personal data redacted.
fn envelope(ctx: &IngestContext, run: &Run, record: Record) -> NewRecord {
    let id = Uuid::new_v5(
        &EVENT_NAMESPACE,
        format!(
            "{}\n{}\n{}\n{}",
            run.company_id,
            run.stream,
            record.source_id,
            record.updated_at.timestamp_micros()
        )
        .as_bytes(),
    );
    let mut event = json!({
        "id": id,
        "version": "1.0",
        "type": run.stream.event_type(),
        "timestamp": record.updated_at,
        "correlationId": run.id,
        "causationId": null,
        "metadata": {
            "companyId": run.company_id,
            "source": run.stream.system(),
            "stream": run.stream,
            "sourceId": ctx.redactor.redact_text(&record.source_id),
        },
        "data": record.data,
    });
    ctx.redactor.redact(&mut event["data"]);
    NewRecord {
        // An id is not meant to be personal data, but a source may use an
        // email as one; the keyed modes keep it stable for the upsert.
        source_id: ctx.redactor.redact_text(&record.source_id).into_owned(),
        source_updated_at: record.updated_at,
        event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_waits_as_long_as_the_source_asked_within_the_bound() {
        let pause = Duration::from_millis(500);
        let max = Duration::from_secs(60);
        let limited = |secs| ConnectorError::RateLimited {
            status: Some(429),
            retry_after: Some(Duration::from_secs(secs)),
            excerpt: None,
        };
        assert_eq!(
            retry_wait(&limited(30), pause, max),
            Duration::from_secs(30)
        );
        assert_eq!(retry_wait(&limited(3600), pause, max), max, "bounded");
        let throttled = ConnectorError::Throttled {
            retry_after: Duration::from_secs(12),
        };
        assert_eq!(retry_wait(&throttled, pause, max), Duration::from_secs(12));
        let transient = ConnectorError::Transient {
            message: "503".into(),
            status: Some(503),
            retry_after: None,
            excerpt: None,
        };
        assert_eq!(retry_wait(&transient, pause, max), pause);
    }
}
