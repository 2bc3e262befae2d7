//! Provider credentials: `BENEVITY_*`, `GOODERA_*` and `WORKDAY_*` variables,
//! read once at start. A company's own credentials override the global ones
//! variable by variable, as `{PROVIDER}_{TENANT}_{NAME}` where `{TENANT}` is
//! the company id in upper case with `_` for `-` (seed 002's pattern), and
//! a company's vaulted values (`vault.rs`) override both.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
};

use secrecy::{ExposeSecret, SecretString};
use url::Url;
use uuid::Uuid;

use crate::{ingest::stream::System, provider::Provider};

/// The variables of the internal services ingest pulls from (seed 002's
/// names); they have no provider prefix.
const INTERNAL_VARS: [&str; 5] = [
    "INTERNAL_API_KEY",
    "KINTELL_CONNECTOR_URL",
    "UPSKILLING_CONNECTOR_URL",
    "BUDDY_CONNECTOR_URL",
    "MENTORSHIP_SERVICE_URL",
];

/// Every provider variable from the environment, values kept secret.
#[derive(Clone, Default)]
pub struct ProviderSettings {
    vars: HashMap<String, SecretString>,
}

impl fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("ProviderSettings")
            .field("variables", &names)
            .finish()
    }
}

/// Why a provider cannot be used for a company.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{provider} is not configured: {missing} is not set")]
    NotConfigured { provider: Provider, missing: String },
    #[error("{var}: {problem}")]
    Invalid { var: String, problem: String },
    /// An ingest source (internal services have no provider).
    #[error("{system} is not configured: {missing} is not set")]
    SourceNotConfigured { system: System, missing: String },
}

#[derive(Debug, Clone)]
pub struct OAuthCredentials {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    /// When set, the refresh-token grant is used instead of client credentials.
    pub refresh_token: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct Signing {
    pub secret: SecretString,
    /// Sign `{timestamp}.{body}` and send `X-Benevity-Timestamp`.
    pub timestamped: bool,
}

#[derive(Debug, Clone)]
pub enum BenevityAuth {
    ApiKey(SecretString),
    OAuth2(OAuthCredentials),
}

#[derive(Debug, Clone)]
pub struct BenevityConfig {
    pub api_url: Url,
    pub auth: BenevityAuth,
    pub signing: Option<Signing>,
}

#[derive(Debug, Clone)]
pub enum GooderaAuth {
    ApiKey(SecretString),
    OAuth2(OAuthCredentials),
}

#[derive(Debug, Clone)]
pub struct GooderaConfig {
    pub api_url: Url,
    pub auth: GooderaAuth,
    pub requests_per_minute: std::num::NonZeroU32,
}

#[derive(Debug, Clone)]
pub enum WorkdayProtocol {
    Rest(OAuthCredentials),
    Soap {
        username: String,
        password: SecretString,
    },
}

#[derive(Debug, Clone)]
pub struct WorkdayConfig {
    pub api_url: Url,
    pub tenant: String,
    pub protocol: WorkdayProtocol,
}

#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Benevity(BenevityConfig),
    Goodera(GooderaConfig),
    Workday(WorkdayConfig),
}

impl ProviderConfig {
    /// How it authenticates, for start-up logs (no secrets).
    pub fn describe(&self) -> String {
        match self {
            Self::Benevity(c) => match c.auth {
                BenevityAuth::ApiKey(_) => format!("{} (api_key, signed)", c.api_url),
                BenevityAuth::OAuth2(_) => format!("{} (oauth2)", c.api_url),
            },
            Self::Goodera(c) => match c.auth {
                GooderaAuth::ApiKey(_) => format!("{} (api_key)", c.api_url),
                GooderaAuth::OAuth2(_) => format!("{} (oauth2)", c.api_url),
            },
            Self::Workday(c) => match c.protocol {
                WorkdayProtocol::Rest(_) => format!("{} (rest, tenant {})", c.api_url, c.tenant),
                WorkdayProtocol::Soap { .. } => {
                    format!("{} (soap, tenant {})", c.api_url, c.tenant)
                }
            },
        }
    }
}

