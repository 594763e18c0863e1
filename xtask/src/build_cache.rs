//! One cargo target folder per toolchain, shared by every clone on the machine.
//!
//! A fresh clone would otherwise compile the whole dependency tree (actix, sqlx, tch, Yew...)
//! again: most of a cold `cargo xtask test`. The folder lives in the user cache and is named
//! after what makes compiled code incompatible (the rustc release and commit, the host, the
//! libtorch version), so a stale one is never used; cargo's own fingerprints decide what
//! inside it must be rebuilt. Each clone's crates are separate units there (cargo keys them
//! by their path), so clones do not overwrite each other's libraries; only the final
//! binaries (`debug/yolots`...) are the last build's, and builds take cargo's lock in turn.

use std::path::PathBuf;
use std::process::Command;

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
    // SAFETY: called first thing in `main`, before any thread exists, so nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var("CARGO_TARGET_DIR", &dir) };
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
