//! Extractors whose rejections are problem+json: a JSON body, query
//! parameters parsed one by one, and the authenticated caller.

use std::{collections::HashMap, str::FromStr};

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Query, Request},
    http::{StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldError};
use crate::{
    app::AppState,
    auth::{AuthError, Principal},
};

/// A JSON body. Wrong content type → 415, over the limit → 413, malformed
/// JSON → 400 with its position, wrong shape → 422 naming the field.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: state.config.http.body_limit_bytes,
                }
            } else {
                ApiError::UnreadableBody
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(mime) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Syntax first, then shape: a truncated or malformed document is a 400 even
/// when the part read so far would also miss a field.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|err| malformed(&err))?;
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = strip_position(err.inner());
        ApiError::Validation(vec![FieldError::new(field_name(&path, &message), message)])
    })
}

fn malformed(err: &serde_json::Error) -> ApiError {
    ApiError::MalformedJson {
        line: err.line(),
        column: err.column(),
    }
}

/// The dotted path of the failing field. serde reports a missing field at its
/// parent's path, naming the field only in the message.
fn field_name(path: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (".", Some(field)) => field.into(),
        (parent, Some(field)) => format!("{parent}.{field}"),
        (".", None) => "body".into(),
        (path, None) => path.into(),
    }
}

/// serde_json appends " at line L column C"; the field name says more.
fn strip_position(err: &serde_json::Error) -> String {
    let message = err.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    }
}

/// Query parameters, each parsed on its own so an error names it.
pub struct QueryParams {
    raw: HashMap<String, String>,
    errors: Vec<FieldError>,
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(raw) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::MalformedQuery)?;
        Ok(Self {
            raw,
            errors: Vec::new(),
        })
    }
}

impl QueryParams {
    /// The parameter parsed with `parse`, or `None` when absent; a failure
    /// (an empty value among them) is recorded under its name and reported
    /// by [`QueryParams::finish`].
    pub fn get_with<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let raw = self.raw.get(name)?.trim();
        // `name=` is not the parameter left out: no parameter here has an
        // empty value, so it is refused like any value that does not parse.
        if raw.is_empty() {
            self.errors.push(FieldError::new(name, "must not be empty"));
            return None;
        }
        match parse(raw) {
            Ok(value) => Some(value),
            Err(err) => {
                self.errors.push(FieldError::new(name, err.to_string()));
                None
            }
        }
    }

    pub fn get<T>(&mut self, name: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.get_with(name, str::parse)
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidQuery(self.errors))
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| AuthError::Invalid("expected 'Authorization: Bearer <token>'".into()))?;
        let principal = state.auth.authenticate(token)?;
        let span = tracing::Span::current();
        span.record("subject", principal.subject.as_str());
        span.record("company", principal.log_label());
        Ok(principal)
    }
}
