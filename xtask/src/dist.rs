//! `cargo xtask dist --out DIR`: what a machine needs to run yolots, in one folder that
//! needs nothing from the build machine (the Docker image's runtime stage copies it):
//!
//! - `bin/yolots`: the release binary (it never loads libtorch), debug information
//!   stripped;
//! - `bin/yolots-converter`: the converting binary beside it (what `yolots convert` and
//!   the workers run; the only one that loads libtorch), stripped, its run path set to
//!   `$ORIGIN/../lib/torch/lib`;
//! - `lib/libonnxruntime.so`: ONNX Runtime (from the pinned PyPI wheel), which the
//!   converter loads at run time to validate ONNX artifacts;
//! - `lib/torch/lib/`: libtorch's shared objects, and beside them (`lib/nvidia/...`) the
//!   CUDA libraries that libtorch's own run paths name, in the same relative places as in
//!   the PyPI wheel, so libtorch finds them as it does there;
//! - `web/`: the built web page (`yolots serve --web-dir DIR/web`).
//!
//! Files are hard-linked from the cache where the file system allows (the libraries weigh
//! gigabytes), else copied.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Args;

use crate::process::{self, step};
use crate::setup::{self, SetupArgs};
use crate::{paths, web};

/// Marks a folder this command made, so a rerun may replace it.
const MARKER: &str = ".yolots-dist";
/// The converter's run path inside the folder.
const RUNPATH: &str = "$ORIGIN/../lib/torch/lib";
/// libtorch's Python bindings: they need libpython, and the binary never loads them.
const SKIPPED_LIBS: &[&str] = &["libtorch_python.so"];

#[derive(Debug, Args)]
pub struct DistArgs {
    /// The folder to fill (replaced if an earlier `dist` made it; refused if it holds
    /// anything else).
    #[arg(long)]
    out: PathBuf,
}

pub fn dist(args: &DistArgs) -> anyhow::Result<()> {
    let tools = setup::tools(&SetupArgs::SHIPPING)?;
    process::build_release_binaries()?;
    let patchelf = ensure_patchelf()?;
    let out = &args.out;
    prepare_out(out)?;

    std::fs::create_dir_all(out.join("bin"))?;
    let binary = copy_binary("yolots", out)?;
    let converter = copy_binary("yolots-converter", out)?;
    process::run(
        Command::new(&patchelf)
            .args(["--set-rpath", RUNPATH])
            .arg(&converter),
    )?;

    let torch_lib = tools.libtorch.dir.join("lib");
    let lib_bytes = copy_libraries(&patchelf, &torch_lib, &out.join("lib/torch/lib"))?;
    // The converter finds ONNX Runtime beside it (`lib/libonnxruntime.so`), as it finds
    // libtorch, and loads it only to validate ONNX artifacts.
    let onnxruntime = out.join("lib/libonnxruntime.so");
    std::fs::copy(&tools.onnxruntime.library, &onnxruntime)
        .context("copying ONNX Runtime's library")?;
    let lib_bytes = lib_bytes + size_of(&onnxruntime);
    paths::copy_tree(&web::out_dir(), &out.join("web"))?;
    std::fs::write(out.join(MARKER), "made by cargo xtask dist\n")?;

    // The folder must stand alone: every library resolves inside it or to the system.
    check_resolution(&binary, &tools.libtorch.dir)?;
    check_resolution(&converter, &tools.libtorch.dir)?;
    // The converter loads libtorch's CUDA backend at run time rather than linking it; it
    // must resolve inside the folder too.
    let cuda_backend = out.join("lib/torch/lib/libtorch_cuda.so");
    if cuda_backend.is_file() {
        check_resolution(&cuda_backend, &tools.libtorch.dir)?;
    }
    let version = process::output(
        Command::new(&binary)
            .arg("--version")
            .env_remove("LD_LIBRARY_PATH"),
    )?;
    // Loads libtorch from the folder: the converter runs there as it will on a server.
    process::output(
        Command::new(&converter)
            .arg("--version")
            .env_remove("LD_LIBRARY_PATH"),
    )?;
    step(format!(
        "dist: {} ({}; binaries {:.0} + {:.0} MB, libraries {:.0} MB, web page {:.1} MB)",
        out.display(),
        version.trim(),
        size_of(&binary) as f64 / 1e6,
        size_of(&converter) as f64 / 1e6,
        lib_bytes as f64 / 1e6,
        tree_size(&out.join("web")) as f64 / 1e6
    ));
    Ok(())
}

