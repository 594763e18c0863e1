//! A bounded property-based run of schemathesis against the generated OpenAPI document:
//! no 5xx answers, and every answer matches the schema. The tool lives in a pinned,
//! cached Python environment that `cargo xtask setup --for-tests` makes; its executable is
//! `YOLOTS_SCHEMATHESIS`. Without it the test says so and passes (outside xtask).

// Tests and their helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use yolots_e2e::{Server, TestDatabase, create_token, exclusive};

#[tokio::test]
async fn schemathesis_finds_no_server_errors_and_no_schema_violations() {
    let Some(tool) = std::env::var_os("YOLOTS_SCHEMATHESIS") else {
        yolots_e2e::tool_missing("YOLOTS_SCHEMATHESIS is not set");
        return;
    };
    let _serial = exclusive().await;
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    // No workers: uploads that get through stay queued, nothing converts.
    let server = Server::start(
        &db.url,
        data.path(),
        &["--workers", "0", "--open", "--max-upload-bytes", "100000"],
    )
    .await
    .unwrap();
    let token = create_token(&db.url, "schemathesis", false).unwrap();
    let report = tempfile::tempdir().unwrap();
    let server_url = server.url("/api/v1/openapi.json");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(tool)
            .arg("run")
            .arg(server_url)
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "25",
                "--workers",
                "2",
                "--request-timeout",
                "20",
                "--seed",
                "1",
                "--suppress-health-check",
                "all",
                // A live stream of a queued job never ends (no workers here).
                "--exclude-path",
                "/api/v1/jobs/{id}/events",
                // Ending the session revokes the run's own token.
                "--exclude-path",
                "/api/v1/sessions/current",
            ])
            .arg("--header")
            .arg(format!("Authorization: Bearer {token}"))
            .current_dir(report.path())
            .env("NO_COLOR", "1")
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "schemathesis failed ({:?})",
        output.status
    );
}
