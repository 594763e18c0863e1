//! Shared by the process benchmarks: one command run as a fresh child process, its wall
//! time and peak RSS (the `rusage` of the finished child, as `getrusage` reports it), and
//! the stage times of the report it wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One command to measure.
pub struct Case {
    pub label: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// (wall seconds, MB) budgets, printed beside the figures.
    pub budget: Option<(f64, Option<f64>)>,
    /// Exit statuses that count as a finished run (`0`; the pose benchmark also takes
    /// `3`, validation diverged, for a random model whose fused spread is wide).
    pub accept_exit: &'static [i32],
}

/// One finished run.
pub struct Run {
    pub wall_s: f64,
    pub peak_rss_mb: f64,
    pub exit: i32,
    /// `(stage, seconds)` from the report the run wrote, when it wrote one.
    pub stages: Vec<(String, f64)>,
}

/// The stage times of the report the converter writes beside `output`.
fn report_stages(output: &Path) -> Vec<(String, f64)> {
    let path = yolots_protocol::cli::default_report(output);
    let Ok(bytes) = std::fs::read(&path) else {
        return Vec::new();
    };
    let _ = std::fs::remove_file(&path);
    let report: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let mut stages: Vec<(String, f64)> = report["stages"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| {
                    let stage = s["stage"].as_str().unwrap_or("?").to_owned();
                    (stage, s["seconds"].as_f64().unwrap_or(f64::NAN))
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(runs) = report["latency"]["runs"].as_u64() {
        stages.push(("timed runs".into(), runs as f64));
    }
    if let Some(p50) = report["latency"]["p50_ms"].as_f64() {
        stages.push(("latency p50 ms".into(), p50));
    }
    stages
}

/// Runs `case` once as a child process and reads its own resource usage on exit.
pub fn run_once(case: &Case, input: &Path, output: &Path) -> Result<Run, String> {
    let fill = |a: &String| {
        a.replace("{in}", &input.to_string_lossy())
            .replace("{out}", &output.to_string_lossy())
    };
    let start = Instant::now();
    let child = Command::new(&case.program)
        .args(case.args.iter().map(fill))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", case.program.display()))?;
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that `wait4` fills; all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not waited for yet (`Child` is never waited on);
    // both pointers point to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_s = start.elapsed().as_secs_f64();
    if waited != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || !case.accept_exit.contains(&libc::WEXITSTATUS(status)) {
        return Err(format!("{} failed with status {status}", case.label));
    }
    Ok(Run {
        wall_s,
        exit: libc::WEXITSTATUS(status),
        // `ru_maxrss` is in kilobytes on Linux.
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        stages: report_stages(output),
    })
}

/// The converter crate's folder.
pub fn manifest_dir() -> PathBuf {
    // Cargo's run-time value first: a shared build folder may hold a binary built elsewhere.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The shared fixtures: `YOLOTS_FIXTURES`, else `../shared/fixtures` beside the project.
pub fn fixtures() -> PathBuf {
    std::env::var_os("YOLOTS_FIXTURES").map_or_else(
        || manifest_dir().join("../../shared/fixtures"),
        PathBuf::from,
    )
}

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
