//! `cargo xtask bench`: every benchmark of the project, figures printed.

use std::process::Command;

use clap::Args;

use crate::paths;
use crate::process;
use crate::setup::{self, SetupArgs};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Only the benchmarks of this package.
    #[arg(long, short)]
    package: Option<String>,
}

const PACKAGES: &[&str] = &["yolots-checkpoint", "yolots-converter", "yolots"];

pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let env = setup::setup(&SetupArgs {
        for_tests: false,
        no_web: true,
        no_database: false,
    })?;
    let packages: Vec<&str> = match &args.package {
        Some(p) => vec![p.as_str()],
        None => PACKAGES.to_vec(),
    };
    let mut result = Ok(());
    // The service benchmarks drive the real server and the converter its workers run:
    // the release binaries.
    if packages.contains(&"yolots") {
        result = process::build_release_binaries();
    }
    let binary = paths::target().join("release/yolots");
    for package in packages {
        let run = process::run(
            Command::new("cargo")
                .args(["bench", "-p", package])
                .current_dir(paths::root())
                .envs(env.vars())
                .env("YOLOTS_BIN", &binary)
                .env(
                    "YOLOTS_CONVERTER",
                    binary.with_file_name("yolots-converter"),
                ),
        );
        if run.is_err() {
            result = run;
        }
    }
    env.database.stop_if_started();
    result
}
