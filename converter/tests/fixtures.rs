//! Every fixture with official outputs, converted and loaded back: script mode (fused with
//! the `decoded` head, unfused with the `raw` head) on inputs `a` and `b`, trace mode on
//! input `a`, and Python's `torch.jit.load` as an outside client on input `b`.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use tch::IValue;
use yolots_converter::{Mode, Output};

fn python_spec(
    dir: &Path,
    artifact: &Path,
    exp: &Expected,
    method: &str,
    outputs: &[(&str, bool)],
) -> serde_json::Value {
    let input = exp.get("b.input");
    write_f32(input, &dir.join("b.input.f32"));
    let expected: Vec<serde_json::Value> = outputs
        .iter()
        .enumerate()
        .map(|(i, (key, split))| {
            let t = exp.get(key);
            let path = dir.join(format!("{key}.f32"));
            write_f32(t, &path);
            serde_json::json!({"path": path, "shape": t.size(), "index": i, "split": split})
        })
        .collect();
    serde_json::json!({
        "artifact": artifact,
        "lite": false,
        "method": method,
        "input": dir.join("b.input.f32"),
        "input_shape": input.size(),
        "expected": expected,
    })
}

/// Fused, `decoded` head: forward on `a` and `b`, `raw` on both, the metadata inside
/// the archive and on the module, and Python on `b`.
fn script_fused_decoded(name: &str) {
    let exp = Expected::load(name);
    let dir = tempfile::tempdir().unwrap();
    let r = request(name, dir.path(), "fused.torchscript", exp.size("a"));
    let report = run(&r);
    assert!(report.artifact.fused);
    let m = load(&r.output);
    for input in ["a", "b"] {
        let x = IValue::Tensor(exp.get(&format!("{input}.input")).shallow_clone());
        let decoded = call(&m, "forward", std::slice::from_ref(&x));
        assert_decoded(
            &format!("{name} {input}"),
            &decoded[0],
            exp.get(&format!("{input}.decoded")),
        );
        let raw = call(&m, "raw", &[x]);
        assert_raw(&format!("{name} {input}"), &raw, &exp.raw(input));
    }

    let meta = metadata_in_archive(&r.output);
    assert_eq!(meta.names, exp.names());
    assert_eq!(meta.strides, exp.strides());
    assert_eq!(meta.head, Output::Decoded);
    assert!(meta.input.dynamic);

    if python().is_none() {
        tool_missing("no Python with torch for the outside client (YOLOTS_PYTHON or .yolots/venv)");
        return;
    }
    let spec = python_spec(
        dir.path(),
        &r.output,
        &exp,
        "forward",
        &[("b.decoded", true)],
    );
    let answer = python_check(&spec, dir.path());
    let e = &answer["errors"][0];
    assert!(
        e["boxes"].as_f64().unwrap() <= BOX_TOL,
        "{name} python b: {answer}"
    );
    assert!(
        e["probs"].as_f64().unwrap() <= PROB_TOL,
        "{name} python b: {answer}"
    );
    let names: Vec<String> = serde_json::from_value(answer["names_attr"].clone()).unwrap();
    assert_eq!(names, exp.names());
    let strides: Vec<i64> = serde_json::from_value(answer["stride_attr"].clone()).unwrap();
    assert_eq!(strides, exp.strides());
    assert_eq!(answer["metadata"]["names"], exp.meta["names"]);
}

/// Unfused (`--no-fuse`), `raw` head: forward gives the raw levels, `decoded` the boxes,
/// on `a` and `b`; Python on `b`.
fn script_unfused_raw(name: &str) {
    let exp = Expected::load(name);
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(name, dir.path(), "unfused.torchscript", exp.size("a"));
    r.fuse = false;
    r.head = Output::Raw;
    let report = run(&r);
    assert!(!report.artifact.fused);
    let m = load(&r.output);
    for input in ["a", "b"] {
        let x = IValue::Tensor(exp.get(&format!("{input}.input")).shallow_clone());
        let raw = call(&m, "forward", std::slice::from_ref(&x));
        assert_raw(&format!("{name} unfused {input}"), &raw, &exp.raw(input));
        let decoded = call(&m, "decoded", &[x]);
        assert_decoded(
            &format!("{name} unfused {input}"),
            &decoded[0],
            exp.get(&format!("{input}.decoded")),
        );
    }
    if python().is_none() {
        return;
    }
    let keys: Vec<String> = (0..exp.raw("b").len())
        .map(|i| format!("b.raw.{i}"))
        .collect();
    let outputs: Vec<(&str, bool)> = keys.iter().map(|k| (k.as_str(), false)).collect();
    let spec = python_spec(dir.path(), &r.output, &exp, "forward", &outputs);
    let answer = python_check(&spec, dir.path());
    for e in answer["errors"].as_array().unwrap() {
        assert!(
            e["max"].as_f64().unwrap() <= RAW_TOL,
            "{name} python raw b: {answer}"
        );
    }
}

/// Trace mode at the size of `a`.
fn trace_on_a(name: &str) {
    let exp = Expected::load(name);
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(name, dir.path(), "traced.torchscript", exp.size("a"));
    r.mode = Mode::Trace;
    run(&r);
    let m = load(&r.output);
    let x = IValue::Tensor(exp.get("a.input").shallow_clone());
    let decoded = call(&m, "forward", std::slice::from_ref(&x));
    assert_decoded(
        &format!("{name} traced a"),
        &decoded[0],
        exp.get("a.decoded"),
    );
    let raw = call(&m, "raw", &[x]);
    assert_raw(&format!("{name} traced a"), &raw, &exp.raw("a"));
    let meta = metadata_in_archive(&r.output);
    assert!(!meta.input.dynamic);
    assert_eq!(meta.mode, Mode::Trace);
}

macro_rules! fixture_tests {
    ($($module:ident => $name:literal),* $(,)?) => {$(
        mod $module {
            #[test]
            fn script_fused_decoded_matches_official_outputs() {
                super::script_fused_decoded($name);
            }

            #[test]
            fn script_unfused_raw_matches_official_outputs() {
                super::script_unfused_raw($name);
            }

            #[test]
            fn trace_matches_official_outputs_on_a() {
                super::trace_on_a($name);
            }
        }
    )*};
}

fixture_tests! {
    tiny => "yolov7-tiny",
    w25_c3 => "yolov7-w25-c3",
    w6_w25_c3 => "yolov7-w6-w25-c3",
    deploy_w25_c3 => "yolov7-deploy-w25-c3",
}

#[test]
fn every_fixture_with_outputs_is_covered() {
    let mut found: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".expected.safetensors")
                .map(str::to_owned)
        })
        .collect();
    found.sort();
    let mut covered: Vec<String> = MODELS.iter().map(|s| (*s).to_owned()).collect();
    covered.sort();
    assert_eq!(found, covered);
}
