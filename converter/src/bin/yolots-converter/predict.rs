//! `yolots-converter predict MODEL IMAGE...` (what `yolots predict` runs): the model
//! loaded once, then each image read, run, annotated into `-o DIR` and, with `--json`,
//! described as one JSON line on stdout.
//!
//! A line per image on stderr says what was found (none with `--quiet`). An image that
//! cannot be read is reported (`error: FILE: why`) and the others still run. Exit status:
//! 0 when every image ran, 2 when an image or the model was refused (not an image, too
//! large, not a model yolots runs), 1 otherwise.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use yolots_converter::predict::{self, Prediction, Predictor, Thresholds};
use yolots_converter::{ConvertError, EXIT_REFUSED, ImageSize, limits};
use yolots_protocol::cli::PredictArgs;
use yolots_protocol::words::count;

/// Whether an error is the input's (exit 2) rather than the machine's (exit 1).
fn refused(error: &ConvertError) -> bool {
    matches!(
        error,
        ConvertError::Input(_)
            | ConvertError::Unsupported(_)
            | ConvertError::Options(_)
            | ConvertError::ImageUnreadable { .. }
            | ConvertError::ImageTooLarge { .. }
    )
}

pub fn run(args: &PredictArgs) -> anyhow::Result<ExitCode> {
    if let Err(e) = limits::check(args.conf, args.iou, args.max_det, ImageSize::default()) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(EXIT_REFUSED));
    }
    let thresholds = Thresholds {
        conf: args.conf,
        iou: args.iou,
        max_det: args.max_det,
    };
    let files = match predict::expand_inputs(&args.images) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
    };
    if let Some(dir) = &args.output {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut predictor = match Predictor::load(&args.model, args.device) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(if refused(&e) { EXIT_REFUSED } else { 1 }));
        }
    };
    if !args.quiet {
        let meta = predictor.metadata();
        eprintln!(
            "{}: {} {}, {}, {}x{} on {:?}",
            args.model.display(),
            meta.task,
            meta.artifact_format,
            count(meta.nc as u64, "class", "classes"),
            meta.input.img_size.height,
            meta.input.img_size.width,
            predictor.device()
        );
    }
    let mut worst = 0u8;
    let total = files.len();
    let width = total.to_string().len();
    for (i, file) in files.iter().enumerate() {
        match predict::predict_file(&mut predictor, file, thresholds, args.output.as_deref()) {
            Ok(prediction) => {
                if args.json {
                    let text = serde_json::to_string(&prediction)?;
                    let mut stdout = std::io::stdout().lock();
                    let written = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
                    match written {
                        // The reader stopped reading (`| head`): nothing more to say.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
                        other => other.context("writing to stdout")?,
                    }
                }
                if !args.quiet {
                    eprintln!("[{:>width$}/{total}] {}", i + 1, summary(&prediction));
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                worst = worst.max(if refused(&e) { EXIT_REFUSED } else { 1 });
            }
        }
    }
    Ok(ExitCode::from(worst))
}

/// `bus.jpg 810x1080: 4 detections (3 person, bus) in 45.3 ms -> out/bus.jpg`.
fn summary(p: &Prediction) -> String {
    let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &p.detections {
        *classes.entry(d.class_name.as_str()).or_default() += 1;
    }
    let by_class: Vec<String> = classes
        .iter()
        .map(|(name, n)| match n {
            1 => (*name).to_owned(),
            n => format!("{n} {name}"),
        })
        .collect();
    let found = match by_class.is_empty() {
        true => "no detection".to_owned(),
        false => format!(
            "{} ({})",
            count(p.detections.len() as u64, "detection", "detections"),
            by_class.join(", ")
        ),
    };
    let written = p
        .annotated
        .as_ref()
        .map(|a| format!(" -> {a}"))
        .unwrap_or_default();
    format!(
        "{} {}x{}: {found} in {:.1} ms{written}",
        p.image, p.width, p.height, p.inference_ms
    )
}
