//! The annotated image: each box outlined in its class's colour with a label (class name
//! and score, an 8x8 bitmap font scaled to the image), and for pose models the keypoints
//! and the skeleton joining them.
//!
//! A box's outline lies inside it: its outer edge runs along the pixels the box's
//! corners fall in (`floor(x1)`, `floor(y1)`, `ceil(x2) - 1`, `ceil(y2) - 1`).

use image::{Rgb, RgbImage};

use super::output::Detection;

/// Keypoints below this confidence are not drawn (nor the skeleton lines they end).
pub const KEYPOINT_MIN_CONF: f32 = 0.5;

/// Twenty distinct colours; class `c` gets `PALETTE[c % 20]`, the same in every image.
const PALETTE: [[u8; 3]; 20] = [
    [255, 56, 56],
    [255, 157, 151],
    [255, 112, 31],
    [255, 178, 29],
    [207, 210, 49],
    [72, 249, 10],
    [146, 204, 23],
    [61, 219, 134],
    [26, 147, 52],
    [0, 212, 187],
    [44, 153, 168],
    [0, 194, 255],
    [52, 69, 147],
    [100, 115, 255],
    [0, 24, 236],
    [132, 56, 255],
    [82, 0, 133],
    [203, 56, 255],
    [255, 149, 200],
    [255, 55, 199],
];

/// The colour of class `class_id`.
pub fn class_colour(class_id: usize) -> Rgb<u8> {
    Rgb(PALETTE[class_id % PALETTE.len()])
}

/// The outline's width for an image: 2 pixels up to about 600 pixels a side, growing with
/// the image.
pub fn line_width(image: &RgbImage) -> u32 {
    let (w, h) = image.dimensions();
    ((w + h) / 600).max(2)
}

/// The box's pixel rectangle: inclusive `[left, top, right, bottom]` clipped to the image,
/// or `None` when nothing of it is inside.
pub fn box_pixels(bbox: [f32; 4], width: u32, height: u32) -> Option<[u32; 4]> {
    if width == 0 || height == 0 {
        return None;
    }
    let clip = |v: f32, limit: u32| v.max(0.0).min((limit - 1) as f32) as u32;
    let left = clip(bbox[0].floor(), width);
    let top = clip(bbox[1].floor(), height);
    let right = clip(bbox[2].ceil() - 1.0, width);
    let bottom = clip(bbox[3].ceil() - 1.0, height);
    (right >= left && bottom >= top).then_some([left, top, right, bottom])
}

/// Draws every detection on `image`; `skeleton` pairs keypoint indices to join.
pub fn annotate(image: &mut RgbImage, detections: &[Detection], skeleton: Option<&[[usize; 2]]>) {
    let width = line_width(image);
    let scale = (width / 2).max(1);
    // Keypoints and skeletons first, so boxes and labels stay readable on top.
    for d in detections {
        if let Some(points) = &d.keypoints {
            draw_pose(image, points, skeleton, width);
        }
    }
    for d in detections {
        let colour = class_colour(d.class_id);
        let Some(rect) = box_pixels(d.bbox, image.width(), image.height()) else {
            continue;
        };
        outline(image, rect, width, colour);
        let label = format!("{} {}", d.class_name, score_text(d.score));
        draw_label(image, &label, rect, scale, colour);
    }
}

/// `0.87`; a score below 0.01 in scientific notation (`2.3e-4`), not `0.00`.
fn score_text(score: f32) -> String {
    if score >= 0.01 {
        format!("{score:.2}")
    } else {
        format!("{score:.1e}")
    }
}

fn fill(image: &mut RgbImage, x0: u32, y0: u32, x1: u32, y1: u32, colour: Rgb<u8>) {
    let x1 = x1.min(image.width());
    let y1 = y1.min(image.height());
    for y in y0..y1 {
        for x in x0..x1 {
            image.put_pixel(x, y, colour);
        }
    }
}

/// A rectangle outline of `width` pixels inside `[left, top, right, bottom]`.
fn outline(image: &mut RgbImage, rect: [u32; 4], width: u32, colour: Rgb<u8>) {
    let [l, t, r, b] = rect;
    let (r1, b1) = (r + 1, b + 1);
    fill(image, l, t, r1, (t + width).min(b1), colour);
    fill(image, l, b1.saturating_sub(width).max(t), r1, b1, colour);
    fill(image, l, t, (l + width).min(r1), b1, colour);
    fill(image, r1.saturating_sub(width).max(l), t, r1, b1, colour);
}

