//! Delivery schedules.

pub mod report;
pub mod timing;
