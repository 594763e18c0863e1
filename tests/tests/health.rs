//! The service starts against a real PostgreSQL and reports libtorch as loaded.

use yolots_e2e::{Server, TestDatabase};

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
