//! Conversion and inference benchmark on the full YOLOv7 fixture (CPU).
//!
//! `cargo bench -p yolots-converter --bench convert [-- CHECKPOINT] [--runs N] [--threads N]`
//!
//! 1. Conversion without validation (read, build, fuse, script, save), each run in a
//!    fresh child process so peak RSS (`VmHWM`) is the conversion's own: wall time,
//!    per-stage times, peak RSS. Budget: 2.0 s and 600 MB.
//! 2. Inference at 640x640, batch 1, 2 threads (`--threads`), of the scripted fused
//!    artifact against the same fused network traced (the official export), and of the
//!    `freeze` / `inference` / `mobile` artifacts, in interleaved rounds: p50, p10..p90,
//!    and the median per-round ratio to the traced artifact. Targets: scripted <= 1.0,
//!    scripted+inference <= 0.8.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use yolots_converter::{ConvertRequest, DeviceChoice, MobileModule, Mode, Optimize, convert};

const CHILD_ENV: &str = "YOLOTS_BENCH_CHILD";
const WALL_BUDGET_S: f64 = 2.0;
const RSS_BUDGET_MB: f64 = 600.0;
/// Label of the baseline: the eager network traced at 640x640, as the official export does.
const TRACED: &str = "traced";
/// Untimed calls before the timed rounds.
const WARMUP: usize = 3;
/// Latency targets, as the median per-round ratio to the traced artifact.
const TARGETS: &[(&str, f64)] = &[("scripted", 1.0), ("scripted+inference", 0.8)];

fn default_checkpoint() -> PathBuf {
    // Cargo's run-time value first: a shared build folder may hold a binary built elsewhere.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../../shared/fixtures/yolov7-full.pt")
}

fn request(input: &Path, output: &Path) -> ConvertRequest {
    let mut r = ConvertRequest::new(input, output);
    r.device = DeviceChoice::Cpu;
    r.validate = false;
    r.latency_runs = 0;
    r
}

/// Peak resident set size of this process, in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The child: one conversion, one JSON line on stdout.
fn child(input: &Path, output: &Path) {
    let rss_before = peak_rss_mb();
    let start = Instant::now();
    let report = match convert(&request(input, output), &mut |_| {}) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conversion failed: {e}");
            std::process::exit(1);
        }
    };
    let wall = start.elapsed().as_secs_f64();
    let stages: Vec<(String, f64)> = report
        .stages
        .iter()
        .map(|s| (s.stage.to_string(), s.seconds))
        .collect();
    let line = serde_json::json!({
        "wall_s": wall,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": rss_before,
        "stages": stages,
        "artifact_mb": report.artifact.size_bytes as f64 / 1e6,
    });
    println!("{line}");
}

