//! Commands on the cluster's servers.

use crate::cli::ServerArg;
use crate::cli::client::print_table;
use crate::http::api::dto::{ServerName, ServerView};

/// The arguments of `baton servers`.
#[derive(clap::Args)]
pub struct ServersArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton servers`.
pub async fn servers(args: ServersArgs) -> anyhow::Result<()> {
    let ServersArgs { json, server } = args;
    let rows: Vec<ServerView> = server.client().get("/api/servers").await?;
    print_table(
        &rows,
        &[
            "id",
            "name",
            "status",
            "address",
            "heartbeat_age_ms",
            "owned",
        ],
        json,
    );
    Ok(())
}

/// The arguments of `baton rename`.
#[derive(clap::Args)]
pub struct RenameArgs {
    /// Server ID.
    pub id: String,
    /// New name.
    pub name: String,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton rename`.
pub async fn rename(args: RenameArgs) -> anyhow::Result<()> {
    let RenameArgs { id, name, server } = args;
    let body = ServerName {
        id: None,
        name: name.clone(),
    };
    let _: ServerName = server
        .client()
        .post_json(&format!("/api/servers/{id}/name"), &body)
        .await?;
    println!("{id} is now named {name}");
    Ok(())
}
