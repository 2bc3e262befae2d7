//! OAuth access tokens at rest, sealed by the [`Keyring`], one row per
//! company and provider.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use uuid::Uuid;

use super::keyring::Keyring;
use crate::provider::Provider;

/// Why a stored token could not be used; the caller then fetches a new one.
#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    #[error("token store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored token {0}")]
    Undecryptable(#[from] super::keyring::Undecryptable),
}

/// An access token and when it stops being accepted.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub secret: SecretString,
    pub expires_at: DateTime<Utc>,
}

/// Where tokens are persisted, identified by company, provider and the
/// credential that issued them.
#[derive(Clone)]
pub struct TokenStore {
    pool: PgPool,
    keyring: Keyring,
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStore").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct TokenKey<'a> {
    pub company_id: Uuid,
    pub provider: Provider,
    pub credential_fingerprint: &'a str,
}

impl TokenKey<'_> {
    /// Binds a ciphertext to its row: a token copied to another company,
    /// provider or credential does not decrypt.
    fn associated_data(&self) -> Vec<u8> {
        format!(
            "{}|{}|{}",
            self.company_id, self.provider, self.credential_fingerprint
        )
        .into_bytes()
    }
}

impl TokenStore {
    pub fn new(pool: PgPool, keyring: Keyring) -> Self {
        Self { pool, keyring }
    }

    pub async fn load(&self, key: TokenKey<'_>) -> Result<Option<AccessToken>, TokenStoreError> {
        let row: Option<(Vec<u8>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT encrypted_token, expires_at FROM impact_provider_tokens
             WHERE company_id = $1 AND provider = $2 AND credential_fingerprint = $3",
        )
        .bind(key.company_id)
        .bind(key.provider)
        .bind(key.credential_fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        let Some((sealed, expires_at)) = row else {
            return Ok(None);
        };
        let secret = self.open(&key, &sealed)?;
        Ok(Some(AccessToken { secret, expires_at }))
    }

    pub async fn save(
        &self,
        key: TokenKey<'_>,
        token: &AccessToken,
    ) -> Result<(), TokenStoreError> {
        let sealed = self.seal(&key, token.secret.expose_secret());
        sqlx::query(
            "INSERT INTO impact_provider_tokens
                 (company_id, provider, credential_fingerprint, encrypted_token, expires_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (company_id, provider) DO UPDATE
             SET credential_fingerprint = EXCLUDED.credential_fingerprint,
                 encrypted_token = EXCLUDED.encrypted_token,
                 expires_at = EXCLUDED.expires_at,
                 updated_at = now()",
        )
        .bind(key.company_id)
        .bind(key.provider)
        .bind(key.credential_fingerprint)
        .bind(sealed)
        .bind(token.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn seal(&self, key: &TokenKey<'_>, plaintext: &str) -> Vec<u8> {
        self.keyring
            .seal(&key.associated_data(), plaintext.as_bytes())
    }

    fn open(&self, key: &TokenKey<'_>, sealed: &[u8]) -> Result<SecretString, TokenStoreError> {
        let opened = self.keyring.open(&key.associated_data(), sealed)?;
        String::from_utf8(opened.plaintext.expose_secret().to_vec())
            .map(SecretString::from)
            .map_err(|_| TokenStoreError::Undecryptable(super::keyring::Undecryptable))
    }
}
