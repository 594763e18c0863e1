//! Every code of the table is one some part of yolots can emit: a producer outside the
//! web page names it (`ErrorCode::Variant`) in its source. A code nothing emits would
//! give the page advice for a failure that cannot happen.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use yolots_protocol::ErrorCode;

/// The sources of the crates that produce codes: the reader, the converter, the service.
const PRODUCERS: &[&str] = &["checkpoint/src", "converter/src", "backend/src"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source with `#[cfg(test)]` modules cut off (tests name codes without emitting).
fn production_source(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

#[test]
fn every_code_is_named_by_a_producer() {
    // Cargo's run-time value first: a shared build folder may hold a binary built elsewhere.
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("..");
    let mut files = Vec::new();
    for dir in PRODUCERS {
        rust_files(&root.join(dir), &mut files);
    }
    let sources: Vec<String> = files.iter().map(|f| production_source(f)).collect();
    assert!(
        sources.len() > 20,
        "found only {} source files",
        sources.len()
    );
    let unused: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|code| format!("ErrorCode::{code:?}"))
        .filter(|name| {
            !sources.iter().any(|source| {
                source.match_indices(name.as_str()).any(|(at, _)| {
                    // Not a prefix of a longer variant name.
                    !source[at + name.len()..].starts_with(|c: char| c.is_alphanumeric())
                })
            })
        })
        .collect();
    assert!(unused.is_empty(), "codes no producer emits: {unused:?}");
}
