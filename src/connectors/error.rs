//! How a delivery attempt failed, classified for the retry decision.

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectorError {
    /// Worth another attempt: the provider or the network had a bad moment.
    #[error("{message}")]
    Transient {
        message: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
        excerpt: Option<String>,
    },
    /// The provider (or our own client-side limit) asked us to slow down.
    #[error("rate limited{}", .retry_after.map(|d| format!(", retry after {}s", d.as_secs_f64())).unwrap_or_default())]
    RateLimited {
        status: Option<u16>,
        retry_after: Option<Duration>,
        excerpt: Option<String>,
    },
    /// Credentials were refused; retrying cannot help until they change.
    #[error("authentication failed: {message}")]
    Auth {
        message: String,
        status: Option<u16>,
        excerpt: Option<String>,
    },
    /// The provider's circuit is open: no call was made, so this is no
    /// attempt; the delivery waits until the circuit may let a call through.
    #[error("not sent: the provider's circuit is open after repeated failures")]
    CircuitOpen { retry_after: Duration },
    /// Our own rate limit for this credential is spent (or the provider said
    /// its window is): no call was made, so this is no attempt; the delivery
    /// goes back to the queue until the window lets it through.
    #[error("not sent: the provider's rate limit is spent; due again in {}s", .retry_after.as_secs())]
    Throttled { retry_after: Duration },
    /// Nothing could be sent, for a reason on our side that another attempt
    /// cannot change (the provider is not configured for the company, the
    /// stored payload does not read); never retried.
    #[error("not sent: {message}")]
    Unsendable { message: String },
    /// The provider rejected the payload; never retried.
    #[error("rejected: {message}{}", details_suffix(.details))]
    Permanent {
        message: String,
        status: Option<u16>,
        /// Field-level messages the provider gave (e.g. SOAP validation errors).
        details: Vec<String>,
        excerpt: Option<String>,
    },
}

fn details_suffix(details: &[String]) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({})", details.join("; "))
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    sqlx::Type,
    strum::Display,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorClass {
    Transient,
    RateLimited,
    Auth,
    Permanent,
}

impl ConnectorError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            status: None,
            retry_after: None,
            excerpt: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
            status: None,
            details: Vec::new(),
            excerpt: None,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Transient { .. } | Self::CircuitOpen { .. } => ErrorClass::Transient,
            Self::Throttled { .. } => ErrorClass::RateLimited,
            Self::RateLimited { .. } => ErrorClass::RateLimited,
            Self::Auth { .. } => ErrorClass::Auth,
            Self::Permanent { .. } | Self::Unsendable { .. } => ErrorClass::Permanent,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self.class(),
            ErrorClass::Transient | ErrorClass::RateLimited
        )
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } | Self::RateLimited { retry_after, .. } => {
                *retry_after
            }
            Self::CircuitOpen { retry_after } | Self::Throttled { retry_after } => {
                Some(*retry_after)
            }
            Self::Auth { .. } | Self::Permanent { .. } | Self::Unsendable { .. } => None,
        }
    }

    /// The HTTP status the provider answered, when it answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Transient { status, .. }
            | Self::RateLimited { status, .. }
            | Self::Auth { status, .. }
            | Self::Permanent { status, .. } => *status,
            Self::CircuitOpen { .. } | Self::Throttled { .. } | Self::Unsendable { .. } => None,
        }
    }

    /// When nothing was sent only because the provider cannot take a call
    /// now (open circuit, spent rate limit): how long until it may. Such a
    /// claim is no attempt; the delivery waits in the queue.
    pub fn not_sent_for(&self) -> Option<Duration> {
        match self {
            Self::CircuitOpen { retry_after } | Self::Throttled { retry_after } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// The start of what the provider answered (bounded like a receipt's),
    /// when it answered at all: kept with the attempt, so an answer the
    /// connector could not use can still be read.
    pub fn excerpt(&self) -> Option<&str> {
        match self {
            Self::Transient { excerpt, .. }
            | Self::RateLimited { excerpt, .. }
            | Self::Auth { excerpt, .. }
            | Self::Permanent { excerpt, .. } => excerpt.as_deref(),
            Self::CircuitOpen { .. } | Self::Throttled { .. } | Self::Unsendable { .. } => None,
        }
    }
}
