//! A CPU conversion never maps libtorch's CUDA backend (about 350 MB of resident
//! memory); the converter loads it only for a CUDA device or `auto` with a driver.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The libraries a process maps whose file name contains `part`.
fn mapped(pid: u32, part: &str) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut found: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|path| path.contains(part))
        .map(str::to_owned)
        .collect();
    found.dedup();
    found
}

#[test]
fn a_cpu_conversion_maps_libtorch_cpu_but_not_the_cuda_backend() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_yolots-converter"))
        .arg("convert")
        .arg(common::checkpoint("yolov7-tiny"))
        .arg("--output")
        .arg(dir.path().join("tiny.torchscript.pt"))
        .args(["--device", "cpu", "--progress", "json"])
        // Stops once the `building` stage is reported, so the process can be looked at.
        .args(["--test-fault", "hang"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut reached_building = false;
    for line in stdout.lines() {
        if line.unwrap().contains("\"building\"") {
            reached_building = true;
            break;
        }
    }
    let (cpu, cuda) = (
        mapped(child.id(), "libtorch_cpu"),
        mapped(child.id(), "libtorch_cuda"),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(reached_building, "the conversion never reached `building`");
    assert!(!cpu.is_empty(), "libtorch_cpu is not mapped");
    assert!(cuda.is_empty(), "a CPU conversion mapped {cuda:?}");
}
