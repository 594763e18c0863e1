//! One cargo target folder per toolchain, shared by every clone on the machine.
//!
//! A fresh clone would otherwise compile the whole dependency tree (actix, sqlx, tch, Yew...)
//! again: most of a cold `cargo xtask test`. The folder lives in the user cache and is named
//! after what makes compiled code incompatible (the rustc release and commit, the host, the
//! libtorch version), so a stale one is never used; cargo's own fingerprints decide what
//! inside it must be rebuilt. Builds take cargo's lock in turn.
//!
//! Cargo keys the workspace's own crates by their path relative to the workspace, so two
//! clones share those units, and it rebuilds one only when a source file is newer than the
//! last output: a clone whose files are older than another clone's last build would reuse
//! that clone's code. So the folder records which clone built last, and a build from
//! another clone first marks this clone's tracked files as modified now.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::paths::{self, TORCH_VERSION};
use crate::process::step;

/// Points `CARGO_TARGET_DIR` at the shared folder unless the user set one, or set
/// `YOLOTS_SHARED_TARGET=0` to keep the clone's own `target/`.
pub fn use_shared_target() {
    if std::env::var_os("CARGO_TARGET_DIR").is_some()
        || std::env::var("YOLOTS_SHARED_TARGET").is_ok_and(|v| v == "0")
    {
        return;
    }
    let Some(dir) = shared_target() else {
        return;
    };
    step(format!("build cache: {}", dir.display()));
    claim_for_this_clone(&dir, &paths::root());
    // SAFETY: called first thing in `main`, before any thread exists, so nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var("CARGO_TARGET_DIR", &dir) };
}

/// Name of the file in the shared folder that says which clone built there last.
const LAST_CLONE: &str = "yolots-last-clone";

/// Makes cargo rebuild this clone's crates when another clone built in `dir` last: every
/// file git tracks here gets the current time as its modification time.
fn claim_for_this_clone(dir: &Path, root: &Path) {
    let marker = dir.join(LAST_CLONE);
    let this = root.to_string_lossy().into_owned();
    if std::fs::read_to_string(&marker).is_ok_and(|last| last == this) {
        return;
    }
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output();
    let files = match listed {
        Ok(out) if out.status.success() => out.stdout,
        _ => {
            step("build cache: git ls-files failed; another clone's build may be reused");
            return;
        }
    };
    let now = SystemTime::now();
    let mut touched = 0usize;
    for name in files.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let path = root.join(String::from_utf8_lossy(name).as_ref());
        let file = std::fs::File::options().write(true).open(&path);
        if file.and_then(|f| f.set_modified(now)).is_ok() {
            touched += 1;
        }
    }
    step(format!(
        "build cache: another clone built here last, so this clone's own crates compile again \
         ({touched} files marked as changed); the dependencies are reused"
    ));
    if let Err(error) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&marker, this)) {
        step(format!("build cache: {}: {error}", marker.display()));
    }
}

/// `<cache>/target/rustc-<release>-<commit>-<host>-torch-<version>`, or `None` when rustc
/// cannot be asked (then the clone's own folder is used).
fn shared_target() -> Option<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc).arg("-vV").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| value.trim().to_owned())
    };
    let commit: String = field("commit-hash:")?.chars().take(12).collect();
    let key = format!(
        "rustc-{}-{}-{}-torch-{TORCH_VERSION}",
        field("release:")?,
        commit,
        field("host:")?
    );
    let safe: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(paths::cache().join("target").join(safe))
}
