//! The service on an S3-compatible store (moto's server on loopback, a bucket the test
//! creates): uploads stream into it (multipart for files over a part), refused uploads
//! leave no object and no pending multipart upload, workers fetch sources and store
//! artifacts there, downloads serve ranges, deletes remove the objects. Then the scale-out
//! case: an API and three worker processes that share only PostgreSQL and the bucket
//! (each with folders of its own), thirty jobs, workers started and stopped during the
//! run, every job done exactly once.

// Tests and their helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use reqwest::StatusCode;
use sqlx::{Connection, PgConnection};
use yolots_e2e::s3::S3Server;
use yolots_e2e::{
    Client, FAST, Server, TestDatabase, Worker, create_token, exclusive, files_under, fixtures,
    sha256_hex,
};

const BUCKET: &str = "yolots-e2e";
/// Over one 8 MiB part: its upload is a multipart upload.
const MULTIPART: &str = "yolov7-w25-c3.pt";
/// The quickest fixture to convert.
const SMALL: &str = "yolov7-deploy-w25-c3.pt";

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Files under a folder, for the checks that nothing of a job lands on local disk.
fn local_files(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .map(|p| p.display().to_string())
        .collect()
}

#[tokio::test]
async fn uploads_artifacts_ranges_and_deletes_go_through_s3() {
    let Some(s3) = S3Server::start().await.unwrap() else {
        return;
    };
    let _serial = exclusive().await;
    s3.create_bucket(BUCKET).await.unwrap();
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let env = s3.env(BUCKET, "roundtrip");
    // A limit between the two fixtures' sizes: the larger one is refused mid-stream.
    let limit = std::fs::metadata(fixtures().join(MULTIPART)).unwrap().len() + 1_000_000;
    let limit_arg = limit.to_string();
    let mut args = vec!["--workers", "1", "--max-upload-bytes", &limit_arg];
    args.extend_from_slice(FAST);
    let server = Server::start_with_env(&db.url, data.path(), &args, &pairs(&env))
        .await
        .unwrap();
    let token = create_token(&db.url, "s3", false).unwrap();
    let client = server.client(&token);

    // A multipart upload, converted by the embedded worker.
    let source = std::fs::read(fixtures().join(MULTIPART)).unwrap();
    assert!(source.len() > 8 << 20);
    let job = client
        .create_job(
            &fixtures().join(MULTIPART),
            Some(r#"{"img_size": [160, 160]}"#),
        )
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let store = s3.store(BUCKET).unwrap();
    let source_key = format!("roundtrip/jobs/{id}/source.pt");
    let head = store.head(&source_key.as_str().into()).await.unwrap();
    assert_eq!(head.size, source.len() as u64);
    let stored = store
        .get(&source_key.as_str().into())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_hex(&stored), sha256_hex(&source));

    let job = client
        .wait_final(&id, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    let keys = s3.keys(BUCKET, "roundtrip").await.unwrap();
    let artifact_keys: Vec<&String> = keys.iter().filter(|k| k.contains("/artifacts/")).collect();
    assert_eq!(artifact_keys.len(), 1, "{keys:?}");
    assert_eq!(keys.len(), 2, "{keys:?}");

    // The whole artifact, then ranges, then a conditional request.
    let artifact_url = format!("/api/v1/jobs/{id}/artifact");
    let response = client.get(&artifact_url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let artifact = response.bytes().await.unwrap();
    assert_eq!(
        artifact.len() as u64,
        job["artifact"]["size"].as_u64().unwrap()
    );
    assert_eq!(sha256_hex(&artifact), job["artifact"]["sha256"]);
    let response = client
        .get(&artifact_url)
        .header("Range", "bytes=1000-5999")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 1000-5999/{}", artifact.len()).as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), artifact.slice(1000..6000));
    let tail = client
        .get(&artifact_url)
        .header("Range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        tail.bytes().await.unwrap(),
        artifact.slice(artifact.len() - 100..)
    );
    let beyond = client
        .get(&artifact_url)
        .header("Range", format!("bytes={}-", artifact.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let unchanged = client
        .get(&artifact_url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);

    // Refused uploads leave nothing: one over the limit (its multipart upload is aborted
    // after the first part went out) and one that is not a checkpoint.
    let big = std::fs::read(fixtures().join("yolov7-tiny.pt")).unwrap();
    assert!(big.len() as u64 > limit);
    let response = client.upload("big.pt", big, None).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let response = client
        .upload("noise.pt", vec![7u8; 200_000], None)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(s3.keys(BUCKET, "roundtrip").await.unwrap(), keys);
    assert_eq!(s3.pending_multipart_uploads(BUCKET).await.unwrap(), 0);

    // Deleting the job deletes its objects.
    let response = client
        .delete(&format!("/api/v1/jobs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        s3.keys(BUCKET, "roundtrip").await.unwrap(),
        Vec::<String>::new()
    );
    // Nothing of the job ever touched the server's data folder.
    assert_eq!(local_files(data.path()), Vec::<String>::new());
}

/// A worker process with folders of its own (data and scratch).
struct Machine {
    worker: Worker,
    folders: tempfile::TempDir,
}

fn start_machine(db: &TestDatabase, env: &[(String, String)]) -> Machine {
    let folders = tempfile::tempdir().unwrap();
    let data = folders.path().join("data");
    let scratch = folders.path().join("tmp");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let mut env = env.to_vec();
    env.push(("TMPDIR".into(), scratch.display().to_string()));
    let args = [
        "--latency-runs",
        "0",
        "--poll-secs",
        "1",
        "--lease-secs",
        "3",
        "--shutdown-grace-secs",
        "1",
    ];
    let worker = Worker::start_with_env(&db.url, &data, &args, &env).unwrap();
    Machine { worker, folders }
}

async fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Waits until at least `n` jobs succeeded, noting which worker processes ran jobs.
async fn wait_succeeded(
    conn: &mut PgConnection,
    n: i64,
    seen: &mut BTreeSet<String>,
    timeout: Duration,
) {
    let started = Instant::now();
    loop {
        let owners: Vec<Option<String>> =
            sqlx::query_scalar("SELECT lease_owner FROM jobs WHERE status = 'running'")
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        for owner in owners.into_iter().flatten() {
            // host:pid:index
            if let Some(pid) = owner.split(':').nth(1) {
                seen.insert(pid.to_owned());
            }
        }
        let done = count(conn, "SELECT count(*) FROM jobs WHERE status = 'succeeded'").await;
        if done >= n {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "only {done} of {n} jobs succeeded within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn three_workers_sharing_only_postgres_and_s3_do_thirty_jobs_exactly_once() {
    let Some(s3) = S3Server::start().await.unwrap() else {
        return;
    };
    let _serial = exclusive().await;
    let started = Instant::now();
    s3.create_bucket(BUCKET).await.unwrap();
    let db = TestDatabase::create().await.unwrap();
    let env = s3.env(BUCKET, "scale");
    let api_data = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        &db.url,
        api_data.path(),
        &["--workers", "0", "--lease-secs", "3"],
        &pairs(&env),
    )
    .await
    .unwrap();
    let token = create_token(&db.url, "scale", false).unwrap();
    let client = server.client(&token);
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let mut seen = BTreeSet::new();

    // One worker at first; thirty uploads, five at a time, with distinct options so no
    // job reuses another's artifact.
    let mut first = start_machine(&db, &env);
    let bytes = std::fs::read(fixtures().join(SMALL)).unwrap();
    let uploads = futures_util::stream::iter(0..30)
        .map(|i| {
            let client: Client = client.clone();
            let bytes = bytes.clone();
            async move { client.upload_distinct(SMALL, bytes, i).await.unwrap() }
        })
        .buffer_unordered(5);
    let ids: Vec<String> = uploads.collect().await;
    assert_eq!(ids.len(), 30);

    // Scale out to three, then stop the first gracefully (its running job is finished or
    // handed back), kill another mid-run (its lease expires and the job runs again
    // elsewhere), and bring up a replacement.
    wait_succeeded(&mut conn, 2, &mut seen, Duration::from_secs(120)).await;
    let mut second = start_machine(&db, &env);
    let third = start_machine(&db, &env);
    wait_succeeded(&mut conn, 10, &mut seen, Duration::from_secs(180)).await;
    let status = first.worker.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "the first worker exited with {status}");
    let fourth = start_machine(&db, &env);
    wait_succeeded(&mut conn, 18, &mut seen, Duration::from_secs(180)).await;
    second.worker.kill_hard();
    wait_succeeded(&mut conn, 30, &mut seen, Duration::from_secs(240)).await;

    // Every job succeeded once: one `succeeded` event, one artifact object; nothing else
    // is left in the bucket.
    let mut artifacts = BTreeMap::new();
    for id in &ids {
        let job = client.job(id).await.unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
        let events = |status: &str| {
            format!(
                "SELECT count(*) FROM job_events WHERE job_id = '{id}' AND kind = 'status' \
                 AND data->>'status' = '{status}'"
            )
        };
        assert_eq!(count(&mut conn, &events("succeeded")).await, 1, "{id}");
        // A job handed back at shutdown does not count the attempt, so it has one
        // `running` event more than attempts; no job is handed back twice here.
        let running = count(&mut conn, &events("running")).await;
        let attempts = job["attempts"].as_i64().unwrap();
        assert!(
            (attempts..=attempts + 1).contains(&running),
            "{running} running events: {job}"
        );
        let key: String = sqlx::query_scalar("SELECT artifact_key FROM jobs WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        artifacts.insert(format!("scale/{key}"), id.clone());
    }
    assert_eq!(count(&mut conn, "SELECT count(*) FROM jobs").await, 30);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"
        )
        .await,
        0
    );
    let keys = s3.keys(BUCKET, "scale").await.unwrap();
    let stored_artifacts: BTreeSet<&String> =
        keys.iter().filter(|k| k.contains("/artifacts/")).collect();
    let expected: BTreeSet<&String> = artifacts.keys().collect();
    assert_eq!(stored_artifacts, expected);
    assert_eq!(
        keys.iter().filter(|k| k.ends_with("/source.pt")).count(),
        30
    );
    assert_eq!(keys.len(), 60, "{keys:?}");
    assert!(
        seen.len() >= 3,
        "jobs ran in only {} worker processes: {seen:?}",
        seen.len()
    );
    // Nothing was shared on disk: the API's and the running workers' folders hold no
    // files (their scratch folders are removed after each job).
    assert_eq!(local_files(api_data.path()), Vec::<String>::new());
    for machine in [&third, &fourth] {
        assert_eq!(
            local_files(machine.folders.path()),
            Vec::<String>::new(),
            "worker {}",
            machine.worker.pid()
        );
    }
    eprintln!(
        "30 jobs by {} worker processes in {:.1}s",
        seen.len(),
        started.elapsed().as_secs_f64()
    );
}
