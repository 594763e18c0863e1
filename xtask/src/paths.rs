//! Where things live. Project state stays in the project (`.yolots/`, git-ignored); heavy,
//! version-pinned downloads go to a user-level cache keyed by version, so a fresh clone
//! reuses them.

use std::path::{Path, PathBuf};

/// The PyTorch release whose libtorch tch 0.24 expects.
pub const TORCH_VERSION: &str = "2.11.0";

/// The workspace root (the folder above `xtask/`).
pub fn root() -> PathBuf {
    // Cargo's run-time value first (`cargo xtask` is `cargo run`): a build folder shared
    // between clones may hold an xtask compiled in another clone.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `.yolots/` in the project: links to the cached toolchains, the database, uploads.
pub fn state() -> PathBuf {
    root().join(".yolots")
}

/// The user-level cache (`$YOLOTS_CACHE_DIR`, else `$XDG_CACHE_HOME/yolots`, else
/// `~/.cache/yolots`).
pub fn cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("YOLOTS_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("yolots");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache").join("yolots")
}

/// The cargo target folder (honours `CARGO_TARGET_DIR`).
pub fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The shared test fixtures: `YOLOTS_FIXTURES`, else `../shared/fixtures` beside the
/// project.
pub fn fixtures() -> PathBuf {
    std::env::var_os("YOLOTS_FIXTURES")
        .map_or_else(|| root().join("../shared/fixtures"), PathBuf::from)
}

/// Whether this process runs as root (then system packages can be installed).
pub fn is_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
}

/// Copies a folder's files and subfolders into `to` (created), replacing files there.
pub fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest).with_context(|| {
                format!("copying {} to {}", entry.path().display(), dest.display())
            })?;
        }
    }
    Ok(())
}
