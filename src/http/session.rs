//! `GET /v1/impact-in/session`: who the caller is, for the delivery
//! console's header (and any client that wants to show it): the subject,
//! the kind of credential, its companies and roles, and whether it may
//! replay.

use axum::{Json, Router, routing::get};
use serde::Serialize;

use super::error::ApiError;
use crate::{
    app::AppState,
    auth::{CompanyScope, Principal, PrincipalKind, Role},
    ids::CompanyId,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/impact-in/session", get(show))
}

/// The caller, as its credential says.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// The token's `sub`; for an ops key, `ops-key:` and the key's
    /// fingerprint (never the key).
    subject: String,
    kind: CredentialKind,
    /// The companies the caller reaches; null: every company (an ops key).
    #[schema(required = true)]
    companies: Option<Vec<CompanyId>>,
    /// The roles this service checks that the caller holds, in this order.
    roles: Vec<RoleName>,
    /// Whether the caller may create and replay deliveries (it holds both
    /// roles).
    can_replay: bool,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A JWT (the cockpit's, or `impact-in token`'s).
    Token,
    /// An ops API key from `OPS_API_KEYS`.
    OpsKey,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoleName {
    AdminConsole,
    ManageIntegrations,
}

impl From<Role> for RoleName {
    fn from(role: Role) -> Self {
        match role {
            Role::AdminConsole => Self::AdminConsole,
            Role::ManageIntegrations => Self::ManageIntegrations,
        }
    }
}

impl From<&Principal> for SessionView {
    fn from(principal: &Principal) -> Self {
        Self {
            subject: principal.subject.clone(),
            kind: match principal.kind() {
                PrincipalKind::Token => CredentialKind::Token,
                PrincipalKind::OpsKey => CredentialKind::OpsKey,
            },
            companies: match principal.companies() {
                CompanyScope::All => None,
                // Sorted: the token's order is not kept by the scope.
                CompanyScope::Only(ids) => {
                    let mut ids = ids.clone();
                    ids.sort_unstable();
                    Some(ids)
                }
            },
            roles: principal.roles().into_iter().map(RoleName::from).collect(),
            can_replay: principal.require_write().is_ok(),
        }
    }
}

/// Needs `ADMIN_CONSOLE`, as every read.
#[utoipa::path(
    get,
    path = "/v1/impact-in/session",
    operation_id = "show_session",
    tag = "session",
    summary = "Who the caller is: subject, kind of credential, companies, roles, whether it may replay",
    responses(
        (status = 200, description = "The caller", body = SessionView),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing ADMIN_CONSOLE", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn show(principal: Principal) -> Result<Json<SessionView>, ApiError> {
    principal.require_read()?;
    Ok(Json(SessionView::from(&principal)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use uuid::Uuid;

    use super::*;

    #[test]
    fn an_ops_key_reaches_every_company_with_every_role() {
        let view = serde_json::to_value(SessionView::from(&Principal::ops("abcd"))).unwrap();
        assert_eq!(
            view,
            serde_json::json!({
                "subject": "ops-key:abcd", "kind": "ops_key", "companies": null,
                "roles": ["ADMIN_CONSOLE", "MANAGE_INTEGRATIONS"], "canReplay": true,
            })
        );
    }

    #[test]
    fn a_reader_may_not_replay() {
        let company = CompanyId(Uuid::new_v4());
        let principal = Principal::user(
            "jane".into(),
            vec![company],
            HashSet::from([Role::AdminConsole]),
        );
        let view = serde_json::to_value(SessionView::from(&principal)).unwrap();
        assert_eq!(
            view,
            serde_json::json!({
                "subject": "jane", "kind": "token", "companies": [company],
                "roles": ["ADMIN_CONSOLE"], "canReplay": false,
            })
        );
    }
}
