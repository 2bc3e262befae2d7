//! Webhook secrets: `{PROVIDER}_WEBHOOK_SECRET`, and per company
//! `{PROVIDER}_{TENANT}_WEBHOOK_SECRET` (falling back to the global one),
//! each a comma-separated list so a secret can be rotated. Read and checked
//! once at start.

use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::signature::{KeyRing, Scheme};
use crate::{connectors::settings::ProviderSettings, ids::CompanyId, provider::Provider};

const SUFFIX: &str = "WEBHOOK_SECRET";

#[derive(Debug, Clone, Default)]
pub struct WebhookSecrets {
    global: HashMap<Provider, KeyRing>,
    companies: HashMap<(Provider, CompanyId), KeyRing>,
}

/// A secret variable that cannot be used: its name and why (never its
/// value).
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct SecretError {
    pub var: String,
    pub problem: String,
}

impl WebhookSecrets {
    pub fn from_settings(settings: &ProviderSettings) -> Result<Self, SecretError> {
        let mut secrets = Self::default();
        for provider in Provider::ALL {
            let scheme = Scheme::of(provider);
            for (var, tenant, value) in settings.named(provider, SUFFIX) {
                let ring = KeyRing::parse(scheme, value.expose_secret()).map_err(|problem| {
                    SecretError {
                        var: var.to_owned(),
                        problem,
                    }
                })?;
                match tenant {
                    None => {
                        secrets.global.insert(provider, ring);
                    }
                    Some(tenant) => {
                        let company = tenant
                            .replace('_', "-")
                            .parse::<CompanyId>()
                            .map_err(|_| SecretError {
                                var: var.to_owned(),
                                problem: format!(
                                    "expected {p}_WEBHOOK_SECRET or {p}_<COMPANY ID, _ for ->_WEBHOOK_SECRET",
                                    p = provider.as_str().to_ascii_uppercase()
                                ),
                            })?;
                        secrets.companies.insert((provider, company), ring);
                    }
                }
            }
        }
        Ok(secrets)
    }

    /// The keys that verify events of `provider` on the route of `company`
    /// (its own, else the global ones); `None`: not configured.
    pub fn keys(&self, provider: Provider, company: Option<CompanyId>) -> Option<&KeyRing> {
        company
            .and_then(|company| self.companies.get(&(provider, company)))
            .or_else(|| self.global.get(&provider))
    }

    pub fn has_global(&self, provider: Provider) -> bool {
        self.global.contains_key(&provider)
    }

    /// How many companies have a secret of their own for `provider`.
    pub fn company_count(&self, provider: Provider) -> usize {
        self.companies
            .keys()
            .filter(|(p, _)| *p == provider)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> ProviderSettings {
        ProviderSettings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn a_company_secret_overrides_the_global_one_for_that_company_only() {
        let company: CompanyId = "6f1c2a8e-0d5b-4a39-9b0e-2f7d0c1e5a44".parse().unwrap();
        let secrets = WebhookSecrets::from_settings(&settings(&[
            ("BENEVITY_WEBHOOK_SECRET", "global-benevity-secret"),
            (
                "BENEVITY_6F1C2A8E_0D5B_4A39_9B0E_2F7D0C1E5A44_WEBHOOK_SECRET",
                "company-benevity-secret",
            ),
        ]))
        .unwrap();
        assert!(secrets.keys(Provider::Benevity, None).is_some());
        assert!(secrets.keys(Provider::Goodera, None).is_none());
        assert_eq!(secrets.company_count(Provider::Benevity), 1);
        let company_ring = format!("{:?}", secrets.keys(Provider::Benevity, Some(company)));
        assert!(!company_ring.contains("company-benevity-secret"));
    }

    #[test]
    fn a_malformed_secret_names_its_variable_but_not_its_value() {
        for (var, value) in [
            ("GOODERA_WEBHOOK_SECRET", "not-whsec-prefixed-secret"),
            (
                "WORKDAY_ACME_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ] {
            let err = WebhookSecrets::from_settings(&settings(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var);
            assert!(!err.to_string().contains(value), "{err}");
        }
    }
}
