//! The `baton` command's client side: commands that talk to a running
//! server over its JSON API, reading the API's own `dto` types. `main.rs`
//! holds the command line's shape and `baton up`; each command's work is
//! here, by what it acts on.
//!
//! # Layout
//!
//! - [`client`]: the typed HTTP client, the token it uses, tables.
//! - [`requests`], [`flows`], [`servers`], [`accounts`]: the commands.
//! - [`scaffold`]: `baton new`, which writes a flow crate and needs no
//!   server.

pub mod accounts;
pub mod client;
pub mod flows;
pub mod requests;
pub mod scaffold;
pub mod servers;
pub mod statistics;

use client::Client;

/// Which server a command talks to, and with which token.
#[derive(clap::Args)]
pub struct ServerArg {
    /// The server to talk to.
    #[arg(
        long = "server",
        env = "BATON_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// API token (default: the local server's <data>/admin.token, for a
    /// server on this machine only).
    #[arg(long, env = "BATON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ServerArg {
    /// A client of the server, with the token to use.
    pub fn client(self) -> Client {
        let token = client::token(self.token, &self.url);
        Client::new(&self.url, token)
    }
}
