//! `predict` on images the tests write themselves (each format, an EXIF-rotated JPEG,
//! greyscale, RGBA, odd sizes): the detections equal the TorchScript artifact's own
//! `detect_image` on the same pixels, the annotated image has the box outlines at the
//! reported pixels, ONNX agrees with TorchScript, pose keypoints come through, a checkpoint
//! runs as its artifact does, and hostile images are refused with typed errors.
//!
//! The fixtures have random weights: class scores stay near 1/nc times an objectness of a
//! few hundredths, so the thresholds here are far below the usual 0.25.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use common::*;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use tch::{IValue, Kind, Tensor};
use yolots_converter::predict::{self, Detection, Predictor, Thresholds, draw};
use yolots_converter::{ConvertError, DeviceChoice, Format, ImageSize};

const POSE: &str = "pose/yolov7-w6-pose-w25";

/// Enough for the tiny fixture's 80 random classes to give boxes.
const TINY: Thresholds = Thresholds {
    conf: 1e-4,
    iou: 0.45,
    max_det: 20,
};

/// The pose fixture (one class).
const POSE_T: Thresholds = Thresholds {
    conf: 0.001,
    iou: 0.45,
    max_det: 10,
};

/// Artifacts converted once for every test of this binary.
struct Artifacts {
    _dir: tempfile::TempDir,
    tiny_ts: PathBuf,
    tiny_onnx: PathBuf,
    pose_ts: PathBuf,
}

fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let size = ImageSize::new(640, 640);
        let tiny_ts = dir.path().join("tiny.torchscript.pt");
        run(&request(
            "yolov7-tiny",
            dir.path(),
            "tiny.torchscript.pt",
            size,
        ));
        let tiny_onnx = dir.path().join("tiny.onnx");
        if std::env::var_os(yolots_converter::ONNXRUNTIME_VAR).is_some() {
            let mut r = request("yolov7-tiny", dir.path(), "tiny.onnx", size);
            r.format = Format::Onnx;
            run(&r);
        }
        let pose_ts = dir.path().join("pose.torchscript.pt");
        run(&request(POSE, dir.path(), "pose.torchscript.pt", size));
        Artifacts {
            _dir: dir,
            tiny_ts,
            tiny_onnx,
            pose_ts,
        }
    })
}

