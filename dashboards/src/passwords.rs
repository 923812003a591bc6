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

    /// Sets `merchant_id`'s password and saves the file, both on a blocking thread. Saves
    /// are serialised under the map's lock, so the file on disk is always the latest map.
    pub async fn set(&self, merchant_id: &str, password: String) -> Result<(), DashboardError> {
        let (this, merchant) = (self.clone(), merchant_id.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt).map_err(|e| DashboardError::Config(e.to_string()))?;
            let salt =
                SaltString::encode_b64(&salt).map_err(|e| DashboardError::Config(e.to_string()))?;
            let hash = Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| DashboardError::Config(format!("hashing a password: {e}")))?;
            let mut hashes = this.hashes.lock().unwrap_or_else(PoisonError::into_inner);
            let before = hashes.insert(merchant.clone(), hash);
            let saved = this.save(&hashes);
            if saved.is_err() {
                // Memory and disk agree: the old password stays until one is saved.
                match before {
                    Some(old) => hashes.insert(merchant, old),
                    None => hashes.remove(&merchant),
                };
            }
            saved
        })
        .await
        .map_err(|e| DashboardError::Config(format!("the hashing thread failed: {e}")))?
    }

    /// Writes `hashes` to a new file readable by its owner only, syncs it, renames it over
    /// the old one and syncs the directory.
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
        crate::write_private(&temporary, text.as_bytes(), true).map_err(|e| io("writing", e))?;
        std::fs::rename(&temporary, path).map_err(|e| io("replacing", e))?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(|e| io("syncing the folder of", e))?;
        }
        Ok(())
    }

    /// A short fingerprint of `merchant_id`'s stored hash: sessions signed in with a
    /// password hold it, so a new password ends them.
    pub fn fingerprint(&self, merchant_id: &str) -> Option<String> {
        let hashes = self.hashes.lock().unwrap_or_else(PoisonError::into_inner);
        let hash = hashes.get(merchant_id)?;
        Some(runtime::http::auth::key_id(&runtime::http::auth::hash_key(hash)).to_owned())
    }

    /// Whether `password` is `merchant_id`'s (checked on a blocking thread); if so, the
    /// fingerprint of the hash it matched. A merchant without a password is checked against
    /// a fixed hash, so the answer takes as long whether or not the merchant has one.
    pub async fn verify(&self, merchant_id: &str, password: String) -> Option<String> {
        let stored = self
            .hashes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(merchant_id)
            .cloned();
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| DECOY.to_owned());
        let fingerprint =
            runtime::http::auth::key_id(&runtime::http::auth::hash_key(&hash)).to_owned();
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        (known && matches).then_some(fingerprint)
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
        let right = || "correct horse battery".to_owned();
        passwords.set("m-1", right()).await.expect("set");
        let matched = passwords.verify("m-1", right()).await;
        assert!(matched.is_some());
        assert_eq!(matched, passwords.fingerprint("m-1"));
        let wrong = passwords
            .verify("m-1", "correct horse batterz".into())
            .await;
        assert!(wrong.is_none());
        assert!(passwords.verify("m-2", right()).await.is_none());
        let text = std::fs::read_to_string(&file).expect("file");
        assert!(text.contains("$argon2id$") && !text.contains("horse"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the file is its owner's only");
        }
        let reopened = Passwords::open(Some(file)).expect("reopen");
        assert!(reopened.verify("m-1", right()).await.is_some());
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
