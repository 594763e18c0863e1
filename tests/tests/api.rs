//! The API's answers to bad requests (each with its problem code), owner isolation,
//! hostile checkpoints, browser sessions and the service documents.

// Tests and their helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::StreamExt;
use yolots_e2e::{
    Client, FAST, Server, TestDatabase, create_token, exclusive, files_under, fixtures,
};

/// Checks a problem answer; returns its body.
async fn problem(response: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(response.status(), status, "expected {code}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{code}"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], format!("https://yolots.dev/problems/{code}"));
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

#[tokio::test]
async fn bad_requests_get_their_problem_codes() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &db.url,
        data.path(),
        &["--workers", "0", "--max-upload-bytes", "1000000"],
    )
    .await
    .unwrap();
    let token = create_token(&db.url, "errors", false).unwrap();
    let client = server.client(&token);
    let http = reqwest::Client::new();
    // A small real model (under the 1 MB limit of this server), strides 8, 16, 32.
    let small =
        std::fs::read(yolots_e2e::workspace().join("checkpoint/tests/data/deploy.pt")).unwrap();

    // Credentials.
    problem(
        http.get(server.url("/api/v1/jobs")).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    problem(
        http.get(server.url("/api/v1/jobs"))
            .bearer_auth("yolots_0000")
            .send()
            .await
            .unwrap(),
        401,
        "invalid_token",
    )
    .await;
    problem(
        http.get(server.url("/api/v1/jobs"))
            .header("Authorization", "Basic abc")
            .send()
            .await
            .unwrap(),
        401,
        "invalid_token",
    )
    .await;
    problem(
        http.post(server.url("/api/v1/sessions"))
            .send()
            .await
            .unwrap(),
        403,
        "sessions_disabled",
    )
    .await;

    // Ids.
    problem(
        client.get("/api/v1/jobs/not-a-uuid").send().await.unwrap(),
        400,
        "malformed_id",
    )
    .await;
    let unknown = uuid::Uuid::new_v4();
    for path in ["", "/report", "/artifact", "/events"] {
        problem(
            client
                .get(&format!("/api/v1/jobs/{unknown}{path}"))
                .send()
                .await
                .unwrap(),
            404,
            "not_found",
        )
        .await;
    }
    problem(
        client
            .delete(&format!("/api/v1/jobs/{unknown}"))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    problem(
        client
            .get("/api/v1/jobs?per_page=1000")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_query",
    )
    .await;
    problem(
        client.get("/api/v1/jobs?status=lost").send().await.unwrap(),
        400,
        "invalid_query",
    )
    .await;

    // Uploads.
    let form = reqwest::multipart::Form::new().text("options", "{}");
    problem(
        client
            .post("/api/v1/jobs")
            .multipart(form)
            .send()
            .await
            .unwrap(),
        400,
        "missing_file",
    )
    .await;
    problem(
        client.upload("empty.pt", Vec::new(), None).await.unwrap(),
        400,
        "empty_file",
    )
    .await;
    problem(
        client
            .post("/api/v1/jobs")
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_multipart",
    )
    .await;
    // With the option each refusal names, where it is about one option.
    for (options, refused) in [
        ("not json", None),
        (r#"{"mode": "jit"}"#, None),
        (r#"{"colour": "red"}"#, None),
        (r#"{"conf": 2}"#, Some("conf")),
        (r#"{"iou": -1}"#, Some("iou")),
        (r#"{"max_det": 0}"#, Some("max_det")),
        (r#"{"img_size": [0, 640]}"#, Some("img_size")),
        (r#"{"device": "tpu"}"#, None),
        (r#"{"test_fault": "abort"}"#, None),
        (r#"{"format": "tflite"}"#, None),
        (r#"{"format": "onnx", "mode": "trace"}"#, Some("mode")),
        (
            r#"{"format": "onnx", "optimize": "mobile"}"#,
            Some("optimize"),
        ),
    ] {
        let body = problem(
            client
                .upload("m.pt", small.clone(), Some(options))
                .await
                .unwrap(),
            400,
            "invalid_options",
        )
        .await;
        eprintln!("{options}: {}", body["detail"]);
        if let Some(option) = refused {
            assert_eq!(body["option"], option, "{options}: {body}");
        }
    }
    // Depends on the model: not a multiple of its largest stride (32).
    problem(
        client
            .upload("m.pt", small.clone(), Some(r#"{"img_size": [100, 100]}"#))
            .await
            .unwrap(),
        400,
        "invalid_options",
    )
    .await;

    // Over the limit, with a declared length and while streaming (no length).
    problem(
        client
            .upload("big.pt", vec![0u8; 3_000_000], None)
            .await
            .unwrap(),
        413,
        "upload_too_large",
    )
    .await;
    let chunks =
        futures_util::stream::iter(0..48).map(|_| Ok::<_, std::io::Error>(vec![1u8; 64 * 1024]));
    let part =
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(chunks)).file_name("stream.pt");
    let form = reqwest::multipart::Form::new().part("file", part);
    problem(
        client
            .post("/api/v1/jobs")
            .multipart(form)
            .send()
            .await
            .unwrap(),
        413,
        "upload_too_large",
    )
    .await;
    let left = files_under(data.path());
    assert!(left.is_empty(), "refused uploads left files: {left:?}");

    // A queued job: nothing to download, nothing to retry.
    let job = client
        .create_job(
            &yolots_e2e::workspace().join("checkpoint/tests/data/deploy.pt"),
            None,
        )
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap();
    for path in ["report", "artifact"] {
        problem(
            client
                .get(&format!("/api/v1/jobs/{id}/{path}"))
                .send()
                .await
                .unwrap(),
            409,
            "not_ready",
        )
        .await;
    }
    problem(
        client
            .post(&format!("/api/v1/jobs/{id}/retry"))
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
    )
    .await;
    // Cancelling a queued job is immediate.
    let cancelled = client
        .delete(&format!("/api/v1/jobs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 202);
    let cancelled: serde_json::Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
}

#[tokio::test]
async fn owners_see_only_their_jobs() {
    let _serial = exclusive().await;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), FAST).await.unwrap();
    let a = server.client(&create_token(&db.url, "a", false).unwrap());
    let b = server.client(&create_token(&db.url, "b", false).unwrap());
    let admin = server.client(&create_token(&db.url, "root", true).unwrap());
    let job = a
        .create_job(
            &fixtures().join("yolov7-deploy-w25-c3.pt"),
            Some(r#"{"img_size": [160, 160]}"#),
        )
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap();
    let job = a.wait_final(id, Duration::from_secs(300)).await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");

    let list: serde_json::Value = b
        .get("/api/v1/jobs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 0);
    assert_eq!(list["jobs"], serde_json::json!([]));
    for path in ["", "/report", "/artifact", "/events"] {
        problem(
            b.get(&format!("/api/v1/jobs/{id}{path}"))
                .send()
                .await
                .unwrap(),
            404,
            "not_found",
        )
        .await;
    }
    problem(
        b.post(&format!("/api/v1/jobs/{id}/retry"))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    problem(
        b.delete(&format!("/api/v1/jobs/{id}"))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;

    // The owner and an admin see it.
    let list: serde_json::Value = a
        .get("/api/v1/jobs?status=succeeded")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["jobs"][0]["id"], id);
    let list: serde_json::Value = a
        .get("/api/v1/jobs?status=failed")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 0);
    let seen = admin.job(id).await.unwrap();
    assert_eq!(seen["status"], "succeeded");
    let me: serde_json::Value = admin
        .get("/api/v1/session")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["owner"]["is_admin"], true);
}

#[tokio::test]
async fn hostile_checkpoints_are_refused_with_the_readers_code() {
    let _serial = exclusive().await;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), FAST).await.unwrap();
    let client = server.client(&create_token(&db.url, "hostile", false).unwrap());
    let reader_data = yolots_e2e::workspace().join("checkpoint/tests/data");
    let tiny = std::fs::read(fixtures().join("yolov7-tiny.pt")).unwrap();
    // A pickle that would run a shell command if it were unpickled by Python.
    let exploit =
        b"\x80\x02cos\nsystem\nq\x00X\x0c\x00\x00\x00touch /tmp/xq\x01\x85q\x02Rq\x03.".to_vec();
    let mut random = vec![0u8; 4096];
    for (i, b) in random.iter_mut().enumerate() {
        *b = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random.pt", random),
        ("exploit.pt", exploit),
        ("truncated.pt", tiny[..tiny.len() / 3].to_vec()),
        (
            "state-dict.pt",
            std::fs::read(reader_data.join("state-dict.pt")).unwrap(),
        ),
        (
            "unsupported-c3.pt",
            std::fs::read(reader_data.join("unsupported-c3.pt")).unwrap(),
        ),
    ];
    let scratch = tempfile::tempdir().unwrap();
    for (name, bytes) in cases {
        // The code `yolots inspect` gives for the same file.
        let path = scratch.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let out = std::process::Command::new(yolots_e2e::binary())
            .args(["inspect", "--json"])
            .arg(&path)
            .output()
            .unwrap();
        let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let code = inspected["code"].as_str().unwrap();
        let body = problem(client.upload(name, bytes, None).await.unwrap(), 422, code).await;
        assert_eq!(body["detail"], inspected["message"], "{name}");
    }
    let left = files_under(data.path());
    assert!(left.is_empty(), "refused uploads left files: {left:?}");
    // The worker keeps working.
    let job = client
        .create_job(
            &fixtures().join("yolov7-deploy-w25-c3.pt"),
            Some(r#"{"img_size": [160, 160]}"#),
        )
        .await
        .unwrap();
    let job = client
        .wait_final(job["id"].as_str().unwrap(), Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
}

#[tokio::test]
async fn open_mode_hands_browsers_a_session_cookie() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), &["--workers", "0", "--open"])
        .await
        .unwrap();
    let browser = reqwest::Client::builder().build().unwrap();
    let response = browser
        .post(server.url("/api/v1/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("yolots_token=yolots_"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session: serde_json::Value = response.json().await.unwrap();
    let token = session["token"].as_str().unwrap();
    let pair = format!("yolots_token={token}");

    let me: serde_json::Value = browser
        .get(server.url("/api/v1/session"))
        .header("Cookie", &pair)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["owner"]["id"], session["owner"]["id"]);
    assert_eq!(me["owner"]["is_admin"], false);

    // Again with the cookie: the same owner.
    let again = browser
        .post(server.url("/api/v1/sessions"))
        .header("Cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["owner"]["id"], session["owner"]["id"]);

    // The cookie authenticates the API; the bearer token is the same credential.
    let list = browser
        .get(server.url("/api/v1/jobs"))
        .header("Cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let by_bearer = Client::new(&server.base, token);
    assert_eq!(
        by_bearer.get("/api/v1/jobs").send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn service_documents_answer() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), &["--workers", "1"])
        .await
        .unwrap();
    let config: serde_json::Value = reqwest::get(server.url("/api/v1/config"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["max_upload_bytes"], 2u64 << 30);
    assert!(config["limits"]["max_parameters"].as_u64().unwrap() > 37_000_000);
    assert!(
        config["devices"]
            .as_array()
            .unwrap()
            .contains(&"cpu".into())
    );
    assert_eq!(
        config["defaults"]["img_size"],
        serde_json::json!([640, 640])
    );
    assert_eq!(config["defaults"]["mode"], "script");

    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    // The metrics are the operators': an admin token reads them, no one else.
    problem(
        reqwest::get(server.url("/metrics")).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let user = create_token(&db.url, "user", false).unwrap();
    problem(
        server.client(&user).get("/metrics").send().await.unwrap(),
        403,
        "admin_only",
    )
    .await;
    let admin = create_token(&db.url, "monitoring", true).unwrap();
    let metrics = server
        .client(&admin)
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "yolots_jobs{status=\"queued\"} 0",
        "yolots_queue_depth 0",
        "yolots_upload_bytes_total 0",
    ] {
        assert!(metrics.contains(name), "{name}: {metrics}");
    }
    let doc: serde_json::Value = reqwest::get(server.url("/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/v1/jobs/{id}/artifact"]["get"].is_object());
}
