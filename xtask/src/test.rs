//! `cargo xtask test`: setup, format and lint checks, every test, one summary line.

use std::process::Command;
use std::time::Instant;

use clap::Args;

use crate::paths;
use crate::process::{self, step};
use crate::setup::{self, Environment, SetupArgs};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Extra arguments for `cargo test` (for example a test name filter).
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

/// One check of the run and its outcome.
struct Outcome {
    name: &'static str,
    ok: bool,
    seconds: f64,
}

pub fn test(args: &TestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let env = setup::setup(&SetupArgs {
        for_tests: true,
        no_web: false,
        no_database: false,
    })?;
    step(format!(
        "setup took {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    let outcomes = run_checks(args, &env);
    env.database.stop_if_started();

    let failed: Vec<&str> = outcomes.iter().filter(|o| !o.ok).map(|o| o.name).collect();
    for o in &outcomes {
        eprintln!(
            "xtask: {:<8} {:<28} {:>7.1}s",
            if o.ok { "ok" } else { "FAILED" },
            o.name,
            o.seconds
        );
    }
    let total = started.elapsed().as_secs_f64();
    if failed.is_empty() {
        println!(
            "xtask test: all {} checks passed in {total:.0}s",
            outcomes.len()
        );
        Ok(())
    } else {
        println!(
            "xtask test: {} of {} checks FAILED ({}) in {total:.0}s",
            failed.len(),
            outcomes.len(),
            failed.join(", ")
        );
        std::process::exit(1);
    }
}

fn run_checks(args: &TestArgs, env: &Environment) -> Vec<Outcome> {
    let output_dir = paths::target().join("test-output");
    let _ = std::fs::create_dir_all(&output_dir);
    let cargo = |args: &[&str]| {
        let mut cmd = Command::new("cargo");
        cmd.args(args).current_dir(paths::root()).envs(env.vars());
        cmd.env("YOLOTS_TEST_OUTPUT", &output_dir);
        // Setup installed every tool: a test that would skip for want of one fails instead.
        cmd.env("YOLOTS_REQUIRE_TOOLS", "1");
        cmd
    };
    let mut test_cmd = cargo(&["test", "--workspace", "--no-fail-fast"]);
    test_cmd.args(&args.cargo_test_args);

    let checks: Vec<(&'static str, Command)> = vec![
        ("format", cargo(&["fmt", "--all", "--check"])),
        (
            "clippy",
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        (
            "clippy (wasm32)",
            cargo(&[
                "clippy",
                "-p",
                "yolots-checkpoint",
                "-p",
                "yolots-protocol",
                "-p",
                "yolots-web",
                "--target",
                "wasm32-unknown-unknown",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        // One build of every crate, binaries and tests together with the features the
        // tests resolve (dev-dependencies included), so `cargo test` after it compiles
        // nothing again and the end-to-end tests find the real binaries. The wasm32 build
        // of the reader is the web page's, made by setup.
        (
            "build",
            cargo(&["build", "--workspace", "--bins", "--tests", "--examples"]),
        ),
        ("tests", test_cmd),
    ];
    let mut outcomes = Vec::new();
    for (name, mut cmd) in checks {
        step(format!("check: {name}"));
        let started = Instant::now();
        let ok = process::run(&mut cmd).is_ok();
        outcomes.push(Outcome {
            name,
            ok,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    outcomes
}
