//! Accounts, console sessions and API tokens. The store keeps password
//! hashes and hashes of session and token secrets, never the secrets.

use async_trait::async_trait;

use super::StoreError;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// Login name.
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Whether any account exists (the first start creates `admin`).
    async fn has_accounts(&self) -> Result<bool, StoreError>;

    /// Creates an account; refused when the name is taken.
    async fn create_account(&self, account: &AccountRow) -> Result<(), StoreError>;

    /// One account that is not disabled.
    async fn account(&self, name: &str) -> Result<Option<AccountRow>, StoreError>;

    /// Every account's name, role and whether it is disabled (1).
    async fn accounts(&self) -> Result<Vec<(String, String, i64)>, StoreError>;

    /// Sets an account's password hash and ends its sessions; `false` when
    /// there is no such account.
    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError>;

    /// Disables (or enables again) an account; a disabled account's
    /// sessions end, and its tokens answer nothing until it is enabled.
    /// `false` when there is no such account; refused when it is the last
    /// enabled admin (the store checks it in the same transaction).
    async fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError>;

    /// Gives an account another role (`admin`, `operator` or `viewer`);
    /// `false` when there is no such account; refused when it would demote
    /// the last enabled admin.
    async fn set_role(&self, name: &str, role: &str) -> Result<bool, StoreError>;

    /// Deletes an account with its sessions and tokens, in one transaction
    /// (a stop half-way leaves no account without its credentials gone, or
    /// the reverse); `false` when there is no such account; refused when it
    /// is the last enabled admin.
    async fn delete_account(&self, name: &str) -> Result<bool, StoreError>;

    /// Every account with its role, whether it is disabled and how many
    /// unexpired API tokens and sessions it holds, by name.
    async fn account_overview(&self) -> Result<Vec<AccountSummary>, StoreError>;

    /// Revokes one token by its hash; `false` when it was not there.
    async fn revoke_token(&self, token_hash: &str) -> Result<bool, StoreError>;

    /// Revokes every token of an account; how many there were.
    async fn revoke_tokens(&self, account: &str) -> Result<u64, StoreError>;

    /// Deletes expired sessions and tokens; how many rows went.
    async fn purge_expired_credentials(&self) -> Result<u64, StoreError>;

    /// Records a session valid for `ttl_ms`.
    async fn create_session(
        &self,
        token_hash: &str,
        account: &str,
        ttl_ms: i64,
    ) -> Result<(), StoreError>;

    /// The account of a session that has not expired.
    async fn session_account(&self, token_hash: &str) -> Result<Option<AccountRow>, StoreError>;

    /// Ends a session.
    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;

    /// Records an API token for an account, valid for `ttl_ms` (`None`:
    /// until revoked).
    async fn create_token(
        &self,
        token_hash: &str,
        account: &str,
        label: &str,
        ttl_ms: Option<i64>,
    ) -> Result<(), StoreError>;

    /// The account an API token belongs to, while the token has not
    /// expired and the account is not disabled.
    async fn token_account(&self, token_hash: &str) -> Result<Option<AccountRow>, StoreError>;
}
