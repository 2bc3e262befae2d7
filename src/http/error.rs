//! The one HTTP error type, rendered as RFC 9457 `application/problem+json`.
//!
//! Each cause of failure has its own stable `type` URI, which callers (the
//! cockpit among them) branch on: [`Cause`] is the one table of them, and
//! `docs/api.md` lists it.

use axum::{
    Json,
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{
    auth::AuthError,
    delivery::DeliveryStatus,
    provider::Provider,
    webhooks::{WebhookError, signature::Refusal},
};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Declares [`Cause`] from its table, so that [`Cause::ALL`] cannot miss one.
macro_rules! causes {
    ($($(#[doc = $doc:literal])* $cause:ident => $status:ident, $kind:literal, $title:literal;)+) => {
        /// Why a request failed: one stable problem `type` each.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Cause {
            $($(#[doc = $doc])* $cause,)+
        }

        impl Cause {
            pub const ALL: &[Cause] = &[$(Cause::$cause),+];

            pub fn status(self) -> StatusCode {
                match self {
                    $(Cause::$cause => StatusCode::$status,)+
                }
            }

            /// The problem `type`, a relative URI.
            pub fn kind(self) -> &'static str {
                match self {
                    $(Cause::$cause => $kind,)+
                }
            }

            pub fn title(self) -> &'static str {
                match self {
                    $(Cause::$cause => $title,)+
                }
            }
        }
    };
}

causes! {
    /// Query parameters that do not parse or are out of range.
    InvalidQuery => BAD_REQUEST, "/problems/invalid-query", "Invalid Query Parameters";
    /// A body that is not JSON.
    MalformedJson => BAD_REQUEST, "/problems/malformed-json", "Malformed JSON";
    /// A body that could not be read to its end.
    UnreadableBody => BAD_REQUEST, "/problems/unreadable-body", "Unreadable Body";
    InvalidIdempotencyKey => BAD_REQUEST, "/problems/invalid-idempotency-key", "Invalid Idempotency-Key";
    /// A request head that is not HTTP/1.1 (answered by the listener).
    MalformedRequest => BAD_REQUEST, "/problems/malformed-request", "Malformed Request";
    MissingCredentials => UNAUTHORIZED, "/problems/missing-credentials", "Missing Credentials";
    /// Not `Bearer <token>`, or a token that fails verification.
    InvalidToken => UNAUTHORIZED, "/problems/invalid-token", "Invalid Token";
    MissingRole => FORBIDDEN, "/problems/missing-role", "Missing Role";
    /// A `companyId` outside the caller's companies.
    CompanyNotAllowed => FORBIDDEN, "/problems/company-not-allowed", "Company Not Allowed";
    DeliveryNotFound => NOT_FOUND, "/problems/delivery-not-found", "Delivery Not Found";
    RouteNotFound => NOT_FOUND, "/problems/route-not-found", "Route Not Found";
    MethodNotAllowed => METHOD_NOT_ALLOWED, "/problems/method-not-allowed", "Method Not Allowed";
    /// A `deliveryId` or `Idempotency-Key` already used for another request.
    IdempotencyKeyReused => CONFLICT, "/problems/idempotency-key-reused", "Idempotency Key Reused";
    /// A `deliveryId` that is another delivery's record id.
    DeliveryIdTaken => CONFLICT, "/problems/delivery-id-taken", "Delivery Id Taken";
    /// A replay of a delivery that is not `failed`.
    DeliveryNotFailed => CONFLICT, "/problems/delivery-not-failed", "Delivery Not Failed";
    PayloadTooLarge => PAYLOAD_TOO_LARGE, "/problems/payload-too-large", "Payload Too Large";
    UriTooLong => URI_TOO_LONG, "/problems/uri-too-long", "URI Too Long";
    UnsupportedMediaType => UNSUPPORTED_MEDIA_TYPE, "/problems/unsupported-media-type", "Unsupported Media Type";
    /// A well-formed body (or `since`, `ids`) whose content is wrong.
    Validation => UNPROCESSABLE_ENTITY, "/problems/validation", "Validation Failed";
    RequestHeaderFieldsTooLarge => REQUEST_HEADER_FIELDS_TOO_LARGE, "/problems/request-header-fields-too-large", "Request Header Fields Too Large";
    /// A webhook without the signature headers of its provider's scheme.
    WebhookMissingSignature => UNAUTHORIZED, "/problems/webhook-missing-signature", "Webhook Signature Missing";
    /// A webhook timestamp too far from now (`WEBHOOK_TOLERANCE_SECS`).
    WebhookTimestampOutsideTolerance => UNAUTHORIZED, "/problems/webhook-timestamp-outside-tolerance", "Webhook Timestamp Outside Tolerance";
    /// No webhook signature matches the body with a configured secret.
    WebhookSignatureMismatch => UNAUTHORIZED, "/problems/webhook-signature-mismatch", "Webhook Signature Mismatch";
    /// A verified webhook body that is not an event of the documented shape.
    MalformedWebhookEvent => BAD_REQUEST, "/problems/malformed-webhook-event", "Malformed Webhook Event";
    /// No webhook secret is configured for the provider (or the company).
    WebhookNotConfigured => SERVICE_UNAVAILABLE, "/problems/webhook-not-configured", "Webhook Not Configured";
    IngestNotConfigured => SERVICE_UNAVAILABLE, "/problems/ingest-not-configured", "Ingest Not Configured";
    IngestRunNotFound => NOT_FOUND, "/problems/ingest-run-not-found", "Ingest Run Not Found";
    ScheduleNotFound => NOT_FOUND, "/problems/schedule-not-found", "Schedule Not Found";
    Internal => INTERNAL_SERVER_ERROR, "/problems/internal", "Internal Server Error";
    /// The database is unavailable, the request timed out, or (run-now)
    /// the impact platform's metrics are.
    Unavailable => SERVICE_UNAVAILABLE, "/problems/unavailable", "Service Unavailable";
}

/// One field that failed validation, named as the client sent it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What handlers and extractors fail with: a cause and what `detail` needs.
/// The message of each variant is the problem's `detail`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Query parameters that cannot be parsed: 400, naming each.
    #[error("one or more query parameters are invalid")]
    InvalidQuery(Vec<FieldError>),
    #[error("the query string is not valid")]
    MalformedQuery,
    #[error("malformed JSON at line {line} column {column}")]
    MalformedJson { line: usize, column: usize },
    #[error("the request body could not be read")]
    UnreadableBody,
    #[error("Idempotency-Key must be 1 to {max} visible ASCII characters")]
    InvalidIdempotencyKey { max: usize },
    /// A well-formed body whose content is wrong: 422, naming each field.
    #[error("the request body failed validation")]
    Validation(Vec<FieldError>),
    #[error("unauthorized: missing bearer credentials")]
    MissingCredentials,
    #[error("unauthorized: {0}")]
    InvalidToken(String),
    #[error("forbidden: this action needs the {0} role")]
    MissingRole(&'static str),
    #[error("forbidden: companyId is outside the companies of this token")]
    CompanyNotAllowed,
    /// The id as the caller gave it.
    #[error("no delivery {0}")]
    DeliveryNotFound(String),
    #[error("no route for {method} {path}")]
    RouteNotFound { method: Method, path: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("deliveryId or Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("deliveryId is the id of another delivery")]
    DeliveryIdTaken,
    #[error("only failed deliveries can be replayed; this one is {0}")]
    DeliveryNotFailed(DeliveryStatus),
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error(transparent)]
    WebhookRefused(Refusal),
    #[error("the webhook event is malformed: {0}")]
    MalformedWebhookEvent(String),
    #[error("no webhook secret is configured for {0}; events cannot be verified")]
    WebhookNotConfigured(Provider),
    #[error("ingest is off: PII_HASH_KEY is not set, and the redaction mode needs it")]
    IngestNotConfigured,
    #[error("no ingest run {0}")]
    IngestRunNotFound(String),
    #[error("no schedule {0}")]
    ScheduleNotFound(String),
    /// A run-now whose report's metrics could not be had: nothing fired.
    #[error("{0}; nothing was sent, retry later")]
    ImpactMetricsUnavailable(crate::scheduler::metrics::MetricsError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Missing => Self::MissingCredentials,
            AuthError::Invalid(reason) => Self::InvalidToken(reason),
            AuthError::MissingRole(role) => Self::MissingRole(role),
            AuthError::CompanyNotAllowed => Self::CompanyNotAllowed,
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        match err {
            WebhookError::NotConfigured(provider) => Self::WebhookNotConfigured(provider),
            WebhookError::Refused(refusal) => Self::WebhookRefused(refusal),
            WebhookError::Malformed(malformed) => Self::MalformedWebhookEvent(malformed.0),
            WebhookError::Database(err) => Self::Database(err),
        }
    }
}

impl ApiError {
    pub fn cause(&self) -> Cause {
        match self {
            Self::InvalidQuery(_) | Self::MalformedQuery => Cause::InvalidQuery,
            Self::MalformedJson { .. } => Cause::MalformedJson,
            Self::UnreadableBody => Cause::UnreadableBody,
            Self::InvalidIdempotencyKey { .. } => Cause::InvalidIdempotencyKey,
            Self::Validation(_) => Cause::Validation,
            Self::MissingCredentials => Cause::MissingCredentials,
            Self::InvalidToken(_) => Cause::InvalidToken,
            Self::MissingRole(_) => Cause::MissingRole,
            Self::CompanyNotAllowed => Cause::CompanyNotAllowed,
            Self::DeliveryNotFound(_) => Cause::DeliveryNotFound,
            Self::RouteNotFound { .. } => Cause::RouteNotFound,
            Self::MethodNotAllowed => Cause::MethodNotAllowed,
            Self::IdempotencyKeyReused => Cause::IdempotencyKeyReused,
            Self::DeliveryIdTaken => Cause::DeliveryIdTaken,
            Self::DeliveryNotFailed(_) => Cause::DeliveryNotFailed,
            Self::PayloadTooLarge { .. } => Cause::PayloadTooLarge,
            Self::UnsupportedMediaType => Cause::UnsupportedMediaType,
            Self::WebhookRefused(Refusal::MissingSignature(_)) => Cause::WebhookMissingSignature,
            Self::WebhookRefused(Refusal::TimestampOutsideTolerance(_)) => {
                Cause::WebhookTimestampOutsideTolerance
            }
            Self::WebhookRefused(Refusal::SignatureMismatch(_)) => Cause::WebhookSignatureMismatch,
            Self::MalformedWebhookEvent(_) => Cause::MalformedWebhookEvent,
            Self::WebhookNotConfigured(_) => Cause::WebhookNotConfigured,
            Self::IngestNotConfigured => Cause::IngestNotConfigured,
            Self::IngestRunNotFound(_) => Cause::IngestRunNotFound,
            Self::ScheduleNotFound(_) => Cause::ScheduleNotFound,
            Self::ImpactMetricsUnavailable(_) => Cause::Unavailable,
            Self::Database(err) if is_unavailable(err) => Cause::Unavailable,
            Self::Database(_) | Self::Internal(_) => Cause::Internal,
        }
    }
}

/// Errors that mean "the database is not there right now" rather than a bug.
fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
    )
}

/// The RFC 9457 body. `type` is a relative URI documented in `docs/api.md`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(cause: Cause, detail: impl Into<String>) -> Self {
        Self {
            kind: cause.kind(),
            title: cause.title(),
            status: cause.status().as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// For an error status raised outside our handlers whose cause we
    /// cannot know: RFC 9457's `about:blank`, titled by the status.
    pub fn blank(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let cause = self.cause();
        let detail = match &self {
            Self::Database(err) if cause == Cause::Unavailable => {
                tracing::warn!(error = %err, "database unavailable");
                "the database is unavailable; retry later".to_owned()
            }
            // Internals go to the log, tied to the response by x-request-id.
            Self::Database(err) => {
                tracing::error!(error = ?err, "database error");
                "an internal error occurred".to_owned()
            }
            Self::Internal(err) => {
                tracing::error!(error = ?err, "internal error");
                "an internal error occurred".to_owned()
            }
            Self::ImpactMetricsUnavailable(err) => {
                tracing::warn!(error = %err, "impact metrics unavailable");
                self.to_string()
            }
            other => other.to_string(),
        };
        let errors = match self {
            Self::InvalidQuery(errors) | Self::Validation(errors) => errors,
            _ => Vec::new(),
        };
        let mut response = Problem::new(cause, detail)
            .with_errors(errors)
            .into_response();
        if cause == Cause::Unavailable {
            // Webhook senders and clients alike may come back shortly.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if matches!(cause, Cause::MissingCredentials | Cause::InvalidToken) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="impact-in""#),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Callers branch on `type`: two causes sharing one could not be told
    /// apart, and each is a documented, stable relative URI.
    #[test]
    fn every_cause_has_a_type_of_its_own() {
        let mut seen = HashSet::new();
        for cause in Cause::ALL {
            assert!(
                seen.insert(cause.kind()),
                "{cause:?} shares {}",
                cause.kind()
            );
            assert!(cause.kind().starts_with("/problems/"), "{cause:?}");
            assert!(
                cause.status().is_client_error() || cause.status().is_server_error(),
                "{cause:?}"
            );
        }
    }

    /// docs/api.md is where callers read the table.
    #[test]
    fn the_api_docs_list_every_cause() {
        let docs = include_str!("../../docs/api.md");
        for cause in Cause::ALL {
            let row = format!(
                "| `{}` | {} | {} |",
                cause.kind(),
                cause.status().as_u16(),
                cause.title()
            );
            assert!(docs.contains(&row), "docs/api.md lacks {row}");
        }
    }
}
