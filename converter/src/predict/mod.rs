//! `predict`: runs a model yolots wrote (or a checkpoint, converted first) on images and
//! says what it found, as JSON and as annotated images.
//!
//! - [`images`]: reading an image under limits, upright (EXIF) and RGB; folders.
//! - [`model`]: the model, loaded once: TorchScript and lite artifacts run their own
//!   `detect_image`; ONNX artifacts run in ONNX Runtime with the same letterbox and NMS
//!   around them ([`onnx`]); checkpoints are converted first.
//! - [`output`]: the detections and the JSON document of an image.
//! - [`draw`]: the annotated image.

pub mod draw;
pub mod images;
pub mod model;
mod onnx;
pub mod output;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use images::{
    IMAGE_EXTENSIONS, MAX_ALLOC, MAX_FILE_BYTES, MAX_SIDE, decode_image, expand_inputs, read_image,
};
pub use model::{ModelKind, Predictor, Thresholds};
pub use output::{Detection, Prediction};

use crate::error::{ConvertError, Result};

/// Runs `predictor` on the image at `path`; with `out_dir`, writes the annotated image
/// there under the input's file name (PNG when the name has no image extension).
pub fn predict_file(
    predictor: &mut Predictor,
    path: &Path,
    thresholds: Thresholds,
    out_dir: Option<&Path>,
) -> Result<Prediction> {
    let mut image = read_image(path)?;
    let start = Instant::now();
    let rows = predictor.detect(&image, thresholds)?;
    let inference_ms = start.elapsed().as_secs_f64() * 1e3;
    let detections = output::detections(&rows, predictor.metadata())?;
    let (width, height) = image.dimensions();
    let annotated = match out_dir {
        Some(dir) => {
            let target = annotated_path(path, dir)?;
            draw::annotate(
                &mut image,
                &detections,
                predictor.metadata().skeleton.as_deref(),
            );
            draw::save(&image, &target)?;
            Some(target.display().to_string())
        }
        None => None,
    };
    Ok(Prediction {
        image: path.display().to_string(),
        width,
        height,
        task: predictor.metadata().task,
        detections,
        annotated,
        inference_ms,
    })
}

/// Where the annotated copy of `input` goes in `dir`: the same file name (a name without
/// an image extension gets `.png`); never the input itself.
pub fn annotated_path(input: &Path, dir: &Path) -> Result<PathBuf> {
    let name = input
        .file_name()
        .ok_or_else(|| ConvertError::Options(format!("{} has no file name", input.display())))?;
    let mut target = dir.join(name);
    let known = target
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    if !known {
        let mut with_png = target.into_os_string();
        with_png.push(".png");
        target = PathBuf::from(with_png);
    }
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(input, &target) {
        return Err(ConvertError::Options(format!(
            "the annotated image would replace its input {}: choose another -o folder",
            input.display()
        )));
    }
    Ok(target)
}
