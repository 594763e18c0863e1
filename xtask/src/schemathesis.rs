//! schemathesis (PyPI) for the API's property-based test, in a cached Python environment
//! pinned to one version (`<cache>/tools/schemathesis-<version>/`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

use crate::paths;
use crate::process::{self, step};

/// The pinned release.
pub const VERSION: &str = "4.32.5";

/// The `schemathesis` executable, installed on first use.
pub fn ensure() -> anyhow::Result<PathBuf> {
    let venv = paths::cache()
        .join("tools")
        .join(format!("schemathesis-{VERSION}"));
    let exe = venv.join("bin/schemathesis");
    let done = venv.join(".yolots-complete");
    if done.is_file() && exe.is_file() {
        step(format!("schemathesis {VERSION}: cached"));
        return Ok(exe);
    }
    let python = ["python3.11", "python3", "python"]
        .into_iter()
        .find(|p| process::on_path(p))
        .context("Python 3 is needed for schemathesis (the API's property-based test)")?;
    step(format!(
        "schemathesis {VERSION}: installing from PyPI into the user cache (once per machine)"
    ));
    std::fs::create_dir_all(venv.parent().unwrap_or(&venv))?;
    if !venv.join("bin/python").is_file() {
        process::run(Command::new(python).args(["-m", "venv"]).arg(&venv))?;
    }
    process::run(
        Command::new(venv.join("bin/python"))
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
            .arg(format!("schemathesis=={VERSION}")),
    )?;
    if !exe.is_file() {
        anyhow::bail!(
            "schemathesis was installed but {} is missing",
            exe.display()
        );
    }
    std::fs::write(&done, VERSION)?;
    Ok(exe)
}
