//! The converting CLI as a user runs it, end to end, each run a fresh process: wall time
//! and peak RSS (the `rusage` of the finished child, as `getrusage` reports it).
//!
//! `cargo bench -p yolots-converter --bench cli [-- CHECKPOINT] [--rounds N]
//!  [--also 'LABEL=PROGRAM ARG...']`
//!
//! Cases: `default` (`yolots-converter convert CHECKPOINT`: validation and timing as a user
//! gets them), `no checks` (`--no-validate --latency-runs 0`), and the same two with
//! `--format onnx` (validated and timed in ONNX Runtime, which must be installed:
//! `YOLOTS_ONNXRUNTIME`; the goal is no more than the TorchScript conversion). The
//! reports' latency medians put the ONNX file in ONNX Runtime beside the TorchScript
//! artifact in libtorch (640x640, batch 1, the same threads). `--also` adds a command to
//! compare, such as a build of another revision (`{in}` and `{out}` in its arguments become
//! the checkpoint and the artifact path). Every round runs every case once, in turn, so
//! the load of a shared machine falls on all of them alike; the spread across rounds says
//! how noisy it was. Budgets on two CPU cores with the full YOLOv7: default 4 s and
//! 700 MB, no checks 0.8 s.

#[path = "support/process.rs"]
mod process;

use std::path::PathBuf;

use process::{Case, Run, median, run_once};

const DEFAULT_WALL_BUDGET_S: f64 = 4.0;
const DEFAULT_RSS_BUDGET_MB: f64 = 700.0;
const NO_CHECKS_WALL_BUDGET_S: f64 = 0.8;

fn default_checkpoint() -> PathBuf {
    // Cargo's run-time value first: a shared build folder may hold a binary built elsewhere.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../../shared/fixtures/yolov7-full.pt")
}

fn verdict(value: f64, budget: f64) -> &'static str {
    if value <= budget { "ok" } else { "OVER" }
}

