//! Running commands: each is printed before it runs, and a failure names the command.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Prints a step of the setup.
pub fn step(message: impl AsRef<str>) {
    eprintln!("xtask: {}", message.as_ref());
}

/// Runs a command to completion, inheriting stdio; fails on a non-zero status.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: $ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("starting `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", display(cmd));
    }
    Ok(())
}

/// Runs a command and returns its stdout; fails on a non-zero status.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting `{}`", display(cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed with {}", display(cmd), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command quietly and reports only whether it succeeded.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a program is on `PATH`.
pub fn on_path(program: &str) -> bool {
    which(program).is_some()
}

/// The full path of a program on `PATH`.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Installs Debian packages with apt when running as root; otherwise explains what to do.
pub fn apt_install(packages: &[&str], why: &str) -> anyhow::Result<()> {
    if !crate::paths::is_root() {
        bail!(
            "{why}: install the Debian packages {} (for example `sudo apt-get install {}`) and rerun",
            packages.join(", "),
            packages.join(" ")
        );
    }
    step(format!("installing {} ({why})", packages.join(", ")));
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    // A fresh machine may have no package lists yet.
    if run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .envs(env))
    .is_err()
    {
        run(Command::new("apt-get").args(["update", "-q"]).envs(env))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .envs(env))?;
    }
    Ok(())
}

fn display(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(
        cmd.get_args()
            .map(|a: &OsStr| a.to_string_lossy().into_owned()),
    );
    parts.join(" ")
}

/// Builds the release binaries every served or shipped yolots needs: `yolots` and, beside
/// it, the `yolots-converter` its workers and `yolots convert` run.
pub fn build_release_binaries() -> anyhow::Result<()> {
    let target = crate::paths::target();
    announce_build(
        "yolots and yolots-converter (release)",
        &target.join("release/yolots-converter"),
        "libtorch's bindings, actix-web, sqlx and the converter",
    );
    run(Command::new("cargo")
        .args([
            "build",
            "--release",
            "--bins",
            "-p",
            "yolots",
            "-p",
            "yolots-converter",
        ])
        .current_dir(crate::paths::root()))
}

/// Says what cargo compiles next and why it may take a while: the first build on a machine
/// (nothing at `output` in the shared build folder yet) compiles every dependency, on two
/// cores for many minutes; later builds compile only what changed.
pub fn announce_build(what: &str, output: &std::path::Path, heavy_parts: &str) {
    if output.exists() {
        step(format!(
            "compiling {what}: only what changed since the last build"
        ));
    } else {
        step(format!(
            "compiling {what} for the first time on this machine: every dependency ({heavy_parts}), \
             many minutes on a small machine (cargo prints each crate); later builds and other \
             clones reuse the shared build folder"
        ));
    }
}
