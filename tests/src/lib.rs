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

pub mod s3;

/// The workspace root.
pub fn workspace() -> PathBuf {
    // Cargo's run-time value first (cargo sets it for tests and benches): a build folder
    // shared between clones may hold a binary compiled in another clone, whose compile-time
    // path is gone.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
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

/// The converting binary the `yolots` under test runs (`YOLOTS_CONVERTER`, else
/// `yolots-converter` beside [`binary`], where `yolots` itself looks for it).
pub fn converter_binary() -> PathBuf {
    std::env::var_os("YOLOTS_CONVERTER")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| binary().with_file_name("yolots-converter"))
}

/// Fails, saying why, when the converter the tests run was built without the test hooks:
/// `cargo build -p yolots-converter` (or its tests) alone builds it so, in the folder every
/// clone's tests share, and a `hang` fault would then just convert.
pub fn converter_has_test_hooks() -> anyhow::Result<()> {
    static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let path = converter_binary();
            let out = Command::new(&path)
                .arg("runtime")
                .output()
                .map_err(|e| format!("running {}: {e}", path.display()))?;
            let facts: yolots_protocol::RuntimeFacts = serde_json::from_slice(&out.stdout)
                .map_err(|e| format!("{} runtime: {e}", path.display()))?;
            if facts.test_hooks {
                Ok(())
            } else {
                Err(format!(
                    "{} was built without the test hooks (a build of yolots-converter alone \
                     does that); build the workspace first: cargo build --workspace --bins",
                    path.display()
                ))
            }
        })
        .clone()
        .map_err(|message| anyhow::anyhow!(message))
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
        if extra_args.contains(&"--allow-test-faults") {
            converter_has_test_hooks()?;
        }
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

/// Serialises the tests of one test binary that convert (the machine has few cores; a
/// conversion under four others' load would only test the time limits).
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Options for test servers and workers that keep conversions short.
pub const FAST: &[&str] = &["--latency-runs", "0"];

impl Server {
    /// Starts `yolots serve` with extra environment variables.
    pub async fn start_with_env(
        database_url: &str,
        data_dir: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new(binary())
            .arg("serve")
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(extra_args)
            .env("DATABASE_URL", database_url)
            .env("YOLOTS_DATA_DIR", data_dir)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
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

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client of this server with a token.
    pub fn client(&self, token: &str) -> Client {
        Client::new(&self.base, token)
    }

    /// Sends SIGTERM and waits for the process to exit (at most `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        signal(self.child.id(), libc::SIGTERM);
        wait_exit(&mut self.child, timeout)
    }
}

/// A standalone `yolots worker`, killed when dropped.
pub struct Worker {
    child: Child,
}

impl Worker {
    /// Starts `yolots worker` against a database and data folder.
    pub fn start(database_url: &str, data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(database_url, data_dir, extra_args, &[])
    }

