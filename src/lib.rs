//! Impact-In: delivers CSR impact data to Benevity, Goodera and Workday.
//!
//! See `docs/architecture.md` for how the modules fit together.

pub mod app;
pub mod auth;
pub mod backoff;
pub mod bus;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connectors;
pub mod console;
pub mod cursor;
pub mod db;
pub mod delivery;
pub mod group_commit;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod metrics;
pub mod provider;
pub mod report;
pub mod sandbox;
pub mod scheduler;
pub mod sla;
pub mod telemetry;
pub mod webhooks;
mod xml;
