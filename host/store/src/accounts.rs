//! Accounts, console sessions and API tokens.
//!
//! The store keeps what it is given: password hashes (the server hashes with
//! Argon2id) and blake3 hashes of session and token secrets, never the
//! secrets themselves.

use crate::{Store, StoreError};

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

    /// One account.
    pub async fn account(&self, name: &str) -> Result<Option<AccountRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT name, password_hash, role FROM accounts WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Every account's name and role.
    pub async fn accounts(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT name, role FROM accounts ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
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
              WHERE s.token_hash = $1 AND s.expires_at > NOW_MS",
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

    /// Records an API token for an account.
    pub async fn create_token(
        &self,
        token_hash: &str,
        account: &str,
        label: &str,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        sqlx::query(&self.sql(
            "INSERT INTO api_tokens (token_hash, account, label, created_at) VALUES ($1, $2, $3, NOW_MS)",
        ))
        .bind(token_hash)
        .bind(account)
        .bind(label)
        .execute(&mut *writer)
        .await?;
        Ok(())
    }

    /// The account an API token belongs to.
    pub async fn token_account(&self, token_hash: &str) -> Result<Option<AccountRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT a.name, a.password_hash, a.role FROM api_tokens t JOIN accounts a ON a.name = t.account
              WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }
}
