//! Every code of the table is one some part of yolots can emit: a producer outside the
//! web page names it (`ErrorCode::Variant`) in its source, outside comments, tests and
//! match patterns. A code nothing emits would
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

/// The source with `#[cfg(test)]` modules cut off (tests name codes without emitting)
/// and comments removed (a comment naming a code emits nothing).
fn production_source(path: &Path) -> String {
    without_tests_and_comments(&std::fs::read_to_string(path).unwrap())
}

fn without_tests_and_comments(text: &str) -> String {
    let code = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    code.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether the code named just before `rest` is a pattern (a match arm `Code =>` or one of
/// its alternatives `Code |`): matching on a code is consuming it, not emitting it.
fn is_pattern(rest: &str) -> bool {
    let rest = rest.trim_start();
    rest.starts_with("=>") || (rest.starts_with('|') && !rest.starts_with("||"))
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
                    let rest = &source[at + name.len()..];
                    // Not a prefix of a longer variant name, and not a pattern.
                    !rest.starts_with(|c: char| c.is_alphanumeric()) && !is_pattern(rest)
                })
            })
        })
        .collect();
    assert!(unused.is_empty(), "codes no producer emits: {unused:?}");
}

#[test]
fn patterns_and_comments_do_not_count_as_emitting() {
    assert!(is_pattern(" => 400,"));
    assert!(is_pattern("\n        | ErrorCode::Other => 400,"));
    assert!(!is_pattern(", \"message\")"));
    assert!(!is_pattern(" || fallback"));
    let source = without_tests_and_comments(
        "let c = 1; // ErrorCode::Internal\n#[cfg(test)]\nErrorCode::Io",
    );
    assert!(!source.contains("ErrorCode"), "{source}");
}
