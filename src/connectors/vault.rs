//! The credential vault: a company's own credentials for a provider, sealed
//! by the [`Keyring`] and read before the `{PROVIDER}_{TENANT}_{NAME}` and
//! `{PROVIDER}_{NAME}` variables, so a company is onboarded without a
//! restart (docs/api.md, "Credential vault").

use std::{collections::BTreeMap, fmt};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use uuid::Uuid;

use super::keyring::{Keyring, Undecryptable};
use crate::provider::Provider;

/// What a company may keep in the vault, per provider: credentials and the
/// choices that go with them. Endpoints (`API_URL`, `TOKEN_URL`) stay the
/// operator's: a tenant who could set them could point our requests, and
/// the secrets they carry, at any address. So do `RATE_LIMIT_PER_MINUTE`
/// (the operator's budget) and webhook secrets (one per installation).
pub fn vault_names(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Benevity => &[
            "API_KEY",
            "AUTH",
            "CLIENT_ID",
            "CLIENT_SECRET",
            "SIGNATURE_SECRET",
            "SIGNATURE_TIMESTAMPED",
            "TENANT_ID",
        ],
        Provider::Goodera => &[
            "API_KEY",
            "AUTH",
            "CLIENT_ID",
            "CLIENT_SECRET",
            "PROJECT_ID",
        ],
        Provider::Workday => &[
            "CLIENT_ID",
            "CLIENT_SECRET",
            "PASSWORD",
            "PROTOCOL",
            "REFRESH_TOKEN",
            "TENANT_ID",
            "USERNAME",
        ],
    }
}

/// The longest value stored: far beyond any key or token a provider issues.
pub const MAX_VALUE_CHARS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("credential vault: {0}")]
    Database(#[from] sqlx::Error),
    #[error("vaulted {provider} credential {name} {cause}")]
    Undecryptable {
        provider: Provider,
        name: String,
        cause: Undecryptable,
    },
}

/// A company's vaulted values for one provider, by name, and a stamp that
/// changes whenever any of them does.
#[derive(Clone, Default)]
pub struct VaultEntries {
    pub values: BTreeMap<String, SecretString>,
    pub stamp: Vec<(String, DateTime<Utc>)>,
}

impl fmt::Debug for VaultEntries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultEntries")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One stored name and when it was last set; never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredName {
    pub name: String,
    pub updated_at: DateTime<Utc>,
}

/// What `impact-in rekey` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rekeyed {
    pub sealed_again: u64,
    pub current: u64,
    /// Under none of the configured keys: they stay until replaced.
    pub unreadable: u64,
}

#[derive(Clone)]
pub struct Vault {
    pool: PgPool,
    keyring: Keyring,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault").finish_non_exhaustive()
    }
}

/// Binds a sealed value to its row.
fn associated_data(company: Uuid, provider: Provider, name: &str) -> Vec<u8> {
    format!("vault|{company}|{provider}|{name}").into_bytes()
}

impl Vault {
    pub fn new(pool: PgPool, keyring: Keyring) -> Self {
        Self { pool, keyring }
    }

    /// Replaces the company's set for `provider` with `values` (names
    /// checked by the caller against [`vault_names`]), in one transaction.
    pub async fn replace(
        &self,
        company: Uuid,
        provider: Provider,
        values: &BTreeMap<String, SecretString>,
    ) -> Result<(), VaultError> {
        let mut tx = self.pool.begin().await?;
        let names: Vec<&str> = values.keys().map(String::as_str).collect();
        sqlx::query(
            "DELETE FROM integration_credentials
             WHERE company_id = $1 AND provider = $2 AND name <> ALL($3)",
        )
        .bind(company)
        .bind(provider)
        .bind(&names)
        .execute(&mut *tx)
        .await?;
        for (name, value) in values {
            let sealed = self.keyring.seal(
                &associated_data(company, provider, name),
                value.expose_secret().as_bytes(),
            );
            sqlx::query(
                "INSERT INTO integration_credentials (company_id, provider, name, sealed_value)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (company_id, provider, name) DO UPDATE
                 SET sealed_value = EXCLUDED.sealed_value, updated_at = clock_timestamp()",
            )
            .bind(company)
            .bind(provider)
            .bind(name)
            .bind(sealed)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes the company's set for `provider`; how many names it held.
    pub async fn remove(&self, company: Uuid, provider: Provider) -> Result<u64, VaultError> {
        Ok(sqlx::query(
            "DELETE FROM integration_credentials WHERE company_id = $1 AND provider = $2",
        )
        .bind(company)
        .bind(provider)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Which names are set and when, never their values.
    pub async fn names(
        &self,
        company: Uuid,
        provider: Provider,
    ) -> Result<Vec<StoredName>, VaultError> {
        let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT name, updated_at FROM integration_credentials
             WHERE company_id = $1 AND provider = $2 ORDER BY name",
        )
        .bind(company)
        .bind(provider)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, updated_at)| StoredName { name, updated_at })
            .collect())
    }

    /// The company's values for `provider`, opened.
    pub async fn load(
        &self,
        company: Uuid,
        provider: Provider,
    ) -> Result<VaultEntries, VaultError> {
        let rows: Vec<(String, Vec<u8>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT name, sealed_value, updated_at FROM integration_credentials
             WHERE company_id = $1 AND provider = $2 ORDER BY name",
        )
        .bind(company)
        .bind(provider)
        .fetch_all(&self.pool)
        .await?;
        let mut entries = VaultEntries::default();
        for (name, sealed, updated_at) in rows {
            let opened = self
                .keyring
                .open(&associated_data(company, provider, &name), &sealed)
                .map_err(|cause| VaultError::Undecryptable {
                    provider,
                    name: name.clone(),
                    cause,
                })?;
            let value =
                String::from_utf8(opened.plaintext.expose_secret().to_vec()).map_err(|_| {
                    VaultError::Undecryptable {
                        provider,
                        name: name.clone(),
                        cause: Undecryptable,
                    }
                })?;
            entries.values.insert(name.clone(), value.into());
            entries.stamp.push((name, updated_at));
        }
        Ok(entries)
    }

    /// Seals again, under the current key, every value sealed under an
    /// earlier one. A value changed meanwhile is left as it is: it was
    /// sealed under the current key by whoever changed it.
    pub async fn rekey(&self) -> Result<Rekeyed, VaultError> {
        let rows: Vec<(Uuid, Provider, String, Vec<u8>)> = sqlx::query_as(
            "SELECT company_id, provider, name, sealed_value FROM integration_credentials",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut done = Rekeyed::default();
        for (company, provider, name, sealed) in rows {
            let aad = associated_data(company, provider, &name);
            match self.keyring.open(&aad, &sealed) {
                Err(Undecryptable) => done.unreadable += 1,
                Ok(opened) if !opened.stale => done.current += 1,
                Ok(opened) => {
                    let resealed = self.keyring.seal(&aad, opened.plaintext.expose_secret());
                    sqlx::query(
                        "UPDATE integration_credentials SET sealed_value = $5
                         WHERE company_id = $1 AND provider = $2 AND name = $3
                           AND sealed_value = $4",
                    )
                    .bind(company)
                    .bind(provider)
                    .bind(&name)
                    .bind(&sealed)
                    .bind(resealed)
                    .execute(&self.pool)
                    .await?;
                    done.sealed_again += 1;
                }
            }
        }
        Ok(done)
    }
}