    /// Starts `yolots worker` with extra environment variables (a storage of its own, a
    /// scratch folder of its own).
    pub fn start_with_env(
        database_url: &str,
        data_dir: &Path,
        extra_args: &[&str],
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let child = Command::new(binary())
            .arg("worker")
            .args(extra_args)
            .env("DATABASE_URL", database_url)
            .env("YOLOTS_DATA_DIR", data_dir)
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary().display()))?;
        Ok(Self { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill_hard(&mut self) {
        signal(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit (at most `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        signal(self.child.id(), libc::SIGTERM);
        wait_exit(&mut self.child, timeout)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal to a process.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if started.elapsed() > timeout {
            bail!("the process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates an owner with `yolots token create` and returns its token.
pub fn create_token(database_url: &str, name: &str, admin: bool) -> anyhow::Result<String> {
    let mut cmd = Command::new(binary());
    cmd.args(["token", "create", "--name", name])
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn");
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd.output().context("running yolots token create")?;
    if !out.status.success() {
        bail!(
            "yolots token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// An API client with a bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// `POST /api/v1/jobs` with a file (and options JSON), as curl `-F` sends it.
    pub async fn upload(
        &self,
        file_name: &str,
        bytes: Vec<u8>,
        options: Option<&str>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut form = reqwest::multipart::Form::new();
        if let Some(options) = options {
            form = form.text("options", options.to_owned());
        }
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_owned()),
        );
        Ok(self.post("/api/v1/jobs").multipart(form).send().await?)
    }

    /// Uploads `bytes` at 160x160 with a confidence threshold of its own (0.10 + index /
    /// 100), so no job reuses another's artifact; expects 201 and returns the job id.
    pub async fn upload_distinct(
        &self,
        file_name: &str,
        bytes: Vec<u8>,
        index: usize,
    ) -> anyhow::Result<String> {
        let options = format!(r#"{{"img_size": [160, 160], "conf": 0.{:02}}}"#, 10 + index);
        let response = self.upload(file_name, bytes, Some(&options)).await?;
        let status = response.status();
        let job: serde_json::Value = response.json().await?;
        if status != 201 {
            bail!("upload {index} answered {status}: {job}");
        }
        job["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no job id in {job}"))
    }

    /// Uploads a file and expects 201; returns the job.
    pub async fn create_job(
        &self,
        path: &Path,
        options: Option<&str>,
    ) -> anyhow::Result<serde_json::Value> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let response = self.upload(&name, std::fs::read(path)?, options).await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        if status != 201 {
            bail!("upload of {} answered {status}: {body}", path.display());
        }
        Ok(body)
    }

    /// `GET /api/v1/jobs/{id}`.
    pub async fn job(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        let response = self.get(&format!("/api/v1/jobs/{id}")).send().await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        if status != 200 {
            bail!("GET job {id} answered {status}: {body}");
        }
        Ok(body)
    }

    /// Polls a job until `done` says so.
    pub async fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let started = Instant::now();
        loop {
            let job = self.job(id).await?;
            if done(&job) {
                return Ok(job);
            }
            if started.elapsed() > timeout {
                bail!("job {id} not done within {timeout:?}: {job}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls a job until it is succeeded, failed or cancelled.
    pub async fn wait_final(
        &self,
        id: &str,
        timeout: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        self.wait_until(id, timeout, |job| {
            matches!(
                job["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
        .await
    }
}

/// SHA-256 of bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Every file under a folder.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The PostgreSQL binaries (`pg_config --bindir`, else the newest Debian version).
pub fn pg_bin() -> anyhow::Result<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no PostgreSQL binaries found")
}

/// A throwaway PostgreSQL cluster of one test (stopped and removed when dropped), for
/// tests that stop and start the database.
pub struct PgCluster {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<String>,
}

impl PgCluster {
    /// initdb in a temporary folder and start it.
    pub fn start() -> anyhow::Result<Self> {
        let bin = pg_bin()?;
        let dir = tempfile::Builder::new().prefix("yolots-pg-").tempdir()?;
        // PostgreSQL refuses to run as root: run it as `postgres` then.
        let run_as = (unsafe { libc::geteuid() } == 0).then(|| "postgres".to_owned());
        let cluster = Self {
            port: free_port()?,
            dir,
            bin,
            run_as,
        };
        std::fs::create_dir_all(cluster.data())?;
        if let Some(user) = &cluster.run_as {
            let status = Command::new("chown")
                .args(["-R", user])
                .arg(cluster.dir.path())
                .status()?;
            if !status.success() {
                bail!("chown failed");
            }
        }
        let out = cluster
            .command("initdb")
            .args(["-U", "yolots", "--auth=trust", "--no-instructions", "-D"])
            .arg(cluster.data())
            .output()?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let conf = cluster.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str(&format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n",
            cluster.port,
            cluster.dir.path().display()
        ));
        std::fs::write(&conf, text)?;
        cluster.up()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            None => Command::new(path),
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(path);
                cmd
            }
        }
    }

    /// `postgres://yolots@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://yolots@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server.
    pub fn up(&self) -> anyhow::Result<()> {
        let out = self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .arg("start")
            .output()?;
        if !out.status.success() {
            bail!(
                "pg_ctl start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Stops the server (fast: open sessions end).
    pub fn down(&self) -> anyhow::Result<()> {
        let out = self
            .command("pg_ctl")
            .args(["-w", "-m", "fast", "-D"])
            .arg(self.data())
            .arg("stop")
            .output()?;
        if !out.status.success() {
            bail!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .output();
    }
}

/// Runs a Python snippet of the report page as printed, with `python`, in a folder that
/// holds only the artifact (under `artifact_name`, the name the snippet loads) and an
/// `image.jpg` of noise, 640x480. The snippet must succeed without a warning and print
/// how many detections it found (`0 detections`, `1 detection`, `12 detections`): that
/// count and what it printed are returned.
pub fn run_python_snippet(
    python: &std::ffi::OsStr,
    code: &str,
    artifact: &Path,
    artifact_name: &str,
) -> anyhow::Result<(u64, String)> {
    let first = code.lines().next().unwrap_or_default();
    anyhow::ensure!(
        first.starts_with("# pip install "),
        "the snippet does not say what it needs: {first}"
    );
    let dir = tempfile::tempdir()?;
    std::fs::copy(artifact, dir.path().join(artifact_name))?;
    std::fs::write(dir.path().join("snippet.py"), code)?;
    let image = Command::new(python)
        .current_dir(dir.path())
        .args([
            "-c",
            "import numpy as np; from PIL import Image\n\
             rng = np.random.default_rng(7)\n\
             Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save('image.jpg')",
        ])
        .output()?;
    anyhow::ensure!(
        image.status.success(),
        "writing the image: {}",
        String::from_utf8_lossy(&image.stderr)
    );
    let out = Command::new(python)
        .current_dir(dir.path())
        .arg("snippet.py")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        out.status.success(),
        "the snippet failed:\n{code}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    anyhow::ensure!(
        !stderr.contains("Warning"),
        "the snippet warned:\n{code}\n--- stderr\n{stderr}"
    );
    let count = stdout
        .lines()
        .find_map(|line| {
            let (n, word) = line.trim().split_once(' ')?;
            let n: u64 = n.parse().ok()?;
            (word == if n == 1 { "detection" } else { "detections" }).then_some(n)
        })
        .with_context(|| format!("the snippet printed no count of detections:\n{stdout}"))?;
    Ok((count, stdout))
}

/// Set to `1` by `cargo xtask test`, which installs every tool the tests use: a test whose
/// tool is missing then fails instead of skipping.
pub const REQUIRE_TOOLS_VAR: &str = "YOLOTS_REQUIRE_TOOLS";

/// A test's tool is missing: a failure under `cargo xtask test` (which installs every
/// tool, so a missing one means the setup is broken); elsewhere the test says it skips.
pub fn tool_missing(what: &str) {
    if std::env::var_os(REQUIRE_TOOLS_VAR).is_some_and(|v| v == "1") {
        panic!("{what}: cargo xtask test installs every tool, so this test must run");
    }
    eprintln!("skipped: {what} (cargo xtask test installs it, and fails here without it)");
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
