//! Where a built `yolots` lives, and `cargo xtask install`.
//!
//! Release builds land in the build folder that every clone of the machine shares, where
//! another clone's next build replaces them. So after building, the binaries are copied
//! into a folder of their own with what they look for beside them:
//!
//! - `bin/yolots`, `bin/yolots-converter` (`yolots` runs the converter beside it);
//! - `lib/libonnxruntime.so` (the converter looks for `../lib/libonnxruntime.so`, the
//!   layout `cargo xtask dist` ships);
//! - `web/` (`yolots serve` looks for `../web` beside its folder when `.yolots/web` is not
//!   in the current folder).
//!
//! `cargo xtask run` fills the clone's `.yolots/` this way (the page is built there
//! already) and serves from `.yolots/bin/yolots`. `cargo xtask install` fills
//! `<root>/lib/yolots/` and links both binaries into `<root>/bin`, a folder on the `PATH`
//! (`~/.cargo/bin` by default, where `cargo install` puts programs). libtorch stays in the
//! user cache, which the converter's run path names.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::process::{self, step};
use crate::setup::{self, SetupArgs};
use crate::{paths, web};

/// The binaries a working `yolots` needs, side by side.
const BINARIES: [&str; 2] = ["yolots", "yolots-converter"];

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The prefix: binaries are linked into `ROOT/bin`, the files behind them go to
    /// `ROOT/lib/yolots` (default: `$CARGO_HOME`, else `~/.cargo`).
    #[arg(long)]
    root: Option<PathBuf>,
}

pub fn install(args: &InstallArgs) -> anyhow::Result<()> {
    let tools = setup::tools(&SetupArgs::SHIPPING)?;
    process::build_release_binaries()?;
    let root = match &args.root {
        Some(root) => root.clone(),
        None => cargo_home().context("no --root given, and neither CARGO_HOME nor HOME is set")?,
    };
    let home = root.join("lib/yolots");
    let placed = place(&home, &tools.onnxruntime.library)?;
    paths::copy_tree(&web::out_dir(), &home.join("web"))?;
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    for (name, binary) in BINARIES.iter().zip(&placed) {
        replace_link(binary, &bin.join(name))?;
    }
    step(format!(
        "installed yolots and yolots-converter in {} (files in {})",
        bin.display(),
        home.display()
    ));
    if !on_path(&bin) {
        step(format!(
            "{} is not on your PATH: add it (for example `export PATH=\"{}:$PATH\"`)",
            bin.display(),
            bin.display()
        ));
    }
    Ok(())
}

/// Copies the freshly built binaries into `<dir>/bin` and links ONNX Runtime's library as
/// `<dir>/lib/libonnxruntime.so`; returns the binaries' new paths, in `BINARIES` order.
pub fn place(dir: &Path, onnxruntime: &Path) -> anyhow::Result<Vec<PathBuf>> {
    place_from(&paths::target().join("release"), dir, onnxruntime)
}

/// `place`, with the binaries taken from `built`.
fn place_from(built: &Path, dir: &Path, onnxruntime: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let bin = dir.join("bin");
    let lib = dir.join("lib");
    for folder in [&bin, &lib] {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating {}", folder.display()))?;
    }
    let mut placed = Vec::new();
    for name in BINARIES {
        let to = bin.join(name);
        copy_replacing(&built.join(name), &to)?;
        placed.push(to);
    }
    replace_link(onnxruntime, &lib.join("libonnxruntime.so"))?;
    Ok(placed)
}

/// Copies through a temporary name and renames, so a running copy of the old binary keeps
/// its file and nobody ever sees half a binary.
fn copy_replacing(from: &Path, to: &Path) -> anyhow::Result<()> {
    let partial = to.with_extension("partial");
    std::fs::copy(from, &partial)
        .with_context(|| format!("copying {} to {}", from.display(), partial.display()))?;
    std::fs::rename(&partial, to).with_context(|| format!("replacing {}", to.display()))
}

/// Points `link` at `target`, replacing what was there.
fn replace_link(target: &Path, link: &Path) -> anyhow::Result<()> {
    if std::fs::read_link(link).is_ok_and(|current| current == target) {
        return Ok(());
    }
    match std::fs::remove_file(link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("replacing {}", link.display())),
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
}

fn on_path(dir: &Path) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|entry| entry == dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binaries are copies (a later build in the shared folder leaves them alone),
    /// replaced whole on the next placing, with ONNX Runtime linked where the converter
    /// looks for it.
    #[test]
    fn placed_binaries_are_copies_beside_onnx_runtime() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let built = tmp.path().join("release");
        std::fs::create_dir_all(&built)?;
        let runtime = tmp.path().join("libonnxruntime.so.1");
        std::fs::write(&runtime, "runtime")?;
        let home = tmp.path().join("home");
        for round in ["first", "second"] {
            for name in BINARIES {
                std::fs::write(built.join(name), format!("{name} {round}"))?;
            }
            let placed = place_from(&built, &home, &runtime)?;
            assert_eq!(
                placed,
                [home.join("bin/yolots"), home.join("bin/yolots-converter")]
            );
            for (name, path) in BINARIES.iter().zip(&placed) {
                assert!(!path.symlink_metadata()?.file_type().is_symlink());
                assert_eq!(std::fs::read_to_string(path)?, format!("{name} {round}"));
            }
        }
        std::fs::write(built.join("yolots"), "a later build")?;
        assert_eq!(
            std::fs::read_to_string(home.join("bin/yolots"))?,
            "yolots second"
        );
        assert_eq!(
            std::fs::read_link(home.join("lib/libonnxruntime.so"))?,
            runtime
        );
        assert!(!home.join("bin/yolots.partial").exists());
        Ok(())
    }
}
