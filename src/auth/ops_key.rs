//! Ops API keys (`OPS_API_KEYS`) for operators using `curl`.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Keys are kept only as SHA-256 digests: comparing digests of equal length in
/// constant time leaks neither the key nor its length, and the first bytes of
/// the digest make a fingerprint that is safe to log.
pub struct OpsKeys {
    digests: Vec<[u8; 32]>,
}

impl OpsKeys {
    pub fn new(keys: &[SecretString]) -> Self {
        Self {
            digests: keys.iter().map(|k| digest(k.expose_secret())).collect(),
        }
    }

    /// The fingerprint of the matching key, if `candidate` is one. Every key is
    /// compared, whichever matches, so timing does not tell which one did.
    pub fn find(&self, candidate: &str) -> Option<String> {
        let candidate = digest(candidate);
        let mut found = None;
        for known in &self.digests {
            let matches: Choice = known.ct_eq(&candidate);
            if bool::from(matches) {
                found = Some(fingerprint(known));
            }
        }
        found
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn fingerprint(digest: &[u8; 32]) -> String {
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_configured_key_by_its_fingerprint_only() {
        let keys = OpsKeys::new(&[
            SecretString::from("first-ops-key-0123456789"),
            SecretString::from("second-ops-key-0123456789"),
        ]);
        let fp = keys.find("second-ops-key-0123456789").unwrap();
        assert_eq!(fp.len(), 12);
        assert!(!fp.contains("second"));
        assert_ne!(keys.find("first-ops-key-0123456789"), Some(fp));
        assert_eq!(keys.find("second-ops-key-012345678"), None);
        assert_eq!(keys.find(""), None);
    }
}
