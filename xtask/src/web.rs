//! The web page: the wasm32 target, `wasm-bindgen-cli` at the exact version of the
//! `wasm-bindgen` crate in Cargo.lock, the release build of `yolots-web`, and the folder
//! `.yolots/web` that `yolots serve` serves.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::paths;
use crate::process::{self, step};

const TARGET: &str = "wasm32-unknown-unknown";

/// The built page.
pub fn out_dir() -> PathBuf {
    paths::state().join("web")
}

/// Installs what the build needs and builds the page.
pub fn ensure() -> anyhow::Result<PathBuf> {
    ensure_target()?;
    let bindgen = ensure_bindgen()?;
    build(&bindgen)?;
    Ok(out_dir())
}

fn ensure_target() -> anyhow::Result<()> {
    let installed = process::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup is needed to add the wasm32 target")?;
    if installed.lines().any(|l| l.trim() == TARGET) {
        return Ok(());
    }
    step(format!("adding the Rust target {TARGET}"));
    process::run(Command::new("rustup").args(["target", "add", TARGET]))
}

/// The version of the `wasm-bindgen` crate that Cargo.lock pins.
fn locked_bindgen_version() -> anyhow::Result<String> {
    let lock =
        std::fs::read_to_string(paths::root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\""
            && let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
        {
            return Ok(version.trim_end_matches('"').to_owned());
        }
    }
    bail!("Cargo.lock has no wasm-bindgen entry")
}

fn ensure_bindgen() -> anyhow::Result<PathBuf> {
    let version = locked_bindgen_version()?;
    let root = paths::cache().join(format!("tools/wasm-bindgen-{version}"));
    let bin = root.join("bin/wasm-bindgen");
    if bin.is_file() {
        return Ok(bin);
    }
    step(format!(
        "installing wasm-bindgen-cli {version} into the user cache (a few minutes, once)"
    ));
    process::run(
        Command::new("cargo")
            .args(["install", "--quiet", "wasm-bindgen-cli", "--version"])
            .arg(format!("={version}"))
            .arg("--root")
            .arg(&root),
    )?;
    Ok(bin)
}

fn build(bindgen: &Path) -> anyhow::Result<()> {
    step("building the web page (release, wasm32)");
    process::run(
        Command::new("cargo")
            .args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "yolots-web",
                "--target",
                TARGET,
            ])
            .current_dir(paths::root()),
    )?;
    let wasm = paths::target().join(TARGET).join("release/yolots_web.wasm");
    let out = out_dir();
    let pkg = out.join("pkg");
    let stamp = pkg.join("yolots_web_bg.wasm");
    let up_to_date = modified(&stamp)
        .zip(modified(&wasm))
        .is_some_and(|(built, source)| built >= source);
    if !up_to_date {
        std::fs::create_dir_all(&pkg)?;
        process::run(
            Command::new(bindgen)
                .args(["--target", "web", "--no-typescript", "--out-dir"])
                .arg(&pkg)
                .arg(&wasm),
        )?;
        optimize(&stamp);
    }
    copy_static(&paths::root().join("frontend/static"), &out)?;
    Ok(())
}

/// Shrinks the wasm with `wasm-opt` (Debian's `binaryen`) when it is there.
fn optimize(wasm: &Path) {
    if !process::on_path("wasm-opt")
        && process::apt_install(&["binaryen"], "wasm-opt shrinks the web page").is_err()
    {
        step("wasm-opt not available: the web page is served unoptimised");
        return;
    }
    let optimized = wasm.with_extension("opt.wasm");
    let ok = process::run(
        Command::new("wasm-opt")
            .args([
                "-Oz",
                "--enable-bulk-memory",
                "--enable-nontrapping-float-to-int",
                "--enable-sign-ext",
                "--enable-mutable-globals",
                "-o",
            ])
            .arg(&optimized)
            .arg(wasm),
    );
    match ok.and_then(|()| std::fs::rename(&optimized, wasm).map_err(Into::into)) {
        Ok(()) => {}
        Err(error) => step(format!(
            "wasm-opt failed, keeping the unoptimised build: {error:#}"
        )),
    }
}

fn copy_static(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_static(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
