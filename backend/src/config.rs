//! Settings shared by the subcommands. Every flag has an environment variable, so the
//! same binary is configured the same way from a shell, systemd or a container.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// Where the database is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Connections kept in the pool.
    #[arg(long, env = "YOLOTS_DB_POOL", default_value_t = 10)]
    pub db_pool: u32,
}

/// Settings of `yolots serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Address the HTTP server listens on.
    #[arg(long, env = "YOLOTS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Folder for uploads, artifacts and reports.
    #[arg(long, env = "YOLOTS_DATA_DIR", default_value = ".yolots/data")]
    pub data_dir: PathBuf,

    /// Folder with the built web page (served at `/`).
    #[arg(long, env = "YOLOTS_WEB_DIR", default_value = ".yolots/web")]
    pub web_dir: PathBuf,
}