impl ProviderSettings {
    /// Keeps the provider variables among `vars`; blank values count as unset.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let prefixes = Provider::ALL.map(|p| format!("{}_", p.as_str().to_ascii_uppercase()));
        Self {
            vars: vars
                .into_iter()
                .filter(|(name, value)| {
                    (prefixes.iter().any(|p| name.starts_with(p))
                        || INTERNAL_VARS.contains(&name.as_str()))
                        && !value.trim().is_empty()
                })
                .map(|(name, value)| (name, SecretString::from(value.trim().to_owned())))
                .collect(),
        }
    }

    /// The configuration of `provider` for `company` (its own variables
    /// first, then the global ones); `None` for the global configuration.
    pub fn resolve(
        &self,
        provider: Provider,
        company: Option<Uuid>,
    ) -> Result<ProviderConfig, SettingsError> {
        self.resolve_with(provider, company, &BTreeMap::new())
    }

    /// As [`ProviderSettings::resolve`], with the company's vaulted values
    /// (by name: `API_KEY`) read before any variable.
    pub fn resolve_with(
        &self,
        provider: Provider,
        company: Option<Uuid>,
        vault: &BTreeMap<String, SecretString>,
    ) -> Result<ProviderConfig, SettingsError> {
        let vars = Vars {
            settings: self,
            provider,
            tenant: company.map(tenant_key),
            vault,
        };
        match provider {
            Provider::Benevity => vars.benevity().map(ProviderConfig::Benevity),
            Provider::Goodera => vars.goodera().map(ProviderConfig::Goodera),
            Provider::Workday => vars.workday().map(ProviderConfig::Workday),
        }
    }
}

/// Where and how ingest reads one source system (docs/connectors.md,
/// "Ingest sources").
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// OAuth2 client credentials (`BENEVITY_CLIENT_ID`, `_SECRET`,
    /// `_TOKEN_URL`) whatever `BENEVITY_AUTH` says for deliveries.
    Benevity {
        api_url: Url,
        oauth: OAuthCredentials,
        tenant_id: String,
    },
    /// The API key (`GOODERA_API_KEY`), under the same per-minute budget as
    /// deliveries sent with that key.
    Goodera {
        api_url: Url,
        api_key: SecretString,
        project_id: String,
        requests_per_minute: std::num::NonZeroU32,
    },
    /// SCIM 2.0 with the REST OAuth2 credentials.
    Workday {
        api_url: Url,
        tenant: String,
        oauth: OAuthCredentials,
    },
    /// Kintell, Upskilling, Buddy, Mentorship: `Bearer {INTERNAL_API_KEY}`.
    Internal {
        base_url: Url,
        api_key: SecretString,
    },
}

impl ProviderSettings {
    /// The source configuration of `system` for `company`: its vaulted
    /// values (by name, for the system's provider), then its own variables,
    /// then the global ones.
    pub fn resolve_source(
        &self,
        system: System,
        company: Option<Uuid>,
        vault: &BTreeMap<String, SecretString>,
    ) -> Result<SourceConfig, SettingsError> {
        let vars = |provider| Vars {
            settings: self,
            provider,
            tenant: company.map(tenant_key),
            vault,
        };
        match system {
            System::Benevity => {
                let vars = vars(Provider::Benevity);
                let api_url = vars.api_url()?;
                Ok(SourceConfig::Benevity {
                    oauth: vars.oauth(vars.token_url(&api_url, "/oauth2/token")?, false)?,
                    tenant_id: vars.path_segment("TENANT_ID")?,
                    api_url,
                })
            }
            System::Goodera => {
                let vars = vars(Provider::Goodera);
                Ok(SourceConfig::Goodera {
                    requests_per_minute: vars.requests_per_minute()?,
                    api_url: vars.api_url()?,
                    api_key: vars.secret("API_KEY")?,
                    project_id: vars.path_segment("PROJECT_ID")?,
                })
            }
            System::Workday => {
                let vars = vars(Provider::Workday);
                let api_url = vars.api_url()?;
                let tenant = vars.path_segment("TENANT_ID")?;
                Ok(SourceConfig::Workday {
                    oauth: vars.oauth(
                        vars.token_url(&api_url, &format!("/ccx/oauth2/{tenant}/token"))?,
                        false,
                    )?,
                    api_url,
                    tenant,
                })
            }
            System::Kintell | System::Upskilling | System::Buddy | System::Mentorship => {
                let url_var = match system {
                    System::Kintell => "KINTELL_CONNECTOR_URL",
                    System::Upskilling => "UPSKILLING_CONNECTOR_URL",
                    System::Buddy => "BUDDY_CONNECTOR_URL",
                    _ => "MENTORSHIP_SERVICE_URL",
                };
                let get = |name: &str| {
                    self.vars
                        .get(name)
                        .ok_or_else(|| SettingsError::SourceNotConfigured {
                            system,
                            missing: name.into(),
                        })
                };
                let raw = get(url_var)?.expose_secret();
                let base_url = Url::parse(raw.trim_end_matches('/'))
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| SettingsError::Invalid {
                        var: url_var.into(),
                        problem: "must be an http:// or https:// URL".into(),
                    })?;
                Ok(SourceConfig::Internal {
                    base_url,
                    api_key: get("INTERNAL_API_KEY")?.clone(),
                })
            }
        }
    }

    /// Every variable of `provider` named `key`: the global one
    /// (`{PROVIDER}_{key}`, tenant `None`) and each tenant's
    /// (`{PROVIDER}_{TENANT}_{key}`), as (name, tenant, value).
    pub fn named<'s>(
        &'s self,
        provider: Provider,
        key: &str,
    ) -> Vec<(&'s str, Option<&'s str>, &'s SecretString)> {
        let prefix = format!("{}_", provider.as_str().to_ascii_uppercase());
        let suffix = format!("_{key}");
        let mut found: Vec<_> = self
            .vars
            .iter()
            .filter_map(|(name, value)| {
                let middle = name.strip_prefix(&prefix)?;
                if middle == key {
                    return Some((name.as_str(), None, value));
                }
                let tenant = middle.strip_suffix(&suffix)?;
                Some((name.as_str(), Some(tenant), value))
            })
            .collect();
        found.sort_by_key(|(name, _, _)| *name);
        found
    }
}

