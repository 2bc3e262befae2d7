//! `/v1/integrations/credentials/{provider}`: a company's credential vault.
//! Values go in and never come out; what is stored lives in
//! `connectors::vault`, and this checks names and values, authorizes and
//! says whether the company's provider is ready to use.

use std::collections::BTreeMap;

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::put,
};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    error::{ApiError, FieldError},
    extract::{Json, QueryParams},
};
use crate::{
    app::AppState,
    auth::Principal,
    connectors::{
        registry::Readiness,
        settings::SettingsError,
        vault::{MAX_VALUE_CHARS, StoredName, VaultError, vault_names},
    },
    ids::CompanyId,
    provider::Provider,
};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/integrations/credentials/{provider}",
        put(store).get(show).delete(remove),
    )
}

/// `PUT` body: every name the company keeps for the provider, by the
/// variable's name without prefixes (`API_KEY` for `BENEVITY_API_KEY`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreCredentials {
    /// Replaces the whole set: a name left out is removed.
    #[schema(value_type = BTreeMap<String, String>, example = json!({"API_KEY": "bk_live_…", "SIGNATURE_SECRET": "whsec_…"}))]
    credentials: BTreeMap<String, String>,
}

/// What is stored (names and when, never values) and whether the provider
/// is usable for the company.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsView {
    provider: Provider,
    company_id: Uuid,
    credentials: Vec<StoredNameView>,
    /// Deliveries to the provider, with these values and the variables.
    delivery: ReadinessView,
    /// Ingest from the provider, with these values and the variables.
    ingest: ReadinessView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoredNameView {
    name: String,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessView {
    ready: bool,
    /// What is missing or malformed (names, never values).
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

impl From<Result<(), SettingsError>> for ReadinessView {
    fn from(result: Result<(), SettingsError>) -> Self {
        Self {
            ready: result.is_ok(),
            problem: result.err().map(|err| err.to_string()),
        }
    }
}

impl From<VaultError> for ApiError {
    fn from(err: VaultError) -> Self {
        match err {
            VaultError::Database(err) => Self::Database(err),
            err @ VaultError::Undecryptable { .. } => Self::Internal(err.into()),
        }
    }
}

fn provider_of(raw: &str, method: axum::http::Method) -> Result<Provider, ApiError> {
    raw.parse().map_err(|_| ApiError::RouteNotFound {
        method,
        path: format!("/v1/integrations/credentials/{raw}"),
    })
}

/// `company_id` (or `companyId`), required even of an ops key: a vault is
/// always one company's.
fn company_of(principal: &Principal, mut params: QueryParams) -> Result<CompanyId, ApiError> {
    let company = params
        .get::<CompanyId>("company_id")
        .or_else(|| params.get::<CompanyId>("companyId"));
    params.finish()?;
    let company = company.ok_or_else(|| {
        ApiError::InvalidQuery(vec![FieldError::new("company_id", "is required")])
    })?;
    principal.scope(Some(company))?;
    Ok(company)
}

/// Each name must be one the vault keeps for `provider`, each value a
/// single line of at most [`MAX_VALUE_CHARS`]. Errors name the field and
/// never quote the value.
fn checked(
    provider: Provider,
    credentials: BTreeMap<String, String>,
) -> Result<BTreeMap<String, SecretString>, ApiError> {
    let allowed = vault_names(provider);
    let mut errors = Vec::new();
    for (name, value) in &credentials {
        let field = format!("credentials.{name}");
        if !allowed.contains(&name.as_str()) {
            errors.push(FieldError::new(
                field,
                format!(
                    "is not a name the vault keeps for {provider}; one of {}",
                    allowed.join(", ")
                ),
            ));
        } else if value.trim().is_empty() {
            errors.push(FieldError::new(
                field,
                "is empty (DELETE removes credentials)",
            ));
        } else if value.chars().count() > MAX_VALUE_CHARS {
            errors.push(FieldError::new(
                field,
                format!("is longer than {MAX_VALUE_CHARS} characters"),
            ));
        } else if value.chars().any(char::is_control) {
            errors.push(FieldError::new(
                field,
                "holds a control character (a line break copied with the value?)",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(credentials
        .into_iter()
        .map(|(name, value)| (name, SecretString::from(value.trim().to_owned())))
        .collect())
}

/// A value the company supplied that the provider's settings refuse
/// (`AUTH=password`, a `TENANT_ID` with a slash) is the request's fault.
fn refused_by_settings(
    provider: Provider,
    readiness: &Readiness,
    supplied: &BTreeMap<String, SecretString>,
) -> Option<ApiError> {
    let prefix = format!("{}_", provider.as_str().to_ascii_uppercase());
    [&readiness.delivery, &readiness.ingest]
        .into_iter()
        .find_map(|result| match result {
            Err(SettingsError::Invalid { var, problem }) => var
                .strip_prefix(&prefix)
                .filter(|name| supplied.contains_key(*name))
                .map(|name| {
                    ApiError::Validation(vec![FieldError::new(
                        format!("credentials.{name}"),
                        problem.clone(),
                    )])
                }),
            _ => None,
        })
}

fn view(
    provider: Provider,
    company: CompanyId,
    names: Vec<StoredName>,
    readiness: Readiness,
) -> CredentialsView {
    CredentialsView {
        provider,
        company_id: company.0,
        credentials: names
            .into_iter()
            .map(|stored| StoredNameView {
                name: stored.name,
                updated_at: stored.updated_at,
            })
            .collect(),
        delivery: readiness.delivery.into(),
        ingest: readiness.ingest.into(),
    }
}

/// `PUT /v1/integrations/credentials/{provider}`: replaces the company's
/// vaulted credentials for the provider, sealed at rest. They apply to the
/// next delivery or ingest run (on other replicas within
/// `CREDENTIALS_REFRESH_SECS`).
#[utoipa::path(
    put,
    path = "/v1/integrations/credentials/{provider}",
    operation_id = "store_credentials",
    tag = "credentials",
    summary = "Store a company's credentials for a provider",
    params(
        ("provider" = Provider, Path, description = "benevity, goodera or workday"),
        ("company_id" = uuid::Uuid, Query, description = "The company (companyId is accepted too)"),
    ),
    request_body = StoreCredentials,
    responses(
        (status = 200, description = "Stored: names, and whether deliveries and ingest can use them", body = CredentialsView),
        (status = 400, description = "Malformed JSON or query", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing MANAGE_INTEGRATIONS, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such provider", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A name the vault does not keep, or a value refused (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn store(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    principal: Principal,
    params: QueryParams,
    Json(body): Json<StoreCredentials>,
) -> Result<axum::Json<CredentialsView>, ApiError> {
    let provider = provider_of(&provider, axum::http::Method::PUT)?;
    principal.require_write()?;
    let company = company_of(&principal, params)?;
    let values = checked(provider, body.credentials)?;
    let registry = &state.delivery.connectors;
    let readiness = registry.readiness(company.0, provider, &values);
    if let Some(refused) = refused_by_settings(provider, &readiness, &values) {
        return Err(refused);
    }
    registry
        .store_credentials(company.0, provider, &values)
        .await?;
    tracing::info!(
        %provider,
        company = %company.0,
        names = ?values.keys().collect::<Vec<_>>(),
        by = %principal.log_label(),
        "vaulted credentials replaced"
    );
    let names = registry.vault().names(company.0, provider).await?;
    Ok(axum::Json(view(provider, company, names, readiness)))
}

/// `GET /v1/integrations/credentials/{provider}`: which names the company
/// has stored and when, never their values, and whether the provider is
/// ready for it.
#[utoipa::path(
    get,
    path = "/v1/integrations/credentials/{provider}",
    operation_id = "show_credentials",
    tag = "credentials",
    summary = "Which credentials a company has stored for a provider",
    params(
        ("provider" = Provider, Path, description = "benevity, goodera or workday"),
        ("company_id" = uuid::Uuid, Query, description = "The company (companyId is accepted too)"),
    ),
    responses(
        (status = 200, description = "Names and dates, never values; readiness", body = CredentialsView),
        (status = 400, description = "A query parameter that does not parse", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing ADMIN_CONSOLE, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such provider", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn show(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    principal: Principal,
    params: QueryParams,
) -> Result<axum::Json<CredentialsView>, ApiError> {
    let provider = provider_of(&provider, axum::http::Method::GET)?;
    principal.require_read()?;
    let company = company_of(&principal, params)?;
    let registry = &state.delivery.connectors;
    let names = registry.vault().names(company.0, provider).await?;
    let readiness = match registry.vault().load(company.0, provider).await {
        Ok(vault) => registry.readiness(company.0, provider, &vault.values),
        // Sealed under a key this process does not have: say so, as the
        // reason the provider cannot be used, rather than fail the listing.
        Err(err @ VaultError::Undecryptable { .. }) => {
            let unusable = || SettingsError::Invalid {
                var: "TOKEN_ENCRYPTION_KEY".into(),
                problem: err.to_string(),
            };
            Readiness {
                delivery: Err(unusable()),
                ingest: Err(unusable()),
            }
        }
        Err(err) => return Err(err.into()),
    };
    Ok(axum::Json(view(provider, company, names, readiness)))
}

/// `DELETE /v1/integrations/credentials/{provider}`: removes the company's
/// vaulted credentials for the provider (its variables, if any, apply
/// again). 204 whether or not any were stored.
#[utoipa::path(
    delete,
    path = "/v1/integrations/credentials/{provider}",
    operation_id = "remove_credentials",
    tag = "credentials",
    summary = "Remove a company's credentials for a provider",
    params(
        ("provider" = Provider, Path, description = "benevity, goodera or workday"),
        ("company_id" = uuid::Uuid, Query, description = "The company (companyId is accepted too)"),
    ),
    responses(
        (status = 204, description = "None stored any more"),
        (status = 400, description = "A query parameter that does not parse", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing MANAGE_INTEGRATIONS, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such provider", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn remove(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    principal: Principal,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let provider = provider_of(&provider, axum::http::Method::DELETE)?;
    principal.require_write()?;
    let company = company_of(&principal, params)?;
    let removed = state
        .delivery
        .connectors
        .remove_credentials(company.0, provider)
        .await?;
    tracing::info!(%provider, company = %company.0, removed, by = %principal.log_label(), "vaulted credentials removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}
