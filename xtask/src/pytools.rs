//! Python tools from PyPI for the tests, each pinned to one version in a cached virtual
//! environment of its own (`<cache>/tools/<name>-<version>/`), installed on first use.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use crate::paths;
use crate::process::{self, step};

/// A pinned tool: its PyPI name, version, extras and the executable it provides.
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
    /// pip extras (`"[server]"`), or `""`.
    pub extras: &'static str,
    /// Other pinned requirements installed beside it (`"onnx==1.23.2"`).
    pub also: &'static [&'static str],
    /// The executable under the environment's `bin/`.
    pub executable: &'static str,
    /// What the tests use it for (printed while installing).
    pub purpose: &'static str,
}

/// The tool's executable, installed on first use.
pub fn ensure(tool: &Tool) -> anyhow::Result<PathBuf> {
    let venv = paths::cache()
        .join("tools")
        .join(format!("{}-{}", tool.name, tool.version));
    let exe = venv.join("bin").join(tool.executable);
    let done = venv.join(".yolots-complete");
    // The stamp names what was installed: a tool given another requirement is topped up.
    let stamp = std::iter::once(tool.version)
        .chain(tool.also.iter().copied())
        .collect::<Vec<_>>()
        .join("\n");
    let installed = std::fs::read_to_string(&done).unwrap_or_default();
    if installed.trim() == stamp && exe.is_file() {
        step(format!("{} {}: cached", tool.name, tool.version));
        return Ok(exe);
    }
    let python = ["python3.11", "python3", "python"]
        .into_iter()
        .find(|p| process::on_path(p))
        .with_context(|| format!("Python 3 is needed for {} ({})", tool.name, tool.purpose))?;
    step(format!(
        "{} {}: installing from PyPI into the user cache (once per machine)",
        tool.name, tool.version
    ));
    std::fs::create_dir_all(venv.parent().unwrap_or(&venv))?;
    if !venv.join("bin/python").is_file() {
        process::run(Command::new(python).args(["-m", "venv"]).arg(&venv))?;
    }
    process::run(
        Command::new(venv.join("bin/python"))
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
            .arg(format!("{}{}=={}", tool.name, tool.extras, tool.version))
            .args(tool.also),
    )?;
    if !exe.is_file() {
        bail!(
            "{} was installed but {} is missing",
            tool.name,
            exe.display()
        );
    }
    std::fs::write(&done, stamp)?;
    Ok(exe)
}
