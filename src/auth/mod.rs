//! Who is calling, and what they may touch.
//!
//! Two kinds of credential arrive as `Authorization: Bearer …`: JWTs issued for
//! the corporate cockpit (scoped to companies and roles) and ops API keys for
//! `curl` (every role, every company). Handlers receive a [`Principal`] and ask
//! it before they read or write.

mod jwt;
mod ops_key;

use std::collections::HashSet;

pub use jwt::{Claims, JwtSigner, JwtVerifier};
pub use ops_key::OpsKeys;

use crate::config::AuthConfig;

/// Roles the cockpit puts in the token. Unknown role strings are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    AdminConsole,
    ManageIntegrations,
}

impl Role {
    pub const ALL: [Role; 2] = [Self::AdminConsole, Self::ManageIntegrations];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == raw)
    }

    /// As the token carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AdminConsole => "ADMIN_CONSOLE",
            Self::ManageIntegrations => "MANAGE_INTEGRATIONS",
        }
    }
}

use crate::ids::CompanyId;

/// A set of companies: those a principal was granted, and the rows a query
/// may see (the grant narrowed by an explicit `companyId` filter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompanyScope {
    All,
    Only(Vec<CompanyId>),
}

impl CompanyScope {
    /// For SQL: `NULL` means every company, otherwise `company_id = ANY($n)`.
    pub fn as_filter(&self) -> Option<&[CompanyId]> {
        match self {
            Self::All => None,
            Self::Only(ids) => Some(ids),
        }
    }

    /// ` AND company_id …` for a query being built. One company is an
    /// equality, so the planner can read a (company_id, …) index in order.
    pub fn push_and(&self, query: &mut sqlx::QueryBuilder<sqlx::Postgres>) {
        match self.as_filter() {
            None => {}
            Some([company]) => {
                query.push(" AND company_id = ").push_bind(*company);
            }
            Some(companies) => {
                query
                    .push(" AND company_id = ANY(")
                    .push_bind(companies.to_vec())
                    .push(")");
            }
        }
    }
}

/// The credential a principal was authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A JWT of the cockpit (or `impact-in token`).
    Token,
    OpsKey,
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    kind: PrincipalKind,
    companies: CompanyScope,
    roles: HashSet<Role>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer credentials")]
    Missing,
    #[error("invalid credentials: {0}")]
    Invalid(String),
    #[error("the {0} role is missing")]
    MissingRole(&'static str),
    #[error("companyId is outside the companies of this token")]
    CompanyNotAllowed,
}

impl Principal {
    pub fn ops(fingerprint: &str) -> Self {
        Self {
            subject: format!("ops-key:{fingerprint}"),
            kind: PrincipalKind::OpsKey,
            companies: CompanyScope::All,
            roles: HashSet::from([Role::AdminConsole, Role::ManageIntegrations]),
        }
    }

    pub fn user(subject: String, companies: Vec<CompanyId>, roles: HashSet<Role>) -> Self {
        Self {
            subject,
            kind: PrincipalKind::Token,
            companies: CompanyScope::Only(companies),
            roles,
        }
    }

    /// Reading deliveries, stats and SLA.
    pub fn require_read(&self) -> Result<(), AuthError> {
        self.require(&[Role::AdminConsole])
    }

    /// Anything that changes state: create, replay, schedules.
    pub fn require_write(&self) -> Result<(), AuthError> {
        self.require(&[Role::AdminConsole, Role::ManageIntegrations])
    }

    fn require(&self, roles: &[Role]) -> Result<(), AuthError> {
        match roles.iter().find(|role| !self.roles.contains(role)) {
            None => Ok(()),
            Some(missing) => Err(AuthError::MissingRole(missing.as_str())),
        }
    }

    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// The companies granted: `All` for an ops key.
    pub fn companies(&self) -> &CompanyScope {
        &self.companies
    }

    /// The roles held, in the order of [`Role::ALL`].
    pub fn roles(&self) -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|role| self.roles.contains(role))
            .collect()
    }

    pub fn can_access(&self, company: CompanyId) -> bool {
        match &self.companies {
            CompanyScope::All => true,
            CompanyScope::Only(ids) => ids.contains(&company),
        }
    }

    /// The companies a query may cover. An explicit filter outside the
    /// caller's companies is refused (403) rather than silently emptied, so
    /// the cockpit learns its request was wrong.
    pub fn scope(&self, requested: Option<CompanyId>) -> Result<CompanyScope, AuthError> {
        match requested {
            Some(company) if self.can_access(company) => Ok(CompanyScope::Only(vec![company])),
            Some(_) => Err(AuthError::CompanyNotAllowed),
            None => Ok(self.companies.clone()),
        }
    }

    /// The company recorded on the request span, for logs.
    pub fn log_label(&self) -> String {
        match &self.companies {
            CompanyScope::All => "*".into(),
            CompanyScope::Only(ids) => ids
                .iter()
                .map(CompanyId::to_string)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// Turns a bearer credential into a [`Principal`].
pub struct Authenticator {
    jwt: JwtVerifier,
    ops_keys: OpsKeys,
}

impl Authenticator {
    pub fn from_config(config: &AuthConfig) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            jwt: JwtVerifier::from_config(config)?,
            ops_keys: OpsKeys::new(&config.ops_api_keys),
        })
    }

    pub fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        if let Some(fingerprint) = self.ops_keys.find(bearer) {
            tracing::info!(ops_key = %fingerprint, "request authenticated with an ops key");
            return Ok(Principal::ops(&fingerprint));
        }
        self.jwt.verify(bearer)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn user(roles: &[Role]) -> (Principal, CompanyId) {
        let company = CompanyId(Uuid::new_v4());
        let principal = Principal::user("u".into(), vec![company], roles.iter().copied().collect());
        (principal, company)
    }

    #[test]
    fn reading_needs_admin_console() {
        assert!(user(&[Role::AdminConsole]).0.require_read().is_ok());
        assert!(user(&[Role::ManageIntegrations]).0.require_read().is_err());
    }

    #[test]
    fn writing_needs_both_roles() {
        assert!(user(&[Role::AdminConsole]).0.require_write().is_err());
        assert!(user(&[Role::ManageIntegrations]).0.require_write().is_err());
        let both = user(&[Role::AdminConsole, Role::ManageIntegrations]).0;
        assert!(both.require_write().is_ok());
    }

    #[test]
    fn scope_is_limited_to_the_token_companies() {
        let (principal, company) = user(&[Role::AdminConsole]);
        assert_eq!(principal.scope(None), Ok(CompanyScope::Only(vec![company])));
        assert_eq!(
            principal.scope(Some(company)),
            Ok(CompanyScope::Only(vec![company]))
        );
        assert!(matches!(
            principal.scope(Some(CompanyId(Uuid::new_v4()))),
            Err(AuthError::CompanyNotAllowed)
        ));
    }

    #[test]
    fn ops_principal_sees_every_company_with_every_role() {
        let ops = Principal::ops("abcd");
        assert_eq!(ops.scope(None), Ok(CompanyScope::All));
        assert!(ops.can_access(CompanyId(Uuid::new_v4())));
        assert!(ops.require_write().is_ok());
        assert_eq!(ops.kind(), PrincipalKind::OpsKey);
        assert_eq!(ops.roles(), Role::ALL);
    }

    #[test]
    fn roles_read_back_as_the_token_spells_them() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin_console"), None);
        let (principal, _) = user(&[Role::ManageIntegrations]);
        assert_eq!(principal.kind(), PrincipalKind::Token);
        assert_eq!(principal.roles(), [Role::ManageIntegrations]);
    }
}
