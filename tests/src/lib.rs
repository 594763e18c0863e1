//! Harness for the end-to-end tests: private databases, the real `yolots` binary on a
//! free port, and paths to the shared fixtures.
//!
//! Tests need a PostgreSQL server: `DATABASE_URL`, or the private cluster that
//! `cargo xtask setup` starts (its URL is kept in `.yolots/database_url`). Each test gets a
//! database of its own, dropped at the end.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::{Connection, PgConnection};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The shared fixtures folder.
pub fn fixtures() -> PathBuf {
    std::env::var_os("YOLOTS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/fixtures"))
}

/// The URL of the server the tests may create databases on.
pub fn admin_url() -> anyhow::Result<String> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return Ok(url);
    }
    let file = workspace().join(".yolots/database_url");
    std::fs::read_to_string(&file)
        .map(|s| s.trim().to_owned())
        .with_context(|| {
            format!(
                "no DATABASE_URL and no {}: run `cargo xtask setup`",
                file.display()
            )
        })
}

/// The `yolots` binary built for the tests (`YOLOTS_BIN`, else `target/debug/yolots`).
pub fn binary() -> PathBuf {
    std::env::var_os("YOLOTS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace().join("target"));
            target.join("debug/yolots")
        })
}

/// A database of its own for one test, dropped when the value is.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin: String,
}

impl TestDatabase {
    pub async fn create() -> anyhow::Result<Self> {
        let admin = admin_url()?;
        let name = format!("yolots_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .context("connecting to PostgreSQL")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let url = with_database(&admin, &name)?;
        Ok(Self { name, url, admin })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs outside any runtime: use a small one of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await?;
                anyhow::Ok(())
            })
        })
        .join();
    }
}

/// Replaces the database name in a PostgreSQL URL.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let Some(slash) = base.rfind('/').filter(|&i| i > "postgres://".len()) else {
        bail!("DATABASE_URL has no database part: {url}");
    };
    let mut out = format!("{}/{name}", &base[..slash]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

/// A free TCP port on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running `yolots serve`, killed when dropped.
pub struct Server {
    pub base: String,
    pub data_dir: PathBuf,
    child: Child,
}

impl Server {
    /// Starts `yolots serve` on a free port and waits until `/api/v1/health` answers.
    pub async fn start(
        database_url: &str,
        data_dir: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new(binary())
            .arg("serve")
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(extra_args)
            .env("DATABASE_URL", database_url)
            .env("YOLOTS_DATA_DIR", data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary().display()))?;
        let server = Self {
            base: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_owned(),
            child,
        };
        server.wait_ready(Duration::from_secs(30)).await?;
        Ok(server)
    }

    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < timeout {
            let health = client
                .get(format!("{}/api/v1/health", self.base))
                .send()
                .await;
            if health.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("yolots serve did not become healthy within {timeout:?}")
    }

    /// The process id, for tests that send signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/yolots", "t1").unwrap(),
            "postgres://u@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t2").unwrap(),
            "postgres://u:p@h/t2?sslmode=disable"
        );
    }
}
