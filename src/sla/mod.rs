//! The delivery SLA (docs/sla.md): figures per platform and overall over a
//! period, judged against configurable objectives (`objective`), computed
//! from the delivery log (`figures`).

pub mod figures;
pub mod objective;

pub use figures::{Figures, Period, SlaFigures};
pub use objective::{Breach, Metric, SlaStatus, Thresholds};
