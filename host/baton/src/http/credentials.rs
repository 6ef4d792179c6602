//! Credentials: random secrets and their hashes, Argon2id passwords hashed
//! off the async threads, the login throttle every password check goes
//! through, and the first admin's bootstrap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use baton_core::store::{AccountRow, Store, StoreError};

/// A new random secret (256 bits, hex).
pub fn secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a secret is stored: its blake3 hash.
pub fn secret_hash(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// An Argon2id PHC string for a password.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password")
        .to_string()
}

/// [`hash_password`] on a blocking thread, off the async threads the
/// heartbeat and the API run on.
pub async fn hash_password_off_thread(password: String) -> String {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .expect("argon2 hashes any password")
}

/// Checks a password against its PHC string, on a blocking thread (an
/// Argon2id hash takes 19 MiB and tens of milliseconds). Without a hash (an
/// unknown account) it verifies against a dummy one all the same, so the
/// answer's timing does not tell which accounts exist.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY.get_or_init(|| hash_password("-")).clone());
        let matches = PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        known && matches
    })
    .await
    .unwrap_or(false)
}

/// Failed logins an account may have before it must wait.
const ACCOUNT_FREE_FAILURES: u32 = 5;
/// Failed logins an address may have before it must wait (it may be shared).
const ADDRESS_FREE_FAILURES: u32 = 20;
/// The wait the first failure past the allowance earns; each further one
/// doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(15);
/// The longest wait a run of failures earns.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Accounts and addresses remembered at most; beyond it only those that
/// must wait are kept.
const REMEMBERED: usize = 10_000;

/// Throttles password guessing on `/login`: per account and per client
/// address, each failure past a free allowance doubles the wait before the
/// next try (up to [`MAX_BACKOFF`]); and at most [`CONCURRENT_HASHES`]
/// password hashes run at once, so a flood of logins cannot take the
/// memory and threads the heartbeat and the API need.
pub struct LoginGuard {
    failures: Mutex<HashMap<String, Failures>>,
    hashes: tokio::sync::Semaphore,
}

/// Password hashes that may run at once, over all logins.
pub const CONCURRENT_HASHES: usize = 2;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    wait_until: Instant,
}

impl Default for LoginGuard {
    fn default() -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
            hashes: tokio::sync::Semaphore::new(CONCURRENT_HASHES),
        }
    }
}

impl LoginGuard {
    fn keys(account: &str, address: Option<IpAddr>) -> [(String, u32); 2] {
        let address = address.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        [
            (format!("account:{account}"), ACCOUNT_FREE_FAILURES),
            (format!("address:{address}"), ADDRESS_FREE_FAILURES),
        ]
    }

    /// How long the caller must wait before trying `account` again from
    /// `address`; `None` when it may try now.
    fn wait(&self, account: &str, address: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let failures = self.failures.lock().expect("login failures lock");
        Self::keys(account, address)
            .iter()
            .filter_map(|(key, _)| failures.get(key))
            .map(|f| f.wait_until.saturating_duration_since(now))
            .filter(|wait| !wait.is_zero())
            .max()
    }

    /// Checks the password (with at most [`CONCURRENT_HASHES`] checks at
    /// once) unless `account` or `address` must wait, and records the
    /// outcome for both. The wait is looked at again once a hash may run,
    /// so a burst of guesses queued behind each other is turned away too.
    pub async fn check(
        &self,
        account: &str,
        address: Option<IpAddr>,
        password: String,
        hash: Option<String>,
    ) -> Login {
        if let Some(wait) = self.wait(account, address) {
            return Login::Wait(wait);
        }
        let Ok(_permit) = self.hashes.acquire().await else {
            return Login::Wrong;
        };
        if let Some(wait) = self.wait(account, address) {
            return Login::Wait(wait);
        }
        let ok = verify_password(password, hash).await;
        let keys = Self::keys(account, address);
        let mut failures = self.failures.lock().expect("login failures lock");
        if ok {
            failures.remove(&keys[0].0);
            return Login::Ok;
        }
        let now = Instant::now();
        if failures.len() >= REMEMBERED {
            failures.retain(|_, f| f.wait_until > now);
        }
        for (key, free) in keys {
            let entry = failures.entry(key).or_insert(Failures {
                count: 0,
                wait_until: now,
            });
            entry.count += 1;
            if let Some(over) = entry.count.checked_sub(free).filter(|over| *over > 0) {
                let wait = (FIRST_BACKOFF * (1 << (over - 1).min(10))).min(MAX_BACKOFF);
                entry.wait_until = now + wait;
                tracing::warn!(
                    account,
                    ?address,
                    failures = entry.count,
                    ?wait,
                    "repeated failed logins"
                );
            }
        }
        Login::Wrong
    }
}

/// What a login attempt comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The password is right.
    Ok,
    /// Unknown account or wrong password.
    Wrong,
    /// Too many failures: try again after this long.
    Wait(Duration),
}

/// The shortest password `BATON_ADMIN_PASSWORD` may give the first admin.
pub const MIN_ADMIN_PASSWORD: usize = 12;

/// The file in a server's data folder that holds its admin token, which
/// the CLI on the same machine reads.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// First start: creates `admin` when the cluster has no account, with the
/// password from `BATON_ADMIN_PASSWORD` (at least [`MIN_ADMIN_PASSWORD`]
/// characters) or a generated one written to `<data>/admin.password` (mode
/// 0600; never logged, since logs travel further than the data folder); and
/// makes sure `<data>/admin.token` (mode 0600) holds a valid admin API
/// token, which the CLI uses by default.
pub async fn bootstrap(store: &dyn Store, data: &Path) -> anyhow::Result<()> {
    if !store.has_accounts().await? {
        let given = std::env::var("BATON_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty());
        let password_file = data.join("admin.password");
        let password = match given {
            Some(password) if password.chars().count() < MIN_ADMIN_PASSWORD => anyhow::bail!(
                "BATON_ADMIN_PASSWORD has {} characters; the first admin's password needs at least {MIN_ADMIN_PASSWORD}",
                password.chars().count()
            ),
            Some(password) => password,
            None => {
                let password = secret()[..20].to_owned();
                write_private(&password_file, &password)?;
                password
            }
        };
        let created = store
            .create_account(&AccountRow {
                name: "admin".into(),
                password_hash: hash_password(&password),
                role: "admin".into(),
            })
            .await;
        match created {
            Ok(()) if password_file.exists() => tracing::warn!(
                "created the account admin; its password is in {}",
                password_file.display()
            ),
            Ok(()) => tracing::info!(
                "created the account admin with the password from BATON_ADMIN_PASSWORD"
            ),
            // Another server of the cluster created it at the same moment.
            Err(StoreError::Refused(_)) => {
                let _ = std::fs::remove_file(&password_file);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let path = data.join(ADMIN_TOKEN_FILE);
    if let Ok(token) = std::fs::read_to_string(&path)
        && store
            .token_account(&secret_hash(token.trim()))
            .await?
            .is_some()
    {
        return Ok(());
    }
    let token = secret();
    store
        .create_token(&secret_hash(&token), "admin", "admin.token", None)
        .await?;
    write_private(&path, &token)?;
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(runtime.block_on(verify_password("correct horse".into(), Some(hash.clone()))));
        assert!(!runtime.block_on(verify_password("wrong".into(), Some(hash))));
        assert!(!runtime.block_on(verify_password("-".into(), None)));
    }
}