/// A textured picture (gradients and blocks) of any size: random-weight models find boxes
/// in it.
fn picture(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let block = ((x / 37) + (y / 23)) % 3;
        Rgb([
            (x * 255 / w.max(2)) as u8,
            (y * 255 / h.max(2)) as u8,
            [40u8, 140, 230][block as usize].wrapping_add(((x ^ y) & 15) as u8),
        ])
    })
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// `jpeg` with an APP1 segment declaring EXIF orientation `orientation`, inserted right
/// after the start-of-image marker (a big-endian TIFF header and one IFD entry).
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2A");
    tiff.extend_from_slice(&8u32.to_be_bytes());
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // one value
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = vec![0xFF, 0xE1];
    let length = (2 + 6 + tiff.len()) as u16;
    app1.extend_from_slice(&length.to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// The artifact's own `detect_image` on `pixels`, as rows of floats.
fn detect_image(module: &tch::CModule, pixels: &RgbImage, t: Thresholds) -> Vec<Vec<f32>> {
    let (w, h) = pixels.dimensions();
    let image = Tensor::from_data_size(pixels.as_raw(), &[h as i64, w as i64, 3], Kind::Uint8);
    let args = [
        IValue::Tensor(image),
        IValue::Double(t.conf),
        IValue::Double(t.iou),
        IValue::Int(t.max_det),
    ];
    let rows = call(module, "detect_image", &args).remove(0);
    let cols = rows.size()[1] as usize;
    let v: Vec<f32> = Vec::try_from(rows.to_kind(Kind::Float).contiguous().view(-1)).unwrap();
    v.chunks_exact(cols).map(<[f32]>::to_vec).collect()
}

/// The JSON's detections as the artifact's rows.
fn as_rows(detections: &[Detection]) -> Vec<Vec<f32>> {
    detections
        .iter()
        .map(|d| {
            let mut r = d.bbox.to_vec();
            r.push(d.score);
            r.push(d.class_id as f32);
            for k in d.keypoints.iter().flatten() {
                r.extend_from_slice(k);
            }
            r
        })
        .collect()
}

/// Every image kind `predict` must read, with the pixels it must see.
fn cases(dir: &Path) -> Vec<(PathBuf, RgbImage)> {
    let odd = picture(333, 517);
    let wide = picture(640, 400);
    let mut cases = Vec::new();
    let mut write = |name: &str, bytes: Vec<u8>, pixels: RgbImage| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        cases.push((path, pixels));
    };
    write(
        "odd.png",
        encode(&DynamicImage::ImageRgb8(odd.clone()), ImageFormat::Png),
        odd.clone(),
    );
    write(
        "odd.bmp",
        encode(&DynamicImage::ImageRgb8(odd.clone()), ImageFormat::Bmp),
        odd.clone(),
    );
    write(
        "wide.webp",
        encode(&DynamicImage::ImageRgb8(wide.clone()), ImageFormat::WebP),
        wide.clone(),
    );
    // JPEG is lossy: the pixels are the plain decode of the file written.
    let jpeg = encode(&DynamicImage::ImageRgb8(wide.clone()), ImageFormat::Jpeg);
    let decoded = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    write("wide.jpg", jpeg.clone(), decoded.clone());
    // Orientation 6: stored sideways, shown turned 90 degrees clockwise.
    let rotated = image::imageops::rotate90(&decoded);
    write("rotated.jpg", with_exif_orientation(&jpeg, 6), rotated);
    let grey = image::GrayImage::from_fn(333, 517, |x, y| {
        image::Luma([odd.get_pixel(x, y)[0] / 2 + (y % 100) as u8])
    });
    let grey_rgb = DynamicImage::ImageLuma8(grey.clone()).to_rgb8();
    write(
        "grey.png",
        encode(&DynamicImage::ImageLuma8(grey), ImageFormat::Png),
        grey_rgb,
    );
    let rgba = RgbaImage::from_fn(640, 400, |x, y| {
        let p = wide.get_pixel(x, y);
        Rgba([p[0], p[1], p[2], (x % 256) as u8])
    });
    write(
        "alpha.png",
        encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png),
        wide.clone(),
    );
    // A PNG named .jpg: read by its content.
    write(
        "png-named.jpg",
        encode(&DynamicImage::ImageRgb8(odd.clone()), ImageFormat::Png),
        odd,
    );
    cases
}

#[test]
fn every_image_kind_gives_what_the_artifacts_detect_image_gives_on_its_pixels() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let module = load(&a.tiny_ts);
    let mut predictor = Predictor::load(&a.tiny_ts, DeviceChoice::Cpu).unwrap();
    assert_eq!(predictor.metadata().nc, 80);
    for (path, pixels) in cases(dir.path()) {
        let what = path.file_name().unwrap().to_string_lossy().into_owned();
        let read = predict::read_image(&path).unwrap();
        assert_eq!(read.dimensions(), pixels.dimensions(), "{what}: size");
        assert!(read == pixels, "{what}: the pixels read differ");
        let p = predict::predict_file(&mut predictor, &path, TINY, Some(&out)).unwrap();
        assert_eq!((p.width, p.height), pixels.dimensions(), "{what}");
        let want = detect_image(&module, &pixels, TINY);
        assert!(!want.is_empty(), "{what}: no box, the test proves nothing");
        // Exact: the same method on the same pixels.
        assert_eq!(as_rows(&p.detections), want, "{what}");
        for d in &p.detections {
            assert_eq!(d.class_name, predictor.metadata().names[d.class_id]);
        }
        // The JSON document says the same.
        let json = serde_json::to_string(&p).unwrap();
        let back: predict::Prediction = serde_json::from_str(&json).unwrap();
        assert_eq!(back.detections, p.detections);
        let annotated = PathBuf::from(p.annotated.unwrap());
        assert!(annotated.is_file(), "{what}: no annotated image");
        assert_eq!(
            image::image_dimensions(&annotated).unwrap(),
            pixels.dimensions()
        );
    }
}

