//! The service starts against a real PostgreSQL and reports the converter's libtorch,
//! without loading libtorch itself.

// Tests and their helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use yolots_e2e::{Server, TestDatabase};

/// Whether a process has a libtorch library mapped.
fn maps_libtorch(pid: u32) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .any(|l| l.contains("libtorch") || l.contains("libc10"))
}

#[tokio::test]
async fn health_reports_database_and_libtorch() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), &[]).await.unwrap();
    let response = reqwest::get(format!("{}/api/v1/health", server.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["libtorch"], "2.11.0");
    assert!(body["cuda_devices"].is_u64());
    // The version came from the converter: the server never maps libtorch.
    assert!(!maps_libtorch(server.pid()), "the API server maps libtorch");
}

#[test]
fn converter_reports_its_runtime() {
    let out = std::process::Command::new(yolots_e2e::converter_binary())
        .arg("runtime")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(facts["libtorch"], "2.11.0");
    assert!(facts["cuda_devices"].is_u64());
}

#[tokio::test]
async fn migrate_applies_the_schema() {
    let db = TestDatabase::create().await.unwrap();
    let status = std::process::Command::new(yolots_e2e::binary())
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .status()
        .unwrap();
    assert!(status.success());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for table in ["api_tokens", "job_events", "jobs", "owners"] {
        assert!(
            tables.iter().any(|t| t == table),
            "missing table {table}: {tables:?}"
        );
    }
}
