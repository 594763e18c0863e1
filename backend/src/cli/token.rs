//! `yolots token create --name NAME [--admin]`: a new owner and its bearer token;
//! `yolots token revoke (TOKEN | - | --owner NAME)`: a token, or every token of an owner,
//! refused from now on.
//!
//! The token is printed once, alone on stdout (so `TOKEN=$(yolots token create ...)`
//! works); only its SHA-256 is stored.

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::DatabaseArgs;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an owner with a bearer token and print the token.
    Create(CreateArgs),
    /// Revoke a token (`-`: read it from stdin, so it stays out of the process list), or
    /// every token of the owners of a name.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
#[group(id = "which", required = true, multiple = false, args = ["token", "owner"])]
pub struct RevokeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The token to revoke, or `-` to read it from stdin.
    pub token: Option<String>,
    /// Revoke every token of the owners with this name.
    #[arg(long)]
    pub owner: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Name of the owner (a person, a team, a CI job).
    #[arg(long)]
    pub name: String,
    /// The owner sees every job, not only its own.
    #[arg(long)]
    pub admin: bool,
}

pub async fn run(args: &TokenArgs) -> anyhow::Result<()> {
    match &args.command {
        TokenCommand::Revoke(revoke) => {
            let pool = crate::db::pool(&revoke.database).context("invalid DATABASE_URL")?;
            crate::db::migrate(&pool)
                .await
                .context("applying migrations")?;
            match (&revoke.token, &revoke.owner) {
                (Some(token), _) => {
                    let token = if token == "-" {
                        let mut text = String::new();
                        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                            .context("reading the token from stdin")?;
                        text.trim().to_owned()
                    } else {
                        token.clone()
                    };
                    if crate::auth::revoke_token(&pool, &token)
                        .await
                        .context("revoking the token")?
                    {
                        eprintln!("token revoked");
                    } else {
                        anyhow::bail!("no valid token like this one (unknown or revoked already)");
                    }
                }
                (None, Some(owner)) => {
                    let revoked = crate::auth::revoke_owner(&pool, owner)
                        .await
                        .context("revoking the tokens")?;
                    eprintln!(
                        "{revoked} {} of {owner:?} revoked",
                        if revoked == 1 { "token" } else { "tokens" }
                    );
                }
                (None, None) => anyhow::bail!("name a token or an --owner"),
            }
            Ok(())
        }
        TokenCommand::Create(create) => {
            let pool = crate::db::pool(&create.database).context("invalid DATABASE_URL")?;
            crate::db::migrate(&pool)
                .await
                .context("applying migrations")?;
            let (owner, token) =
                crate::auth::create_owner(&pool, &create.name, create.admin, "cli")
                    .await
                    .context("creating the owner")?;
            eprintln!(
                "owner {} ({}{}); the token is shown only now:",
                owner.name,
                owner.id,
                if owner.is_admin { ", admin" } else { "" }
            );
            println!("{token}");
            Ok(())
        }
    }
}
