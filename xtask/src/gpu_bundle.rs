//! `cargo xtask gpu-bundle`: a self-contained folder and tarball (under 64 MB) that
//! converts and validates the fixtures on a GPU machine with PyTorch 2.11: the `yolots`
//! binary and beside it the converter it runs (`yolots-converter`, built against libtorch
//! 2.11.0), the small fixtures and `run.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Args;

use crate::process::{self, step};
use crate::{libtorch, paths};

/// The most the bundle may weigh, compressed.
const LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// The fixtures that travel: every one with official outputs (the 75 MB full model stays).
const FIXTURES: &[&str] = &[
    "yolov7-tiny.pt",
    "yolov7-w25-c3.pt",
    "yolov7-w6-w25-c3.pt",
    "yolov7-deploy-w25-c3.pt",
];

#[derive(Debug, Args)]
pub struct GpuBundleArgs {
    /// Where to put the bundle folder and tarball.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn gpu_bundle(args: &GpuBundleArgs) -> anyhow::Result<()> {
    libtorch::ensure(false)?;
    process::build_release_binaries()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| paths::target().join("gpu-bundle"));
    let dir = out.join("yolots-gpu");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(dir.join("bin"))?;
    std::fs::create_dir_all(dir.join("fixtures"))?;

    for name in ["yolots", "yolots-converter"] {
        let binary = dir.join("bin").join(name);
        std::fs::copy(paths::target().join("release").join(name), &binary)
            .with_context(|| format!("copying the release binary {name}"))?;
        // Debug information is most of a binary's size and is not needed to run it.
        process::run(Command::new("strip").arg("--strip-debug").arg(&binary))?;
    }
    for name in FIXTURES {
        let source = paths::fixtures().join(name);
        std::fs::copy(&source, dir.join("fixtures").join(name))
            .with_context(|| format!("copying {}", source.display()))?;
    }
    let script = dir.join("run.sh");
    std::fs::copy(paths::root().join("xtask/assets/gpu-run.sh"), &script)?;

    let tarball = out.join("yolots-gpu.tar.gz");
    process::run(
        Command::new("tar")
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(&out)
            .arg("yolots-gpu"),
    )?;
    let size = std::fs::metadata(&tarball)?.len();
    step(format!(
        "bundle: {} ({:.1} MB); on the GPU machine: tar xzf yolots-gpu.tar.gz && yolots-gpu/run.sh",
        rel(&tarball),
        size as f64 / 1e6
    ));
    if size > LIMIT_BYTES {
        bail!("the bundle weighs {size} bytes, over the {LIMIT_BYTES} byte limit");
    }
    Ok(())
}

fn rel(path: &Path) -> String {
    path.strip_prefix(paths::root())
        .unwrap_or(path)
        .display()
        .to_string()
}