fn run_child(input: &Path, output: &Path) -> serde_json::Value {
    let exe = std::env::current_exe().unwrap_or_default();
    let out = Command::new(exe)
        .env(CHILD_ENV, "1")
        .arg(input)
        .arg(output)
        .output()
        .unwrap_or_else(|e| panic!("cannot start the child: {e}"));
    if !out.status.success() {
        panic!("child failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Nearest-rank percentile of millisecond timings.
fn percentile(ms: &[f64], p: f64) -> f64 {
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

/// An artifact loaded for timing.
enum Model {
    Script(tch::CModule),
    Lite(MobileModule),
}

impl Model {
    fn run(&mut self, x: &tch::Tensor) {
        let _ = match self {
            Model::Script(m) => m.forward_ts(&[x]).map(drop).map_err(|e| e.to_string()),
            Model::Lite(m) => m.forward(x).map(drop).map_err(|e| e.to_string()),
        };
    }
}

/// Round-robin timing of every artifact at 640x640, batch 1: each round calls every
/// artifact once, starting one further along each round, so machine load (other builds on
/// the same cores) hits all alike. The ratio to the traced artifact is the median of the
/// per-round ratios, which cancels load that drifts between rounds; its spread says how
/// noisy the machine was.
fn time_inference(variants: &[(&str, PathBuf, Mode, Optimize)], runs: usize) {
    let _guard = tch::no_grad_guard();
    let x = tch::Tensor::rand([1, 3, 640, 640], (tch::Kind::Float, tch::Device::Cpu));
    println!(
        "\ninference 1x3x640x640 on CPU, {} threads, {runs} rounds after {WARMUP} warm-up \
         calls; each round calls every artifact once",
        tch::get_num_threads()
    );
    let mut loaded: Vec<(&str, Model)> = Vec::new();
    for (label, path, _, optimize) in variants {
        let model = if *optimize == Optimize::Mobile {
            MobileModule::load(path).ok().map(Model::Lite)
        } else {
            tch::CModule::load(path).ok().map(Model::Script)
        };
        match model {
            Some(m) => loaded.push((label, m)),
            None => println!("  {label:<20} (not available)"),
        }
    }
    if loaded.first().map(|(label, _)| *label) != Some(TRACED) {
        println!("  no traced artifact to compare with");
        return;
    }
    // The profiling executor optimises the graph during the first calls.
    for (_, m) in &mut loaded {
        for _ in 0..WARMUP {
            m.run(&x);
        }
    }
    let n = loaded.len();
    let mut ms: Vec<Vec<f64>> = vec![Vec::new(); n];
    for round in 0..runs {
        for k in 0..n {
            let i = (round + k) % n;
            let t = Instant::now();
            loaded[i].1.run(&x);
            ms[i].push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let traced = &ms[0];
    let traced_p50 = percentile(traced, 0.5);
    println!(
        "  noise: traced p10..p90 {:.1}..{:.1} ms ({:.0} % of its p50)",
        percentile(traced, 0.1),
        percentile(traced, 0.9),
        (percentile(traced, 0.9) - percentile(traced, 0.1)) / traced_p50 * 100.0
    );
    for ((label, _), times) in loaded.iter().zip(&ms) {
        let ratios: Vec<f64> = times.iter().zip(traced).map(|(t, b)| t / b).collect();
        let ratio = percentile(&ratios, 0.5);
        let target = TARGETS
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, max)| {
                let verdict = if ratio <= *max { "ok" } else { "OVER" };
                format!("  target <= {max:.2} {verdict}")
            })
            .unwrap_or_default();
        println!(
            "  {label:<20} p50 {:>7.1} ms  p10..p90 {:>7.1}..{:>7.1} ms  ratio to traced \
             {ratio:.3} (rounds {:.3}..{:.3}){target}",
            percentile(times, 0.5),
            percentile(times, 0.1),
            percentile(times, 0.9),
            percentile(&ratios, 0.1),
            percentile(&ratios, 0.9),
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if std::env::var_os(CHILD_ENV).is_some() {
        if let [input, output] = args.as_slice() {
            child(Path::new(input), Path::new(output));
        }
        return;
    }
    let mut runs = 15usize;
    let mut threads = 2i32;
    let mut input = default_checkpoint();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--runs" {
            runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(runs);
        } else if a == "--threads" {
            threads = it.next().and_then(|v| v.parse().ok()).unwrap_or(threads);
        } else if !a.starts_with('-') {
            input = PathBuf::from(a);
        }
    }
    if !input.exists() {
        eprintln!("no checkpoint at {}", input.display());
        return;
    }
    tch::set_num_threads(threads);
    let dir = std::env::temp_dir().join(format!("yolots-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_default();
    println!(
        "checkpoint {} ({:.1} MB), {} CPU threads",
        input.display(),
        std::fs::metadata(&input).map_or(0.0, |m| m.len() as f64 / 1e6),
        tch::get_num_threads()
    );

    // 1. Conversion in fresh processes.
    let scripted = dir.join("scripted.torchscript");
    let results: Vec<serde_json::Value> = (0..3).map(|_| run_child(&input, &scripted)).collect();
    let walls: Vec<f64> = results
        .iter()
        .map(|r| r["wall_s"].as_f64().unwrap_or(f64::NAN))
        .collect();
    let rss: Vec<f64> = results
        .iter()
        .map(|r| r["peak_rss_mb"].as_f64().unwrap_or(f64::NAN))
        .collect();
    let wall = median(walls.clone());
    let peak = median(rss.clone());
    println!(
        "\nconversion without validation (read, build, fuse, script, save), 3 fresh processes"
    );
    println!(
        "  wall      median {wall:.3} s  (runs {walls:.3?})  budget {WALL_BUDGET_S} s  {}",
        if wall <= WALL_BUDGET_S { "ok" } else { "OVER" }
    );
    println!(
        "  peak RSS  median {peak:.0} MB  (runs {rss:.0?})  budget {RSS_BUDGET_MB} MB  {}",
        if peak <= RSS_BUDGET_MB { "ok" } else { "OVER" }
    );
    println!(
        "  libtorch loaded before converting: {:.0} MB",
        results[0]["rss_before_mb"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "  artifact {:.1} MB",
        results[0]["artifact_mb"].as_f64().unwrap_or(f64::NAN)
    );
    if let Some(stages) = results[results.len() / 2]["stages"].as_array() {
        for s in stages {
            println!(
                "    {:<11} {:.3} s",
                s[0].as_str().unwrap_or("?"),
                s[1].as_f64().unwrap_or(f64::NAN)
            );
        }
    }

    // 2. Inference of the artifacts.
    let variants: Vec<(&str, PathBuf, Mode, Optimize)> = vec![
        (
            TRACED,
            dir.join("traced.torchscript"),
            Mode::Trace,
            Optimize::None,
        ),
        ("scripted", scripted.clone(), Mode::Script, Optimize::None),
        (
            "scripted+freeze",
            dir.join("frozen.torchscript"),
            Mode::Script,
            Optimize::Freeze,
        ),
        (
            "scripted+inference",
            dir.join("inference.torchscript"),
            Mode::Script,
            Optimize::Inference,
        ),
        (
            "scripted+mobile",
            dir.join("mobile.ptl"),
            Mode::Script,
            Optimize::Mobile,
        ),
    ];
    for (_, path, mode, optimize) in &variants[..] {
        if *path == scripted {
            continue;
        }
        let mut r = request(&input, path);
        r.mode = *mode;
        r.optimize = *optimize;
        if let Err(e) = convert(&r, &mut |_| {}) {
            eprintln!("{}: {e}", path.display());
        }
    }
    time_inference(&variants, runs);
    let _ = std::fs::remove_dir_all(&dir);
}
