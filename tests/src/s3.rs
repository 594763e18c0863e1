//! A real S3-compatible server for the storage tests: moto's server mode on a free
//! loopback port, started by the test and killed when dropped. `cargo xtask setup
//! --for-tests` installs a pinned moto in the user cache and `cargo xtask test` names its
//! `moto_server` in `YOLOTS_MOTO_SERVER`; without it the tests say so and pass.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::TryStreamExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;

use crate::free_port;

/// Keys every client of the test server uses (moto accepts any).
const KEY_ID: &str = "yolots-test";
const SECRET: &str = "yolots-test-secret";
const REGION: &str = "us-east-1";

/// A running moto server.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
}

impl S3Server {
    /// Starts the server, or `None` (with a note on stderr) when `YOLOTS_MOTO_SERVER` is
    /// not set.
    pub async fn start() -> anyhow::Result<Option<Self>> {
        let Some(exe) = std::env::var_os("YOLOTS_MOTO_SERVER") else {
            crate::tool_missing("YOLOTS_MOTO_SERVER is not set");
            return Ok(None);
        };
        let port = free_port()?;
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", exe.to_string_lossy()))?;
        let server = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        server.wait_ready(Duration::from_secs(60)).await?;
        Ok(Some(server))
    }

    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if reqwest::get(format!("{}/", self.endpoint)).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("moto_server did not answer within {timeout:?}")
    }

    /// Creates a bucket (object_store has no call for it: a plain `PUT /BUCKET`).
    pub async fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("creating bucket {bucket}: {}", response.status());
        }
        Ok(())
    }

    /// The environment a `yolots` process needs to use `s3://BUCKET/PREFIX` here.
    pub fn env(&self, bucket: &str, prefix: &str) -> Vec<(String, String)> {
        [
            ("YOLOTS_STORAGE", format!("s3://{bucket}/{prefix}")),
            ("AWS_ACCESS_KEY_ID", KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// A client of a bucket, to look at what the service stored.
    pub fn store(&self, bucket: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
        Ok(Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_access_key_id(KEY_ID)
                .with_secret_access_key(SECRET)
                .with_region(REGION)
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .build()?,
        ))
    }

    /// Every key under a prefix, sorted.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        let store = self.store(bucket)?;
        let prefix = Path::from(prefix);
        let mut keys: Vec<String> = store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await?;
        keys.sort();
        Ok(keys)
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub async fn pending_multipart_uploads(&self, bucket: &str) -> anyhow::Result<usize> {
        let body = reqwest::get(format!("{}/{bucket}?uploads", self.endpoint))
            .await?
            .text()
            .await?;
        Ok(body.matches("<UploadId>").count())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
