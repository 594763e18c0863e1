//! `cargo xtask run`: setup, release build, `yolots serve` until Ctrl-C.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use clap::Args;

use crate::process::{self, step};
use crate::setup::{self, SetupArgs};
use crate::{install, paths};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address to listen on.
    #[arg(long, env = "YOLOTS_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// Further arguments for `yolots serve`.
    #[arg(last = true)]
    serve_args: Vec<String>,
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let env = setup::setup(&SetupArgs::default())?;
    let result = build_and_serve(args, &env);
    env.database.stop_if_started();
    result
}

fn build_and_serve(args: &RunArgs, env: &setup::Environment) -> anyhow::Result<()> {
    process::build_release_binaries()?;
    // The clone's own copy: another clone's build in the shared folder cannot replace the
    // binaries this server (and the converters it starts) runs.
    let placed = install::place(&paths::state(), &env.onnxruntime.library)?;
    let binary = placed[0].clone();
    step(format!(
        "yolots is at {} (`cargo xtask install` puts it on your PATH)",
        relative(&binary).display()
    ));
    let data_dir = paths::state().join("data");
    std::fs::create_dir_all(&data_dir)?;
    step(format!("serving on http://{} (Ctrl-C stops)", args.bind));
    // The local default: any browser gets a session, one worker runs inside the server
    // (on CUDA when libtorch sees a GPU, else on the CPU).
    let mut defaults = Vec::new();
    if !args.serve_args.iter().any(|a| a == "--open") {
        defaults.push("--open");
    }
    let mut child = Command::new(&binary)
        .arg("serve")
        .arg("--bind")
        .arg(&args.bind)
        .args(defaults)
        .args(&args.serve_args)
        .envs(env.vars())
        .env("YOLOTS_DATA_DIR", &data_dir)
        .current_dir(paths::root())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;

    // The terminal sends Ctrl-C to the server too; forwarding covers a signal sent to us
    // alone. Either way we wait for the server to finish, then stop what we started.
    let pid = Arc::new(AtomicU32::new(child.id()));
    let forward = Arc::clone(&pid);
    ctrlc::set_handler(move || {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(forward.load(Ordering::SeqCst).to_string())
            .status();
    })
    .context("installing the Ctrl-C handler")?;
    let status = child.wait()?;
    step(format!("server stopped ({status})"));
    Ok(())
}

/// `path` relative to the current folder when it lies inside it (shorter to read and copy).
fn relative(path: &std::path::Path) -> std::path::PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|here| {
            path.strip_prefix(here)
                .ok()
                .map(std::path::Path::to_path_buf)
        })
        .unwrap_or_else(|| path.to_path_buf())
}
