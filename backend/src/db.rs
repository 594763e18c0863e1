//! The PostgreSQL pool, the migrations in `migrations/`, and how database failures are told
//! apart (down: answer 503 and retry later; anything else: a bug or bad data).

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::config::DatabaseArgs;

/// The migrations, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens a pool. Connecting is lazy, so the server starts even while the database is down
/// and recovers when it comes back; each acquire fails fast instead of hanging.
pub fn pool(args: &DatabaseArgs) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(args.db_pool)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&args.database_url)
}

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Applies the migrations, retrying while the database cannot be reached (a server may
/// start before its database).
pub async fn migrate_when_up(pool: &PgPool, patience: Duration) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match migrate(pool).await {
            Ok(()) => return Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(error))
                if is_unavailable(&error) && started.elapsed() < patience =>
            {
                tracing::warn!(%error, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Whether the database answers a trivial query.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!("SELECT 1")
        .fetch_one(pool)
        .await
        .map(|_| ())
}

/// Whether an error means the database cannot be reached right now (as opposed to a query
/// it refused).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            // Class 08 (connection exception), 57P01..57P03 (shutdown, cannot connect now),
            // 53300 (too many connections).
            db.code().is_some_and(|code| {
                code.starts_with("08")
                    || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
            })
        }
        _ => false,
    }
}

/// Until when (milliseconds since the epoch) the database is taken to be down. Requests
/// arriving before then are answered 503 at once instead of each waiting for a connection
/// that will not come; the first request after it tries the database again.
static DOWN_UNTIL_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long a failure keeps the gate shut.
const GATE: Duration = Duration::from_millis(500);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Records that the database could not be reached.
pub fn note_unavailable() {
    DOWN_UNTIL_MS.store(
        now_ms() + GATE.as_millis() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// Whether the database failed within the last moment.
pub fn known_down() -> bool {
    now_ms() < DOWN_UNTIL_MS.load(std::sync::atomic::Ordering::Relaxed)
}
