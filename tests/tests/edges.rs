//! The service's edges: options that are not an object or cannot go together, repeated
//! cancels, re-uploads racing a delete, security headers, names from uploads and who may
//! read the metrics.

// Tests and their helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use yolots_e2e::{FAST, Server, TestDatabase, create_token, exclusive, fixtures, free_port};

/// A small fixture that converts in seconds.
const SMALL: &str = "yolov7-deploy-w25-c3.pt";

/// A small real model for uploads that never convert.
fn small_model() -> Vec<u8> {
    std::fs::read(yolots_e2e::workspace().join("checkpoint/tests/data/deploy.pt")).unwrap()
}

/// Checks a problem answer; returns its body.
async fn problem(response: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(response.status(), status, "expected {code}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    body
}

#[tokio::test]
async fn options_are_an_object_and_incompatible_pairs_are_refused() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), &["--workers", "0"])
        .await
        .unwrap();
    let client = server.client(&create_token(&db.url, "options", false).unwrap());
    let positional =
        r#"["torchscript","script","decoded","fp32",true,"none",[160,160],"cpu",0.25,0.45,300]"#;
    for options in [positional, "null", r#""trace""#] {
        let answer = client
            .upload("m.pt", small_model(), Some(options))
            .await
            .unwrap();
        let body = problem(answer, 400, "invalid_options").await;
        assert!(
            body["detail"].as_str().unwrap().contains("JSON object"),
            "{options}: {body}"
        );
    }
    for (options, refused) in [
        (
            r#"{"optimize": "mobile", "precision": "fp16"}"#,
            "precision",
        ),
        (r#"{"format": "onnx", "mode": "trace"}"#, "mode"),
        (r#"{"format": "onnx", "optimize": "freeze"}"#, "optimize"),
    ] {
        let answer = client
            .upload("m.pt", small_model(), Some(options))
            .await
            .unwrap();
        let body = problem(answer, 400, "invalid_options").await;
        assert_eq!(body["option"], refused, "{options}: {body}");
        assert!(
            body["detail"].as_str().unwrap().starts_with(refused),
            "{options}: {body}"
        );
    }
    // Nothing was queued.
    let jobs: serde_json::Value = client
        .get("/api/v1/jobs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["total"], 0, "{jobs}");
    // The same options, each alone, are fine.
    let answer = client
        .upload(
            "m.pt",
            small_model(),
            Some(r#"{"optimize": "mobile", "img_size": [160, 160]}"#),
        )
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
}

#[tokio::test]
async fn many_cancels_of_a_running_job_log_one_cancellation() {
    let _serial = exclusive().await;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    // Heartbeats every 10 s: the cancels all arrive before the worker notices them.
    let server = Server::start(
        &db.url,
        data.path(),
        &[
            "--workers",
            "1",
            "--allow-test-faults",
            "--latency-runs",
            "0",
        ],
    )
    .await
    .unwrap();
    let client = server.client(&create_token(&db.url, "cancel", false).unwrap());
    let job = client
        .create_job(
            &fixtures().join(SMALL),
            Some(r#"{"img_size": [160, 160], "test_fault": "hang"}"#),
        )
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    client
        .wait_until(&id, Duration::from_secs(60), |job| {
            job["status"] == "running"
        })
        .await
        .unwrap();
    let answers = futures_util::future::join_all((0..50).map(|_| {
        let client = client.clone();
        let path = format!("/api/v1/jobs/{id}");
        async move { client.delete(&path).send().await.unwrap().status() }
    }))
    .await;
    assert!(answers.iter().all(|s| *s == 202), "{answers:?}");
    let job = client
        .wait_final(&id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(job["status"], "cancelled", "{job}");
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let requested: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_events WHERE job_id = $1::uuid AND kind = 'status' \
         AND data->>'status' = 'running' AND (data->>'cancel_requested')::boolean",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(requested, 1);
}

/// Rounds of a re-upload racing the delete of the job it would reuse.
const RACE_ROUNDS: usize = 300;

#[tokio::test]
async fn re_uploads_racing_the_delete_of_their_source_never_fail() {
    let _serial = exclusive().await;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), &["--workers", "1", FAST[0], FAST[1]])
        .await
        .unwrap();
    let client = server.client(&create_token(&db.url, "race", false).unwrap());
    let bytes = std::fs::read(fixtures().join(SMALL)).unwrap();
    let options = r#"{"img_size": [160, 160]}"#;
    let upload = |client: yolots_e2e::Client, bytes: Vec<u8>| async move {
        let answer = client.upload(SMALL, bytes, Some(options)).await.unwrap();
        let status = answer.status().as_u16();
        let body: serde_json::Value = answer.json().await.unwrap();
        (status, body)
    };
    let first = client
        .create_job(&fixtures().join(SMALL), Some(options))
        .await
        .unwrap();
    let first = client
        .wait_final(first["id"].as_str().unwrap(), Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(first["status"], "succeeded", "{first}");
    let (mut reused, mut fresh) = (0, 0);
    for round in 0..RACE_ROUNDS {
        // The job the next upload would reuse (the newest with this source and options).
        let (status, target) = upload(client.clone(), bytes.clone()).await;
        assert_eq!(status, 201, "round {round}: {target}");
        if target["status"] != "succeeded" {
            // An earlier round lost its source to the delete: it converts like any job.
            client
                .wait_final(target["id"].as_str().unwrap(), Duration::from_secs(300))
                .await
                .unwrap();
        }
        let path = format!("/api/v1/jobs/{}", target["id"].as_str().unwrap());
        let (again, deleted) = tokio::join!(upload(client.clone(), bytes.clone()), async {
            client.delete(&path).send().await.unwrap().status().as_u16()
        });
        assert_eq!(again.0, 201, "round {round}: {}", again.1);
        assert_eq!(deleted, 204, "round {round}");
        match again.1["status"].as_str() {
            Some("succeeded") => reused += 1,
            _ => {
                fresh += 1;
                client
                    .wait_final(again.1["id"].as_str().unwrap(), Duration::from_secs(300))
                    .await
                    .unwrap();
            }
        }
        // A reused artifact is still there, whichever came first.
        if again.1["status"] == "succeeded" {
            let artifact = client
                .get(&format!(
                    "/api/v1/jobs/{}/artifact",
                    again.1["id"].as_str().unwrap()
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(artifact.status(), 200, "round {round}");
        }
    }
    eprintln!("{RACE_ROUNDS} rounds: {reused} reused, {fresh} converted afresh");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), &["--workers", "0"])
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let token = create_token(&db.url, "headers", false).unwrap();
    let mut answers = Vec::new();
    for path in [
        "/",
        "/index.html",
        "/main.js",
        "/no-such-page",
        "/readyz",
        "/metrics",
        "/api/v1/health",
        "/api/v1/openapi.json",
        "/api/v1/jobs",
    ] {
        answers.push((path, http.get(server.url(path)).send().await.unwrap()));
    }
    answers.push((
        "/api/v1/jobs (token)",
        server
            .client(&token)
            .get("/api/v1/jobs")
            .send()
            .await
            .unwrap(),
    ));
    for (path, answer) in &answers {
        let headers = answer.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("'wasm-unsafe-eval'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    }
    // The page's own script is a file: the policy allows no inline script.
    let index = http
        .get(server.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    if index.contains("<html") {
        assert!(index.contains(r#"<script type="module" src="main.js">"#));
        assert!(!index.contains("<script type=\"module\">"), "{index}");
    }
}

#[tokio::test]
async fn names_from_uploads_lose_control_bidi_and_zero_width_characters() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), &["--workers", "0"])
        .await
        .unwrap();
    let client = server.client(&create_token(&db.url, "names", false).unwrap());
    // The name as curl sends it: raw UTF-8 in the quoted filename.
    let name = "m\u{e9}\u{202e}txt\u{200b}.\u{2066}pt";
    let mut body = format!(
        "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend(small_model());
    body.extend(b"\r\n--XYZ--\r\n");
    let answer = client
        .post("/api/v1/jobs")
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let job: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(job["source"]["name"], "m\u{e9}txt.pt", "{job}");
    let shown = client.job(job["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(shown["source"]["name"], "m\u{e9}txt.pt", "{shown}");
}

#[tokio::test]
async fn metrics_need_an_admin_token_or_their_own_address() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let metrics_port = free_port().unwrap();
    let metrics_bind = format!("127.0.0.1:{metrics_port}");
    let server = Server::start(
        &db.url,
        data.path(),
        &["--workers", "0", "--metrics-bind", &metrics_bind],
    )
    .await
    .unwrap();
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
    let admin = create_token(&db.url, "admin", true).unwrap();
    let answer = server.client(&admin).get("/metrics").send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.text().await.unwrap().contains("yolots_queue_depth"));
    // Its own address answers without a token, and serves nothing else.
    let open = reqwest::get(format!("http://{metrics_bind}/metrics"))
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    assert_eq!(open.headers()["x-content-type-options"], "nosniff");
    assert!(open.text().await.unwrap().contains("yolots_queue_depth"));
    let other = reqwest::get(format!("http://{metrics_bind}/api/v1/jobs"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

/// The peak resident memory (VmHWM, bytes) of the process `pid`, if it still runs.
fn peak_resident(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

/// The conversion processes (`yolots-converter`) started by the process `parent`.
fn converters_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid ...`; comm may hold spaces, so read after the `)`.
                let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
                stat.contains("(yolots-convert")
                    && after.split_whitespace().nth(1) == Some(&parent.to_string())
            })
        })
        .collect()
}

#[tokio::test]
async fn an_oversized_conversion_ends_resource_exceeded_once() {
    let _serial = exclusive().await;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    // 768 MiB and 8 times the 5 MB checkpoint: a 4096x4096 conversion of the small model
    // needs several GiB, one at 160x160 about 250 MB.
    let bound_mib: u64 = 768;
    let server = Server::start(
        &db.url,
        data.path(),
        &[
            "--workers",
            "1",
            "--latency-runs",
            "0",
            "--device",
            "cpu",
            "--conversion-memory-mb",
            &bound_mib.to_string(),
            "--conversion-memory-mb-per-megapixel",
            "0",
            "--max-pixels",
            &(4096 * 4096).to_string(),
        ],
    )
    .await
    .unwrap();
    let client = server.client(&create_token(&db.url, "bounds", false).unwrap());
    // Past the pixel ceiling: refused before any job exists, naming the option.
    let answer = client
        .upload("m.pt", small_model(), Some(r#"{"img_size": [8192, 4096]}"#))
        .await
        .unwrap();
    let body = problem(answer, 400, "invalid_options").await;
    assert_eq!(body["option"], "img_size", "{body}");
    let config: serde_json::Value = client
        .get("/api/v1/config")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["limits"]["max_pixels"], 4096 * 4096, "{config}");

    // Within the ceiling but beyond the memory bound.
    let started = std::time::Instant::now();
    let job = client
        .create_job(
            &fixtures().join(SMALL),
            Some(r#"{"img_size": [4096, 4096]}"#),
        )
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let watcher = {
        let server_pid = server.pid();
        tokio::task::spawn_blocking(move || {
            let mut peak = 0u64;
            let until = std::time::Instant::now() + Duration::from_secs(120);
            while std::time::Instant::now() < until {
                for pid in converters_of(server_pid) {
                    peak = peak.max(peak_resident(pid).unwrap_or(0));
                }
                if peak > 0 && converters_of(server_pid).is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let done = client
        .wait_final(&id, Duration::from_secs(120))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let peak = watcher.await.unwrap();
    println!(
        "4096x4096 under a {bound_mib} MiB bound: resource_exceeded after {:.1} s, \
         converter peak resident {} MiB",
        elapsed.as_secs_f64(),
        peak >> 20
    );
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "resource_exceeded", "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("img_size"),
        "{done}"
    );
    // Not retried: one attempt, and it stays failed.
    assert_eq!(done["attempts"], 1, "{done}");
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    // Resident memory stayed near the bound (the bound counts the data segment; the
    // resident figure adds the libraries' code).
    assert!(
        peak < (bound_mib + 40 + 512) << 20,
        "peak {} MiB",
        peak >> 20
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = client.job(&id).await.unwrap();
    assert_eq!(
        (later["status"].as_str(), later["attempts"].as_i64()),
        (Some("failed"), Some(1)),
        "{later}"
    );

    // The same bound lets an ordinary conversion through.
    let job = client
        .create_job(&fixtures().join(SMALL), Some(r#"{"img_size": [160, 160]}"#))
        .await
        .unwrap();
    let done = client
        .wait_final(job["id"].as_str().unwrap(), Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
}

#[tokio::test]
async fn a_device_no_worker_has_is_refused() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    // One worker, on the CPU.
    let server = Server::start(&db.url, data.path(), &["--workers", "1", "--device", "cpu"])
        .await
        .unwrap();
    let client = server.client(&create_token(&db.url, "devices", false).unwrap());
    for device in ["cuda:99", "cuda:0"] {
        let options = format!(r#"{{"device": "{device}", "img_size": [160, 160]}}"#);
        let answer = client
            .upload("m.pt", small_model(), Some(&options))
            .await
            .unwrap();
        let body = problem(answer, 422, "device_unavailable").await;
        assert_eq!(body["option"], "device", "{body}");
        assert!(body["detail"].as_str().unwrap().contains(device), "{body}");
    }
    // Nothing waits in the queue for a GPU that is not there.
    let jobs: serde_json::Value = client
        .get("/api/v1/jobs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["total"], 0, "{jobs}");
    for options in [r#"{"device": "cpu"}"#, r#"{"device": "auto"}"#] {
        let answer = client
            .upload("m.pt", small_model(), Some(options))
            .await
            .unwrap();
        assert_eq!(answer.status(), 201, "{options}");
    }
}

/// A form with the small model, as the page uploads it.
fn upload_form() -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(small_model()).file_name("m.pt"),
    )
}

/// The `yolots_token=...` pair of a response's session cookie, and the whole header.
fn session_cookie(response: &reqwest::Response) -> (String, String) {
    let header = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("yolots_token="))
        .expect("no session cookie");
    let pair = header.split(';').next().unwrap().to_owned();
    (pair, header)
}

#[tokio::test]
async fn cross_site_requests_are_refused_and_tokens_end() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), &["--workers", "0", "--open"])
        .await
        .unwrap();
    let port = port_of(&server);
    let own = format!("http://127.0.0.1:{port}");
    // A page on another port of the same host: the same site to SameSite, another origin.
    let other = format!("http://127.0.0.1:{}", port + 1);
    let http = reqwest::Client::new();
    let answer = http
        .post(server.url("/api/v1/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let (cookie, header) = session_cookie(&answer);
    assert!(!header.contains("Secure"), "{header}");
    assert!(header.contains("Max-Age=2592000"), "30 days: {header}");

    // Uploads with the cookie: refused from the other origin, by Origin or Sec-Fetch-Site.
    for (name, value) in [("origin", other.as_str()), ("sec-fetch-site", "same-site")] {
        let answer = http
            .post(server.url("/api/v1/jobs"))
            .header("cookie", &cookie)
            .header(name, value)
            .multipart(upload_form())
            .send()
            .await
            .unwrap();
        let body = problem(answer, 403, "cross_site_request").await;
        assert!(
            body["detail"].as_str().unwrap().contains("cookie"),
            "{body}"
        );
    }
    let answer = http
        .post(server.url("/api/v1/sessions"))
        .header("origin", &other)
        .send()
        .await
        .unwrap();
    problem(answer, 403, "cross_site_request").await;
    // From its own page, the same upload is taken; reading is never refused.
    let answer = http
        .post(server.url("/api/v1/jobs"))
        .header("cookie", &cookie)
        .header("origin", &own)
        .header("sec-fetch-site", "same-origin")
        .multipart(upload_form())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let answer = http
        .get(server.url("/api/v1/jobs"))
        .header("cookie", &cookie)
        .header("origin", &other)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // A bearer token is a program's: no browser sends it on its own.
    let token = create_token(&db.url, "program", false).unwrap();
    let answer = server
        .client(&token)
        .post("/api/v1/jobs")
        .header("origin", &other)
        .multipart(upload_form())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);

    // Ending the session: refused from the other origin, then done from its own.
    let end = |origin: &str| {
        http.delete(server.url("/api/v1/sessions/current"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .send()
    };
    problem(end(&other).await.unwrap(), 403, "cross_site_request").await;
    let answer = end(&own).await.unwrap();
    assert_eq!(answer.status(), 204);
    let (cleared, _) = session_cookie(&answer);
    assert_eq!(cleared, "yolots_token=");
    let answer = http
        .get(server.url("/api/v1/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    problem(answer, 401, "invalid_token").await;

    // A token unused for longer than the time to live (30 days) has expired.
    let client = server.client(&token);
    assert_eq!(
        client.get("/api/v1/session").send().await.unwrap().status(),
        200
    );
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query(
        "UPDATE api_tokens SET created_at = now() - interval '31 days', \
         last_used_at = now() - interval '31 days' WHERE name = 'cli'",
    )
    .execute(&pool)
    .await
    .unwrap();
    problem(
        client.get("/api/v1/session").send().await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    // ... and one used 29 days ago has not.
    sqlx::query("UPDATE api_tokens SET last_used_at = now() - interval '29 days'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        client.get("/api/v1/session").send().await.unwrap().status(),
        200
    );

    // `yolots token revoke`: one token read from stdin, or every token of an owner.
    let revoke = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(yolots_e2e::binary())
            .args(["token", "revoke"])
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, said) = revoke(&["-"], &token);
    assert!(ok, "{said}");
    problem(
        client.get("/api/v1/session").send().await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    let (ok, said) = revoke(&["-"], &token);
    assert!(!ok, "a revoked token revoked again: {said}");
    let first = create_token(&db.url, "team", false).unwrap();
    let second = create_token(&db.url, "team", false).unwrap();
    let (ok, said) = revoke(&["--owner", "team"], "");
    assert!(ok && said.contains("2 tokens"), "{said}");
    for token in [first, second] {
        problem(
            server
                .client(&token)
                .get("/api/v1/session")
                .send()
                .await
                .unwrap(),
            401,
            "invalid_token",
        )
        .await;
    }
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_an_https_address() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let public = "https://yolots.example.test";
    let server = Server::start(
        &db.url,
        data.path(),
        &[
            "--workers",
            "0",
            "--open",
            "--public-url",
            public,
            "--token-ttl-days",
            "7",
        ],
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let answer = http
        .post(server.url("/api/v1/sessions"))
        .header("origin", public)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let (cookie, header) = session_cookie(&answer);
    assert!(header.contains("Secure"), "{header}");
    assert!(header.contains("Max-Age=604800"), "7 days: {header}");
    // The public address is this server's own origin (a proxy passes the host through or not).
    let answer = http
        .delete(server.url("/api/v1/sessions/current"))
        .header("cookie", &cookie)
        .header("origin", public)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
}

/// The head of a multipart upload sent by hand, with its body to follow chunked.
fn chunked_upload_head(port: u16, token: &str) -> String {
    format!(
        "POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary=XYZ\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
}

/// One chunk of a chunked body.
fn chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

/// The port of a server's base address.
fn port_of(server: &Server) -> u16 {
    server.base.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_stalled_upload_times_out() {
    use tokio::io::AsyncWriteExt;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &db.url,
        data.path(),
        &["--workers", "0", "--body-idle-timeout-secs", "2"],
    )
    .await
    .unwrap();
    let token = create_token(&db.url, "stall", false).unwrap();
    let port = port_of(&server);
    // Several connections send the head and part of a file, then nothing.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut request = chunked_upload_head(port, &token).into_bytes();
        request.extend(chunk(
            b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.pt\"\r\n\r\n",
        ));
        request.extend(chunk(&vec![7u8; 256 << 10]));
        stream.write_all(&request).await.unwrap();
        stalled.push(stream);
    }
    let started = std::time::Instant::now();
    for mut stream in stalled {
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            read_until(&mut stream, "request_timeout"),
        )
        .await
        .expect("no answer to a stalled upload");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    // Nothing of them was kept, and the server still answers.
    assert!(
        yolots_e2e::files_under(data.path())
            .iter()
            .all(|p| !p.to_string_lossy().ends_with("source.pt")),
        "{:?}",
        yolots_e2e::files_under(data.path())
    );
    let client = server.client(&token);
    let answer = client.upload("m.pt", small_model(), None).await.unwrap();
    assert_eq!(answer.status(), 201);
}

#[tokio::test]
async fn an_endless_part_is_cut_at_the_body_limit() {
    use tokio::io::AsyncWriteExt;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &db.url,
        data.path(),
        &["--workers", "0", "--max-upload-bytes", "1000000"],
    )
    .await
    .unwrap();
    let token = create_token(&db.url, "endless", false).unwrap();
    let port = port_of(&server);
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // A part that is not the file, streamed without end (up to 64 GiB here: a minute at
    // least on loopback).
    let sender = tokio::spawn(async move {
        let mut head = chunked_upload_head(port, &token).into_bytes();
        head.extend(chunk(
            b"--XYZ\r\nContent-Disposition: form-data; name=\"junk\"\r\n\r\n",
        ));
        writer.write_all(&head).await?;
        let piece = chunk(&vec![b'x'; 64 << 10]);
        let mut sent = 0u64;
        while sent < 64 << 30 {
            writer.write_all(&piece).await?;
            sent += 64 << 10;
        }
        Ok::<u64, std::io::Error>(sent)
    });
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        read_until(&mut reader, "upload_too_large"),
    )
    .await
    .expect("no answer to an endless part");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // The server stops reading soon after (what arrives while the answer goes out is
    // dropped for at most the disconnect timeout): the sender is cut off long before the end.
    let sent = tokio::time::timeout(Duration::from_secs(20), sender)
        .await
        .expect("the server went on reading the endless part")
        .unwrap();
    assert!(sent.is_err(), "the whole endless part was read: {sent:?}");
}

#[tokio::test]
async fn uploads_in_flight_are_bounded_in_all_and_per_owner() {
    use tokio::io::AsyncWriteExt;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &db.url,
        data.path(),
        &[
            "--workers",
            "0",
            "--max-uploads-in-flight",
            "2",
            "--max-uploads-in-flight-per-owner",
            "1",
            "--body-idle-timeout-secs",
            "3",
        ],
    )
    .await
    .unwrap();
    let port = port_of(&server);
    let token = |name: &str| create_token(&db.url, name, false).unwrap();
    let (a, b, c) = (token("a"), token("b"), token("c"));
    // An upload that sends its head and part of its file, then nothing (until the idle
    // timeout ends it).
    let stall = |token: String| async move {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut request = chunked_upload_head(port, &token).into_bytes();
        request.extend(chunk(
            b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.pt\"\r\n\r\n",
        ));
        request.extend(chunk(&[7u8; 1024]));
        stream.write_all(&request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream
    };
    let upload = |token: &str| {
        let client = server.client(token);
        async move { client.upload("m.pt", small_model(), None).await.unwrap() }
    };
    let first = stall(a.clone()).await;
    // The owner's one upload is in flight: another of its own waits.
    let answer = upload(&a).await;
    assert_eq!(answer.headers()["retry-after"], "5");
    let body = problem(answer, 429, "too_many_uploads").await;
    assert!(
        body["detail"].as_str().unwrap().contains("you are"),
        "{body}"
    );
    // Another owner's is taken.
    assert_eq!(upload(&b).await.status(), 201);
    // Two in flight: the server's most.
    let second = stall(c).await;
    let body = problem(upload(&b).await, 429, "too_many_uploads").await;
    assert!(
        body["detail"].as_str().unwrap().contains("server"),
        "{body}"
    );
    // When the stalled ones end, their places come back.
    for mut stream in [first, second] {
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            read_until(&mut stream, "request_timeout"),
        )
        .await
        .expect("no answer to a stalled upload");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    assert_eq!(upload(&a).await.status(), 201);
    assert_eq!(upload(&b).await.status(), 201);
}

/// Reads an answer until it holds `needle` (or the connection ends).
async fn read_until(stream: &mut (impl tokio::io::AsyncRead + Unpin), needle: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains(needle) {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}
