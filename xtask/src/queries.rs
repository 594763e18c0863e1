//! `cargo xtask queries`: refreshes the service's offline query cache (`backend/.sqlx`).
//!
//! The service's SQL is checked against the schema when it compiles (`sqlx::query!`).
//! Builds read the checked statements from the committed cache (`SQLX_OFFLINE=true` in
//! `.cargo/config.toml`), so building needs no database; after changing a statement or a
//! migration, this command checks every statement against a freshly migrated database
//! and writes the cache again.

use std::process::Command;
use std::time::SystemTime;

use anyhow::Context;

use crate::paths;
use crate::process::{self, step};
use crate::setup::{self, SetupArgs};

pub fn queries() -> anyhow::Result<()> {
    let env = setup::setup(&SetupArgs {
        for_tests: false,
        no_web: true,
        no_database: false,
    })?;
    let cache = paths::root().join("backend").join(".sqlx");
    if cache.exists() {
        std::fs::remove_dir_all(&cache).with_context(|| format!("clearing {}", cache.display()))?;
    }
    std::fs::create_dir_all(&cache)?;
    // The statements are checked when the crate compiles: make cargo compile it again.
    let lib = paths::root().join("backend/src/lib.rs");
    std::fs::File::options()
        .write(true)
        .open(&lib)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .with_context(|| format!("touching {}", lib.display()))?;
    process::run(
        Command::new("cargo")
            .args(["check", "--package", "yolots", "--lib"])
            .current_dir(paths::root())
            .envs(env.vars())
            .env("SQLX_OFFLINE", "false")
            .env("SQLX_OFFLINE_DIR", &cache),
    )?;
    env.database.stop_if_started();
    let written = std::fs::read_dir(&cache)?.count();
    step(format!(
        "{written} checked statements in {}",
        cache.display()
    ));
    Ok(())
}
