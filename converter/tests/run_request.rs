//! `yolots-converter run`: the request a worker writes on stdin, and what comes back on
//! stdout (one `ConverterLine` per line). A request that does not parse is refused with a
//! clear message and no artifact.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use yolots_converter::{ConvertRequest, ConverterLine, ErrorCode};

fn run_with_stdin(stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_yolots-converter"))
        .arg("run")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn lines(out: &Output) -> Vec<ConverterLine> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_request_on_stdin_converts_and_reports_in_lines() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("tiny.torchscript.pt");
    let mut request = ConvertRequest::new(common::checkpoint("yolov7-tiny"), &output);
    request.validate = false;
    request.latency_runs = 0;
    let out = run_with_stdin(&serde_json::to_vec(&request).unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = lines(&out);
    assert!(matches!(lines.first(), Some(ConverterLine::Progress(_))));
    match lines.last() {
        Some(ConverterLine::Result { report }) => {
            assert_eq!(report.artifact.file_name, "tiny.torchscript.pt");
        }
        other => panic!("the last line is not a result: {other:?}"),
    }
    assert!(output.is_file());
}

#[test]
fn a_request_that_does_not_parse_is_refused_clearly() {
    for stdin in [&b""[..], b"{\"input\": 3}", b"not json"] {
        let out = run_with_stdin(stdin);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not a conversion request"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_refused_input_ends_in_an_error_line_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("empty.pt");
    std::fs::write(&input, b"").unwrap();
    let request = ConvertRequest::new(&input, dir.path().join("out.pt"));
    let out = run_with_stdin(&serde_json::to_vec(&request).unwrap());
    assert_eq!(out.status.code(), Some(2));
    match lines(&out).last() {
        Some(ConverterLine::Error {
            code, exit_code, ..
        }) => {
            assert_eq!(*exit_code, 2);
            assert_ne!(*code, ErrorCode::InternalError);
        }
        other => panic!("the last line is not an error: {other:?}"),
    }
}

/// `yolots-converter convert` in text mode, stderr redirected (not a terminal).
fn convert_text(extra: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_yolots-converter"))
        .args(["convert", "--device", "cpu", "--latency-runs", "1"])
        .arg(common::checkpoint("yolov7-tiny"))
        .arg("-o")
        .arg(dir.path().join("m.torchscript.pt"))
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (out, dir)
}

#[test]
fn text_progress_is_one_plain_line_per_stage_and_quiet_is_quiet() {
    let (out, _dir) = convert_text(&[]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\x1b'),
        "colours in redirected output: {stderr}"
    );
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).collect();
    assert!(progress[0].starts_with("[  0%] reading "), "{stderr}");
    for (line, next) in progress.iter().zip(progress.iter().skip(1)) {
        assert_ne!(line, next, "{stderr}");
    }
    // Each stage once: no log line repeats a progress line.
    assert!(!stderr.contains("INFO"), "{stderr}");
    assert!(stderr.contains("[ 85%] timing 1 run\n"), "{stderr}");
    assert!(
        stderr.contains("80 classes, 6,228,762 parameters"),
        "{stderr}"
    );
    assert!(stderr.contains("validation passed on cpu"), "{stderr}");
    assert!(stderr.contains(", 1 run)"), "{stderr}");
    assert!(!stderr.contains("p90"), "one run has no spread: {stderr}");

    // A missing file is said once.
    let out = Command::new(env!("CARGO_BIN_EXE_yolots-converter"))
        .args(["convert", "/nonexistent/best.pt"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");

    let (out, dir) = convert_text(&["--quiet"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(dir.path().join("m.torchscript.pt").is_file());
    // The report is named after its artifact: another artifact of the same checkpoint
    // keeps its own.
    assert!(dir.path().join("m.torchscript.report.json").is_file());
}
