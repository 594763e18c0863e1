//! The web page: the wasm32 target, `wasm-bindgen-cli` at the exact version of the
//! `wasm-bindgen` crate in Cargo.lock, the build of `yolots-web` with the size-tuned `web`
//! profile, and the folder `.yolots/web` that `yolots serve` serves (the bindings in
//! `pkg/`, then everything in `frontend/static`). Prints the bundle's gzip size.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::paths;
use crate::process::{self, step};

const TARGET: &str = "wasm32-unknown-unknown";
/// The Cargo profile of the page (workspace `Cargo.toml`): optimised for size.
const PROFILE: &str = "web";
/// Most bytes of compressed code the page may make a browser download.
const GZIP_BUDGET: usize = 1_500_000;

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
            .args(["install", "wasm-bindgen-cli", "--version"])
            .arg(format!("={version}"))
            .arg("--root")
            .arg(&root),
    )?;
    Ok(bin)
}

fn build(bindgen: &Path) -> anyhow::Result<()> {
    process::announce_build(
        "the web page (wasm32, profile `web`)",
        &paths::target()
            .join(TARGET)
            .join(PROFILE)
            .join("yolots_web.wasm"),
        "Yew and its web bindings",
    );
    process::run(
        Command::new("cargo")
            .args([
                "build",
                "--profile",
                PROFILE,
                "-p",
                "yolots-web",
                "--target",
                TARGET,
            ])
            .current_dir(paths::root()),
    )?;
    let wasm = paths::target()
        .join(TARGET)
        .join(PROFILE)
        .join("yolots_web.wasm");
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
    paths::copy_tree(&paths::root().join("frontend/static"), &out)?;
    report_size(&pkg)
}

/// Prints what a browser downloads for the page's code, raw and gzip-compressed, against
/// the budget.
fn report_size(pkg: &Path) -> anyhow::Result<()> {
    let mut raw = 0;
    let mut gzip = 0;
    for name in ["yolots_web_bg.wasm", "yolots_web.js"] {
        let bytes = std::fs::read(pkg.join(name))
            .with_context(|| format!("reading {}", pkg.join(name).display()))?;
        raw += bytes.len();
        gzip += gzip_len(&bytes)?;
    }
    let mb = |n: usize| n as f64 / 1e6;
    // The budget is for what a browser downloads: the gzip-compressed size.
    let verdict = if gzip <= GZIP_BUDGET {
        "within"
    } else {
        "OVER"
    };
    step(format!(
        "web page: {:.2} MB to download compressed ({verdict} its {:.1} MB budget; {:.2} MB uncompressed)",
        mb(gzip),
        mb(GZIP_BUDGET),
        mb(raw),
    ));
    Ok(())
}

fn gzip_len(bytes: &[u8]) -> anyhow::Result<usize> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?.len())
}

/// Shrinks the wasm with `wasm-opt` (Debian's `binaryen`) when it is there and can read
/// the build (releases before 116 cannot parse what wasm-bindgen emits for reference
/// types; the page then ships as wasm-bindgen wrote it).
fn optimize(wasm: &Path) {
    if !process::on_path("wasm-opt")
        && process::apt_install(&["binaryen"], "wasm-opt shrinks the web page").is_err()
    {
        step("wasm-opt not available: the web page is served unoptimised");
        return;
    }
    match wasm_opt_release() {
        Some(release) if release < WASM_OPT_FIRST_READING => {
            step(format!(
                "wasm-opt {release} is older than {WASM_OPT_FIRST_READING}, the first release \
                 that reads this page's code: the page is served as wasm-bindgen wrote it"
            ));
            return;
        }
        _ => {}
    }
    let optimized = wasm.with_extension("opt.wasm");
    let ran = Command::new("wasm-opt")
        .args([
            "-Oz",
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-mutable-globals",
            "--enable-reference-types",
            "--enable-multivalue",
            "-o",
        ])
        .arg(&optimized)
        .arg(wasm)
        .output();
    let renamed = match ran {
        Ok(out) if out.status.success() => std::fs::rename(&optimized, wasm).map_err(Into::into),
        Ok(out) => Err(anyhow::anyhow!(
            "{}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("no message")
                .to_owned()
        )),
        Err(error) => Err(error.into()),
    };
    if let Err(error) = renamed {
        let _ = std::fs::remove_file(&optimized);
        step(format!(
            "wasm-opt could not optimise the page ({error}); serving it as wasm-bindgen wrote it"
        ));
    }
}

/// The first binaryen release whose `wasm-opt` parses wasm-bindgen's reference types.
const WASM_OPT_FIRST_READING: u32 = 116;

/// `wasm-opt --version` prints `wasm-opt version 108` (or `... 116 (version_116)`).
fn wasm_opt_release() -> Option<u32> {
    let out = Command::new("wasm-opt").arg("--version").output().ok()?;
    release_in(&String::from_utf8_lossy(&out.stdout))
}

/// The number after the word `version`.
fn release_in(version_line: &str) -> Option<u32> {
    version_line
        .split_whitespace()
        .skip_while(|word| *word != "version")
        .nth(1)?
        .parse()
        .ok()
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wasm_opt_release_is_read_from_its_version_line() {
        assert_eq!(release_in("wasm-opt version 108\n"), Some(108));
        assert_eq!(release_in("wasm-opt version 116 (version_116)"), Some(116));
        assert_eq!(release_in("wasm-opt"), None);
    }
}