#[test]
fn the_annotated_image_has_each_outline_at_its_reported_box() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("scene.png");
    picture(800, 600).save(&input).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut predictor = Predictor::load(&a.tiny_ts, DeviceChoice::Cpu).unwrap();
    let t = Thresholds { max_det: 3, ..TINY };
    let p = predict::predict_file(&mut predictor, &input, t, Some(&out)).unwrap();
    assert!(!p.detections.is_empty());
    let drawn = image::open(out.join("scene.png")).unwrap().to_rgb8();
    let original = picture(800, 600);
    // The last box is drawn last: nothing covers its left, right and bottom edges.
    let d = p.detections.last().unwrap();
    let colour = draw::class_colour(d.class_id);
    let [l, t, r, b] = draw::box_pixels(d.bbox, 800, 600).unwrap();
    let (mx, my) = ((l + r) / 2, (t + b) / 2);
    for (x, y) in [(l, my), (r, my), (mx, b)] {
        assert_eq!(
            *drawn.get_pixel(x, y),
            colour,
            "outline pixel at {x},{y} of {d:?}"
        );
    }
    // Inside the outline the image is untouched (away from the label and other boxes).
    let width = draw::line_width(&drawn);
    if r > l + 2 * width + 2 {
        let (x, y) = (l + width + 1, my);
        let covered = p.detections.iter().any(|o| {
            let [ol, ot, or, ob] = draw::box_pixels(o.bbox, 800, 600).unwrap();
            (x.abs_diff(ol) <= width || x.abs_diff(or) <= width) && y >= ot && y <= ob
                || (y.abs_diff(ot) <= 30 || y.abs_diff(ob) <= width) && x >= ol && x <= or
        });
        if !covered {
            assert_eq!(drawn.get_pixel(x, y), original.get_pixel(x, y));
        }
    }
}

/// `got` finds what `want` finds on the same images, within float error.
///
/// The random classes' scores tie to 1e-9, below two runtimes' float differences, so which
/// of two near-equal boxes NMS keeps is a coin toss. Without suppression (IoU 1) every
/// candidate comes back: both must give the same set, apart from boxes whose score is
/// within float error of the threshold; with suppression, the best box is the same.
fn assert_same_candidates(what: &str, want: &mut Predictor, got: &mut Predictor) {
    let dir = tempfile::tempdir().unwrap();
    let all = Thresholds {
        conf: 2.0e-4,
        iou: 1.0,
        max_det: 100_000,
    };
    let margin = 1e-8;
    let mut compared = 0;
    for (name, image) in [("a.png", picture(640, 480)), ("b.png", picture(333, 517))] {
        let path = dir.path().join(name);
        image.save(&path).unwrap();
        let w = predict::predict_file(want, &path, all, None).unwrap();
        let g = predict::predict_file(got, &path, all, None).unwrap();
        let matched = |d: &Detection, among: &[Detection]| {
            among.iter().any(|o| {
                // Corners, not IoU: boxes clipped to the image may have no area.
                o.class_id == d.class_id
                    && o.bbox
                        .iter()
                        .zip(&d.bbox)
                        .all(|(x, y)| (x - y).abs() <= 0.05)
                    && (o.score - d.score).abs() <= 1e-8
            })
        };
        let clear = |d: &&Detection| d.score > (all.conf as f32) + margin;
        for d in w.detections.iter().filter(clear) {
            assert!(matched(d, &g.detections), "{what} {name}: misses {d:?}");
            compared += 1;
        }
        for d in g.detections.iter().filter(clear) {
            assert!(matched(d, &w.detections), "{what} {name}: adds {d:?}");
        }
        let t = Thresholds { iou: 0.45, ..all };
        let best = |p: &mut Predictor| {
            predict::predict_file(p, &path, t, None).unwrap().detections[0].clone()
        };
        let (bw, bg) = (best(want), best(got));
        assert!(
            matched(&bg, std::slice::from_ref(&bw)),
            "{what} {name}: {bg:?} vs {bw:?}"
        );
    }
    assert!(compared > 10, "{what}: only {compared} boxes compared");
}

