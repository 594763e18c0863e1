//! The queue under load and under faults: concurrent uploads with several worker
//! processes, a worker killed mid-conversion, conversions that abort or hang, cancellation
//! of a running job, graceful shutdown.

// Tests and their helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use yolots_e2e::{
    Client, FAST, Server, TestDatabase, Worker, create_token, exclusive, files_under, fixtures,
};

const SMALL: &str = "yolov7-deploy-w25-c3.pt";

async fn connect(db: &TestDatabase) -> PgConnection {
    PgConnection::connect(&db.url).await.unwrap()
}

/// Status events of a job with this status.
async fn status_events(conn: &mut PgConnection, job: &str, status: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM job_events WHERE job_id = $1::uuid AND kind = 'status' \
         AND data->>'status' = $2",
    )
    .bind(job)
    .bind(status)
    .fetch_one(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn twenty_concurrent_uploads_two_workers_each_converted_once() {
    let _serial = exclusive().await;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), &["--workers", "0"])
        .await
        .unwrap();
    let worker_args = ["--latency-runs", "0", "--poll-secs", "2"];
    let _a = Worker::start(&db.url, data.path(), &worker_args).unwrap();
    let _b = Worker::start(&db.url, data.path(), &worker_args).unwrap();
    let token = create_token(&db.url, "load", false).unwrap();
    let client = server.client(&token);
    let bytes = std::fs::read(fixtures().join(SMALL)).unwrap();

    // Distinct options, so no job reuses another's artifact.
    let uploads = (0..20).map(|i| {
        let client = client.clone();
        let bytes = bytes.clone();
        async move { client.upload_distinct(SMALL, bytes, i).await.unwrap() }
    });
    let ids: Vec<String> = futures_util::future::join_all(uploads).await;

    let mut conn = connect(&db).await;
    for id in &ids {
        let job = client
            .wait_final(id, Duration::from_secs(900))
            .await
            .unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["attempts"], 1, "{job}");
        assert_eq!(status_events(&mut conn, id, "running").await, 1, "{id}");
        assert_eq!(status_events(&mut conn, id, "succeeded").await, 1, "{id}");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 20);
    let busy: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(busy, 0);
    let artifacts = files_under(data.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/artifacts/"))
        .count();
    assert_eq!(artifacts, 20);
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
    assert!(metrics.contains("yolots_queue_depth 0"), "{metrics}");
    assert!(
        metrics.contains("yolots_jobs{status=\"succeeded\"} 20"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_killed_worker_loses_its_job_to_the_other_one() {
    let _serial = exclusive().await;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let lease = ["--lease-secs", "3"];
    let server = Server::start(
        &db.url,
        data.path(),
        &["--workers", "0", "--allow-test-faults", lease[0], lease[1]],
    )
    .await
    .unwrap();
    let args = [
        "--latency-runs",
        "0",
        "--allow-test-faults",
        lease[0],
        lease[1],
        "--poll-secs",
        "1",
    ];
    let mut workers = [
        Worker::start(&db.url, data.path(), &args).unwrap(),
        Worker::start(&db.url, data.path(), &args).unwrap(),
    ];
    let token = create_token(&db.url, "kill", false).unwrap();
    let client = server.client(&token);
    let job = client
        .create_job(
            &fixtures().join(SMALL),
            Some(r#"{"img_size": [160, 160], "test_fault": "slow"}"#),
        )
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();

    // Mid-conversion: the slow fault holds the child in `building` for a few seconds.
    client
        .wait_until(&id, Duration::from_secs(120), |job| {
            job["stage"] == "building"
        })
        .await
        .unwrap();
    let mut conn = connect(&db).await;
    let owner: String = sqlx::query_scalar("SELECT lease_owner FROM jobs WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let pid: u32 = owner.split(':').nth(1).unwrap().parse().unwrap();
    let index = workers.iter().position(|w| w.pid() == pid).unwrap();
    let killed_at = Instant::now();
    workers[index].kill_hard();

    let job = client
        .wait_final(&id, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    assert!(
        killed_at.elapsed() >= Duration::from_secs(2),
        "requeued before the lease expired"
    );
    assert_eq!(status_events(&mut conn, &id, "running").await, 2);
    assert_eq!(status_events(&mut conn, &id, "succeeded").await, 1);
    let requeued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_events WHERE job_id = $1::uuid AND kind = 'status' \
         AND data->>'status' = 'queued' AND data->'error'->>'code' = 'lease_expired'",
    )
    .bind(&id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(requeued, 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    let artifacts: Vec<_> = files_under(data.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/artifacts/"))
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let download = client
        .get(&format!("/api/v1/jobs/{id}/artifact"))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
}

#[tokio::test]
async fn crashing_and_hanging_conversions_fail_and_the_worker_goes_on() {
    let _serial = exclusive().await;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut args = FAST.to_vec();
    args.extend([
        "--allow-test-faults",
        "--max-attempts",
        "2",
        "--retry-backoff-secs",
        "0.2",
        "--job-timeout-secs",
        "30",
        "--poll-secs",
        "1",
    ]);
    let server = Server::start(&db.url, data.path(), &args).await.unwrap();
    let token = create_token(&db.url, "faults", false).unwrap();
    let client = server.client(&token);
    let path = fixtures().join(SMALL);

    let abort = client
        .create_job(
            &path,
            Some(r#"{"img_size": [160, 160], "test_fault": "abort"}"#),
        )
        .await
        .unwrap();
    let hang = client
        .create_job(
            &path,
            Some(r#"{"img_size": [160, 160], "test_fault": "hang"}"#),
        )
        .await
        .unwrap();
    let good = client
        .create_job(&path, Some(r#"{"img_size": [160, 160]}"#))
        .await
        .unwrap();

    let abort = client
        .wait_final(abort["id"].as_str().unwrap(), Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(abort["status"], "failed", "{abort}");
    assert_eq!(abort["attempts"], 2, "retried once: {abort}");
    assert_eq!(abort["error"]["code"], "conversion_crashed");
    assert!(
        abort["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SIGABRT"),
        "{abort}"
    );

    let hang = client
        .wait_final(hang["id"].as_str().unwrap(), Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(hang["status"], "failed", "{hang}");
    assert_eq!(hang["attempts"], 1);
    assert_eq!(hang["error"]["code"], "timeout");

    let good = client
        .wait_final(good["id"].as_str().unwrap(), Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(good["status"], "succeeded", "{good}");
    let health = reqwest::get(server.url("/api/v1/health")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn cancelling_a_running_job_stops_it_and_retry_runs_it_again() {
    let _serial = exclusive().await;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut args = FAST.to_vec();
    args.extend(["--allow-test-faults", "--lease-secs", "3"]);
    let server = Server::start(&db.url, data.path(), &args).await.unwrap();
    let token = create_token(&db.url, "cancel", false).unwrap();
    let client = server.client(&token);
    let job = client
        .create_job(
            &fixtures().join(SMALL),
            Some(r#"{"img_size": [160, 160], "test_fault": "slow"}"#),
        )
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    client
        .wait_until(&id, Duration::from_secs(120), |job| {
            job["stage"] == "building"
        })
        .await
        .unwrap();
    let asked = Instant::now();
    let response = client
        .delete(&format!("/api/v1/jobs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["cancel_requested"], true);
    let job = client
        .wait_final(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(job["status"], "cancelled", "{job}");
    // One heartbeat is a third of the lease.
    assert!(
        asked.elapsed() < Duration::from_millis(2500),
        "{:?}",
        asked.elapsed()
    );

    let retried = client
        .post(&format!("/api/v1/jobs/{id}/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 202);
    let job = client
        .wait_final(&id, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    let again = client
        .post(&format!("/api/v1/jobs/{id}/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn a_stopping_server_hands_its_running_job_back() {
    let _serial = exclusive().await;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut args = FAST.to_vec();
    args.extend(["--allow-test-faults", "--shutdown-grace-secs", "0.5"]);
    let mut server = Server::start(&db.url, data.path(), &args).await.unwrap();
    let token = create_token(&db.url, "stop", false).unwrap();
    let client: Client = server.client(&token);
    let job = client
        .create_job(
            &fixtures().join(SMALL),
            Some(r#"{"img_size": [160, 160], "test_fault": "hang"}"#),
        )
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    client
        .wait_until(&id, Duration::from_secs(120), |job| {
            job["stage"] == "building"
        })
        .await
        .unwrap();
    let status = server.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status:?}");
    let mut conn = connect(&db).await;
    let (state, attempts, lease): (String, i32, Option<String>) =
        sqlx::query_as("SELECT status::text, attempts, lease_owner FROM jobs WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(state, "queued");
    assert_eq!(attempts, 0);
    assert_eq!(lease, None);
}
