//! Reading the images `predict` runs on: JPEG, PNG, WebP or BMP recognised by their
//! content (not their extension), decoded under limits, turned upright by their EXIF
//! orientation, and converted to 8-bit RGB.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits, RgbImage};

use crate::error::{ConvertError, Result};

/// The widest and tallest image decoded, in pixels.
pub const MAX_SIDE: u32 = 16_384;

/// The most memory the decoding of one image may take (its pixels included).
pub const MAX_ALLOC: u64 = 1 << 30;

/// The largest image file read, in bytes (a photo is a few MB; the decoding limits bound
/// the pixels, this bounds the compressed data read before them).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// The file extensions a folder is searched for (lower case).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp"];

/// The decoder's limits.
fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    limits
}

/// The image in the file at `path`, upright and RGB.
pub fn read_image(path: &Path) -> Result<RgbImage> {
    let size = std::fs::metadata(path)
        .map_err(|e| ConvertError::io(path, e))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(ConvertError::ImageTooLarge {
            path: path.to_path_buf(),
            message: format!(
                "the file is {} MiB; predict reads image files of at most {} MiB",
                size >> 20,
                MAX_FILE_BYTES >> 20
            ),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| ConvertError::io(path, e))?;
    decode_image(&bytes, path)
}

/// The image in `bytes` (named `path` in errors), upright and RGB.
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    decode(bytes).map_err(|e| image_error(path, e))
}

fn decode(bytes: &[u8]) -> std::result::Result<RgbImage, ImageError> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    reader.limits(limits());
    let Some(format) = reader.format() else {
        return Err(unsupported("the content is not JPEG, PNG, WebP or BMP"));
    };
    if !matches!(
        format,
        image::ImageFormat::Jpeg
            | image::ImageFormat::Png
            | image::ImageFormat::WebP
            | image::ImageFormat::Bmp
    ) {
        return Err(unsupported(&format!(
            "{format:?} images are not read (JPEG, PNG, WebP or BMP are)"
        )));
    }
    if format == image::ImageFormat::Jpeg && !ends_its_last_scan(bytes) {
        // The JPEG decoder fills a cut-off scan with grey rather than failing.
        return Err(ImageError::IoError(
            std::io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    // Each decoder checks the limits too; said here first, with the size in the message.
    // The decoded pixels, plus their RGB copy when they are not 8-bit RGB already.
    let rgb = u64::from(width) * u64::from(height) * 3;
    let needed = decoder.total_bytes().saturating_add(rgb);
    if width > MAX_SIDE || height > MAX_SIDE || needed > MAX_ALLOC {
        return Err(ImageError::Limits(image::error::LimitError::from_kind(
            image::error::LimitErrorKind::DimensionError,
        )));
    }
    // A missing or unreadable orientation leaves the image as stored.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut picture = DynamicImage::from_decoder(decoder)?;
    picture.apply_orientation(orientation);
    Ok(match picture {
        DynamicImage::ImageRgb8(rgb) => rgb,
        // Alpha is dropped (not blended), greyscale repeated, deeper samples scaled.
        other => other.to_rgb8(),
    })
}

/// Whether a JPEG's last scan (its last start-of-scan marker) is followed by the
/// end-of-image marker. Neither marker can appear inside entropy-coded data (a 0xFF byte
/// there is followed by 0x00), and an embedded thumbnail's markers come before the
/// image's own scans.
fn ends_its_last_scan(bytes: &[u8]) -> bool {
    let marker = |code: u8| bytes.windows(2).rposition(|w| w == [0xFF, code]);
    match (marker(0xDA), marker(0xD9)) {
        (Some(scan), Some(end)) => end > scan,
        _ => false,
    }
}

fn unsupported(message: &str) -> ImageError {
    ImageError::Unsupported(image::error::UnsupportedError::from_format_and_kind(
        image::error::ImageFormatHint::Unknown,
        image::error::UnsupportedErrorKind::GenericFeature(message.to_owned()),
    ))
}

/// The typed error for an image the decoder refused.
fn image_error(path: &Path, error: ImageError) -> ConvertError {
    let path = path.to_path_buf();
    match error {
        ImageError::Limits(_) => ConvertError::ImageTooLarge {
            path,
            message: format!(
                "the image is larger than predict decodes (at most {MAX_SIDE}x{MAX_SIDE} pixels \
                 and {} MiB of decoding memory)",
                MAX_ALLOC >> 20
            ),
        },
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            ConvertError::ImageUnreadable {
                path,
                message: "the image ends early (truncated)".to_owned(),
            }
        }
        ImageError::Unsupported(e) => ConvertError::ImageUnreadable {
            path,
            message: format!("not an image predict reads: {e}"),
        },
        other => ConvertError::ImageUnreadable {
            path,
            message: format!("the image cannot be decoded: {other}"),
        },
    }
}

/// The images named by `inputs`: files as given, folders as their image files (by
/// extension, sorted by name, not recursive).
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let entries = std::fs::read_dir(input).map_err(|e| ConvertError::io(input, e))?;
            let mut found = Vec::new();
            for entry in entries {
                let path = entry.map_err(|e| ConvertError::io(input, e))?.path();
                let is_image = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
                if is_image && path.is_file() {
                    found.push(path);
                }
            }
            found.sort();
            if found.is_empty() {
                tracing::warn!(folder = %input.display(), "no image files in the folder");
            }
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}