#[test]
fn onnx_and_torchscript_artifacts_of_one_checkpoint_agree() {
    let a = artifacts();
    if !a.tiny_onnx.exists() {
        tool_missing("ONNX Runtime");
        return;
    }
    let mut ts = Predictor::load(&a.tiny_ts, DeviceChoice::Cpu).unwrap();
    let mut onnx = Predictor::load(&a.tiny_onnx, DeviceChoice::Cpu).unwrap();
    assert_eq!(onnx.kind(), predict::ModelKind::Onnx);
    assert_eq!(onnx.metadata().names, ts.metadata().names);
    assert_same_candidates("ONNX", &mut ts, &mut onnx);
}

#[test]
fn an_onnx_artifact_with_nms_inside_gives_the_same_detections() {
    let a = artifacts();
    if !a.tiny_onnx.exists() {
        tool_missing("ONNX Runtime");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(
        "yolov7-tiny",
        dir.path(),
        "tiny-nms.onnx",
        ImageSize::new(640, 640),
    );
    r.format = Format::Onnx;
    r.head = yolots_converter::Output::Detections;
    // The thresholds `assert_same_candidates` asks for, baked into the graph's NMS.
    r.conf = 2.0e-4;
    r.iou = 1.0;
    r.max_det = 100_000;
    run(&r);
    let mut onnx = Predictor::load(&r.output, DeviceChoice::Cpu).unwrap();
    assert_eq!(onnx.metadata().head, yolots_converter::Output::Detections);
    let mut ts = Predictor::load(&a.tiny_ts, DeviceChoice::Cpu).unwrap();
    assert_same_candidates("ONNX with NMS", &mut ts, &mut onnx);
}

#[test]
fn a_lite_artifact_runs_its_own_detect_image() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(
        "yolov7-tiny",
        dir.path(),
        "tiny.torchscript.ptl",
        ImageSize::new(640, 640),
    );
    r.optimize = yolots_converter::Optimize::Mobile;
    run(&r);
    let mut lite = Predictor::load(&r.output, DeviceChoice::Cpu).unwrap();
    assert_eq!(lite.kind(), predict::ModelKind::Lite);
    let mut ts = Predictor::load(&a.tiny_ts, DeviceChoice::Cpu).unwrap();
    assert_same_candidates("lite", &mut ts, &mut lite);
}