/// `6f1c2a8e-0d5b-…` → `6F1C2A8E_0D5B_…`, usable inside a variable name.
pub fn tenant_key(company: Uuid) -> String {
    company.to_string().to_ascii_uppercase().replace('-', "_")
}

/// Lookups for one provider and, optionally, one tenant and its vault.
struct Vars<'a> {
    settings: &'a ProviderSettings,
    provider: Provider,
    tenant: Option<String>,
    vault: &'a BTreeMap<String, SecretString>,
}

impl Vars<'_> {
    fn name(&self, key: &str) -> String {
        format!("{}_{key}", self.provider.as_str().to_ascii_uppercase())
    }

    fn get(&self, key: &str) -> Option<&SecretString> {
        let prefix = self.provider.as_str().to_ascii_uppercase();
        self.vault
            .get(key)
            .or_else(|| {
                self.tenant
                    .as_ref()
                    .and_then(|tenant| self.settings.vars.get(&format!("{prefix}_{tenant}_{key}")))
            })
            .or_else(|| self.settings.vars.get(&self.name(key)))
    }

    fn plain(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| v.expose_secret().to_owned())
    }

    fn secret(&self, key: &str) -> Result<SecretString, SettingsError> {
        self.get(key).cloned().ok_or_else(|| self.missing(key))
    }

    fn required(&self, key: &str) -> Result<String, SettingsError> {
        self.plain(key).ok_or_else(|| self.missing(key))
    }

    fn missing(&self, key: &str) -> SettingsError {
        SettingsError::NotConfigured {
            provider: self.provider,
            missing: self.name(key),
        }
    }

    fn invalid(&self, key: &str, problem: impl Into<String>) -> SettingsError {
        SettingsError::Invalid {
            var: self.name(key),
            problem: problem.into(),
        }
    }

    fn url(&self, key: &str, value: &str) -> Result<Url, SettingsError> {
        let url = Url::parse(value.trim_end_matches('/'))
            .map_err(|err| self.invalid(key, format!("'{value}' is not a URL: {err}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.invalid(key, "must be an http:// or https:// URL"));
        }
        Ok(url)
    }

    /// An id that goes into a URL path as it is.
    fn path_segment(&self, key: &str) -> Result<String, SettingsError> {
        let value = self.required(key)?;
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(self.invalid(key, "may only hold letters, digits, _ and -"));
        }
        Ok(value)
    }

    fn api_url(&self) -> Result<Url, SettingsError> {
        self.url("API_URL", &self.required("API_URL")?)
    }

    /// `{NAME}` when set, else `default` under the API URL.
    fn token_url(&self, api_url: &Url, default_path: &str) -> Result<Url, SettingsError> {
        match self.plain("TOKEN_URL") {
            Some(url) => self.url("TOKEN_URL", &url),
            None => self.url(
                "TOKEN_URL",
                &format!("{}{default_path}", api_url.as_str().trim_end_matches('/')),
            ),
        }
    }

    fn oauth(&self, token_url: Url, refresh: bool) -> Result<OAuthCredentials, SettingsError> {
        Ok(OAuthCredentials {
            token_url,
            client_id: self.required("CLIENT_ID")?,
            client_secret: self.secret("CLIENT_SECRET")?,
            refresh_token: if refresh {
                self.get("REFRESH_TOKEN").cloned()
            } else {
                None
            },
        })
    }

    fn choice<'v>(
        &self,
        key: &str,
        allowed: &[&'v str],
        default: &'v str,
    ) -> Result<&'v str, SettingsError> {
        match self.plain(key) {
            None => Ok(default),
            Some(value) => allowed
                .iter()
                .find(|a| a.eq_ignore_ascii_case(&value))
                .copied()
                .ok_or_else(|| {
                    self.invalid(
                        key,
                        format!("'{value}' is not one of {}", allowed.join(", ")),
                    )
                }),
        }
    }

    // Each reads its choices before anything required, so a malformed
    // choice is reported even where the provider is not configured at all.

    fn benevity(&self) -> Result<BenevityConfig, SettingsError> {
        let auth = self.choice("AUTH", &["api_key", "oauth2"], "api_key")?;
        let timestamped =
            self.choice("SIGNATURE_TIMESTAMPED", &["true", "false"], "false")? == "true";
        let api_url = self.api_url()?;
        let signing = |secret| Signing {
            secret,
            timestamped,
        };
        match auth {
            "oauth2" => Ok(BenevityConfig {
                auth: BenevityAuth::OAuth2(
                    self.oauth(self.token_url(&api_url, "/oauth2/token")?, false)?,
                ),
                signing: self.get("SIGNATURE_SECRET").cloned().map(signing),
                api_url,
            }),
            _ => Ok(BenevityConfig {
                auth: BenevityAuth::ApiKey(self.secret("API_KEY")?),
                signing: Some(signing(self.secret("SIGNATURE_SECRET")?)),
                api_url,
            }),
        }
    }

    fn goodera(&self) -> Result<GooderaConfig, SettingsError> {
        // The seed notes disagree on Goodera's auth; OAuth2 when a client is
        // configured, the API key otherwise, unless GOODERA_AUTH says.
        let default = if self.get("CLIENT_ID").is_some() || self.get("API_KEY").is_none() {
            "oauth2"
        } else {
            "api_key"
        };
        let auth = self.choice("AUTH", &["oauth2", "api_key"], default)?;
        let requests_per_minute = self.requests_per_minute()?;
        let api_url = self.api_url()?;
        let auth = match auth {
            "api_key" => GooderaAuth::ApiKey(self.secret("API_KEY")?),
            _ => GooderaAuth::OAuth2(self.oauth(self.token_url(&api_url, "/oauth/token")?, false)?),
        };
        Ok(GooderaConfig {
            api_url,
            auth,
            requests_per_minute,
        })
    }

    fn requests_per_minute(&self) -> Result<std::num::NonZeroU32, SettingsError> {
        match self.plain("RATE_LIMIT_PER_MINUTE") {
            None => Ok(std::num::NonZeroU32::new(100).expect("100 is not zero")),
            Some(raw) => raw
                .parse()
                .map_err(|_| self.invalid("RATE_LIMIT_PER_MINUTE", "must be a whole number > 0")),
        }
    }

    fn workday(&self) -> Result<WorkdayConfig, SettingsError> {
        let protocol = self.choice("PROTOCOL", &["rest", "soap"], "rest")?;
        let api_url = self.api_url()?;
        let tenant = self.path_segment("TENANT_ID")?;
        let protocol = match protocol {
            "soap" => WorkdayProtocol::Soap {
                username: self.required("USERNAME")?,
                password: self.secret("PASSWORD")?,
            },
            _ => WorkdayProtocol::Rest(self.oauth(
                self.token_url(&api_url, &format!("/ccx/oauth2/{tenant}/token"))?,
                true,
            )?),
        };
        Ok(WorkdayConfig {
            api_url,
            tenant,
            protocol,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> ProviderSettings {
        ProviderSettings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn a_provider_without_credentials_is_not_configured_and_names_what_is_missing() {
        let err = settings(&[]).resolve(Provider::Benevity, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "benevity is not configured: BENEVITY_API_URL is not set"
        );
        let err = settings(&[("GOODERA_API_URL", "http://g")])
            .resolve(Provider::Goodera, None)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "goodera is not configured: GOODERA_CLIENT_ID is not set"
        );
    }

    #[test]
    fn tenant_variables_override_global_ones_one_by_one() {
        let company: Uuid = "6f1c2a8e-0d5b-4a39-9b0e-2f7d0c1e5a44".parse().unwrap();
        let s = settings(&[
            ("BENEVITY_API_URL", "https://api.benevity.example/"),
            ("BENEVITY_API_KEY", "global-key"),
            ("BENEVITY_SIGNATURE_SECRET", "global-secret"),
            (
                "BENEVITY_6F1C2A8E_0D5B_4A39_9B0E_2F7D0C1E5A44_API_KEY",
                "tenant-key",
            ),
        ]);
        let key_of = |company| match s.resolve(Provider::Benevity, company).unwrap() {
            ProviderConfig::Benevity(BenevityConfig {
                auth: BenevityAuth::ApiKey(key),
                signing: Some(signing),
                api_url,
            }) => (
                key.expose_secret().to_owned(),
                signing.secret.expose_secret().to_owned(),
                api_url.to_string(),
            ),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            key_of(Some(company)),
            (
                "tenant-key".into(),
                "global-secret".into(),
                "https://api.benevity.example/".into()
            )
        );
        assert_eq!(key_of(Some(Uuid::new_v4())).0, "global-key");
        assert_eq!(key_of(None).0, "global-key");
    }

    #[test]
    fn vaulted_values_come_before_tenant_and_global_variables() {
        let company: Uuid = "6f1c2a8e-0d5b-4a39-9b0e-2f7d0c1e5a44".parse().unwrap();
        let s = settings(&[
            ("GOODERA_API_URL", "https://api.goodera.example"),
            ("GOODERA_AUTH", "api_key"),
            ("GOODERA_API_KEY", "global-key"),
            (
                "GOODERA_6F1C2A8E_0D5B_4A39_9B0E_2F7D0C1E5A44_API_KEY",
                "tenant-key",
            ),
        ]);
        let key_with = |vault: &[(&str, &str)]| {
            let vault: BTreeMap<String, SecretString> = vault
                .iter()
                .map(|(k, v)| ((*k).to_owned(), SecretString::from(*v)))
                .collect();
            match s
                .resolve_with(Provider::Goodera, Some(company), &vault)
                .unwrap()
            {
                ProviderConfig::Goodera(GooderaConfig {
                    auth: GooderaAuth::ApiKey(key),
                    ..
                }) => key.expose_secret().to_owned(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(key_with(&[("API_KEY", "vault-key")]), "vault-key");
        assert_eq!(key_with(&[]), "tenant-key");
        assert_eq!(
            key_with(&[("PROJECT_ID", "p")]),
            "tenant-key",
            "name by name"
        );
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let err = settings(&[("WORKDAY_API_URL", "not a url")])
            .resolve(Provider::Workday, None)
            .unwrap_err();
        assert!(
            matches!(err, SettingsError::Invalid { ref var, .. } if var == "WORKDAY_API_URL"),
            "{err}"
        );
        let err = settings(&[
            ("WORKDAY_API_URL", "http://w"),
            ("WORKDAY_TENANT_ID", "acme"),
            ("WORKDAY_PROTOCOL", "graphql"),
        ])
        .resolve(Provider::Workday, None)
        .unwrap_err();
        assert!(
            matches!(err, SettingsError::Invalid { ref var, .. } if var == "WORKDAY_PROTOCOL"),
            "{err}"
        );
    }

    #[test]
    fn workday_rest_defaults_its_token_url_per_tenant_and_uses_the_refresh_token() {
        let s = settings(&[
            ("WORKDAY_API_URL", "https://wd2.example"),
            ("WORKDAY_TENANT_ID", "acme"),
            ("WORKDAY_CLIENT_ID", "c"),
            ("WORKDAY_CLIENT_SECRET", "s"),
            ("WORKDAY_REFRESH_TOKEN", "r"),
        ]);
        let ProviderConfig::Workday(WorkdayConfig {
            protocol: WorkdayProtocol::Rest(oauth),
            ..
        }) = s.resolve(Provider::Workday, None).unwrap()
        else {
            panic!("expected Workday REST");
        };
        assert_eq!(
            oauth.token_url.as_str(),
            "https://wd2.example/ccx/oauth2/acme/token"
        );
        assert!(oauth.refresh_token.is_some());
    }

    #[test]
    fn debug_output_names_variables_but_never_values() {
        let s = settings(&[("GOODERA_CLIENT_SECRET", "hunter2-goodera")]);
        let debug = format!("{s:?}");
        assert!(
            debug.contains("GOODERA_CLIENT_SECRET") && !debug.contains("hunter2"),
            "{debug}"
        );
    }
}
