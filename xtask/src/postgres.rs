//! PostgreSQL: the `DATABASE_URL` the user gives, or a private cluster in `.yolots/pg`
//! started with the system's PostgreSQL binaries.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::paths;
use crate::process::{self, step};

/// The database the project uses.
#[derive(Debug, Clone)]
pub struct Database {
    pub url: String,
    /// The private cluster, when we manage one.
    pub cluster: Option<Cluster>,
    /// Whether this call started the cluster (and so should stop it).
    pub started_here: bool,
}

/// A private PostgreSQL cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Set when running as root: PostgreSQL refuses root, so it runs as this user.
    run_as: Option<String>,
}

pub const USER: &str = "yolots";
pub const DATABASE: &str = "yolots";

/// Makes a database available and returns its URL.
pub fn ensure() -> anyhow::Result<Database> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        step("PostgreSQL: using DATABASE_URL");
        return Ok(Database {
            url,
            cluster: None,
            started_here: false,
        });
    }
    let cluster = Cluster::prepare()?;
    let started_here = cluster.start()?;
    cluster.create_database(DATABASE)?;
    let url = cluster.url(DATABASE);
    std::fs::write(paths::state().join("database_url"), &url)?;
    Ok(Database {
        url,
        cluster: Some(cluster),
        started_here,
    })
}

impl Database {
    /// Stops the cluster if this process started it.
    pub fn stop_if_started(&self) {
        if let (true, Some(cluster)) = (self.started_here, &self.cluster)
            && cluster.is_running()
            && let Err(error) = cluster.stop()
        {
            eprintln!("xtask: could not stop PostgreSQL: {error:#}");
        }
    }
}

impl Cluster {
    fn prepare() -> anyhow::Result<Self> {
        let bin = match find_bin_dir() {
            Some(bin) => bin,
            None => {
                process::apt_install(&["postgresql"], "PostgreSQL is needed for the job queue")?;
                find_bin_dir().context("PostgreSQL was installed but initdb is not found")?
            }
        };
        let run_as = paths::is_root().then(|| "postgres".to_owned());
        let dir = paths::state().join("pg");
        let cluster = Cluster {
            bin,
            dir,
            port: port_for(&paths::root()),
            run_as,
        };
        cluster.init()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// `postgres://yolots@127.0.0.1:PORT/NAME`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    fn init(&self) -> anyhow::Result<()> {
        if self.data().join("PG_VERSION").is_file() {
            return Ok(());
        }
        step(format!(
            "PostgreSQL: creating a private cluster in {}",
            rel(&self.dir)
        ));
        std::fs::create_dir_all(self.socket_dir())?;
        std::fs::create_dir_all(self.data())?;
        if let Some(user) = &self.run_as {
            process::run(Command::new("chown").args(["-R", user]).arg(&self.dir))?;
            if !process::succeeds(
                Command::new("runuser")
                    .args(["-u", user, "--", "test", "-w"])
                    .arg(self.data()),
            ) {
                bail!(
                    "PostgreSQL refuses to run as root and the user `{user}` cannot write {}: \
                     move the project to a folder `{user}` can reach, or set DATABASE_URL",
                    self.data().display()
                );
            }
        }
        process::run(
            self.command("initdb")
                .args([
                    "-U",
                    USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                    "-D",
                ])
                .arg(self.data()),
        )?;
        let settings = format!(
            "\n# written by cargo xtask setup\nport = {}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nmax_connections = 300\n",
            self.port,
            self.socket_dir().display()
        );
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str(&settings);
        std::fs::write(&conf, text)?;
        Ok(())
    }

    /// Starts the cluster unless it runs already; returns whether it was started here.
    fn start(&self) -> anyhow::Result<bool> {
        if self.is_running() {
            step(format!(
                "PostgreSQL: private cluster running on 127.0.0.1:{}",
                self.port
            ));
            return Ok(false);
        }
        step(format!(
            "PostgreSQL: starting the private cluster on 127.0.0.1:{}",
            self.port
        ));
        process::run(
            self.command("pg_ctl")
                .args(["-w", "-t", "60", "-D"])
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.join("postgres.log"))
                .arg("start"),
        )?;
        Ok(true)
    }

    fn is_running(&self) -> bool {
        process::succeeds(
            self.command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("status"),
        )
    }

    /// Stops the cluster (fast shutdown: open sessions are ended).
    pub fn stop(&self) -> anyhow::Result<()> {
        step("PostgreSQL: stopping the private cluster");
        process::run(
            self.command("pg_ctl")
                .args(["-w", "-m", "fast", "-D"])
                .arg(self.data())
                .arg("stop"),
        )
    }

    fn create_database(&self, name: &str) -> anyhow::Result<()> {
        let exists = process::output(
            Command::new(self.bin.join("psql"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    USER,
                    "-d",
                    "postgres",
                    "-tAc",
                ])
                .arg(format!(
                    "SELECT 1 FROM pg_database WHERE datname = '{name}'"
                )),
        )?;
        if exists.trim() != "1" {
            step(format!("PostgreSQL: creating database {name}"));
            process::run(Command::new(self.bin.join("createdb")).args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                name,
            ]))?;
        }
        Ok(())
    }

    /// A command for one of the cluster's binaries, run as the cluster's owner.
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
}

/// The system's PostgreSQL binaries: `pg_config --bindir`, then the newest Debian version.
fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(out) = process::output(Command::new("pg_config").arg("--bindir")) {
        let dir = PathBuf::from(out.trim());
        if dir.join("initdb").is_file() {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A port derived from the project folder, so two clones on one machine do not collide.
fn port_for(root: &Path) -> u16 {
    if let Some(port) = std::env::var("YOLOTS_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        return port;
    }
    let mut hasher = DefaultHasher::new();
    root.hash(&mut hasher);
    54_000 + (hasher.finish() % 1000) as u16
}

fn rel(path: &Path) -> String {
    path.strip_prefix(paths::root())
        .unwrap_or(path)
        .display()
        .to_string()
}