/// Copies a release binary into `out/bin`, debug information stripped; returns its path.
fn copy_binary(name: &str, out: &Path) -> anyhow::Result<PathBuf> {
    let target = out.join("bin").join(name);
    std::fs::copy(paths::target().join("release").join(name), &target)
        .with_context(|| format!("copying the release binary {name}"))?;
    process::run(Command::new("strip").arg("--strip-debug").arg(&target))?;
    Ok(target)
}

/// Debian's patchelf, installed when missing.
fn ensure_patchelf() -> anyhow::Result<PathBuf> {
    if let Some(path) = process::which("patchelf") {
        return Ok(path);
    }
    process::apt_install(&["patchelf"], "dist sets the binary's library path")?;
    process::which("patchelf").context("patchelf is still not on PATH")
}

/// Empties the output folder when an earlier `dist` made it; refuses any other.
fn prepare_out(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        let empty = std::fs::read_dir(out)?.next().is_none();
        if !empty && !out.join(MARKER).is_file() {
            bail!(
                "{} exists and was not made by `cargo xtask dist`: choose another --out",
                out.display()
            );
        }
        std::fs::remove_dir_all(out)?;
    }
    std::fs::create_dir_all(out)?;
    Ok(())
}

/// Copies libtorch's shared objects and every folder their `$ORIGIN` run paths name that
/// exists (the wheel's CUDA libraries), keeping their relative places. Returns the bytes.
fn copy_libraries(patchelf: &Path, torch_lib: &Path, dest: &Path) -> anyhow::Result<u64> {
    let mut folders: Vec<PathBuf> = vec![PathBuf::new()];
    for lib in shared_objects(torch_lib)? {
        let rpath = process::output(Command::new(patchelf).arg("--print-rpath").arg(&lib))?;
        for entry in rpath.trim().split(':') {
            let Some(relative) = entry.strip_prefix("$ORIGIN") else {
                continue;
            };
            let relative = PathBuf::from(relative.trim_start_matches('/'));
            if !folders.contains(&relative) {
                folders.push(relative);
            }
        }
    }
    let mut bytes = 0;
    for relative in folders {
        let source = torch_lib.join(&relative);
        if !source.is_dir() {
            continue;
        }
        // `lib/torch/lib` + `../../nvidia/cu13/lib` must stay inside `lib/`.
        let target = normalize(&dest.join(&relative));
        if !target.starts_with(normalize(&dest.join("../.."))) {
            step(format!(
                "dist: skipping {} (outside the folder)",
                relative.display()
            ));
            continue;
        }
        std::fs::create_dir_all(&target)?;
        for lib in shared_objects(&source)? {
            let Some(name) = lib.file_name() else {
                continue;
            };
            if SKIPPED_LIBS.iter().any(|s| name == *s) {
                continue;
            }
            bytes += link_or_copy(&lib, &target.join(name))?;
        }
    }
    Ok(bytes)
}

/// The `*.so` and `*.so.N` files of a folder.
fn shared_objects(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_so = name.ends_with(".so") || name.contains(".so.");
        if is_so && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn link_or_copy(source: &Path, target: &Path) -> anyhow::Result<u64> {
    let source = source.canonicalize()?;
    if std::fs::hard_link(&source, target).is_err() {
        std::fs::copy(&source, target).with_context(|| format!("copying {}", source.display()))?;
    }
    Ok(size_of(target))
}

/// Fails when a library of a binary is missing or would come from the build machine's
/// libtorch rather than from the folder.
fn check_resolution(binary: &Path, libtorch: &Path) -> anyhow::Result<()> {
    let ldd = process::output(
        Command::new("ldd")
            .arg(binary)
            .env_remove("LD_LIBRARY_PATH"),
    )?;
    let outside = libtorch
        .canonicalize()
        .unwrap_or_else(|_| libtorch.to_owned());
    let site_packages = outside.parent().unwrap_or(&outside).display().to_string();
    let bad: Vec<&str> = ldd
        .lines()
        .filter(|l| l.contains("not found") || l.contains(&site_packages))
        .collect();
    if !bad.is_empty() {
        bail!(
            "the dist binary does not resolve its libraries inside the folder:\n{}",
            bad.join("\n")
        );
    }
    Ok(())
}

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn tree_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        tree_size(&path)
                    } else {
                        size_of(&path)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
