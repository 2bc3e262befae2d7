//! The integration tests, as one binary (compiled and linked once): the
//! real router, workers and binary over real Postgres (a fresh database per
//! test), Redis and the provider sandbox over real HTTP. One module per
//! area; `common` holds the harness they share.

mod common;

mod auth;
mod binary;
mod bus;
mod bus_out;
mod cache;
mod connectors;
mod console;
mod credentials;
mod deliveries;
mod health;
mod http_errors;
mod ingest;
mod pipeline;
mod retention;
mod sandbox;
mod sandbox_alerts;
mod scheduled_report;
mod schedules;
mod sla;
mod sla_monitor;
mod sla_rollup;
mod stats;
mod traces;
mod webhooks;
