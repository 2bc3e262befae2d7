//! Ingest: records pulled from the source systems (docs/ingest.md), read
//! into typed events, redacted, and stored once per source record.

pub mod record;
pub mod stream;
