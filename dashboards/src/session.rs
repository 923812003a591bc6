//! Signed-in browsers: a session per sign-in, held here and named by a cookie
//! (`shopstream_session=<id>.<HMAC-SHA-256 of the id>`, HttpOnly, SameSite=Strict), with an
//! expiry, a CSRF token for its forms, its language, and the key it was made from (checked
//! again on every use, so a revoked key ends its sessions at once).
//!
//! A cookie whose signature does not verify is *forged*; one naming no live session is
//! *expired* (timed out, signed out, or from before a restart). Pages tell the two apart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use hmac::{Hmac, Mac as _};
use runtime::http::auth::{BrowserSessions, Caller, Keys};
use sha2::Sha256;

use crate::i18n::Lang;
use crate::passwords::Passwords;

pub const COOKIE: &str = "shopstream_session";
/// The sign-in form's own token, set with the form (a double-submit check: a cross-site
/// page can post the form but cannot read or set this cookie).
pub const SIGN_IN_COOKIE: &str = "shopstream_signin";

/// Where a session's caller came from, to check it again on use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An API key, by its hash: revoking the key ends the session.
    Key,
    /// A dashboard password an admin set for the merchant, by the fingerprint of its hash:
    /// setting a new password ends the sessions of the old one.
    Password(String),
}

#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub origin: Origin,
    pub csrf: String,
    pub lang: Lang,
    pub expires_ms: i64,
}

/// What a request's cookie says about who is signed in.
#[derive(Debug, Clone)]
pub enum Lookup {
    SignedIn(String, Session),
    /// No session cookie at all.
    Absent,
    /// A cookie that no key of ours signed.
    Forged,
    /// A genuine cookie whose session is over.
    Expired,
    /// The key table cannot be asked right now; the session is kept.
    Unavailable,
}

/// The live sessions of this process.
pub struct Sessions {
    secret: [u8; 32],
    ttl_ms: i64,
    max_sessions: usize,
    secure: bool,
    keys: Arc<dyn Keys>,
    passwords: Passwords,
    live: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

/// Random bytes as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // The OS generator failing is a broken machine; a predictable token would be worse.
    getrandom::fill(&mut buffer).unwrap_or_else(|error| panic!("no OS randomness: {error}"));
    hex(&buffer)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// Constant-time equality for tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// How sessions are kept.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub ttl_ms: i64,
    pub max_sessions: usize,
    /// Mark the cookie `Secure`.
    pub secure: bool,
}