/// The label on a filled band above the box (inside it when the box touches the top).
fn draw_label(image: &mut RgbImage, text: &str, rect: [u32; 4], scale: u32, colour: Rgb<u8>) {
    let glyph = 8 * scale;
    let band_h = glyph + 2 * scale;
    let chars = text.chars().count() as u32;
    let band_w = chars * glyph + 2 * scale;
    let [l, t, _, _] = rect;
    let top = if t >= band_h { t - band_h } else { t };
    fill(image, l, top, l + band_w, top + band_h, colour);
    // Dark text on light colours, white on dark ones.
    let [r, g, b] = colour.0;
    let luma = 299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b);
    let ink = if luma > 140_000 {
        Rgb([0, 0, 0])
    } else {
        Rgb([255, 255, 255])
    };
    for (i, c) in text.chars().enumerate() {
        let code = if c.is_ascii() {
            c as usize
        } else {
            b'?' as usize
        };
        let rows = font8x8::legacy::BASIC_LEGACY[code];
        let x0 = l + scale + i as u32 * glyph;
        let y0 = top + scale;
        for (dy, bits) in rows.iter().enumerate() {
            for dx in 0..8u32 {
                if bits & (1 << dx) != 0 {
                    let x = x0 + dx * scale;
                    let y = y0 + dy as u32 * scale;
                    fill(image, x, y, x + scale, y + scale, ink);
                }
            }
        }
    }
}

/// Keypoints (dots) and the skeleton lines between confident ones.
fn draw_pose(
    image: &mut RgbImage,
    points: &[[f32; 3]],
    skeleton: Option<&[[usize; 2]]>,
    width: u32,
) {
    let visible = |k: usize| points.get(k).filter(|p| p[2] >= KEYPOINT_MIN_CONF);
    for (n, &[a, b]) in skeleton.unwrap_or_default().iter().enumerate() {
        if let (Some(p), Some(q)) = (visible(a), visible(b)) {
            line(
                image,
                (p[0], p[1]),
                (q[0], q[1]),
                width,
                class_colour(n + 7),
            );
        }
    }
    for (k, p) in points.iter().enumerate() {
        if p[2] >= KEYPOINT_MIN_CONF {
            dot(image, p[0], p[1], width + 2, class_colour(k));
        }
    }
}

/// A filled disc of radius `radius` at `(x, y)`.
fn dot(image: &mut RgbImage, x: f32, y: f32, radius: u32, colour: Rgb<u8>) {
    let r = radius as i64;
    let (cx, cy) = (x.round() as i64, y.round() as i64);
    for dy in -r..=r {
        for dx in -r..=r {
            if dx * dx + dy * dy <= r * r {
                put(image, cx + dx, cy + dy, colour);
            }
        }
    }
}

fn put(image: &mut RgbImage, x: i64, y: i64, colour: Rgb<u8>) {
    if x >= 0
        && y >= 0
        && (x as u64) < u64::from(image.width())
        && (y as u64) < u64::from(image.height())
    {
        image.put_pixel(x as u32, y as u32, colour);
    }
}

/// A straight line `width` pixels thick from `a` to `b`.
fn line(image: &mut RgbImage, a: (f32, f32), b: (f32, f32), width: u32, colour: Rgb<u8>) {
    let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as u32;
    let half = (width / 2) as i64;
    for s in 0..=steps {
        let f = s as f32 / steps as f32;
        let x = (a.0 + (b.0 - a.0) * f).round() as i64;
        let y = (a.1 + (b.1 - a.1) * f).round() as i64;
        for dy in -half..=half {
            for dx in -half..=half {
                put(image, x + dx, y + dy, colour);
            }
        }
    }
}

/// Writes the annotated image: its format follows the file name's extension (JPEG at
/// quality 95, PNG, WebP lossless, BMP).
pub fn save(image: &RgbImage, path: &std::path::Path) -> crate::Result<()> {
    use crate::error::ConvertError;
    let failed = |e: image::ImageError| ConvertError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    };
    let format = image::ImageFormat::from_path(path).map_err(failed)?;
    let file = std::fs::File::create(path).map_err(|e| ConvertError::io(path, e))?;
    let mut out = std::io::BufWriter::new(file);
    if format == image::ImageFormat::Jpeg {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95);
        image.write_with_encoder(encoder).map_err(failed)?;
    } else {
        image.write_to(&mut out, format).map_err(failed)?;
    }
    std::io::Write::flush(&mut out).map_err(|e| ConvertError::io(path, e))
}
