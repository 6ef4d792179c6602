//! Commands on accounts, passwords and tokens.

use anyhow::Context;

use crate::cli::ServerArg;
use crate::http::api::dto::{
    AccountView, Deleted, IssuedToken, NewAccount, PasswordChange, PasswordReset, Revoked,
    RevokedTokens, RoleChange, TokenRevocation,
};

/// The arguments of `baton account`.
#[derive(clap::Args)]
pub struct AccountArgs {
    /// Login name.
    pub name: String,
    /// admin, operator or viewer.
    #[arg(long, default_value = "viewer")]
    pub role: String,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton account`.
pub async fn account(args: AccountArgs) -> anyhow::Result<()> {
    let AccountArgs { name, role, server } = args;
    let password = std::env::var("BATON_ACCOUNT_PASSWORD")
        .context("set BATON_ACCOUNT_PASSWORD to the new account's password")?;
    let body = NewAccount {
        name: name.clone(),
        password,
        role: role.clone(),
    };
    let _: AccountView = server.client().post_json("/api/accounts", &body).await?;
    println!("created the {role} account {name}");
    Ok(())
}

/// The arguments of `baton manage`.
#[derive(clap::Args)]
pub struct ManageArgs {
    /// Account name.
    pub name: String,
    /// Set its password from BATON_ACCOUNT_PASSWORD (ends its sessions).
    #[arg(long)]
    pub password: bool,
    /// Give it another role: admin, operator or viewer.
    #[arg(long, conflicts_with = "delete")]
    pub role: Option<String>,
    /// Disable it: no login, its sessions end, its tokens answer nothing.
    #[arg(long, conflicts_with_all = ["enable", "delete"])]
    pub disable: bool,
    /// Enable it again.
    #[arg(long, conflicts_with = "delete")]
    pub enable: bool,
    /// Delete it with its sessions and tokens.
    #[arg(long)]
    pub delete: bool,
    /// Revoke every API token it has.
    #[arg(long)]
    pub revoke_tokens: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton manage`.
pub async fn manage(args: ManageArgs) -> anyhow::Result<()> {
    let ManageArgs {
        name,
        password,
        role,
        disable,
        enable,
        delete,
        revoke_tokens,
        server,
    } = args;
    let client = server.client();
    if let Some(role) = role {
        let body = RoleChange { role: role.clone() };
        let _: AccountView = client
            .post_json(&format!("/api/accounts/{name}/role"), &body)
            .await?;
        println!("{name} is now a {role}");
    }
    if password {
        let password = std::env::var("BATON_ACCOUNT_PASSWORD")
            .context("set BATON_ACCOUNT_PASSWORD to the account's new password")?;
        let _: AccountView = client
            .post_json(
                &format!("/api/accounts/{name}/password"),
                &PasswordReset { password },
            )
            .await?;
        println!("set the password of {name}");
    }
    if revoke_tokens {
        let answer: RevokedTokens = client
            .delete(&format!("/api/accounts/{name}/tokens"))
            .await?;
        println!("revoked {} tokens of {name}", answer.revoked);
    }
    for (wanted, action) in [(disable, "disable"), (enable, "enable")] {
        if wanted {
            let _: AccountView = client
                .post(&format!("/api/accounts/{name}/{action}"), Vec::new())
                .await?;
            println!("{action}d {name}");
        }
    }
    if delete {
        let _: Deleted = client.delete(&format!("/api/accounts/{name}")).await?;
        println!("deleted {name}");
    }
    Ok(())
}

/// The arguments of `baton passwd`.
#[derive(clap::Args)]
pub struct PasswdArgs {
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton passwd`.
pub async fn passwd(args: PasswdArgs) -> anyhow::Result<()> {
    let PasswdArgs { server } = args;
    let current =
        std::env::var("BATON_PASSWORD").context("set BATON_PASSWORD to your current password")?;
    let password = std::env::var("BATON_NEW_PASSWORD")
        .context("set BATON_NEW_PASSWORD to your new password")?;
    let body = PasswordChange { current, password };
    let _: AccountView = server.client().post_json("/api/password", &body).await?;
    println!("password changed; your console sessions have ended");
    Ok(())
}

/// The arguments of `baton revoke`.
#[derive(clap::Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton revoke`.
pub async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let RevokeArgs { server } = args;
    let mut token = String::new();
    std::io::stdin()
        .read_line(&mut token)
        .context("reading the token from standard input")?;
    let body = TokenRevocation {
        token: token.trim().to_owned(),
    };
    let _: Revoked = server
        .client()
        .post_json("/api/tokens/revoke", &body)
        .await?;
    println!("revoked");
    Ok(())
}

/// The arguments of `baton token`.
#[derive(clap::Args)]
pub struct TokenArgs {
    /// Account name.
    pub name: String,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton token`.
pub async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let TokenArgs { name, server } = args;
    let answer: IssuedToken = server
        .client()
        .post(&format!("/api/accounts/{name}/tokens"), Vec::new())
        .await?;
    println!("{}", answer.token);
    Ok(())
}
