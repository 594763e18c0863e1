//! `predict` against the artifact's own `detect_image`, on a 1280x720 JPEG: the model is
//! converted once (`yolots-converter convert --no-validate --latency-runs 0`), then, in
//! this process and in interleaved rounds,
//!
//! - `detect_image`: the artifact's method called on the decoded pixels (what a program
//!   that already holds the image pays);
//! - `predict`: `predict_file` with an output folder, what `yolots predict` does per image
//!   (read and decode the JPEG, run `detect_image`, draw, encode the annotated JPEG);
//!
//! medians printed with the ratio and the budget (at most 1.3x `detect_image` plus
//! 30 ms); then `yolots-converter predict` as a fresh process on a folder of N copies of
//! the image (the model loaded once): wall time, per image, and peak RSS.
//!
//! `cargo bench -p yolots-converter --bench predict [-- --model yolov7-tiny] [--rounds N]
//! [--images N]` (default `yolov7-full`, 10 rounds, 100 images).

#[path = "support/process.rs"]
mod process;

use std::path::PathBuf;
use std::time::Instant;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use process::{Case, fixtures, median, run_once};
use tch::{IValue, Kind, Tensor};
use yolots_converter::DeviceChoice;
use yolots_converter::predict::{self, Predictor, Thresholds};

/// A textured 1280x720 scene (gradients and blocks).
fn scene() -> RgbImage {
    RgbImage::from_fn(1280, 720, |x, y| {
        let block = ((x / 53) + (y / 41)) % 3;
        Rgb([
            (x * 255 / 1280) as u8,
            (y * 255 / 720) as u8,
            [40u8, 140, 230][block as usize].wrapping_add(((x ^ y) & 15) as u8),
        ])
    })
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model: String = arg(&args, "--model", "yolov7-full".to_owned());
    let rounds: usize = arg(&args, "--rounds", 10);
    let images: usize = arg(&args, "--images", 100);
    let checkpoint = fixtures().join(format!("{model}.pt"));
    if !checkpoint.exists() {
        eprintln!("no checkpoint at {}", checkpoint.display());
        return;
    }
    let dir = std::env::temp_dir().join(format!("yolots-predict-bench-{}", std::process::id()));
    let folder = dir.join("images");
    let out = dir.join("out");
    for d in [&folder, &out] {
        if let Err(e) = std::fs::create_dir_all(d) {
            eprintln!("{}: {e}", d.display());
            return;
        }
    }
    let program = PathBuf::from(env!("CARGO_BIN_EXE_yolots-converter"));
    let artifact = dir.join(format!("{model}.torchscript.pt"));
    let convert = Case {
        label: "convert".into(),
        program: program.clone(),
        args: [
            "convert",
            "{in}",
            "-o",
            "{out}",
            "--device",
            "cpu",
            "--no-validate",
            "--latency-runs",
            "0",
        ]
        .map(str::to_owned)
        .to_vec(),
        budget: None,
        accept_exit: &[0],
    };
    if let Err(e) = run_once(&convert, &checkpoint, &artifact) {
        eprintln!("converting {model}: {e}");
        return;
    }
    let jpeg = dir.join("scene.jpg");
    if let Err(e) = DynamicImage::ImageRgb8(scene()).save_with_format(&jpeg, ImageFormat::Jpeg) {
        eprintln!("{}: {e}", jpeg.display());
        return;
    }
    let t = Thresholds {
        conf: 0.25,
        iou: 0.45,
        max_det: 300,
    };
    let module = match tch::CModule::load(&artifact) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{}: {e}", artifact.display());
            return;
        }
    };
    let mut predictor = match Predictor::load(&artifact, DeviceChoice::Cpu) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}: {e}", artifact.display());
            return;
        }
    };
    let pixels = match predict::read_image(&jpeg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let detect_image = || -> f64 {
        let _guard = tch::no_grad_guard();
        let start = Instant::now();
        let image = Tensor::from_data_size(pixels.as_raw(), &[720, 1280, 3], Kind::Uint8);
        let args = [
            IValue::Tensor(image),
            IValue::Double(t.conf),
            IValue::Double(t.iou),
            IValue::Int(t.max_det),
        ];
        if let Err(e) = module.method_is("detect_image", &args) {
            eprintln!("detect_image: {e}");
        }
        start.elapsed().as_secs_f64() * 1e3
    };
    let mut predict_once = || -> f64 {
        let start = Instant::now();
        if let Err(e) = predict::predict_file(&mut predictor, &jpeg, t, Some(&out)) {
            eprintln!("predict: {e}");
        }
        start.elapsed().as_secs_f64() * 1e3
    };
    println!(
        "{model}, 1280x720 JPEG, {} CPUs, {rounds} rounds after 3 warm-up calls each",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    for _ in 0..3 {
        detect_image();
        predict_once();
    }
    let (mut direct, mut whole) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let d = detect_image();
        let p = predict_once();
        println!("  round {round}: detect_image {d:>7.1} ms, predict {p:>7.1} ms");
        direct.push(d);
        whole.push(p);
    }
    let least = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "fastest: detect_image {:.1} ms, predict {:.1} ms (a busy machine spreads the medians)",
        least(&direct),
        least(&whole)
    );
    let (d, p) = (median(&direct), median(&whole));
    let budget = 1.3 * d + 30.0;
    println!(
        "detect_image median {d:.1} ms; predict (read, run, draw, write) median {p:.1} ms: \
         {:.2}x, {:+.1} ms (budget {budget:.1} ms: {})",
        p / d,
        p - d,
        if p <= budget { "within" } else { "OVER" }
    );

    // A folder of copies, one process.
    for i in 0..images {
        let copy = folder.join(format!("img{i:03}.jpg"));
        if let Err(e) = std::fs::copy(&jpeg, &copy) {
            eprintln!("{}: {e}", copy.display());
            return;
        }
    }
    let batch = Case {
        label: "predict folder".into(),
        program,
        args: [
            "predict", "{in}", "--device", "cpu", "--quiet", "--json", "-o",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([
            out.to_string_lossy().into_owned(),
            folder.to_string_lossy().into_owned(),
        ])
        .collect(),
        budget: None,
        accept_exit: &[0],
    };
    match run_once(&batch, &artifact, &out) {
        Ok(run) => println!(
            "yolots-converter predict on {images} images in one process: {:.2} s \
             ({:.1} ms per image, model load included), peak RSS {:.0} MB",
            run.wall_s,
            run.wall_s * 1e3 / images as f64,
            run.peak_rss_mb
        ),
        Err(e) => println!("yolots-converter predict on {images} images: {e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
