//! Delivery schedules.

pub mod timing;
