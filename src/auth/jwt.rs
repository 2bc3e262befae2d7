//! Cockpit JWTs: verification for requests, signing for `impact-in token`.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::CompanyId;

use super::{AuthError, Principal, Role};
use crate::config::{AuthConfig, ConfigError, JwtKeySource};

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

/// The claims the cockpit sends (camelCase, as its issuer writes them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<CompanyId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_ids: Option<Vec<CompanyId>>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// A string or an array of strings (RFC 7519 §4.1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
}

impl Claims {
    fn into_principal(self) -> Principal {
        let mut companies: Vec<CompanyId> = self.company_ids.unwrap_or_default();
        companies.extend(self.company_id);
        companies.sort_unstable();
        companies.dedup();
        let roles: HashSet<Role> = self.roles.iter().filter_map(|r| Role::parse(r)).collect();
        Principal::user(self.sub, companies, roles)
    }
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    pub fn from_config(config: &AuthConfig) -> Result<Self, ConfigError> {
        let (key, algorithms) = match &config.jwt_key {
            JwtKeySource::Secret(secret) => (
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                vec![Algorithm::HS256],
            ),
            JwtKeySource::PublicKeyFile(path) => {
                let pem = std::fs::read(path).map_err(|err| ConfigError {
                    var: "JWT_PUBLIC_KEY_FILE".into(),
                    problem: format!("cannot read {}: {err}", path.display()),
                })?;
                if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                    (key, vec![Algorithm::RS256])
                } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                    (key, vec![Algorithm::ES256])
                } else {
                    return Err(ConfigError {
                        var: "JWT_PUBLIC_KEY_FILE".into(),
                        problem: format!(
                            "{} is not an RSA or EC public key in PEM",
                            path.display()
                        ),
                    });
                }
            }
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        match &config.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Self { key, validation })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims.into_principal())
            .map_err(|err| {
                AuthError::Invalid(
                    match err.kind() {
                        ErrorKind::ExpiredSignature => "token expired",
                        ErrorKind::InvalidSignature => "bad signature",
                        ErrorKind::InvalidIssuer => "wrong issuer",
                        ErrorKind::InvalidAudience => "wrong audience",
                        ErrorKind::InvalidAlgorithm => "algorithm not accepted",
                        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
                        ErrorKind::ImmatureSignature => "token not yet valid",
                        _ => "malformed token",
                    }
                    .into(),
                )
            })
    }
}

/// Signs development tokens with `JWT_SECRET` (HS256).
pub struct JwtSigner {
    key: EncodingKey,
    issuer: Option<String>,
    audience: Option<String>,
}

impl JwtSigner {
    pub fn from_config(config: &AuthConfig) -> Result<Self, ConfigError> {
        match &config.jwt_key {
            JwtKeySource::Secret(secret) => Ok(Self {
                key: EncodingKey::from_secret(secret.expose_secret().as_bytes()),
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
            }),
            JwtKeySource::PublicKeyFile(_) => Err(ConfigError {
                var: "JWT_SECRET".into(),
                problem: "tokens can only be signed with JWT_SECRET; with JWT_PUBLIC_KEY_FILE \
                          the issuer holds the private key"
                    .into(),
            }),
        }
    }

    /// A token for `companies` with `roles`, valid for `ttl` from `now`.
    pub fn sign(
        &self,
        subject: &str,
        companies: &[Uuid],
        roles: &[String],
        now: u64,
        ttl_secs: u64,
    ) -> String {
        let (company_id, company_ids) = match companies {
            [one] => (Some(CompanyId(*one)), None),
            many => (None, Some(many.iter().copied().map(CompanyId).collect())),
        };
        let claims = Claims {
            sub: subject.into(),
            company_id,
            company_ids,
            roles: roles.to_vec(),
            exp: now + ttl_secs,
            iat: Some(now),
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(serde_json::Value::String),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .expect("HS256 signing with an in-memory secret cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn config(issuer: Option<&str>, audience: Option<&str>) -> AuthConfig {
        AuthConfig {
            jwt_key: JwtKeySource::Secret(SecretString::from("k".repeat(32))),
            issuer: issuer.map(String::from),
            audience: audience.map(String::from),
            ops_api_keys: vec![],
        }
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn a_signed_token_verifies_into_its_companies_and_roles() {
        let cfg = config(Some("cockpit"), Some("impact-in"));
        let company = Uuid::new_v4();
        let token = JwtSigner::from_config(&cfg).unwrap().sign(
            "alice",
            &[company],
            &["ADMIN_CONSOLE".into(), "SOMETHING_ELSE".into()],
            now(),
            60,
        );
        let principal = JwtVerifier::from_config(&cfg)
            .unwrap()
            .verify(&token)
            .unwrap();
        assert_eq!(principal.subject, "alice");
        assert!(principal.can_access(CompanyId(company)));
        assert!(principal.require_read().is_ok());
        assert!(principal.require_write().is_err());
    }

    #[test]
    fn expiry_allows_thirty_seconds_of_skew_and_no_more() {
        let cfg = config(None, None);
        let signer = JwtSigner::from_config(&cfg).unwrap();
        let verifier = JwtVerifier::from_config(&cfg).unwrap();
        let company = [Uuid::new_v4()];
        let just_expired = signer.sign("a", &company, &[], now() - 20, 0);
        assert!(verifier.verify(&just_expired).is_ok());
        let long_expired = signer.sign("a", &company, &[], now() - 120, 60);
        assert_eq!(
            verifier.verify(&long_expired).unwrap_err(),
            AuthError::Invalid("token expired".into())
        );
    }

    #[test]
    fn configured_issuer_and_audience_are_required() {
        let signer = JwtSigner::from_config(&config(None, None)).unwrap();
        let token = signer.sign("a", &[Uuid::new_v4()], &[], now(), 60);
        let strict = JwtVerifier::from_config(&config(Some("cockpit"), None)).unwrap();
        assert!(strict.verify(&token).is_err());
        let strict = JwtVerifier::from_config(&config(None, Some("impact-in"))).unwrap();
        assert!(strict.verify(&token).is_err());
    }
}
