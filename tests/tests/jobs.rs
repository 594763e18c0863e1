//! Upload → convert → download through the REST API, with the real binary, a real
//! PostgreSQL and the shared fixtures: every fixture converts, its report's parity figures
//! are within tolerance, the downloaded artifact is the one the report describes and loads
//! in libtorch; events replay; the same source and options reuse the artifact; deleting
//! jobs deletes their files.

// Tests and their helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use yolots_e2e::{FAST, Server, TestDatabase, create_token, files_under, fixtures, sha256_hex};
use yolots_web::snippets::{self, Artifact};

const FIXTURES: &[&str] = &[
    "yolov7-w25-c3.pt",
    "yolov7-tiny.pt",
    "yolov7-deploy-w25-c3.pt",
    "yolov7-w6-w25-c3.pt",
];
const OPTIONS: &str = r#"{"img_size": [320, 320]}"#;

#[tokio::test]
async fn every_fixture_converts_and_its_artifact_downloads() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), FAST).await.unwrap();
    let token = create_token(&db.url, "e2e", false).unwrap();
    let client = server.client(&token);

    let mut ids = Vec::new();
    for name in FIXTURES {
        let job = client
            .create_job(&fixtures().join(name), Some(OPTIONS))
            .await
            .unwrap();
        assert_eq!(job["status"], "queued", "{job}");
        assert_eq!(job["source"]["name"], *name);
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        assert_eq!(job["source"]["sha256"], sha256_hex(&bytes));
        assert_eq!(job["source"]["size"], bytes.len());
        ids.push(job["id"].as_str().unwrap().to_owned());
    }

    let artifacts = tempfile::tempdir().unwrap();
    let mut saved = Vec::new();
    for (name, id) in FIXTURES.iter().zip(&ids) {
        let job = client
            .wait_final(id, Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(job["status"], "succeeded", "{name}: {job}");
        assert_eq!(job["attempts"], 1);
        assert_eq!(job["progress"], 1.0);

        let report: serde_json::Value = client
            .get(&format!("/api/v1/jobs/{id}/report"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(report["status"], "passed", "{name}: {report}");
        let checks = report["validation"]["checks"].as_array().unwrap();
        assert!(!checks.is_empty());
        for check in checks {
            assert_eq!(check["passed"], true, "{name}: {check}");
            if let (Some(err), Some(tol)) = (
                check["max_abs_error"].as_f64(),
                check["tolerance"]["abs"].as_f64(),
            ) {
                assert!(err <= tol, "{name}: {check}");
            }
        }

        let response = client
            .get(&format!("/api/v1/jobs/{id}/artifact"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let sha = sha256_hex(&bytes);
        assert_eq!(sha, report["artifact"]["sha256"], "{name}");
        assert_eq!(sha, job["artifact"]["sha256"]);
        assert_eq!(
            bytes.len() as u64,
            job["artifact"]["size"].as_u64().unwrap()
        );
        assert_eq!(headers["etag"], format!("\"{sha}\"").as_str());
        let stem = name.trim_end_matches(".pt");
        assert_eq!(
            headers["content-disposition"],
            format!("attachment; filename=\"{stem}.torchscript.pt\"").as_str()
        );
        let path = artifacts.path().join(format!("{stem}.torchscript.pt"));
        std::fs::write(&path, &bytes).unwrap();
        saved.push(path);

        // A range, and a conditional request.
        let part = client
            .get(&format!("/api/v1/jobs/{id}/artifact"))
            .header("Range", "bytes=100-199")
            .send()
            .await
            .unwrap();
        assert_eq!(part.status(), 206);
        assert_eq!(
            part.headers()["content-range"],
            format!("bytes 100-199/{}", bytes.len()).as_str()
        );
        assert_eq!(part.bytes().await.unwrap(), bytes.slice(100..200));
        let cached = client
            .get(&format!("/api/v1/jobs/{id}/artifact"))
            .header("If-None-Match", format!("\"{sha}\""))
            .send()
            .await
            .unwrap();
        assert_eq!(cached.status(), 304);
        let beyond = client
            .get(&format!("/api/v1/jobs/{id}/artifact"))
            .header("Range", format!("bytes={}-", bytes.len() + 10))
            .send()
            .await
            .unwrap();
        assert_eq!(beyond.status(), 416);
    }
    loads_in_libtorch(&saved);
    // A fresh connection: the pooled ones idled while Python ran.
    let client = yolots_e2e::Client::new(&server.base, &token);

    // The log replays every stage and the final state, then the stream ends.
    let text = client
        .get(&format!("/api/v1/jobs/{}/events", ids[0]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for stage in ["reading", "building", "validating", "done"] {
        assert!(
            text.contains(&format!("\"stage\":\"{stage}\"")),
            "{stage}: {text}"
        );
    }
    assert!(text.contains("event: status"));
    assert!(text.trim_end().ends_with("event: end\ndata: {}"), "{text}");
    assert!(
        !text.contains(data.path().to_str().unwrap()),
        "paths leak: {text}"
    );

    // Resuming after the last event gives only the end.
    let last = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .next_back()
        .unwrap();
    let rest = client
        .get(&format!("/api/v1/jobs/{}/events", ids[0]))
        .header("Last-Event-ID", last)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(rest.trim(), "event: end\ndata: {}");

    // The same source and options again: done at once, sharing the artifact.
    let again = client
        .create_job(&fixtures().join(FIXTURES[0]), Some(OPTIONS))
        .await
        .unwrap();
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(again["reused_from"], ids[0].as_str());
    let first = client.job(&ids[0]).await.unwrap();
    assert_eq!(again["artifact"], first["artifact"]);
    let again_id = again["id"].as_str().unwrap();

    // Deleting the original keeps the shared artifact for the reusing job.
    let deleted = client
        .delete(&format!("/api/v1/jobs/{}", ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let still = client
        .get(&format!("/api/v1/jobs/{again_id}/artifact"))
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200);
    assert_eq!(
        sha256_hex(&still.bytes().await.unwrap()),
        first["artifact"]["sha256"]
    );
    let gone = client
        .get(&format!("/api/v1/jobs/{}", ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    // Deleting every job leaves no file behind.
    for id in ids.iter().skip(1).map(String::as_str).chain([again_id]) {
        let response = client
            .delete(&format!("/api/v1/jobs/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    let left = files_under(data.path());
    assert!(left.is_empty(), "files left: {left:?}");
    let list: serde_json::Value = client
        .get("/api/v1/jobs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 0);
}

/// The artifacts load in libtorch outside yolots (Python's torch, when the test
/// environment has it) and run on an input of another size than the conversion's.
fn loads_in_libtorch(paths: &[std::path::PathBuf]) {
    let Some(python) = std::env::var_os("YOLOTS_PYTHON") else {
        yolots_e2e::tool_missing(
            "YOLOTS_PYTHON is not set: the artifacts were loaded back by the converter only",
        );
        return;
    };
    let script = "import sys, torch\n\
                  for p in sys.argv[1:]:\n\
                  \x20   m = torch.jit.load(p)\n\
                  \x20   y = m(torch.rand(1, 3, 256, 384))\n\
                  \x20   assert y.shape[0] == 1 and y.shape[2] == 5 + len(m.names), y.shape\n\
                  print('ok')\n";
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args(paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "torch.jit.load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pose checkpoint (official `pose` branch, 17 keypoints) uploads, converts, validates
/// with its keypoint checks and downloads like any other; the artifact's detections carry
/// the keypoints when a client loads it.
#[tokio::test]
async fn a_pose_checkpoint_converts_and_its_artifact_downloads() {
    const POSE: &str = "pose/yolov7-w6-pose-w25.pt";
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), FAST).await.unwrap();
    let token = create_token(&db.url, "pose", false).unwrap();
    let client = server.client(&token);
    let options = r#"{"img_size": [256, 256], "head": "detections", "conf": 0.005}"#;
    let job = client
        .create_job(&fixtures().join(POSE), Some(options))
        .await
        .unwrap();
    assert_eq!(job["status"], "queued", "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let job = client
        .wait_final(&id, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");

    let report: serde_json::Value = client
        .get(&format!("/api/v1/jobs/{id}/report"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["status"], "passed", "{report}");
    // The source by the name it was uploaded under, not the store's.
    assert_eq!(
        report["source"]["file_name"], "yolov7-w6-pose-w25.pt",
        "{report}"
    );
    assert_eq!(report["source"]["task"], "pose");
    assert_eq!(report["source"]["nkpt"], 17);
    assert_eq!(report["source"]["head"], "IKeypoint");
    let checks = report["validation"]["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["passed"] == true), "{report}");
    assert!(
        checks.iter().any(|c| c["kind"] == "keypoints"),
        "no keypoint check: {report}"
    );

    let response = client
        .get(&format!("/api/v1/jobs/{id}/artifact"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"yolov7-w6-pose-w25.torchscript.pt\""
    );
    let bytes = response.bytes().await.unwrap();
    assert_eq!(sha256_hex(&bytes), report["artifact"]["sha256"]);

    let Some(python) = std::env::var_os("YOLOTS_PYTHON") else {
        yolots_e2e::tool_missing(
            "YOLOTS_PYTHON is not set: the artifact was loaded back by the converter only",
        );
        return;
    };
    let artifacts = tempfile::tempdir().unwrap();
    let path = artifacts.path().join("pose.torchscript.pt");
    std::fs::write(&path, &bytes).unwrap();
    // The detections head: one `[K, 6 + 3 * 17]` tensor per image, at any size.
    let script = "import sys, torch\n\
                  m = torch.jit.load(sys.argv[1])\n\
                  out = m(torch.rand(2, 3, 192, 320))\n\
                  assert len(out) == 2 and all(d.shape[1] == 6 + 3 * 17 for d in out), [d.shape for d in out]\n\
                  print('ok')\n";
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "torch.jit.load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The page's snippet for the detections head, keypoints read per row.
    run_page_snippet(&python, &job, &report, &path);
}

/// An ONNX job converts, validates with ONNX Runtime, and downloads as `NAME.onnx`; the
/// downloaded file runs in the PyPI `onnxruntime` at another batch and size, its NMS
/// inside.
#[tokio::test]
async fn an_onnx_job_converts_validates_and_downloads() {
    const NAME: &str = "yolov7-w25-c3";
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), FAST).await.unwrap();
    let token = create_token(&db.url, "onnx", false).unwrap();
    let client = server.client(&token);
    let options =
        r#"{"format": "onnx", "img_size": [320, 320], "head": "detections", "conf": 0.005}"#;
    let job = client
        .create_job(&fixtures().join(format!("{NAME}.pt")), Some(options))
        .await
        .unwrap();
    assert_eq!(job["options"]["format"], "onnx", "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let job = client
        .wait_final(&id, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        job["artifact"]["file_name"],
        format!("{NAME}.onnx"),
        "{job}"
    );

    let report: serde_json::Value = client
        .get(&format!("/api/v1/jobs/{id}/report"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["status"], "passed", "{report}");
    assert_eq!(report["artifact"]["format"], "onnx");
    assert_eq!(report["options"]["format"], "onnx");
    assert!(
        report["validation"]["loaded_with"]
            .as_str()
            .unwrap()
            .contains("ONNX Runtime"),
        "{report}"
    );
    let checks = report["validation"]["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["passed"] == true), "{report}");
    assert!(checks.iter().any(|c| c["kind"] == "detections"), "{report}");

    let response = client
        .get(&format!("/api/v1/jobs/{id}/artifact"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-disposition"],
        format!("attachment; filename=\"{NAME}.onnx\"").as_str()
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let bytes = response.bytes().await.unwrap();
    assert_eq!(sha256_hex(&bytes), report["artifact"]["sha256"]);

    let Some(python) = std::env::var_os("YOLOTS_ONNX_PYTHON") else {
        yolots_e2e::tool_missing(
            "YOLOTS_ONNX_PYTHON is not set: the file was run by the converter only",
        );
        return;
    };
    let artifacts = tempfile::tempdir().unwrap();
    let path = artifacts.path().join(format!("{NAME}.onnx"));
    std::fs::write(&path, &bytes).unwrap();
    let script = "import sys, numpy as np, onnxruntime as ort\n\
                  s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n\
                  (d,) = s.run(['detections'], {'images': np.random.rand(2, 3, 256, 416).astype(np.float32)})\n\
                  assert d.ndim == 2 and d.shape[1] == 7 and set(d[:, 0]) <= {0.0, 1.0}, d.shape\n\
                  print('ok')\n";
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onnxruntime failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The page's snippet for the detections head, boxes scaled back to the image.
    run_page_snippet(&python, &job, &report, &path);
}

/// Runs the Python snippet the report page prints for this job's artifact (the page's own
/// code writes it from the job's options and the report) as printed, with `python`, beside
/// the artifact saved at `path`; returns the count of detections it printed.
fn run_page_snippet(
    python: &std::ffi::OsStr,
    job: &serde_json::Value,
    report: &serde_json::Value,
    path: &std::path::Path,
) -> u64 {
    let options = &job["options"];
    let side = |i: usize| u32::try_from(options["img_size"][i].as_u64().unwrap()).unwrap();
    let file_name = report["artifact"]["file_name"].as_str().unwrap();
    let artifact = Artifact {
        file_name,
        head: options["head"].as_str().unwrap(),
        half: options["precision"] == "fp16",
        img_size: [side(0), side(1)],
        conf: options["conf"].as_f64().unwrap(),
        iou: options["iou"].as_f64().unwrap(),
        max_det: u32::try_from(options["max_det"].as_u64().unwrap()).unwrap(),
        task: report["source"]["task"].as_str().unwrap().parse().unwrap(),
        nkpt: usize::try_from(report["source"]["nkpt"].as_u64().unwrap_or(0)).unwrap(),
        onnx: report["artifact"]["format"] == "onnx",
    };
    let code = &snippets::all(&artifact)[0].code;
    let (count, printed) = yolots_e2e::run_python_snippet(python, code, path, file_name).unwrap();
    let shown: Vec<&str> = printed.lines().take(2).collect();
    println!("the page's Python snippet: {}", shown.join(" | "));
    count
}
