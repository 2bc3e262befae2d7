//! The delivery SLA (docs/sla.md): figures per platform and overall over a
//! period, judged against configurable objectives (`objective`), computed
//! from the delivery log (`figures`); the routes' periods (`period`),
//! answers and recommendations (`report`) and delivery timeline
//! (`timeline`).

pub mod figures;
pub mod objective;
pub mod period;
pub mod report;
pub mod timeline;

pub use figures::{Figures, Period, SlaFigures};
pub use objective::{Breach, Metric, SlaStatus, Thresholds};
