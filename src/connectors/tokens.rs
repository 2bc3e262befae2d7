//! OAuth access tokens at rest: encrypted with AES-256-GCM under
//! `TOKEN_ENCRYPTION_KEY`, one row per company and provider.

use std::fmt;

use aes_gcm::{
    Aes256Gcm, KeyInit,
    aead::{Aead, Generate, Nonce, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use uuid::Uuid;

use crate::provider::Provider;

const NONCE_BYTES: usize = 12;

/// The 32-byte key; never printed.
#[derive(Clone)]
pub struct TokenEncryptionKey([u8; 32]);

impl fmt::Debug for TokenEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenEncryptionKey([REDACTED])")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyError {
    #[error("is not valid base64")]
    NotBase64,
    #[error("must decode to 32 bytes, got {0} (generate one with `openssl rand -base64 32`)")]
    WrongLength(usize),
}

impl TokenEncryptionKey {
    pub fn from_base64(encoded: &str) -> Result<Self, KeyError> {
        let bytes = BASE64
            .decode(encoded.trim())
            .map_err(|_| KeyError::NotBase64)?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength(bytes.len()))?;
        Ok(Self(key))
    }
}

/// Why a stored token could not be used; the caller then fetches a new one.
#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    #[error("token store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored token does not decrypt under the configured key")]
    Undecryptable,
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
    cipher: Aes256Gcm,
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
    pub fn new(pool: PgPool, key: &TokenEncryptionKey) -> Self {
        Self {
            pool,
            cipher: Aes256Gcm::new(&key.0.into()),
        }
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
        let nonce = Nonce::<Aes256Gcm>::generate();
        let aad = key.associated_data();
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of a short token cannot fail");
        [nonce.as_slice(), &ciphertext].concat()
    }

    fn open(&self, key: &TokenKey<'_>, sealed: &[u8]) -> Result<SecretString, TokenStoreError> {
        if sealed.len() <= NONCE_BYTES {
            return Err(TokenStoreError::Undecryptable);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce =
            Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| TokenStoreError::Undecryptable)?;
        let aad = key.associated_data();
        let plaintext = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| TokenStoreError::Undecryptable)?;
        String::from_utf8(plaintext)
            .map(SecretString::from)
            .map_err(|_| TokenStoreError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert_eq!(
            TokenEncryptionKey::from_base64("not base64!").unwrap_err(),
            KeyError::NotBase64
        );
        assert_eq!(
            TokenEncryptionKey::from_base64(&BASE64.encode([7u8; 16])).unwrap_err(),
            KeyError::WrongLength(16)
        );
        let key = TokenEncryptionKey::from_base64(&BASE64.encode([7u8; 32])).unwrap();
        assert_eq!(format!("{key:?}"), "TokenEncryptionKey([REDACTED])");
    }
}
