//! An S3-compatible bucket as the object store, configured the way AWS tools are: the
//! standard `AWS_*` variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL` for MinIO-style stores,
//! `AWS_ALLOW_HTTP`, ...), or the instance's role when no key is given.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, RetryConfig};

use super::StorageError;

/// Opens a bucket (and a prefix inside it). Nothing is sent yet: a wrong endpoint or key
/// shows at the first request.
pub fn open(bucket: &str, prefix: Option<&str>) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        // Fail an upload or a download within a minute when the store is down, rather
        // than the three minutes of retries object_store defaults to.
        .with_retry(RetryConfig {
            max_retries: 5,
            retry_timeout: Duration::from_secs(60),
            ..RetryConfig::default()
        });
    // Plain HTTP is refused unless `AWS_ALLOW_HTTP=true`, except to a store on this very
    // machine (a test server, a local MinIO), where TLS protects nothing.
    let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .or_else(|_| std::env::var("AWS_ENDPOINT"))
        .ok();
    if endpoint.as_deref().is_some_and(is_loopback_http) {
        builder = builder.with_allow_http(true);
    } else if let Some(endpoint) = endpoint.as_deref()
        && refused_plain_http(endpoint, std::env::var("AWS_ALLOW_HTTP").ok().as_deref())
    {
        // object_store would refuse every request; say so now, not at the first upload.
        return Err(StorageError::Config(format!(
            "the S3 endpoint {endpoint} is plain HTTP: set AWS_ALLOW_HTTP=true to allow it \
             (or use https://)"
        )));
    }
    let store = builder.build()?;
    Ok(match prefix {
        Some(prefix) => Arc::new(PrefixStore::new(store, prefix)),
        None => Arc::new(store),
    })
}

/// Whether object_store would refuse this endpoint: plain HTTP (and not to loopback,
/// which [`open`] allows) while `AWS_ALLOW_HTTP` is not true (read the way object_store
/// reads its booleans).
fn refused_plain_http(endpoint: &str, allow_http: Option<&str>) -> bool {
    let plain = endpoint
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"));
    let allowed = allow_http.is_some_and(|value| {
        matches!(
            value.to_ascii_lowercase().as_str(),
            "1" | "true" | "on" | "yes" | "y"
        )
    });
    plain && !is_loopback_http(endpoint) && !allowed
}

/// Whether an endpoint is `http://` to a loopback address (`localhost`, 127.0.0.0/8, ::1).
fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        // [::1]:9000
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_endpoints_get_plain_http() {
        for yes in [
            "http://127.0.0.1:9000",
            "http://localhost:9000/",
            "http://127.8.0.1",
            "http://[::1]:9000",
        ] {
            assert!(is_loopback_http(yes), "{yes}");
        }
        for no in [
            "https://127.0.0.1:9000",
            "http://minio:9000",
            "http://10.0.0.5:9000",
            "http://127.0.0.1.example.com",
            "http://[::2]:9000",
        ] {
            assert!(!is_loopback_http(no), "{no}");
        }
    }

    #[test]
    fn plain_http_elsewhere_needs_aws_allow_http() {
        assert!(refused_plain_http("http://minio:9000", None));
        assert!(refused_plain_http("HTTP://minio:9000", Some("false")));
        assert!(!refused_plain_http("http://minio:9000", Some("true")));
        assert!(!refused_plain_http("http://minio:9000", Some("1")));
        assert!(!refused_plain_http("https://minio:9000", None));
        assert!(!refused_plain_http("http://127.0.0.1:9000", None));
    }
}