/// `LABEL=PROGRAM ARG...` (arguments split on spaces).
fn parse_also(spec: &str) -> Option<Case> {
    let (label, command) = spec.split_once('=')?;
    let mut words = command.split_whitespace();
    Some(Case {
        label: label.to_owned(),
        program: PathBuf::from(words.next()?),
        args: words.map(str::to_owned).collect(),
        budget: None,
        accept_exit: &[0],
    })
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut rounds = 5usize;
    let mut input = default_checkpoint();
    let mut also = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rounds" => rounds = it.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            "--also" => match it.next().and_then(|s| parse_also(s)) {
                Some(case) => also.push(case),
                None => eprintln!("--also wants 'LABEL=PROGRAM ARG...'"),
            },
            other if !other.starts_with('-') => input = PathBuf::from(other),
            _ => {}
        }
    }
    if !input.exists() {
        eprintln!("no checkpoint at {}", input.display());
        return;
    }
    let program = PathBuf::from(env!("CARGO_BIN_EXE_yolots-converter"));
    let convert = |extra: &[&str]| {
        ["convert", "{in}", "-o", "{out}", "--device", "cpu"]
            .iter()
            .chain(extra)
            .map(|s| (*s).to_owned())
            .collect::<Vec<String>>()
    };
    let mut cases = vec![
        Case {
            label: "default".into(),
            program: program.clone(),
            args: convert(&[]),
            budget: Some((DEFAULT_WALL_BUDGET_S, Some(DEFAULT_RSS_BUDGET_MB))),
            accept_exit: &[0],
        },
        Case {
            label: "no checks".into(),
            program: program.clone(),
            args: convert(&["--no-validate", "--latency-runs", "0"]),
            budget: Some((NO_CHECKS_WALL_BUDGET_S, None)),
            accept_exit: &[0],
        },
    ];
    if std::env::var_os("YOLOTS_ONNXRUNTIME").is_some() {
        cases.push(Case {
            label: "onnx".into(),
            program: program.clone(),
            args: convert(&["--format", "onnx"]),
            budget: None,
            accept_exit: &[0],
        });
        cases.push(Case {
            label: "onnx no checks".into(),
            program,
            args: convert(&["--format", "onnx", "--no-validate", "--latency-runs", "0"]),
            budget: None,
            accept_exit: &[0],
        });
    } else {
        println!("YOLOTS_ONNXRUNTIME is not set: the ONNX cases are left out");
    }
    cases.extend(also);

    let dir = std::env::temp_dir().join(format!("yolots-cli-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        return;
    }
    println!(
        "checkpoint {} ({:.1} MB), {} CPUs, {rounds} rounds, cases in turn",
        input.display(),
        std::fs::metadata(&input).map_or(0.0, |m| m.len() as f64 / 1e6),
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    let mut runs: Vec<Vec<Run>> = cases.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, case) in cases.iter().enumerate() {
            let extension = if case.args.iter().any(|a| a == "onnx") {
                "onnx"
            } else {
                "torchscript.pt"
            };
            let output = dir.join(format!("case{i}.{extension}"));
            match run_once(case, &input, &output) {
                Ok(run) => {
                    println!(
                        "  round {round} {:<14} {:>6.2} s {:>6.0} MB",
                        case.label, run.wall_s, run.peak_rss_mb
                    );
                    if let Some(list) = runs.get_mut(i) {
                        list.push(run);
                    }
                }
                Err(e) => println!("  round {round} {:<14} failed: {e}", case.label),
            }
        }
    }
    println!();
    for (case, list) in cases.iter().zip(&runs) {
        let walls: Vec<f64> = list.iter().map(|r| r.wall_s).collect();
        let rss: Vec<f64> = list.iter().map(|r| r.peak_rss_mb).collect();
        let (wall, peak) = (median(&walls), median(&rss));
        let lo = walls.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = walls.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut line = format!(
            "{:<14} wall median {wall:.2} s (min {lo:.2}, max {hi:.2}), peak RSS median {peak:.0} MB",
            case.label
        );
        if let Some((wall_budget, rss_budget)) = case.budget {
            line += &format!("  [budget {wall_budget} s {}", verdict(wall, wall_budget));
            if let Some(rss_budget) = rss_budget {
                line += &format!(", {rss_budget} MB {}", verdict(peak, rss_budget));
            }
            line += "]";
        }
        println!("{line}");
        if let Some(first) = list.first() {
            let stages: Vec<String> = first
                .stages
                .iter()
                .enumerate()
                .map(|(k, (stage, _))| {
                    let values: Vec<f64> = list
                        .iter()
                        .filter_map(|r| r.stages.get(k).map(|s| s.1))
                        .collect();
                    format!("{stage} {:.2}", median(&values))
                })
                .collect();
            if !stages.is_empty() {
                println!("{:<14} report medians: {}", "", stages.join(", "));
            }
        }
    }
    print_onnx_comparison(&cases, &runs);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ONNX cases beside their TorchScript counterparts: wall time, peak RSS, and the
/// artifact's latency each report measured (ONNX Runtime against libtorch).
fn print_onnx_comparison(cases: &[Case], runs: &[Vec<Run>]) {
    let find = |label: &str| cases.iter().position(|c| c.label == label);
    let stat = |i: usize, f: &dyn Fn(&Run) -> Option<f64>| {
        let values: Vec<f64> = runs[i].iter().filter_map(f).collect();
        median(&values)
    };
    let latency = |r: &Run| {
        r.stages
            .iter()
            .find(|(s, _)| s == "latency p50 ms")
            .map(|(_, v)| *v)
    };
    for (ts, onnx) in [("default", "onnx"), ("no checks", "onnx no checks")] {
        let (Some(t), Some(o)) = (find(ts), find(onnx)) else {
            continue;
        };
        let wall = stat(o, &|r| Some(r.wall_s)) / stat(t, &|r| Some(r.wall_s));
        let rss = stat(o, &|r| Some(r.peak_rss_mb)) / stat(t, &|r| Some(r.peak_rss_mb));
        let mut line = format!("{onnx:<14} vs {ts}: wall {wall:.2}x, peak RSS {rss:.2}x");
        let (lt, lo) = (stat(t, &latency), stat(o, &latency));
        if lt.is_finite() && lo.is_finite() {
            line += &format!(
                "; artifact latency p50 {lo:.0} ms in ONNX Runtime, {lt:.0} ms in libtorch ({:.2}x)",
                lo / lt
            );
        }
        println!("{line}");
    }
}
