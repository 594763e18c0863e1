//! The converting binary, `yolots-converter`: the only yolots program that loads libtorch.
//!
//! `yolots` itself never links libtorch (about half a second and 470 MB before `main`),
//! so the API server, `inspect`, `token`, `migrate` and `--check-config` start at once.
//! It finds the converter beside its own executable, or where `YOLOTS_CONVERTER` says,
//! and asks it (once, in the background) which libtorch it loads and how many CUDA
//! devices it sees.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;
use yolots_protocol::RuntimeFacts;

/// The environment variable naming the converting binary.
pub const CONVERTER_ENV: &str = "YOLOTS_CONVERTER";

/// The converting binary's file name, beside `yolots`.
pub const CONVERTER_NAME: &str = "yolots-converter";

/// Where the converting binary is: `$YOLOTS_CONVERTER`, else beside this executable.
pub fn locate() -> std::io::Result<PathBuf> {
    if let Some(path) = std::env::var_os(CONVERTER_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    Ok(std::env::current_exe()?.with_file_name(CONVERTER_NAME))
}

/// Replaces this process with `yolots-converter SUBCOMMAND ARGS` (usage lines read
/// `yolots SUBCOMMAND ...`, as the user typed); returns only the error when that fails.
pub fn exec(subcommand: &str, args: &[std::ffi::OsString]) -> anyhow::Error {
    use anyhow::Context;
    use std::os::unix::process::CommandExt;
    let path = match locate().context("locating the yolots binary") {
        Ok(path) => path,
        Err(error) => return error,
    };
    let error = std::process::Command::new(&path)
        .arg0("yolots")
        .arg(subcommand)
        .args(args)
        .exec();
    anyhow::Error::new(error).context(format!(
        "running the converter {} (set {CONVERTER_ENV} to its path)",
        path.display()
    ))
}

/// Fails, naming the setting, when there is no converter at `path` (a worker without one
/// could only fail every job).
pub fn require(path: &Path) -> anyhow::Result<()> {
    if path.is_file() {
        return Ok(());
    }
    anyhow::bail!(
        "no converter at {}: install {CONVERTER_NAME} beside yolots or set {CONVERTER_ENV}",
        path.display()
    )
}

/// How long the converter may take to report its runtime (CUDA initialisation can be
/// slow on a machine with many GPUs).
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// Asks the converter for its libtorch version and CUDA device count
/// (`yolots-converter runtime`). A converter that is missing or fails gives unknown
/// facts (no version, no GPU), logged as a warning.
pub async fn probe(path: &Path) -> RuntimeFacts {
    match run_probe(path).await {
        Ok(facts) => {
            tracing::info!(
                converter = %path.display(),
                libtorch = facts.libtorch.as_deref().unwrap_or("unknown"),
                cuda_devices = facts.cuda_devices,
                "converter runtime"
            );
            facts
        }
        Err(error) => {
            tracing::warn!(converter = %path.display(), %error, "cannot ask the converter for its runtime");
            RuntimeFacts::default()
        }
    }
}

async fn run_probe(path: &Path) -> Result<RuntimeFacts, String> {
    let mut command = tokio::process::Command::new(path);
    command
        .arg("runtime")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(PROBE_TIMEOUT, command.output())
        .await
        .map_err(|_| format!("no answer within {PROBE_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("it exited with {}", output.status));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(line).map_err(|e| format!("unexpected answer {line:?}: {e}"))
}

/// The converter's runtime facts, asked once (in the background from the start) and
/// kept: the API's health document and the workers' `--device auto` read them.
#[derive(Debug, Clone)]
pub struct Runtime {
    facts: Arc<OnceCell<RuntimeFacts>>,
    path: Arc<PathBuf>,
}

impl Runtime {
    /// Starts asking the converter at `path` in the background.
    pub fn start(path: PathBuf) -> Self {
        let runtime = Self {
            facts: Arc::new(OnceCell::new()),
            path: Arc::new(path),
        };
        let background = runtime.clone();
        tokio::spawn(async move {
            background.facts().await;
        });
        runtime
    }

    /// The facts, waiting for the converter's answer the first time.
    pub async fn facts(&self) -> RuntimeFacts {
        self.facts.get_or_init(|| probe(&self.path)).await.clone()
    }
}
