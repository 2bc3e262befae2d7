//! The one HTTP error type, rendered as RFC 9457 `application/problem+json`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::auth::AuthError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One field that failed validation, named as the client sent it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// Query parameters that cannot be parsed: 400, naming each.
    #[error("invalid query parameters")]
    InvalidQuery(Vec<FieldError>),
    /// A well-formed body whose content is wrong: 422, naming each field.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Missing => Self::Unauthorized("missing bearer credentials".into()),
            AuthError::Invalid(reason) => Self::Unauthorized(reason),
            AuthError::Forbidden(reason) => Self::Forbidden(reason),
        }
    }
}

/// The RFC 9457 body. `type` is a relative URI documented in `docs/api.md`.
#[derive(Debug, Serialize)]
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
    /// The generic problem for a status, used for errors raised outside our
    /// handlers (timeouts, body limits) and for the plain variants below.
    pub fn for_status(status: StatusCode, detail: impl Into<String>) -> Self {
        let (kind, title) = match status {
            StatusCode::BAD_REQUEST => ("/problems/bad-request", "Bad Request"),
            StatusCode::UNAUTHORIZED => ("/problems/unauthorized", "Unauthorized"),
            StatusCode::FORBIDDEN => ("/problems/forbidden", "Forbidden"),
            StatusCode::NOT_FOUND => ("/problems/not-found", "Not Found"),
            StatusCode::METHOD_NOT_ALLOWED => {
                ("/problems/method-not-allowed", "Method Not Allowed")
            }
            StatusCode::CONFLICT => ("/problems/conflict", "Conflict"),
            StatusCode::PAYLOAD_TOO_LARGE => ("/problems/payload-too-large", "Payload Too Large"),
            StatusCode::URI_TOO_LONG => ("/problems/uri-too-long", "URI Too Long"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ("/problems/unsupported-media-type", "Unsupported Media Type")
            }
            StatusCode::UNPROCESSABLE_ENTITY => ("/problems/validation", "Validation Failed"),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
                "/problems/request-header-fields-too-large",
                "Request Header Fields Too Large",
            ),
            StatusCode::SERVICE_UNAVAILABLE => ("/problems/unavailable", "Service Unavailable"),
            s if s.is_server_error() => ("/problems/internal", "Internal Server Error"),
            _ => ("about:blank", status.canonical_reason().unwrap_or("Error")),
        };
        Self {
            kind,
            title,
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

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Database(err) if is_unavailable(err) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let problem = match self {
            Self::InvalidQuery(errors) => {
                Problem::for_status(status, "one or more query parameters are invalid")
                    .with_errors(errors)
            }
            Self::Validation(errors) => {
                Problem::for_status(status, "the request body failed validation")
                    .with_errors(errors)
            }
            Self::Database(err) if status == StatusCode::SERVICE_UNAVAILABLE => {
                tracing::warn!(error = %err, "database unavailable");
                Problem::for_status(status, "the database is unavailable; retry later")
            }
            // Internals go to the log, tied to the response by x-request-id.
            Self::Database(err) => {
                tracing::error!(error = ?err, "database error");
                Problem::for_status(status, "an internal error occurred")
            }
            Self::Internal(err) => {
                tracing::error!(error = ?err, "internal error");
                Problem::for_status(status, "an internal error occurred")
            }
            other => Problem::for_status(status, other.to_string()),
        };
        let mut response = problem.into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="impact-in""#),
            );
        }
        response
    }
}
