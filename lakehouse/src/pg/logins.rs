//! Who may log in to the SQL endpoint, and how often anyone may try.
//!
//! - Every login runs the whole SCRAM exchange. A user the endpoint does not know gets a salt
//!   that is stable for its name and a stored key nobody can match, so it fails at the same
//!   step, with the same message, as a known user with a wrong password: the endpoint does not
//!   tell which user names exist.
//! - Failed logins are counted per user name and per client address. Past
//!   `sql.login_failures_allowed` in a row, further attempts are refused before the exchange
//!   for a time that doubles with each failure (up to `sql.login_lockout_max_ms`); a success
//!   clears the user's count and the address's.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::sasl::scram::gen_salted_password;
use datafusion_postgres::pgwire::api::auth::{AuthSource, LoginInfo, Password};
use datafusion_postgres::pgwire::error::PgWireResult;

use super::SqlUser;
use crate::query::Scope;

/// A user as the server keeps it: the SCRAM salted password, never the password itself.
#[derive(Debug)]
pub(crate) struct Login {
    salt: Vec<u8>,
    salted_password: Vec<u8>,
    pub(crate) scope: Scope,
}

/// The configured users.
#[derive(Debug)]
pub(crate) struct Logins {
    users: HashMap<String, Login>,
    /// Keys the decoy salts of unknown names; made at start, so they change with each run as
    /// the real salts do.
    decoy: std::hash::RandomState,
}

impl Logins {
    /// Derives every user's salted password (`iterations` rounds of PBKDF2 each).
    pub(crate) fn new(users: &[SqlUser], iterations: usize) -> Logins {
        let users = users
            .iter()
            .map(|user| {
                let salt = uuid::Uuid::new_v4().as_bytes().to_vec();
                let salted_password = gen_salted_password(&user.password, &salt, iterations);
                let scope = match &user.merchant_id {
                    Some(merchant) => Scope::Merchant(merchant.clone()),
                    None => Scope::All,
                };
                (
                    user.name.clone(),
                    Login {
                        salt,
                        salted_password,
                        scope,
                    },
                )
            })
            .collect();
        Logins {
            users,
            decoy: std::hash::RandomState::new(),
        }
    }

    pub(crate) fn get(&self, user: &str) -> Option<&Login> {
        self.users.get(user)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &String> {
        self.users.keys()
    }

    /// What an unknown `user` is challenged with: the same salt each time it is tried.
    fn decoy(&self, user: &str) -> Password {
        let mut salt = Vec::with_capacity(16);
        for part in [0u8, 1] {
            let mut hasher = self.decoy.build_hasher();
            hasher.write_u8(part);
            hasher.write(user.as_bytes());
            salt.extend_from_slice(&hasher.finish().to_le_bytes());
        }
        let unmatchable = uuid::Uuid::new_v4().as_bytes().repeat(2);
        Password::new(Some(salt), unmatchable)
    }
}

#[async_trait]
impl AuthSource for Logins {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        Ok(match self.users.get(user) {
            Some(found) => Password::new(Some(found.salt.clone()), found.salted_password.clone()),
            None => self.decoy(user),
        })
    }
}

/// The throttle's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThrottlePolicy {
    pub(crate) failures_allowed: u32,
    pub(crate) first_lockout: Duration,
    pub(crate) longest_lockout: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

/// Failed logins per user name and per address.
#[derive(Debug)]
pub(crate) struct Throttle {
    policy: ThrottlePolicy,
    failures: Mutex<HashMap<Key, Failures>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

/// Names and addresses remembered at most; past it the oldest lockouts are forgotten first.
const REMEMBERED: usize = 10_000;

impl Throttle {
    pub(crate) fn new(policy: ThrottlePolicy) -> Throttle {
        Throttle {
            policy,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(user: &str, address: IpAddr) -> [Key; 2] {
        [Key::User(user.to_owned()), Key::Address(address)]
    }

    /// How long `user` from `address` must still wait, if it must.
    pub(crate) fn wait(&self, user: &str, address: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        Self::keys(user, address)
            .iter()
            .filter_map(|key| failures.get(key)?.locked_until)
            .filter(|until| *until > now)
            .max()
            .map(|until| until - now)
    }

    pub(crate) fn failed(&self, user: &str, address: IpAddr) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= REMEMBERED {
            failures.retain(|_, f| f.locked_until.is_some_and(|until| until > now));
        }
        for key in Self::keys(user, address) {
            let entry = failures.entry(key).or_insert(Failures {
                count: 0,
                locked_until: None,
            });
            entry.count += 1;
            if let Some(over) = entry.count.checked_sub(self.policy.failures_allowed)
                && over > 0
            {
                let lockout = self
                    .policy
                    .first_lockout
                    .saturating_mul(1 << (over - 1).min(20))
                    .min(self.policy.longest_lockout);
                entry.locked_until = Some(now + lockout);
            }
        }
    }

    pub(crate) fn succeeded(&self, user: &str, address: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in Self::keys(user, address) {
            failures.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_start_after_the_allowed_failures_double_and_end_on_success() {
        let throttle = Throttle::new(ThrottlePolicy {
            failures_allowed: 3,
            first_lockout: Duration::from_secs(1),
            longest_lockout: Duration::from_secs(5),
        });
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let there: IpAddr = "10.0.0.9".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.wait("shop", here), None);
            throttle.failed("shop", here);
        }
        assert_eq!(
            throttle.wait("shop", here),
            None,
            "three failures are allowed"
        );
        throttle.failed("shop", here);
        let first = throttle.wait("shop", here).unwrap();
        assert!(first <= Duration::from_secs(1) && first > Duration::from_millis(900));
        assert!(
            throttle.wait("shop", there).is_some(),
            "the user is locked from every address"
        );
        assert!(
            throttle.wait("someone-else", here).is_some(),
            "the address is locked for every user"
        );
        throttle.failed("shop", here);
        assert!(throttle.wait("shop", here).unwrap() > Duration::from_millis(1_900));
        for _ in 0..10 {
            throttle.failed("shop", here);
        }
        assert!(throttle.wait("shop", here).unwrap() <= Duration::from_secs(5));
        throttle.succeeded("shop", here);
        assert_eq!(throttle.wait("shop", here), None);
    }

    #[tokio::test]
    async fn an_unknown_user_is_challenged_like_a_known_one() {
        let logins = Logins::new(
            &[SqlUser {
                name: "analyst".into(),
                password: "secret".into(),
                merchant_id: None,
            }],
            4096,
        );
        let known = logins
            .get_password(&LoginInfo::new(Some("analyst"), None, String::new()))
            .await
            .unwrap();
        let unknown = logins
            .get_password(&LoginInfo::new(Some("mallory"), None, String::new()))
            .await
            .unwrap();
        let again = logins
            .get_password(&LoginInfo::new(Some("mallory"), None, String::new()))
            .await
            .unwrap();
        assert_eq!(
            known.salt().map(<[u8]>::len),
            unknown.salt().map(<[u8]>::len)
        );
        assert_eq!(
            unknown.salt(),
            again.salt(),
            "the decoy salt is stable per name"
        );
        assert_eq!(known.password().len(), unknown.password().len());
    }
}
