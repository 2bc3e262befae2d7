//! The three token endpoints, RFC 6749: client credentials (§4.4) for every
//! provider, and the refresh-token grant (§6) for Workday, whose API clients
//! are registered with a refresh token.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{
        HeaderMap, HeaderValue, StatusCode,
        header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE},
    },
    response::{IntoResponse, Response},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::json;

use super::{
    api::{self, error},
    config::Client,
    state::{SandboxState, TOKEN_LIFETIME},
};
use crate::provider::Provider;

const FORM: &str = "application/x-www-form-urlencoded";

pub(crate) fn routes() -> Router<Arc<SandboxState>> {
    Router::new()
        .route("/oauth2/token", post(benevity))
        .route("/oauth/token", post(goodera))
        .route("/ccx/oauth2/{tenant}/token", post(workday))
}

async fn benevity(
    State(state): State<Arc<SandboxState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    api::intercept_token(&state, Provider::Benevity)
        .unwrap_or_else(|| token(&state, Provider::Benevity, None, &headers, &body))
}

async fn goodera(
    State(state): State<Arc<SandboxState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    api::intercept_token(&state, Provider::Goodera)
        .unwrap_or_else(|| token(&state, Provider::Goodera, None, &headers, &body))
}

async fn workday(
    State(state): State<Arc<SandboxState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(injected) = api::intercept_token(&state, Provider::Workday) {
        return injected;
    }
    if !state.config.workday_tenant_known(&tenant) {
        return error(StatusCode::NOT_FOUND, "not_found", "unknown Workday tenant");
    }
    token(&state, Provider::Workday, Some(&tenant), &headers, &body)
}

fn token(
    state: &SandboxState,
    provider: Provider,
    tenant: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    match issue(state, provider, tenant, headers, body) {
        Ok(access_token) => (
            // §5.1: token responses must not be cached.
            [
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (PRAGMA, HeaderValue::from_static("no-cache")),
            ],
            Json(json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME.as_secs(),
            })),
        )
            .into_response(),
        Err(response) => response,
    }
}

fn issue(
    state: &SandboxState,
    provider: Provider,
    tenant: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Response> {
    if !api::has_media_type(headers, FORM) {
        return Err(invalid_request(format!("Content-Type must be {FORM}")));
    }
    let form = parse_form(body)?;
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| invalid_request("grant_type is required"))?;
    let client = authenticate_client(state, provider, headers, &form)?;
    match grant_type.as_str() {
        "client_credentials" => {}
        "refresh_token" if provider == Provider::Workday => {
            let refresh_token = form
                .get("refresh_token")
                .ok_or_else(|| invalid_request("refresh_token is required"))?;
            if !client.refresh_token_matches(refresh_token) {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the refresh token is invalid or was not issued to this client",
                ));
            }
        }
        other => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {other} is not supported by {provider}"),
            ));
        }
    }
    tracing::debug!(%provider, client_id = client.id(), grant_type, "sandbox issued a token");
    Ok(state.issue_token(provider, client.id(), tenant))
}

/// §3.2: parameters must not be repeated.
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, Response> {
    let mut form = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if form.insert(name.to_string(), value.into_owned()).is_some() {
            return Err(invalid_request(format!("{name} is repeated")));
        }
    }
    Ok(form)
}

/// §2.3.1: HTTP Basic, or `client_id`/`client_secret` in the form; not both.
fn authenticate_client<'s>(
    state: &'s SandboxState,
    provider: Provider,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<&'s Client, Response> {
    let basic = api::header(headers, AUTHORIZATION.as_str())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, credentials)| credentials.trim());
    let (id, secret) = match basic {
        Some(encoded) => {
            if form.contains_key("client_secret") {
                return Err(invalid_request(
                    "use one client authentication method: Basic or client_secret, not both",
                ));
            }
            let (id, secret) = decode_basic(encoded).ok_or_else(|| {
                invalid_client(provider, true, "the Basic credentials are malformed")
            })?;
            if form.get("client_id").is_some_and(|form_id| *form_id != id) {
                return Err(invalid_request(
                    "client_id differs from the Basic credentials",
                ));
            }
            (id, secret)
        }
        None => match (form.get("client_id"), form.get("client_secret")) {
            (Some(id), Some(secret)) => (id.clone(), secret.clone()),
            _ => {
                return Err(invalid_client(
                    provider,
                    false,
                    "client authentication is required (HTTP Basic)",
                ));
            }
        },
    };
    state
        .config
        .client(provider, &id)
        .filter(|client| client.secret_matches(&secret))
        .ok_or_else(|| {
            invalid_client(
                provider,
                basic.is_some(),
                "unknown client or wrong client secret",
            )
        })
}

/// `base64(urlencode(id) ":" urlencode(secret))`.
fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// application/x-www-form-urlencoded decoding of one value.
fn form_decode(raw: &str) -> Option<String> {
    let mut decoded = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(byte) = bytes.next() {
        match byte {
            b'+' => decoded.push(b' '),
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                decoded.push(hex::decode(hex).ok()?[0]);
            }
            other => decoded.push(other),
        }
    }
    String::from_utf8(decoded).ok()
}

fn invalid_request(description: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// §5.2: 401, with a `WWW-Authenticate` challenge when the client tried Basic.
fn invalid_client(provider: Provider, via_basic: bool, description: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    if via_basic {
        let challenge = format!(r#"Basic realm="{provider}""#);
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let encoded = STANDARD.encode("my%20client:s%3Acret+x");
        assert_eq!(
            decode_basic(&encoded),
            Some(("my client".into(), "s:cret x".into()))
        );
        assert_eq!(decode_basic("not base64!"), None);
        assert_eq!(decode_basic(&STANDARD.encode("no-colon")), None);
        assert_eq!(decode_basic(&STANDARD.encode("a:%zz")), None);
    }
}
