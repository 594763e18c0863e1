//! `cargo xtask`: everything a fresh machine needs to build, run, test and benchmark yolots.
//!
//! - `setup`: libtorch, the wasm toolchain and web page, PostgreSQL (idempotent).
//! - `run`: setup, release build, `yolots serve` until Ctrl-C.
//! - `install`: the release binaries on the `PATH`.
//! - `test`: setup, format and lint checks, every test of every crate, a summary.
//! - `bench`: the benchmarks of every crate, figures printed.
//! - `gpu-bundle`: the binary, fixtures and a script to validate on a GPU machine.
//! - `dist`: the release binary, its libraries and the web page in one folder (Docker).
//! - `soak`: uploads at a steady rate for minutes; throughput, latency, memory.
//! - `queries`: check the service's SQL against a fresh database and refresh its offline
//!   cache (`backend/.sqlx`).
//!
//! Every command builds in a target folder shared by the machine's clones (see
//! `build_cache`), so a fresh clone reuses the compiled dependencies.

mod bench;
mod browser;
mod build_cache;
mod dist;
mod gpu_bundle;
mod install;
mod libtorch;
mod migrations;
mod moto;
mod onnxruntime;
mod paths;
mod postgres;
mod process;
mod pytools;
mod queries;
mod run;
mod schemathesis;
mod setup;
mod soak;
mod test;
mod web;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Build, run and test yolots")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install and prepare everything the project needs (safe to rerun).
    Setup(setup::SetupArgs),
    /// Set up, build in release mode and run `yolots serve`.
    Run(run::RunArgs),
    /// Set up and run every check and test; non-zero on any failure.
    Test(test::TestArgs),
    /// Build in release mode and put `yolots` and `yolots-converter` on the PATH.
    Install(install::InstallArgs),
    /// Run the benchmarks and print their figures.
    Bench(bench::BenchArgs),
    /// Build a self-contained bundle that converts the fixtures on a GPU machine.
    GpuBundle(gpu_bundle::GpuBundleArgs),
    /// Build the release binary, its libraries and the web page into one folder.
    Dist(dist::DistArgs),
    /// Serve with two workers under a steady stream of uploads; throughput, latency, memory.
    Soak(soak::SoakArgs),
    /// Check the service's SQL against a freshly migrated database and write the offline
    /// query cache (`backend/.sqlx`) that builds use.
    Queries,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    build_cache::use_shared_target();
    match cli.command {
        Command::Setup(args) => setup::command(&args),
        Command::Run(args) => run::run(&args),
        Command::Test(args) => test::test(&args),
        Command::Install(args) => install::install(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::GpuBundle(args) => gpu_bundle::gpu_bundle(&args),
        Command::Dist(args) => dist::dist(&args),
        Command::Soak(args) => soak::soak(&args),
        Command::Queries => queries::queries(),
    }
}
