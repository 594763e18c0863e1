//! PostgreSQL stopped and started again while the server runs: requests fail fast with
//! 503 `database_unavailable` during the outage, and the server and its worker recover
//! without a restart. Uses a throwaway cluster of its own.

// Tests and their helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use yolots_e2e::{FAST, PgCluster, Server, create_token, exclusive, fixtures};

#[tokio::test]
async fn the_service_survives_a_database_restart() {
    let _serial = exclusive().await;
    let cluster = PgCluster::start().unwrap();
    let url = cluster.url();
    let data = tempfile::tempdir().unwrap();
    let mut args = FAST.to_vec();
    args.extend(["--poll-secs", "1"]);
    let server = Server::start(&url, data.path(), &args).await.unwrap();
    let token = create_token(&url, "restart", false).unwrap();
    let client = server.client(&token);
    let path = fixtures().join("yolov7-deploy-w25-c3.pt");
    let before = client
        .create_job(&path, Some(r#"{"img_size": [160, 160]}"#))
        .await
        .unwrap();
    let before = client
        .wait_final(before["id"].as_str().unwrap(), Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(before["status"], "succeeded");

    cluster.down().unwrap();
    for path in [
        "/api/v1/jobs",
        "/api/v1/session",
        "/api/v1/health",
        "/readyz",
    ] {
        for _ in 0..3 {
            let started = Instant::now();
            let response = client.get(path).send().await.unwrap();
            assert_eq!(response.status(), 503, "{path}");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{path} took {:?}",
                started.elapsed()
            );
            if path.starts_with("/api/v1/j") {
                assert_eq!(
                    response.headers()["content-type"],
                    "application/problem+json"
                );
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["code"], "database_unavailable");
            }
        }
    }
    // The answer may come before the body is sent; then the connection just closes.
    if let Ok(upload) = client
        .upload("x.pt", std::fs::read(&path).unwrap(), None)
        .await
    {
        assert_eq!(upload.status(), 503);
    }

    cluster.up().unwrap();
    let started = Instant::now();
    loop {
        let response = client.get("/api/v1/jobs").send().await.unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no recovery: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The worker recovered too.
    let after = client
        .create_job(&path, Some(r#"{"img_size": [160, 160], "conf": 0.3}"#))
        .await
        .unwrap();
    let after = client
        .wait_final(after["id"].as_str().unwrap(), Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(after["status"], "succeeded", "{after}");
    let events = client
        .get(&format!(
            "/api/v1/jobs/{}/events",
            after["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains("event: end"));
}
