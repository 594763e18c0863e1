//! What a `yolots` process costs before it does anything: the binary does not load
//! libtorch (only the converter does), so its commands start in milliseconds. Runs the
//! real binaries (the release ones when `cargo xtask bench` runs them) and prints the
//! figures with the targets beside them:
//!
//! 1. `yolots --version`: wall time (target: at most 20 ms);
//! 2. `yolots inspect --json yolov7-full.pt`: wall time and peak RSS of the process
//!    (targets: at most 60 ms and 40 MB);
//! 3. `yolots serve --workers 0`: resident memory once idle (target: at most 60 MB), and
//!    whether it maps libtorch (it must not);
//! 4. `yolots-converter runtime`, for comparison: what loading libtorch alone costs.
//!
//! Peak RSS is the kernel's `ru_maxrss` of the waited-for child (`wait4`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use yolots_e2e::{Server, TestDatabase, binary, converter_binary, fixtures};

fn main() -> anyhow::Result<()> {
    let yolots = binary();
    let converter = converter_binary();
    println!("binaries: {} and {}", yolots.display(), converter.display());

    let version = measure(&yolots, &["--version"], 20)?;
    report("yolots --version", &version, Some(20.0), None);

    let full = fixtures().join("yolov7-full.pt");
    let full = full.to_string_lossy();
    let inspect = measure(&yolots, &["inspect", "--json", &full], 10)?;
    report(
        "yolots inspect --json yolov7-full.pt",
        &inspect,
        Some(60.0),
        Some(40.0),
    );

    let runtime = measure(&converter, &["runtime"], 3)?;
    report(
        "yolots-converter runtime (loads libtorch)",
        &runtime,
        None,
        None,
    );

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    tokio.block_on(idle_server())
}

/// Wall times (sorted) and the largest peak RSS of `runs` runs.
struct Figures {
    millis: Vec<f64>,
    peak_rss_mb: f64,
}

impl Figures {
    fn median(&self) -> f64 {
        self.millis
            .get(self.millis.len() / 2)
            .copied()
            .unwrap_or(f64::NAN)
    }
}

fn measure(program: &Path, args: &[&str], runs: usize) -> anyhow::Result<Figures> {
    // One run first, so the page cache holds the binary and its input.
    run_once(program, args)?;
    let mut millis = Vec::with_capacity(runs);
    let mut peak_rss_mb: f64 = 0.0;
    for _ in 0..runs {
        let (elapsed, rss_kb) = run_once(program, args)?;
        millis.push(elapsed.as_secs_f64() * 1e3);
        peak_rss_mb = peak_rss_mb.max(rss_kb as f64 / 1024.0);
    }
    millis.sort_by(f64::total_cmp);
    Ok(Figures {
        millis,
        peak_rss_mb,
    })
}

/// Runs the program to its end; its wall time and peak RSS in KiB.
fn run_once(program: &Path, args: &[&str]) -> anyhow::Result<(Duration, i64)> {
    let started = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid for writes; the child is ours and not yet
    // waited for (`child` is never waited on through std).
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    anyhow::ensure!(rc == pid, "wait4: {}", std::io::Error::last_os_error());
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{} {args:?} failed (status {status})",
        program.display()
    );
    Ok((elapsed, usage.ru_maxrss))
}

fn report(what: &str, figures: &Figures, target_ms: Option<f64>, target_mb: Option<f64>) {
    let median = figures.median();
    let fastest = figures.millis.first().copied().unwrap_or(f64::NAN);
    let time = match target_ms {
        Some(t) => format!("(target <= {t:.0} ms: {})", verdict(median <= t)),
        None => String::new(),
    };
    let memory = match target_mb {
        Some(t) => format!(
            "(target <= {t:.0} MB: {})",
            verdict(figures.peak_rss_mb <= t)
        ),
        None => String::new(),
    };
    println!(
        "{what}: median {median:.1} ms, fastest {fastest:.1} ms over {} runs {time}; \
         peak RSS {:.1} MB {memory}",
        figures.millis.len(),
        figures.peak_rss_mb
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

async fn idle_server() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let data = tempfile::tempdir()?;
    let server = Server::start(&db.url, data.path(), &["--workers", "0"]).await?;
    // The health document carries the converter's answer: asked for, and idle after.
    let health: serde_json::Value = reqwest::get(server.url("/api/v1/health"))
        .await?
        .json()
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = server.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_mb = status_kb(&status, "VmRSS:").context("no VmRSS")? as f64 / 1024.0;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let libtorch = maps.lines().any(|l| l.contains("libtorch"));
    println!(
        "yolots serve --workers 0 idle: RSS {rss_mb:.1} MB (target <= 60 MB: {}); \
         maps libtorch: {} ({}); health reports libtorch {} and {} CUDA devices",
        verdict(rss_mb <= 60.0),
        if libtorch { "yes" } else { "no" },
        verdict(!libtorch),
        health["libtorch"],
        health["cuda_devices"]
    );
    Ok(())
}

/// A `Name:   123 kB` line of `/proc/PID/status`, in KiB.
fn status_kb(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}
