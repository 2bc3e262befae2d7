//! The ingest sources the service pulls from (`docs/connectors.md`, "Ingest
//! sources (pull)"): seven systems, nine streams, each serving generated
//! records in ascending `(updatedAt, id)` order with the contract's paging.
//!
//! Nothing is stored per record. Record `i` of a stream is generated from
//! `(stream, i, revision)` when a page covers it (`generate.rs`), and where
//! a record sits in the order is arithmetic on `i`, plus a small list of
//! the records changed since (`dataset.rs`): a benchmark pulls millions of
//! records while the sandbox's memory stays small.

mod dataset;
mod generate;
mod routes;

use serde::{Deserialize, Serialize};

pub(crate) use dataset::{Dataset, DatasetError, Page, Position, Window};
pub use generate::{pii_of, record};
pub(crate) use routes::routes;

/// Generated events happened in the 90 days before 2026-01-01 unless
/// configured otherwise (`SandboxConfig::with_events_until`).
pub const EVENTS_UNTIL_MS: i64 = dataset::T0_MS;

/// Records per stream unless configured otherwise.
pub const DEFAULT_RECORDS: u64 = 250;
/// Records per stream at most: ids carry the index in 8 digits, so that
/// they sort as the index does.
pub const MAX_RECORDS: u64 = 100_000_000;

/// The nine streams, by their names in the contract. Ordered as declared,
/// so the counters list them in a stable order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::VariantArray,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Stream {
    BenevityVolunteers,
    BenevityDonations,
    GooderaVolunteers,
    GooderaDonations,
    WorkdayDirectory,
    KintellEnrollments,
    UpskillingEnrollments,
    BuddyData,
    MentorshipPlacements,
}