#[test]
fn pose_keypoints_come_back_and_a_checkpoint_runs_as_its_artifact() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let input = dir.path().join("people.jpg");
    DynamicImage::ImageRgb8(picture(500, 700))
        .save_with_format(&input, ImageFormat::Jpeg)
        .unwrap();
    let pixels = predict::read_image(&input).unwrap();
    let module = load(&a.pose_ts);
    let want = detect_image(&module, &pixels, POSE_T);
    assert!(
        !want.is_empty(),
        "no pose detection: the test proves nothing"
    );

    let mut artifact = Predictor::load(&a.pose_ts, DeviceChoice::Cpu).unwrap();
    let skeleton = artifact.metadata().skeleton.clone().unwrap();
    assert_eq!(artifact.metadata().kpt_shape, Some([17, 3]));
    std::fs::create_dir(&out).unwrap();
    let p = predict::predict_file(&mut artifact, &input, POSE_T, Some(&out)).unwrap();
    assert_eq!(as_rows(&p.detections), want);
    assert!(
        p.detections
            .iter()
            .all(|d| d.keypoints.as_ref().unwrap().len() == 17)
    );
    assert!(!skeleton.is_empty());

    // The checkpoint itself: converted in memory, nothing left beside it or in `out`.
    let files_before = std::fs::read_dir(&out).unwrap().count();
    let mut checkpoint = Predictor::load(&checkpoint(POSE), DeviceChoice::Cpu).unwrap();
    assert_eq!(checkpoint.kind(), predict::ModelKind::Checkpoint);
    let q = predict::predict_file(&mut checkpoint, &input, POSE_T, None).unwrap();
    assert_eq!(q.detections, p.detections);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), files_before);
}

fn unreadable(result: Result<RgbImage, ConvertError>, what: &str) {
    match result {
        Err(e @ ConvertError::ImageUnreadable { .. }) => {
            assert_eq!(e.code(), yolots_converter::ErrorCode::ImageUnreadable);
        }
        other => panic!("{what}: {:?}", other.map(|i| i.dimensions())),
    }
}

#[test]
fn hostile_images_are_refused_with_typed_errors_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let png = encode(
        &DynamicImage::ImageRgb8(picture(300, 200)),
        ImageFormat::Png,
    );
    let jpeg = encode(
        &DynamicImage::ImageRgb8(picture(300, 200)),
        ImageFormat::Jpeg,
    );
    let path = dir.path().join("x.png");
    unreadable(
        predict::decode_image(&png[..png.len() / 2], &path),
        "truncated PNG",
    );
    unreadable(
        predict::decode_image(&png[..40], &path),
        "PNG cut in its header",
    );
    unreadable(
        predict::decode_image(&jpeg[..jpeg.len() / 3], &path),
        "truncated JPEG",
    );
    unreadable(predict::decode_image(b"hello, not an image", &path), "text");
    unreadable(predict::decode_image(&[], &path), "empty");
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    unreadable(predict::decode_image(gif, &path), "GIF");

    // 100,000 x 100,000 declared in a PNG of a few dozen bytes: refused before any
    // allocation, at once.
    let mut huge = png[..33].to_vec();
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    huge.extend_from_slice(&png[33..]);
    let start = Instant::now();
    match predict::decode_image(&huge, &path) {
        Err(e @ ConvertError::ImageTooLarge { .. }) => {
            assert_eq!(e.code(), yolots_converter::ErrorCode::ImageTooLarge);
            assert!(e.to_string().contains("16384"), "{e}");
        }
        other => panic!("huge PNG: {:?}", other.map(|i| i.dimensions())),
    }
    assert!(start.elapsed().as_secs_f64() < 1.0, "{:?}", start.elapsed());
    // Within the side limit, beyond the memory limit: 16000 x 16000 RGB is 768 MB, under
    // 1 GiB; 16384 x 16384 RGBA 16-bit is 2 GiB.
    let mut deep = huge.clone();
    deep[16..20].copy_from_slice(&16_384u32.to_be_bytes());
    deep[20..24].copy_from_slice(&16_384u32.to_be_bytes());
    deep[24] = 16; // bit depth
    deep[25] = 6; // RGBA
    let crc = crc32(&deep[12..29]);
    deep[29..33].copy_from_slice(&crc.to_be_bytes());
    let start = Instant::now();
    assert!(matches!(
        predict::decode_image(&deep, &path),
        Err(ConvertError::ImageTooLarge { .. })
    ));
    assert!(start.elapsed().as_secs_f64() < 1.0);

    // A file larger than any photo is refused before it is read (a sparse file: no disk).
    let big = dir.path().join("big.jpg");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(predict::MAX_FILE_BYTES + 1).unwrap();
    assert!(matches!(
        predict::read_image(&big),
        Err(ConvertError::ImageTooLarge { .. })
    ));
}

