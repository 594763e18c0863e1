//! `yolots token create --name NAME [--admin]`: a new owner and its bearer token.
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
