//! Dashboard passwords an admin sets for merchants, kept only as Argon2id hashes (PHC
//! strings) in `passwords.json` under the dashboards' directory, replaced atomically.
//! Hashing and checking cost tens of milliseconds of CPU on purpose: they run on blocking
//! threads, never on the I/O runtime.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};

use crate::DashboardError;

pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 256;

#[derive(Debug, Clone)]
pub struct Passwords {
    file: Option<PathBuf>,
    hashes: Arc<Mutex<BTreeMap<String, String>>>,
}

/// Why a new password is refused.
pub fn check_new(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(format!(
            "a dashboard password needs at least {MIN_LENGTH} characters; this one has {length}"
        ));
    }
    if password.len() > MAX_LENGTH {
        return Err(format!(
            "a dashboard password has at most {MAX_LENGTH} bytes"
        ));
    }
    Ok(())
}

impl Passwords {
    /// The passwords kept in `file` (none yet when it does not exist); in memory only
    /// without one.
    pub fn open(file: Option<PathBuf>) -> Result<Self, DashboardError> {
        let hashes = match &file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(|source| DashboardError::Io {
                    what: format!("reading {}", path.display()),
                    source,
                })?;
                serde_json::from_str(&text).map_err(|error| {
                    DashboardError::Config(format!(
                        "{} is not a map of merchant ids to password hashes: {error}",
                        path.display()
                    ))
                })?
            }
            _ => BTreeMap::new(),
        };
        Ok(Self {
            file,
            hashes: Arc::new(Mutex::new(hashes)),
        })
    }

    /// Sets `merchant_id`'s password (hashing on a blocking thread) and saves the file.
    pub async fn set(&self, merchant_id: &str, password: String) -> Result<(), DashboardError> {
        let hash = tokio::task::spawn_blocking(move || {
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt).map_err(|e| DashboardError::Config(e.to_string()))?;
            let salt =
                SaltString::encode_b64(&salt).map_err(|e| DashboardError::Config(e.to_string()))?;
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| DashboardError::Config(format!("hashing a password: {e}")))
        })
        .await
        .map_err(|e| DashboardError::Config(format!("the hashing thread failed: {e}")))??;
        let snapshot = {
            let mut hashes = self.hashes.lock().unwrap_or_else(PoisonError::into_inner);
            hashes.insert(merchant_id.to_owned(), hash);
            hashes.clone()
        };
        self.save(&snapshot)
    }

    fn save(&self, hashes: &BTreeMap<String, String>) -> Result<(), DashboardError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let text = serde_json::to_string_pretty(hashes)
            .map_err(|e| DashboardError::Config(e.to_string()))?;
        let temporary = path.with_extension("json.new");
        let io = |what: &str, source| DashboardError::Io {
            what: format!("{what} {}", path.display()),
            source,
        };
        std::fs::write(&temporary, text).map_err(|e| io("writing", e))?;
        std::fs::rename(&temporary, path).map_err(|e| io("replacing", e))
    }

    /// Whether `password` is `merchant_id`'s (checked on a blocking thread). A merchant
    /// without a password is checked against a fixed hash, so the answer takes as long
    /// whether or not the merchant has one.
    pub async fn verify(&self, merchant_id: &str, password: String) -> bool {
        let stored = self
            .hashes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(merchant_id)
            .cloned();
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| DECOY.to_owned());
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        known && matches
    }
}

/// The Argon2id hash of a random password no one knows, with the default parameters.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2hvcHN0cmVhbWRlY295$9bUWCcgx0PsHcI3yRdgJZgvwoAm/3L1mQ9VDSujz3EA";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_set_is_checked_and_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("passwords.json");
        let passwords = Passwords::open(Some(file.clone())).expect("open");
        passwords
            .set("m-1", "correct horse battery".into())
            .await
            .expect("set");
        assert!(
            passwords
                .verify("m-1", "correct horse battery".into())
                .await
        );
        assert!(
            !passwords
                .verify("m-1", "correct horse batterz".into())
                .await
        );
        assert!(
            !passwords
                .verify("m-2", "correct horse battery".into())
                .await
        );
        let text = std::fs::read_to_string(&file).expect("file");
        assert!(text.contains("$argon2id$") && !text.contains("horse"));
        let reopened = Passwords::open(Some(file)).expect("reopen");
        assert!(reopened.verify("m-1", "correct horse battery".into()).await);
    }

    #[test]
    fn short_and_huge_passwords_are_refused_with_the_reason() {
        assert!(check_new("short").is_err_and(|e| e.contains("at least 12")));
        assert!(check_new(&"x".repeat(300)).is_err());
        assert!(check_new("twelve chars").is_ok());
    }

    #[test]
    fn the_decoy_hash_parses() {
        assert!(PasswordHash::new(DECOY).is_ok());
    }
}
