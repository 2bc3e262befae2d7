//! Per-company export schedules: when each fires (`timing`), the rows
//! (`schedule`), what a firing sends (`report`, `metrics`, `fire`) and the
//! in-process task that fires them (`task`), which also runs the daily
//! retention job (`retention`). Docs: docs/scheduling.md.

pub mod fire;
pub mod metrics;
pub mod report;
pub mod retention;
pub mod schedule;
pub mod task;
pub mod timing;

use std::{ops::Deref, sync::Arc};

use tokio::sync::Notify;

use self::metrics::ImpactMetrics;
use crate::{
    config::{RetentionConfig, SchedulerConfig},
    delivery::DeliveryContext,
};

/// The scheduler's handles: the delivery domain it enqueues into, its
/// settings, and the bell that wakes its task when a schedule changes.
#[derive(Clone)]
pub struct SchedulerContext(Arc<Inner>);

pub struct Inner {
    pub delivery: DeliveryContext,
    pub config: SchedulerConfig,
    pub retention: RetentionConfig,
    /// Where reports get their outcome scores, SROI and VIS;
    /// `None` (no `IMPACT_METRICS_URL`): they are left out.
    pub metrics: Option<ImpactMetrics>,
    /// Rung when a schedule is created or changed in this process, so the
    /// task sleeps until the new next due time rather than its interval.
    pub wake: Notify,
}

impl Deref for SchedulerContext {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl SchedulerContext {
    pub fn new(
        delivery: DeliveryContext,
        config: SchedulerConfig,
        retention: RetentionConfig,
    ) -> Self {
        let metrics = config
            .metrics
            .as_ref()
            .map(|metrics| ImpactMetrics::new(metrics, delivery.connectors.outbound().clone()));
        Self(Arc::new(Inner {
            delivery,
            config,
            retention,
            metrics,
            wake: Notify::new(),
        }))
    }

    pub fn db(&self) -> &sqlx::PgPool {
        &self.delivery.db
    }
}
