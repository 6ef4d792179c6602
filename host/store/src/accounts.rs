//! Accounts, console sessions and API tokens.
//!
//! The store keeps what it is given: password hashes (the server hashes with
//! Argon2id) and blake3 hashes of session and token secrets, never the
//! secrets themselves.

use sqlx::Connection;

use baton_core::store::async_trait;

use crate::{AccountRow, AccountStore, AccountSummary, Backend, Db, SqlStore, StoreError};

/// The role that may manage accounts; the store keeps one enabled account
/// with it.
const ADMIN: &str = "admin";

impl SqlStore {
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
        sqlx::query(lock).execute(&mut **tx).await.db()?;
        let target: Option<(String, i64)> =
            sqlx::query_as("SELECT role, disabled FROM accounts WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut **tx)
                .await
                .db()?;
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
        .await
        .db()?;
        if others == 0 {
            return Err(StoreError::Refused(format!(
                "{name} is the last enabled admin; make another account an admin (or enable one) first"
            )));
        }
        Ok(Some(()))
    }
}

/// An account from its `name, password_hash, role` columns.
fn account_row((name, password_hash, role): (String, String, String)) -> AccountRow {
    AccountRow {
        name,
        password_hash,
        role,
    }
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn has_accounts(&self) -> Result<bool, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM accounts")
            .fetch_one(&self.pool)
            .await
            .db()?;
        Ok(n > 0)
    }

    async fn create_account(&self, account: &AccountRow) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query(&self.sql(
            "INSERT INTO accounts (name, password_hash, role, created_at) VALUES ($1, $2, $3, NOW_MS)
             ON CONFLICT (name) DO NOTHING",
        ))
        .bind(&account.name)
        .bind(&account.password_hash)
        .bind(&account.role)
        .execute(&mut *writer)
        .await.db()?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Refused(format!(
                "an account named {} exists",
                account.name
            )));
        }
        Ok(())
    }

    async fn account(&self, name: &str) -> Result<Option<AccountRow>, StoreError> {
        Ok(sqlx::query_as::<_, (String, String, String)>(
            "SELECT name, password_hash, role FROM accounts WHERE name = $1 AND disabled = 0",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .db()?
        .map(account_row))
    }

    async fn accounts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT name, role, disabled FROM accounts ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .db()?,
        )
    }

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query("UPDATE accounts SET password_hash = $1 WHERE name = $2")
            .bind(password_hash)
            .bind(name)
            .execute(&mut *writer)
            .await
            .db()?;
        sqlx::query("DELETE FROM sessions WHERE account = $1")
            .bind(name)
            .execute(&mut *writer)
            .await
            .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        if disabled && self.keep_an_admin(&mut tx, name).await?.is_none() {
            return Ok(false);
        }
        let done = sqlx::query("UPDATE accounts SET disabled = $1 WHERE name = $2")
            .bind(i64::from(disabled))
            .bind(name)
            .execute(&mut *tx)
            .await
            .db()?;
        sqlx::query("DELETE FROM sessions WHERE account = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_role(&self, name: &str, role: &str) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        if role != ADMIN && self.keep_an_admin(&mut tx, name).await?.is_none() {
            return Ok(false);
        }
        let done = sqlx::query("UPDATE accounts SET role = $1 WHERE name = $2")
            .bind(role)
            .bind(name)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_account(&self, name: &str) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        if self.keep_an_admin(&mut tx, name).await?.is_none() {
            return Ok(false);
        }
        for table in ["sessions", "api_tokens"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE account = $1"))
                .bind(name)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        let done = sqlx::query("DELETE FROM accounts WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn account_overview(&self) -> Result<Vec<AccountSummary>, StoreError> {
        let rows: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(&self.sql(
            "SELECT a.name, a.role, a.disabled, a.created_at,
                    (SELECT COUNT(*) FROM api_tokens t WHERE t.account = a.name
                        AND (t.expires_at IS NULL OR t.expires_at > NOW_MS)),
                    (SELECT COUNT(*) FROM sessions s WHERE s.account = a.name
                        AND s.expires_at > NOW_MS)
               FROM accounts a ORDER BY a.name",
        ))
        .fetch_all(&self.pool)
        .await
        .db()?;
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

    async fn revoke_token(&self, token_hash: &str) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *writer)
            .await
            .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_tokens(&self, account: &str) -> Result<u64, StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query("DELETE FROM api_tokens WHERE account = $1")
            .bind(account)
            .execute(&mut *writer)
            .await
            .db()?;
        Ok(done.rows_affected())
    }

    async fn purge_expired_credentials(&self) -> Result<u64, StoreError> {
        let mut writer = self.writer().await?;
        let mut purged = 0;
        for table in ["sessions", "api_tokens"] {
            purged +=
                sqlx::query(&self.sql(&format!("DELETE FROM {table} WHERE expires_at <= NOW_MS")))
                    .execute(&mut *writer)
                    .await
                    .db()?
                    .rows_affected();
        }
        Ok(purged)
    }

    async fn create_session(
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
        .await
        .db()?;
        Ok(())
    }

    async fn session_account(&self, token_hash: &str) -> Result<Option<AccountRow>, StoreError> {
        Ok(sqlx::query_as::<_, (String, String, String)>(&self.sql(
            "SELECT a.name, a.password_hash, a.role FROM sessions s JOIN accounts a ON a.name = s.account
              WHERE s.token_hash = $1 AND s.expires_at > NOW_MS AND a.disabled = 0",
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await.db()?
        .map(account_row))
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *writer)
            .await
            .db()?;
        Ok(())
    }

    async fn create_token(
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
        .await
        .db()?;
        Ok(())
    }

    async fn token_account(&self, token_hash: &str) -> Result<Option<AccountRow>, StoreError> {
        Ok(sqlx::query_as::<_, (String, String, String)>(&self.sql(
            "SELECT a.name, a.password_hash, a.role FROM api_tokens t JOIN accounts a ON a.name = t.account
              WHERE t.token_hash = $1 AND a.disabled = 0
                AND (t.expires_at IS NULL OR t.expires_at > NOW_MS)",
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await.db()?
        .map(account_row))
    }
}
