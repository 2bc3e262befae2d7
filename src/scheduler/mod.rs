//! Delivery schedules, and the daily maintenance that runs on the same
//! scheduler.

pub mod retention;
pub mod timing;
