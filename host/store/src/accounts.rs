//! Accounts, console sessions and API tokens.
//!
//! The store keeps what it is given: password hashes (the server hashes with
//! Argon2id) and blake3 hashes of session and token secrets, never the
//! secrets themselves.

use sqlx::Connection;

use crate::{Backend, Store, StoreError};

/// The role that may manage accounts; the store keeps one enabled account
/// with it.
const ADMIN: &str = "admin";

/// An account as the accounts page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// Login name.
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Whether it is disabled.
    pub disabled: bool,
    /// When it was created, ms.
    pub created_at: i64,
    /// Unexpired API tokens.
    pub tokens: i64,
    /// Unexpired console sessions.
    pub sessions: i64,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountRow {
    /// Login name.
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
}

impl Store {
    /// Whether any account exists (the first start creates `admin`).
    pub async fn has_accounts(&self) -> Result<bool, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM accounts")
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// Creates an account; refused when the name is taken.
    pub async fn create_account(&self, account: &AccountRow) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query(&self.sql(
            "INSERT INTO accounts (name, password_hash, role, created_at) VALUES ($1, $2, $3, NOW_MS)
             ON CONFLICT (name) DO NOTHING",
        ))
        .bind(&account.name)
        .bind(&account.password_hash)
        .bind(&account.role)
        .execute(&mut *writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Refused(format!(
                "an account named {} exists",
                account.name
            )));
        }
        Ok(())
    }

    /// One account that is not disabled.
    pub async fn account(&self, name: &str) -> Result<Option<AccountRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT name, password_hash, role FROM accounts WHERE name = $1 AND disabled = 0",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every account's name, role and whether it is disabled (1).
    pub async fn accounts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT name, role, disabled FROM accounts ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Sets an account's password hash and ends its sessions; `false` when
    /// there is no such account.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query("UPDATE accounts SET password_hash = $1 WHERE name = $2")
            .bind(password_hash)
            .bind(name)
            .execute(&mut *writer)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE account = $1")
            .bind(name)
            .execute(&mut *writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Disables (or enables again) an account; a disabled account's
    /// sessions end, and its tokens answer nothing until it is enabled.
    /// `false` when there is no such account; refused when it is the last
    /// enabled admin (see [`Store::keep_an_admin`]).
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        if disabled && self.keep_an_admin(&mut tx, name).await?.is_none() {
            return Ok(false);
        }
        let done = sqlx::query("UPDATE accounts SET disabled = $1 WHERE name = $2")
            .bind(i64::from(disabled))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE account = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives an account another role (`admin`, `operator` or `viewer`);
    /// `false` when there is no such account; refused when it would demote
    /// the last enabled admin.
    pub async fn set_role(&self, name: &str, role: &str) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        if role != ADMIN && self.keep_an_admin(&mut tx, name).await?.is_none() {
            return Ok(false);
        }
        let done = sqlx::query("UPDATE accounts SET role = $1 WHERE name = $2")
            .bind(role)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes an account with its sessions and tokens, in one transaction
    /// (a stop half-way leaves no account without its credentials gone, or
    /// the reverse); `false` when there is no such account; refused when it
    /// is the last enabled admin.
    pub async fn delete_account(&self, name: &str) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        if self.keep_an_admin(&mut tx, name).await?.is_none() {
            return Ok(false);
        }
        for table in ["sessions", "api_tokens"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE account = $1"))
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM accounts WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// The invariant that the store always keeps one enabled admin, checked
    /// in the transaction `tx` that is about to take admin power from `name`
    /// (disable, demote or delete it): `None` when there is no such account,
    /// refused when `name` is the last enabled admin.
    ///
    /// The enabled admins' rows are locked first, so two transactions that
    /// each take power from a different admin cannot both count the other
    /// one: on PostgreSQL with `SELECT … FOR UPDATE` (the second waits for
    /// the first to commit, then reads the rows again and skips the one no
    /// longer an enabled admin); on SQLite with a write that changes
    /// nothing, which takes the database's write lock.
    async fn keep_an_admin(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        name: &str,
    ) -> Result<Option<()>, StoreError> {
        let lock = match self.backend {
            Backend::Postgres => {
                "SELECT name FROM accounts WHERE role = 'admin' AND disabled = 0 FOR UPDATE"
            }
            Backend::Sqlite => {
                "UPDATE accounts SET role = role WHERE role = 'admin' AND disabled = 0"
            }
        };
        sqlx::query(lock).execute(&mut **tx).await?;
        let target: Option<(String, i64)> =
            sqlx::query_as("SELECT role, disabled FROM accounts WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut **tx)
                .await?;
        let Some((role, disabled)) = target else {
            return Ok(None);
        };
        if role != ADMIN || disabled != 0 {
            return Ok(Some(()));
        }
        let (others,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM accounts WHERE role = 'admin' AND disabled = 0 AND name <> $1",
        )
        .bind(name)
        .fetch_one(&mut **tx)
        .await?;
        if others == 0 {
            return Err(StoreError::Refused(format!(
                "{name} is the last enabled admin; make another account an admin (or enable one) first"
            )));
        }
        Ok(Some(()))
    }

    /// Every account with its role, whether it is disabled and how many
    /// unexpired API tokens and sessions it holds, by name.
    pub async fn account_overview(&self) -> Result<Vec<AccountSummary>, StoreError> {
        let rows: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(&self.sql(
            "SELECT a.name, a.role, a.disabled, a.created_at,
                    (SELECT COUNT(*) FROM api_tokens t WHERE t.account = a.name
                        AND (t.expires_at IS NULL OR t.expires_at > NOW_MS)),
                    (SELECT COUNT(*) FROM sessions s WHERE s.account = a.name
                        AND s.expires_at > NOW_MS)
               FROM accounts a ORDER BY a.name",
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(name, role, disabled, created_at, tokens, sessions)| AccountSummary {
                    name,
                    role,
                    disabled: disabled != 0,
                    created_at,
                    tokens,
                    sessions,
                },
            )
            .collect())
    }

    /// Revokes one token by its hash; `false` when it was not there.
    pub async fn revoke_token(&self, token_hash: &str) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Revokes every token of an account; how many there were.
    pub async fn revoke_tokens(&self, account: &str) -> Result<u64, StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query("DELETE FROM api_tokens WHERE account = $1")
            .bind(account)
            .execute(&mut *writer)
            .await?;
        Ok(done.rows_affected())
    }

    /// Deletes expired sessions and tokens; how many rows went.
    pub async fn purge_expired_credentials(&self) -> Result<u64, StoreError> {
        let mut writer = self.writer().await?;
        let mut purged = 0;
        for table in ["sessions", "api_tokens"] {
            purged +=
                sqlx::query(&self.sql(&format!("DELETE FROM {table} WHERE expires_at <= NOW_MS")))
                    .execute(&mut *writer)
                    .await?
                    .rows_affected();
        }
        Ok(purged)
    }

    /// Records a session valid for `ttl_ms`.
    pub async fn create_session(
        &self,
        token_hash: &str,
        account: &str,
        ttl_ms: i64,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        sqlx::query(&self.sql(
            "INSERT INTO sessions (token_hash, account, expires_at) VALUES ($1, $2, NOW_MS + $3)",
        ))
        .bind(token_hash)
        .bind(account)
        .bind(ttl_ms)
        .execute(&mut *writer)
        .await?;
        Ok(())
    }

    /// The account of a session that has not expired.
    pub async fn session_account(
        &self,
        token_hash: &str,
    ) -> Result<Option<AccountRow>, StoreError> {
        Ok(sqlx::query_as(&self.sql(
            "SELECT a.name, a.password_hash, a.role FROM sessions s JOIN accounts a ON a.name = s.account
              WHERE s.token_hash = $1 AND s.expires_at > NOW_MS AND a.disabled = 0",
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Ends a session.
    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *writer)
            .await?;
        Ok(())
    }

    /// Records an API token for an account, valid for `ttl_ms` (`None`:
    /// until revoked).
    pub async fn create_token(
        &self,
        token_hash: &str,
        account: &str,
        label: &str,
        ttl_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        sqlx::query(&self.sql(
            "INSERT INTO api_tokens (token_hash, account, label, created_at, expires_at)
             VALUES ($1, $2, $3, NOW_MS, NOW_MS + $4)",
        ))
        .bind(token_hash)
        .bind(account)
        .bind(label)
        .bind(ttl_ms)
        .execute(&mut *writer)
        .await?;
        Ok(())
    }

    /// The account an API token belongs to, while the token has not
    /// expired and the account is not disabled.
    pub async fn token_account(&self, token_hash: &str) -> Result<Option<AccountRow>, StoreError> {
        Ok(sqlx::query_as(&self.sql(
            "SELECT a.name, a.password_hash, a.role FROM api_tokens t JOIN accounts a ON a.name = t.account
              WHERE t.token_hash = $1 AND a.disabled = 0
                AND (t.expires_at IS NULL OR t.expires_at > NOW_MS)",
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }
}