/// CRC-32 (ISO-HDLC, PNG's) of `bytes`.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn the_command_writes_json_and_images_and_refuses_a_bad_image_in_one_line() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    picture(320, 240).save(images.join("one.png")).unwrap();
    picture(200, 300).save(images.join("two.bmp")).unwrap();
    std::fs::write(images.join("notes.txt"), "not an image").unwrap();
    let out = dir.path().join("annotated");
    let exe = env!("CARGO_BIN_EXE_yolots-converter");
    let run = std::process::Command::new(exe)
        .arg("predict")
        .arg(&a.tiny_ts)
        .arg(&images)
        .args([
            "--json",
            "--conf",
            "0.0001",
            "--max-det",
            "5",
            "--device",
            "cpu",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let docs: Vec<predict::Prediction> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "{stdout}");
    assert!(docs.iter().all(|d| !d.detections.is_empty()));
    assert!(out.join("one.png").is_file() && out.join("two.bmp").is_file());
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with('[')).count(),
        2,
        "{stderr}"
    );

    // A huge image among good ones: the good one runs, the command exits 2 with one line.
    let bad = dir.path().join("huge.png");
    let png = encode(&DynamicImage::ImageRgb8(picture(8, 8)), ImageFormat::Png);
    let mut huge = png.clone();
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(&bad, huge).unwrap();
    let run = std::process::Command::new(exe)
        .arg("predict")
        .arg(&a.tiny_ts)
        .arg(&bad)
        .arg(images.join("one.png"))
        .args(["--quiet", "--json", "--conf", "0.0001"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains("huge.png"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout).lines().count(), 1);
}

#[test]
fn keypoints_and_the_skeleton_are_drawn_where_they_are_confident() {
    let mut image = RgbImage::from_pixel(200, 100, Rgb([0, 0, 0]));
    let keypoints = vec![[40.0, 50.0, 0.9], [160.0, 50.0, 0.8], [100.0, 20.0, 0.2]];
    let d = Detection {
        bbox: [10.0, 10.0, 190.0, 90.0],
        score: 0.9,
        class_id: 0,
        class_name: "person".into(),
        keypoints: Some(keypoints),
    };
    let skeleton = [[0, 1], [1, 2]];
    draw::annotate(&mut image, std::slice::from_ref(&d), Some(&skeleton));
    // Confident keypoints: a dot of the keypoint's colour.
    assert_eq!(*image.get_pixel(40, 50), draw::class_colour(0));
    assert_eq!(*image.get_pixel(160, 50), draw::class_colour(1));
    // The line between them, in the first skeleton pair's colour.
    assert_eq!(*image.get_pixel(100, 50), draw::class_colour(7));
    // A keypoint below 0.5 and its line are not drawn.
    assert_eq!(*image.get_pixel(100, 20), Rgb([0, 0, 0]));
    assert_eq!(*image.get_pixel(130, 35), Rgb([0, 0, 0]));
    // The box outline, in the class's colour.
    assert_eq!(*image.get_pixel(10, 50), draw::class_colour(0));
    assert_eq!(*image.get_pixel(189, 50), draw::class_colour(0));
}

#[test]
fn the_annotated_copy_never_replaces_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("photo.jpg");
    std::fs::write(&input, b"x").unwrap();
    assert!(matches!(
        predict::annotated_path(&input, dir.path()),
        Err(ConvertError::Options(_))
    ));
    let out = dir.path().join("out");
    assert_eq!(
        predict::annotated_path(&input, &out).unwrap(),
        out.join("photo.jpg")
    );
    // A name without an image extension is written as PNG.
    assert_eq!(
        predict::annotated_path(Path::new("scan"), &out).unwrap(),
        out.join("scan.png")
    );
}