impl Sessions {
    pub fn new(
        secret: [u8; 32],
        policy: Policy,
        keys: Arc<dyn Keys>,
        passwords: Passwords,
    ) -> Self {
        Self {
            secret,
            ttl_ms: policy.ttl_ms,
            max_sessions: policy.max_sessions,
            secure: policy.secure,
            keys,
            passwords,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn signature(&self, id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(id.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Starts a session for `caller` and returns its cookie value.
    pub fn start(&self, caller: Caller, origin: Origin, lang: Lang, now_ms: i64) -> String {
        let id = random_hex(16);
        let session = Session {
            caller,
            origin,
            csrf: random_hex(16),
            lang,
            expires_ms: now_ms + self.ttl_ms,
        };
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|_, s| s.expires_ms > now_ms);
        // Past the cap the session closest to its end makes room, whoever's it is: a flood
        // of sign-ins cannot grow memory (sign-ins are rate limited per account and address,
        // which is what keeps a flood small).
        while live.len() >= self.max_sessions {
            let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            live.remove(&oldest);
        }
        live.insert(id.clone(), session);
        format!("{id}.{}", self.signature(&id))
    }

    /// The session a `Cookie` header names, checked: signature, expiry, and the key it was
    /// made from still being valid.
    pub async fn lookup(&self, cookie_header: Option<&str>, now_ms: i64) -> Lookup {
        let Some(value) = cookie_header.and_then(|header| cookie(header, COOKIE)) else {
            return Lookup::Absent;
        };
        let Some((id, signature)) = value.split_once('.') else {
            return Lookup::Forged;
        };
        if !same_token(signature, &self.signature(id)) {
            return Lookup::Forged;
        }
        let found = {
            let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            match live.get(id) {
                Some(session) if session.expires_ms > now_ms => Some(session.clone()),
                Some(_) => {
                    live.remove(id);
                    None
                }
                None => None,
            }
        };
        let Some(session) = found else {
            return Lookup::Expired;
        };
        match &session.origin {
            Origin::Key => match self.keys.find(&session.caller.key_hash).await {
                Ok(Some(caller)) if caller == session.caller => {}
                Ok(_) => {
                    self.end(id);
                    return Lookup::Expired;
                }
                // The key table is unreachable: refuse for now, keep the session.
                Err(_) => return Lookup::Unavailable,
            },
            Origin::Password(fingerprint) => {
                let merchant = session.caller.merchant_id.as_ref().map(|m| m.as_str());
                let current = merchant.and_then(|m| self.passwords.fingerprint(m));
                if current.as_deref() != Some(fingerprint.as_str()) {
                    self.end(id);
                    return Lookup::Expired;
                }
            }
        }
        Lookup::SignedIn(id.to_owned(), session)
    }

    /// Signs a session out.
    pub fn end(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// Sessions held (some may have expired and not been swept yet).
    pub fn held(&self) -> i64 {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        i64::try_from(live.len()).unwrap_or(i64::MAX)
    }

    pub fn set_lang(&self, id: &str, lang: Lang) {
        if let Some(session) = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(id)
        {
            session.lang = lang;
        }
    }

    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// The `Set-Cookie` value for a session cookie `value`.
    pub fn cookie_for(&self, value: &str) -> String {
        let cookie = set_cookie(COOKIE, value, self.ttl_ms / 1_000);
        if self.secure {
            format!("{cookie}; Secure")
        } else {
            cookie
        }
    }
}

impl BrowserSessions for Sessions {
    fn caller<'a>(&'a self, cookie_header: &'a str) -> BoxFuture<'a, Option<Caller>> {
        Box::pin(async move {
            match self.lookup(Some(cookie_header), runtime::now_ms()).await {
                Lookup::SignedIn(_, session) => Some(session.caller),
                _ => None,
            }
        })
    }
}

/// The `Set-Cookie` value that stores `value` for `max_age_s` seconds: never readable by
/// scripts, never sent from another site.
pub fn set_cookie(name: &str, value: &str, max_age_s: i64) -> String {
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}")
}

/// The `Set-Cookie` value that removes cookie `name`.
pub fn clear_cookie(name: &str) -> String {
    set_cookie(name, "", 0)
}

#[cfg(test)]
mod tests {
    use model::keys::Role;

    use super::*;

    /// Knows one key: the merchant's.
    #[derive(Debug)]
    struct OneKey;

    impl Keys for OneKey {
        fn find<'a>(
            &'a self,
            key_hash: &'a str,
        ) -> BoxFuture<'a, Result<Option<Caller>, runtime::http::auth::KeysUnavailable>> {
            Box::pin(async move { Ok((key_hash == merchant().key_hash).then(merchant)) })
        }
    }

    fn sessions(secret: [u8; 32], max_sessions: usize) -> Sessions {
        let policy = Policy {
            ttl_ms: 1_000,
            max_sessions,
            secure: false,
        };
        let passwords = Passwords::open(None).expect("passwords");
        Sessions::new(secret, policy, Arc::new(OneKey), passwords)
    }

    fn merchant() -> Caller {
        Caller {
            role: Role::Merchant,
            merchant_id: Some(model::MerchantId::new("m-1")),
            key_hash: "hash-of-m-1-key".into(),
        }
    }

    #[tokio::test]
    async fn a_session_is_found_until_it_expires_or_is_ended() {
        let sessions = sessions([7; 32], 10);
        let value = sessions.start(merchant(), Origin::Key, Lang::Hi, 0);
        let header = format!("other=1; {COOKIE}={value}");
        let Lookup::SignedIn(id, session) = sessions.lookup(Some(&header), 999).await else {
            panic!("a fresh session is signed in");
        };
        assert_eq!(session.caller, merchant());
        assert_eq!(session.lang, Lang::Hi);
        assert!(matches!(
            sessions.lookup(Some(&header), 1_000).await,
            Lookup::Expired
        ));
        let value = sessions.start(merchant(), Origin::Key, Lang::En, 0);
        let (id2, _) = value.split_once('.').expect("id.signature");
        sessions.end(id2);
        assert_ne!(id, id2);
        let header = format!("{COOKIE}={value}");
        assert!(matches!(
            sessions.lookup(Some(&header), 1).await,
            Lookup::Expired
        ));
    }

    #[tokio::test]
    async fn a_cookie_not_signed_here_is_forged_and_a_key_session_dies_with_its_key() {
        let sessions = sessions([7; 32], 10);
        let value = sessions.start(merchant(), Origin::Key, Lang::En, 0);
        let (id, _) = value.split_once('.').expect("id.signature");
        let forged = format!("{COOKIE}={id}.{}", "0".repeat(64));
        assert!(matches!(
            sessions.lookup(Some(&forged), 1).await,
            Lookup::Forged
        ));
        let other_secret = self::sessions([8; 32], 10);
        let header = format!("{COOKIE}={value}");
        assert!(matches!(
            other_secret.lookup(Some(&header), 1).await,
            Lookup::Forged
        ));
        assert!(matches!(sessions.lookup(None, 1).await, Lookup::Absent));
        // A key the table no longer knows (revoked): its session is over.
        let mut gone = merchant();
        gone.key_hash = "revoked".into();
        let value = sessions.start(gone, Origin::Key, Lang::En, 0);
        let header = format!("{COOKIE}={value}");
        assert!(matches!(
            sessions.lookup(Some(&header), 1).await,
            Lookup::Expired
        ));
    }

    #[tokio::test]
    async fn a_new_password_ends_the_sessions_of_the_old_one() {
        let sessions = sessions([7; 32], 10);
        sessions
            .passwords
            .set("m-1", "the first password".into())
            .await
            .expect("set");
        let first = sessions.passwords.fingerprint("m-1").expect("fingerprint");
        let value = sessions.start(merchant(), Origin::Password(first), Lang::En, 0);
        let header = format!("{COOKIE}={value}");
        assert!(matches!(
            sessions.lookup(Some(&header), 1).await,
            Lookup::SignedIn(..)
        ));
        sessions
            .passwords
            .set("m-1", "the second password".into())
            .await
            .expect("set");
        assert!(matches!(
            sessions.lookup(Some(&header), 2).await,
            Lookup::Expired
        ));
    }

    #[test]
    fn sessions_past_the_cap_push_out_the_oldest() {
        let sessions = sessions([7; 32], 2);
        for at in 0..5 {
            sessions.start(merchant(), Origin::Key, Lang::En, at);
        }
        assert_eq!(sessions.live.lock().expect("lock").len(), 2);
    }

    #[test]
    fn a_secure_policy_marks_the_cookie() {
        let mut sessions = sessions([7; 32], 2);
        assert!(!sessions.cookie_for("v").contains("Secure"));
        sessions.secure = true;
        let cookie = sessions.cookie_for("v");
        assert!(
            cookie.ends_with("; Secure") && cookie.contains("HttpOnly"),
            "{cookie}"
        );
    }
}
