//! Per-company export schedules: when each fires (`timing`), the rows
//! (`schedule`), what a firing sends (`report`, `fire`) and the in-process
//! task that fires them (`task`), which also runs the daily retention job
//! (`retention`). Docs: docs/scheduling.md.

pub mod fire;
pub mod report;
pub mod retention;
pub mod schedule;
pub mod task;
pub mod timing;

use std::{ops::Deref, sync::Arc};

use tokio::sync::Notify;

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
        Self(Arc::new(Inner {
            delivery,
            config,
            retention,
            wake: Notify::new(),
        }))
    }

    pub fn db(&self) -> &sqlx::PgPool {
        &self.delivery.db
    }
}
