//! The delivery SLA (docs/sla.md): figures per platform and overall over a
//! period, judged against configurable objectives (`objective`), computed
//! from the delivery log (`figures`); the routes' periods (`period`),
//! answers and recommendations (`report`), delivery timeline
//! (`timeline`) and figures per day (`daily`, the console's charts); and
//! the monitor that alerts on them (`monitor` evaluates, `notify` tells
//! PagerDuty and Slack, `task` loops).

pub mod daily;
pub mod figures;
pub mod monitor;
pub mod notify;
pub mod objective;
pub mod period;
pub mod report;
pub mod task;
pub mod timeline;

pub use figures::{Figures, Period, SlaFigures};
pub use objective::{Breach, Metric, SlaStatus, Thresholds};

use sqlx::PgPool;

use crate::{clock::SharedClock, config::SlaConfig};

/// What the monitor uses: not the application's state.
#[derive(Clone)]
pub struct MonitorContext {
    pub db: PgPool,
    pub config: SlaConfig,
    pub clock: SharedClock,
    /// Its own client: alert receivers are not providers (no circuit, no
    /// shared rate limits), and a Slack URL must never reach a log.
    pub http: reqwest::Client,
}

impl MonitorContext {
    pub fn new(
        db: PgPool,
        config: SlaConfig,
        clock: SharedClock,
        timeout: std::time::Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("impact-in/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            db,
            config,
            clock,
            http,
        })
    }
}
