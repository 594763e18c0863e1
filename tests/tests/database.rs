//! PostgreSQL stopped and started again while the server runs: requests fail fast with
//! 503 `database_unavailable` during the outage, and the server and its worker recover
//! without a restart. Uses a throwaway cluster of its own. And the private cluster that
//! setup makes asks every connection for a password, and the service's role is no
//! superuser but owns its tables.

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

/// The private cluster's service URL (`DATABASE_URL` when setup passes it, else
/// `.yolots/database_url`), or `None` when the tests run against a server of the user's own
/// that takes no password (the user's `DATABASE_URL`, which setup does not manage).
fn private_cluster_url() -> Option<String> {
    let url = yolots_e2e::admin_url().unwrap();
    // `postgres://USER:PASSWORD@HOST...`: a colon before the `@` of the user part.
    let has_password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .is_some_and(|(user, _)| user.contains(':'));
    let kept = std::fs::read_to_string(yolots_e2e::workspace().join(".yolots/database_url"))
        .map(|s| s.trim().to_owned())
        .ok();
    (has_password || kept.as_deref() == Some(url.as_str())).then_some(url)
}

#[tokio::test]
async fn the_private_cluster_asks_for_a_password() {
    let Some(url) = private_cluster_url() else {
        yolots_e2e::tool_missing("DATABASE_URL is a server of the user's own, without a password");
        return;
    };
    use sqlx::Connection;
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let database = options.get_database().unwrap_or("postgres").to_owned();
    let same_without = |password: Option<&str>| {
        let bare = sqlx::postgres::PgConnectOptions::new_without_pgpass()
            .host(options.get_host())
            .port(options.get_port())
            .username(options.get_username())
            .database(&database);
        match password {
            Some(password) => bare.password(password),
            None => bare,
        }
    };
    // Without the password, with a wrong one, over TCP: refused.
    for password in [None, Some("not-the-password")] {
        let refused = sqlx::postgres::PgConnection::connect_with(&same_without(password)).await;
        let error = refused
            .err()
            .unwrap_or_else(|| panic!("a connection with password {password:?} was let in"));
        eprintln!("refused ({password:?}): {error}");
    }
    // Over the cluster's socket too, when it is this project's.
    let socket = yolots_e2e::workspace().join(".yolots/pg/run");
    let kept = std::fs::read_to_string(yolots_e2e::workspace().join(".yolots/database_url"));
    if socket.is_dir() && kept.is_ok_and(|k| k.trim() == url) {
        let local = same_without(None).socket(&socket);
        assert!(
            sqlx::postgres::PgConnection::connect_with(&local)
                .await
                .is_err(),
            "a local connection without the password was let in"
        );
    }
    // With it: the service's role, no superuser, owner of every table of its database.
    let mut conn = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
    let (superuser, create_role): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        !superuser && !create_role,
        "the service's role is privileged"
    );
    let (tables, others): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE tableowner <> current_user) \
         FROM pg_tables WHERE schemaname = 'public'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(tables > 0, "no tables: setup applies the migrations");
    assert_eq!(others, 0, "tables owned by another role");
}
