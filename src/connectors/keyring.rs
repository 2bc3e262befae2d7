//! Encryption at rest for everything secret the service stores (OAuth
//! tokens, vaulted credentials): AES-256-GCM under `TOKEN_ENCRYPTION_KEY`,
//! with the keys of `TOKEN_ENCRYPTION_KEY_PREVIOUS` still accepted for
//! reading, so the key can be rotated without a moment where stored secrets
//! are unreadable (docs/runbook.md, "Rotating the encryption key").

use std::fmt;

use aes_gcm::{
    Aes256Gcm, KeyInit,
    aead::{Aead, Generate, Nonce, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use secrecy::SecretSlice;

const NONCE_BYTES: usize = 12;

/// A 32-byte key; never printed.
#[derive(Clone)]
pub struct EncryptionKey([u8; 32]);

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([REDACTED])")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyError {
    #[error("is not valid base64")]
    NotBase64,
    #[error("must decode to 32 bytes, got {0} (generate one with `openssl rand -base64 32`)")]
    WrongLength(usize),
}

impl EncryptionKey {
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

/// The key that seals, and the earlier ones that may still open.
#[derive(Debug, Clone)]
pub struct KeySet {
    pub current: EncryptionKey,
    pub previous: Vec<EncryptionKey>,
}

/// A ciphertext none of the configured keys opens (or one bound to another
/// row).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("does not decrypt under TOKEN_ENCRYPTION_KEY or TOKEN_ENCRYPTION_KEY_PREVIOUS")]
pub struct Undecryptable;

/// What a ciphertext held, and whether it was sealed under an earlier key
/// (then it should be sealed again: `impact-in rekey`).
pub struct Opened {
    pub plaintext: SecretSlice<u8>,
    pub stale: bool,
}

#[derive(Clone)]
pub struct Keyring {
    current: Aes256Gcm,
    previous: Vec<Aes256Gcm>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("previous_keys", &self.previous.len())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    pub fn new(keys: &KeySet) -> Self {
        let cipher = |key: &EncryptionKey| Aes256Gcm::new(&key.0.into());
        Self {
            current: cipher(&keys.current),
            previous: keys.previous.iter().map(cipher).collect(),
        }
    }

    /// `nonce || ciphertext`, bound to `aad` (what the row is), so a
    /// ciphertext copied to another row does not open.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = Nonce::<Aes256Gcm>::generate();
        let ciphertext = self
            .current
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption of a short secret cannot fail");
        [nonce.as_slice(), &ciphertext].concat()
    }

    /// Opens with the current key, else with each earlier one: GCM's tag
    /// tells which key sealed it, so no key id is stored.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Opened, Undecryptable> {
        if sealed.len() <= NONCE_BYTES {
            return Err(Undecryptable);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce = Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| Undecryptable)?;
        let payload = || Payload {
            msg: ciphertext,
            aad,
        };
        std::iter::once(&self.current)
            .chain(&self.previous)
            .enumerate()
            .find_map(|(index, cipher)| {
                cipher
                    .decrypt(&nonce, payload())
                    .ok()
                    .map(|plaintext| Opened {
                        plaintext: plaintext.into(),
                        stale: index > 0,
                    })
            })
            .ok_or(Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn key(byte: u8) -> EncryptionKey {
        EncryptionKey::from_base64(&BASE64.encode([byte; 32])).unwrap()
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert_eq!(
            EncryptionKey::from_base64("not base64!").unwrap_err(),
            KeyError::NotBase64
        );
        assert_eq!(
            EncryptionKey::from_base64(&BASE64.encode([7u8; 16])).unwrap_err(),
            KeyError::WrongLength(16)
        );
        assert_eq!(format!("{:?}", key(7)), "EncryptionKey([REDACTED])");
    }

    #[test]
    fn a_rotated_keyring_opens_old_ciphertext_and_seals_under_the_new_key() {
        let old = Keyring::new(&KeySet {
            current: key(1),
            previous: vec![],
        });
        let sealed_before = old.seal(b"row", b"secret");

        let rotated = Keyring::new(&KeySet {
            current: key(2),
            previous: vec![key(1)],
        });
        let opened = rotated.open(b"row", &sealed_before).unwrap();
        assert_eq!(opened.plaintext.expose_secret(), b"secret");
        assert!(opened.stale, "sealed under the previous key");

        let sealed_after = rotated.seal(b"row", b"secret");
        assert!(!rotated.open(b"row", &sealed_after).unwrap().stale);
        // Once the old key is dropped, only what was sealed again opens.
        let finished = Keyring::new(&KeySet {
            current: key(2),
            previous: vec![],
        });
        assert!(finished.open(b"row", &sealed_after).is_ok());
        assert!(finished.open(b"row", &sealed_before).is_err());
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_does_not_open() {
        let ring = Keyring::new(&KeySet {
            current: key(1),
            previous: vec![],
        });
        let sealed = ring.seal(b"company-a|benevity|API_KEY", b"secret");
        assert!(ring.open(b"company-b|benevity|API_KEY", &sealed).is_err());
        assert!(
            ring.open(b"company-a|benevity|API_KEY", &sealed[..5])
                .is_err()
        );
    }
}
