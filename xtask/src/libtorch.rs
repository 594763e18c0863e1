//! libtorch 2.11.0, from the PyPI `torch` wheel installed in a cached Python environment
//! (or a folder the user names with `LIBTORCH`).
//!
//! The project links `.yolots/libtorch` to it (`.cargo/config.toml` points `LIBTORCH`
//! there) and `.yolots/venv` to the Python environment, whose interpreter the tests use as
//! an outside client of the artifacts.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::paths::{self, TORCH_VERSION};
use crate::process::{self, step};

/// The libtorch the project builds against.
#[derive(Debug, Clone)]
pub struct Libtorch {
    /// The folder with `lib/` and `include/`.
    pub dir: PathBuf,
    /// A Python environment with the same torch, when there is one.
    pub python: Option<PathBuf>,
}

/// Makes libtorch available; with `need_python`, also a Python with torch (for tests).
pub fn ensure(need_python: bool) -> anyhow::Result<Libtorch> {
    let link = paths::state().join("libtorch");
    let user_dir = std::env::var_os("LIBTORCH")
        .map(PathBuf::from)
        .filter(|dir| !same_path(dir, &link));

    let venv = if user_dir.is_none() || need_python {
        Some(ensure_venv()?)
    } else {
        None
    };
    let dir = match (&user_dir, &venv) {
        (Some(dir), _) => {
            check_libtorch_dir(dir)?;
            step(format!("using LIBTORCH={}", dir.display()));
            dir.clone()
        }
        (None, Some(venv)) => torch_package(venv)?,
        (None, None) => bail!("no libtorch: set LIBTORCH or let setup install torch"),
    };
    symlink(&dir, &link)?;
    if let Some(venv) = &venv {
        symlink(venv, &paths::state().join("venv"))?;
    }
    Ok(Libtorch {
        dir,
        python: venv.map(|v| v.join("bin/python")),
    })
}

/// What the page's Python snippet imports beside torch (the tests run it as printed).
const SNIPPET_PACKAGES: [&str; 2] = ["numpy==2.4.6", "pillow==13.0.0"];

/// The cached virtual environment with `torch==2.11.0`, created on first use.
fn ensure_venv() -> anyhow::Result<PathBuf> {
    let venv = paths::cache().join(format!("torch-{TORCH_VERSION}"));
    let done = venv.join(".yolots-complete");
    let stamp = std::iter::once(TORCH_VERSION)
        .chain(SNIPPET_PACKAGES)
        .collect::<Vec<_>>()
        .join("\n");
    let installed = std::fs::read_to_string(&done).unwrap_or_default();
    if installed.trim() == stamp {
        step(format!(
            "libtorch {TORCH_VERSION}: cached Python environment ready"
        ));
        return Ok(venv);
    }
    if installed.trim() == TORCH_VERSION {
        // An environment from before the snippet's packages: add them, torch stays.
        step("libtorch: adding numpy and Pillow to the cached Python environment");
        pip_install(&venv, &SNIPPET_PACKAGES)?;
        std::fs::write(&done, stamp)?;
        return Ok(venv);
    }
    let python = ["python3.11", "python3", "python"]
        .into_iter()
        .find(|p| process::on_path(p))
        .context("Python 3 is needed to fetch libtorch (the PyPI torch wheel carries it)")?;
    step(format!(
        "libtorch {TORCH_VERSION}: installing torch=={TORCH_VERSION} from PyPI into the user cache \
         (about 5 GB, a few minutes, once per machine)"
    ));
    std::fs::create_dir_all(paths::cache())?;
    if !venv.join("bin/python").is_file() {
        process::run(Command::new(python).args(["-m", "venv"]).arg(&venv))?;
    }
    let torch = format!("torch=={TORCH_VERSION}");
    let mut packages = vec![torch.as_str()];
    packages.extend(SNIPPET_PACKAGES);
    pip_install(&venv, &packages)?;
    torch_package(&venv)?;
    std::fs::write(&done, stamp)?;
    Ok(venv)
}

fn pip_install(venv: &Path, packages: &[&str]) -> anyhow::Result<()> {
    process::run(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "-q",
            ])
            .args(packages),
    )
}

/// `<venv>/lib/pythonX.Y/site-packages/torch`, checked.
fn torch_package(venv: &Path) -> anyhow::Result<PathBuf> {
    let lib = venv.join("lib");
    for entry in std::fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let candidate = entry?.path().join("site-packages/torch");
        if candidate.join("lib").is_dir() {
            check_libtorch_dir(&candidate)?;
            return Ok(candidate);
        }
    }
    bail!("no torch package in {}", venv.display())
}

fn check_libtorch_dir(dir: &Path) -> anyhow::Result<()> {
    let lib = dir.join("lib");
    if !lib.join("libtorch_cpu.so").exists() {
        bail!(
            "{} has no lib/libtorch_cpu.so: not a libtorch folder",
            dir.display()
        );
    }
    // The wheel has torch/version.py; a plain libtorch download has build-version.
    let version = std::fs::read_to_string(dir.join("version.py"))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("__version__ = '")
                    .map(|v| v.trim_end_matches('\'').to_owned())
            })
        })
        .or_else(|| std::fs::read_to_string(dir.join("build-version")).ok());
    if let Some(version) = version {
        let plain = version.trim().split('+').next().unwrap_or_default();
        if plain != TORCH_VERSION {
            bail!(
                "{} holds libtorch {plain}; yolots needs {TORCH_VERSION} (tch 0.24)",
                dir.display()
            );
        }
    }
    Ok(())
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Points `link` at `target`, replacing an older link.
fn symlink(target: &Path, link: &Path) -> anyhow::Result<()> {
    if std::fs::read_link(link).is_ok_and(|current| current == target) {
        return Ok(());
    }
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}
