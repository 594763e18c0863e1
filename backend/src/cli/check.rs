//! `--check-config`: the command line and the environment read exactly as a real start
//! reads them (every flag and its value, the database URL, the storage setting and its
//! `AWS_*` variables), then exit without connecting to or starting anything. Meant for
//! deployment files: `yolots serve ... --check-config` in an image, a unit file or a test.

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;

use super::Command;
use super::token::TokenCommand;
use crate::config::{DatabaseArgs, StorageArgs};
use crate::storage::{Location, Storage};

/// Checks what `command` would start with and prints a summary on stdout.
pub fn run(command: &Command) -> anyhow::Result<()> {
    let (name, database, storage): (_, Option<&DatabaseArgs>, Option<&StorageArgs>) = match command
    {
        Command::Serve(args) => ("serve", Some(&args.database), Some(&args.storage)),
        Command::Worker(args) => ("worker", Some(&args.database), Some(&args.storage)),
        Command::Migrate(args) => ("migrate", Some(args), None),
        Command::Token(args) => match &args.command {
            TokenCommand::Create(create) => ("token create", Some(&create.database), None),
            TokenCommand::Revoke(revoke) => ("token revoke", Some(&revoke.database), None),
        },
        Command::Convert(_) => ("convert", None, None),
        Command::Predict(_) => ("predict", None, None),
        Command::Inspect(_) => ("inspect", None, None),
        Command::CheckUpload(_) => ("check-upload", None, None),
    };
    if let Some(database) = database {
        let options =
            PgConnectOptions::from_str(&database.database_url).context("invalid DATABASE_URL")?;
        println!(
            "database: {}:{} (pool {})",
            options.get_host(),
            options.get_port(),
            database.db_pool
        );
    }
    if let Some(storage) = storage {
        let location = Location::parse(storage.storage.as_deref(), &storage.data_dir)?;
        // An S3 store is built (its `AWS_*` settings read and checked) without a request;
        // a local folder is only named, not created.
        if matches!(location, Location::S3 { .. }) {
            Storage::open(&location)?;
        }
        println!("storage: {location}");
    }
    if let Command::Serve(args) = command {
        println!("{}", args.upload_check.summary());
    }
    println!("{name}: configuration ok");
    Ok(())
}
