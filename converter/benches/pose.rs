//! Pose conversions as a user runs them, beside the full detection model: the shared pose
//! fixture (width 0.25), a full-size pose model (`yolov7-w6-pose` at width 1.0, random
//! weights, written by `tests/python/make_pose.py` with the setup's Python), and
//! `yolov7-full.pt`. Each case runs `yolots-converter convert` in a fresh process with the
//! default checks and with none (`--no-validate --latency-runs 0`), in interleaved rounds:
//! wall time and peak RSS, medians printed. The random full-size model's fused float32
//! outputs drift further from its unfused ones than a trained model's (its own generator
//! measures the spread), so its validation may end in "diverged" (exit status 3): such a
//! run still did all the work and is timed, and marked.
//!
//! `cargo bench -p yolots-converter --bench pose [-- --rounds N]`

#[path = "support/process.rs"]
mod process;

use std::path::{Path, PathBuf};
use std::process::Command;

use process::{Case, Run, fixtures, manifest_dir, median, run_once};

/// Writes the full-size pose model into `dir` with the setup's Python and torch.
fn full_pose_model(dir: &Path) -> Result<PathBuf, String> {
    let python = manifest_dir().join("../.yolots/venv/bin/python");
    if !python.exists() {
        return Err("no .yolots/venv: run `cargo xtask setup`".into());
    }
    let out = dir.join("yolov7-w6-pose-full.pt");
    let status = Command::new(python)
        .arg(manifest_dir().join("tests/python/make_pose.py"))
        .args([
            "--preset",
            "w6-pose",
            "--width",
            "1.0",
            "--no-expected",
            "--out",
        ])
        .arg(&out)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("make_pose.py failed: {status}"));
    }
    Ok(out)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize);
    let dir = std::env::temp_dir().join(format!("yolots-pose-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        return;
    }
    let mut models = vec![(
        "pose fixture (w 0.25)".to_owned(),
        fixtures().join("pose/yolov7-w6-pose-w25.pt"),
    )];
    match full_pose_model(&dir) {
        Ok(path) => models.push(("pose full (w6-pose)".to_owned(), path)),
        Err(e) => eprintln!("no full-size pose model: {e}"),
    }
    models.push((
        "detect full (yolov7)".to_owned(),
        fixtures().join("yolov7-full.pt"),
    ));
    models.retain(|(label, path)| {
        let present = path.exists();
        if !present {
            eprintln!("{label}: no file at {}", path.display());
        }
        present
    });

    let program = PathBuf::from(env!("CARGO_BIN_EXE_yolots-converter"));
    let convert = |extra: &[&str]| {
        ["convert", "{in}", "-o", "{out}", "--device", "cpu"]
            .iter()
            .chain(extra)
            .map(|s| (*s).to_owned())
            .collect::<Vec<String>>()
    };
    let checks = [
        ("default", convert(&[])),
        (
            "no checks",
            convert(&["--no-validate", "--latency-runs", "0"]),
        ),
    ];
    println!(
        "{} models, {} CPUs, {rounds} rounds, cases in turn",
        models.len(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    // (model, checks) -> runs.
    let mut runs: Vec<Vec<Run>> = Vec::new();
    let mut labels = Vec::new();
    for (model, _) in &models {
        for (check, _) in &checks {
            labels.push(format!("{model}, {check}"));
            runs.push(Vec::new());
        }
    }
    for round in 0..rounds {
        let mut slot = 0;
        for (model_index, (_, path)) in models.iter().enumerate() {
            for (check, args) in &checks {
                let case = Case {
                    label: (*check).to_owned(),
                    program: program.clone(),
                    args: args.clone(),
                    budget: None,
                    accept_exit: &[0, 3],
                };
                let output = dir.join(format!("m{model_index}.torchscript.pt"));
                let label = labels.get(slot).cloned().unwrap_or_default();
                match run_once(&case, path, &output) {
                    Ok(run) => {
                        let mark = if run.exit == 3 {
                            "  (validation diverged)"
                        } else {
                            ""
                        };
                        println!(
                            "  round {round} {label:<36} {:>6.2} s {:>6.0} MB{mark}",
                            run.wall_s, run.peak_rss_mb
                        );
                        if let Some(list) = runs.get_mut(slot) {
                            list.push(run);
                        }
                    }
                    Err(e) => println!("  round {round} {label:<36} failed: {e}"),
                }
                slot += 1;
            }
        }
    }
    println!();
    for (label, list) in labels.iter().zip(&runs) {
        let walls: Vec<f64> = list.iter().map(|r| r.wall_s).collect();
        let rss: Vec<f64> = list.iter().map(|r| r.peak_rss_mb).collect();
        println!(
            "{label:<36} wall median {:.2} s, peak RSS median {:.0} MB ({} runs)",
            median(&walls),
            median(&rss),
            list.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
