//! The database migrations of `migrations/`, applied with sqlx's migrator: the same files,
//! checksums and bookkeeping table as `yolots migrate`, which embeds them, so setup does
//! not have to compile the whole service (libtorch bindings included) to prepare a
//! database.

use anyhow::Context;
use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnection;

use crate::paths;

/// Applies the migrations not yet applied to the database at `url`.
pub fn apply(url: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting an async runtime")?;
    runtime.block_on(async {
        let folder = paths::root().join("migrations");
        let migrator = Migrator::new(folder.as_path())
            .await
            .with_context(|| format!("reading {}", folder.display()))?;
        let mut conn = PgConnection::connect(url)
            .await
            .context("connecting to the database")?;
        migrator
            .run(&mut conn)
            .await
            .context("applying the migrations")?;
        conn.close().await.ok();
        Ok(())
    })
}
