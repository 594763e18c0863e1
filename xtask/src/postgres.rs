//! PostgreSQL: the `DATABASE_URL` the user gives, or a private cluster in `.yolots/pg`
//! started with the system's PostgreSQL binaries.
//!
//! The private cluster asks every connection for a password (`scram-sha-256` for local
//! and TCP connections alike). Its superuser is `postgres`, whose generated password is
//! kept in `.yolots/pg/superuser_password`; the service connects as `yolots`, a role with
//! a generated password of its own (`.yolots/pg/service_password`) that is no superuser,
//! may create databases (the tests make one each) and owns the `yolots` database and so
//! the tables its migrations create. `.yolots/database_url` holds the service's URL with
//! its password; every one of these files is readable by its owner only (mode 0600).
//! A cluster made by an older setup, which trusted every local connection, is recreated:
//! it held test and development jobs only.

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

/// The service's role.
pub const USER: &str = "yolots";
pub const DATABASE: &str = "yolots";
/// The cluster's superuser, for setup only.
const SUPERUSER: &str = "postgres";

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
    let password = cluster.ensure_role_and_database(DATABASE)?;
    let url = cluster.url(&password, DATABASE);
    write_private(&paths::state().join("database_url"), &url)?;
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
        cluster.replace_if_trusting()?;
        cluster.init()?;
        Ok(cluster)
    }

    fn superuser_password_file(&self) -> PathBuf {
        self.dir.join("superuser_password")
    }

    fn service_password_file(&self) -> PathBuf {
        self.dir.join("service_password")
    }

    /// An older setup's cluster (made with `--auth=trust`, no password file): stopped and
    /// removed, so `init` makes one that asks for passwords. Its data were the tests' and
    /// a development server's jobs; the artifacts in `.yolots/data` stay where they are.
    fn replace_if_trusting(&self) -> anyhow::Result<()> {
        if !self.data().join("PG_VERSION").is_file() || self.superuser_password_file().is_file() {
            return Ok(());
        }
        step(format!(
            "PostgreSQL: the private cluster in {} accepts connections without a password; \
             recreating it (its jobs were test and development data)",
            rel(&self.dir)
        ));
        if self.is_running() {
            self.stop()?;
        }
        std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("removing {}", self.dir.display()))?;
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// `postgres://yolots:PASSWORD@127.0.0.1:PORT/NAME`.
    pub fn url(&self, password: &str, database: &str) -> String {
        format!(
            "postgres://{USER}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
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
        // initdb reads the superuser's password from this file (so it never shows in a
        // process list); it stays for setup's later connections.
        write_private(&self.superuser_password_file(), &new_password()?)?;
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
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-instructions",
                ])
                .arg(format!(
                    "--pwfile={}",
                    self.superuser_password_file().display()
                ))
                .arg("-D")
                .arg(self.data()),
        )?;
        let settings = format!(
            "\n# written by cargo xtask setup\nport = {}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nmax_connections = 300\n\
             password_encryption = 'scram-sha-256'\n",
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

    /// Makes the service's role (no superuser, may create databases, the password kept in
    /// `service_password`) and its database (owned by that role), as the superuser;
    /// returns the role's password.
    fn ensure_role_and_database(&self, name: &str) -> anyhow::Result<String> {
        let file = self.service_password_file();
        let password = match std::fs::read_to_string(&file) {
            Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
            _ => {
                let password = new_password()?;
                write_private(&file, &password)?;
                password
            }
        };
        let role_exists =
            self.superuser_sql(&format!("SELECT 1 FROM pg_roles WHERE rolname = '{USER}'"))?;
        let verb = if role_exists.trim() == "1" {
            "ALTER"
        } else {
            step(format!("PostgreSQL: creating the service's role {USER}"));
            "CREATE"
        };
        // The password is hex (no quote to escape); the statement goes on stdin, not argv.
        self.superuser_sql(&format!(
            "{verb} ROLE {USER} WITH LOGIN NOSUPERUSER NOCREATEROLE CREATEDB \
             PASSWORD '{password}'"
        ))?;
        let exists = self.superuser_sql(&format!(
            "SELECT 1 FROM pg_database WHERE datname = '{name}'"
        ))?;
        if exists.trim() != "1" {
            step(format!("PostgreSQL: creating database {name}"));
            self.superuser_sql(&format!("CREATE DATABASE {name} OWNER {USER}"))?;
        }
        Ok(password)
    }

    /// Runs one statement as the superuser (its password from its file, in the
    /// environment of psql only); returns what psql printed.
    fn superuser_sql(&self, statement: &str) -> anyhow::Result<String> {
        let password = std::fs::read_to_string(self.superuser_password_file())
            .context("reading the private cluster's superuser password")?;
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-tA",
            ])
            .env("PGPASSWORD", password.trim())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().context("starting psql")?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(statement.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "psql failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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

/// A new random password: 32 hex digits from the kernel's random source.
fn new_password() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `text` to `path`, readable and writable by its owner only (mode 0600, also when
/// the file existed with another mode).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn rel(path: &Path) -> String {
    path.strip_prefix(paths::root())
        .unwrap_or(path)
        .display()
        .to_string()
}
