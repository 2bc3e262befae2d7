//! Intake of impact data from the providers (volunteers, donations, the
//! employee directory, enrollments). `redact` removes personal data from a
//! record before it is stored or logged.

pub mod redact;
