//! Settings shared by the subcommands. Every flag has an environment variable, so the
//! same binary is configured the same way from a shell, systemd or a container.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use yolots_protocol::DeviceChoice;

use crate::storage::{Location, Storage, StorageError};
use crate::upload_check::UploadCheckArgs;

/// Where the database is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Connections kept in the pool.
    #[arg(long, env = "YOLOTS_DB_POOL", default_value_t = 10)]
    pub db_pool: u32,
}

/// Where uploads, artifacts and reports are kept.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Folder for uploads and artifacts (the local object store, used when `--storage`
    /// is not set).
    #[arg(long, env = "YOLOTS_DATA_DIR", default_value = ".yolots/data")]
    pub data_dir: PathBuf,

    /// Object store shared by every server and worker: `s3://BUCKET[/PREFIX]` (key,
    /// region and endpoint from the standard `AWS_*` variables) or `file:///FOLDER`;
    /// default: the local `--data-dir`.
    #[arg(long, env = "YOLOTS_STORAGE")]
    pub storage: Option<String>,
}

impl StorageArgs {
    /// The store these settings name, opened.
    pub fn open(&self) -> Result<(Storage, Location), StorageError> {
        let location = Location::parse(self.storage.as_deref(), &self.data_dir)?;
        Ok((Storage::open(&location)?, location))
    }
}

/// How the queue treats jobs: leases, attempts, time limits.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// Seconds a claimed job stays leased without a heartbeat (heartbeats come every third
    /// of it); an expired lease puts the job back in the queue.
    #[arg(long, env = "YOLOTS_LEASE_SECS", default_value_t = 30.0)]
    pub lease_secs: f64,

    /// Attempts a job gets before it fails for good.
    #[arg(long, env = "YOLOTS_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: i32,

    /// Delay before the second attempt, in seconds; it doubles with every further attempt.
    #[arg(long, env = "YOLOTS_RETRY_BACKOFF_SECS", default_value_t = 10.0)]
    pub retry_backoff_secs: f64,

    /// Seconds between looks at the queue when no notification arrives (a fallback:
    /// workers are woken by LISTEN/NOTIFY).
    #[arg(long, env = "YOLOTS_POLL_SECS", default_value_t = 5.0)]
    pub poll_secs: f64,
}

impl QueueArgs {
    pub fn lease(&self) -> Duration {
        secs(self.lease_secs, 1.0)
    }

    pub fn heartbeat(&self) -> Duration {
        self.lease() / 3
    }

    pub fn poll(&self) -> Duration {
        secs(self.poll_secs, 0.05)
    }

    pub fn retry_backoff(&self) -> Duration {
        secs(self.retry_backoff_secs, 0.0)
    }
}

/// Limits on what a conversion may ask for.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Largest accepted upload, in bytes (enforced while the upload streams).
    #[arg(long, env = "YOLOTS_MAX_UPLOAD_BYTES", default_value_t = 2 << 30)]
    pub max_upload_bytes: u64,

    /// Most parameters a model may have.
    #[arg(long, env = "YOLOTS_MAX_PARAMETERS", default_value_t = 300_000_000)]
    pub max_parameters: u64,

    /// Most layers a model may have.
    #[arg(long, env = "YOLOTS_MAX_LAYERS", default_value_t = 1_000)]
    pub max_layers: u64,

    /// Seconds one conversion may run before its process is killed.
    #[arg(long, env = "YOLOTS_JOB_TIMEOUT_SECS", default_value_t = 900.0)]
    pub job_timeout_secs: f64,

    /// Most pixels (height x width of `img_size`) one conversion may ask for; the API
    /// refuses more (`invalid_options`, option `img_size`) and a worker fails such a job
    /// (`resource_exceeded`). Default 4096x4096.
    #[arg(long, env = "YOLOTS_MAX_PIXELS", default_value_t = 4096 * 4096)]
    pub max_pixels: u64,
}

impl LimitArgs {
    pub fn job_timeout(&self) -> Duration {
        secs(self.job_timeout_secs, 0.1)
    }
}

/// Settings of the workers, embedded (`serve --workers N`) or standalone (`worker`).
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Device the conversions run on: `auto` (the first GPU when there is one, else the
    /// CPU), `cpu` or `cuda:N`.
    #[arg(long, env = "YOLOTS_DEVICE", default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,

    /// Timed runs of each artifact after validation: exactly N (0 skips timing). Without
    /// it, the converter's default: runs are timed within a one-second budget (at least
    /// one, at most 10).
    #[arg(long, env = "YOLOTS_LATENCY_RUNS")]
    pub latency_runs: Option<usize>,

    /// Seconds a stopping worker waits for its conversion before handing the job back.
    #[arg(long, env = "YOLOTS_SHUTDOWN_GRACE_SECS", default_value_t = 30.0)]
    pub shutdown_grace_secs: f64,

    /// Threads each CPU conversion may use; 0 shares this machine's cores among the
    /// conversions this process runs at once. With several worker processes on one
    /// machine, give each its share (cores / processes): libtorch otherwise starts a
    /// thread per core in every conversion, and the conversions slow each other down
    /// many times over. `OMP_NUM_THREADS`, when set, wins.
    #[arg(long, env = "YOLOTS_CPU_THREADS", default_value_t = 0)]
    pub cpu_threads: usize,

    /// Memory (data segment, MiB) of one conversion process before anything is asked of
    /// it; the bound of a conversion adds the per-megapixel term and eight times the
    /// checkpoint's size. A conversion that needs more fails with `resource_exceeded`. 0:
    /// no memory bound. On a CUDA device the bound applies only when this is set
    /// explicitly (the CUDA driver's own host mappings count against it).
    #[arg(long, env = "YOLOTS_CONVERSION_MEMORY_MB")]
    pub conversion_memory_mb: Option<u64>,

    /// Memory (MiB) one conversion may use per megapixel of its `img_size`.
    #[arg(
        long,
        env = "YOLOTS_CONVERSION_MEMORY_MB_PER_MEGAPIXEL",
        default_value_t = 768
    )]
    pub conversion_memory_mb_per_megapixel: u64,

    /// CPU seconds (all its threads together) of one conversion process before anything
    /// is asked of it; the bound adds the per-megapixel term. Past it the process is
    /// stopped (`SIGXCPU`) and the job fails with `resource_exceeded`. 0: no CPU bound.
    #[arg(long, env = "YOLOTS_CONVERSION_CPU_SECS", default_value_t = 600)]
    pub conversion_cpu_secs: u64,

    /// CPU seconds one conversion may use per megapixel of its `img_size`.
    #[arg(
        long,
        env = "YOLOTS_CONVERSION_CPU_SECS_PER_MEGAPIXEL",
        default_value_t = 120
    )]
    pub conversion_cpu_secs_per_megapixel: u64,

    /// Honour the `test_fault` job option (for the project's fault tests only; only in
    /// builds with the `test-hooks` feature).
    #[cfg(feature = "test-hooks")]
    #[arg(long, hide = true)]
    pub allow_test_faults: bool,
}

impl WorkerArgs {
    /// `--allow-test-faults`, in a build with test hooks.
    pub fn allow_test_faults(&self) -> bool {
        #[cfg(feature = "test-hooks")]
        return self.allow_test_faults;
        #[cfg(not(feature = "test-hooks"))]
        false
    }

    pub fn shutdown_grace(&self) -> Duration {
        secs(self.shutdown_grace_secs, 0.0)
    }
}

/// Settings of `yolots serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub storage: StorageArgs,

    #[command(flatten)]
    pub queue: QueueArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub worker: WorkerArgs,

    #[command(flatten)]
    pub upload_check: UploadCheckArgs,

    /// Address the HTTP server listens on.
    #[arg(long, env = "YOLOTS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Folder with the built web page (served at `/`).
    #[arg(long, env = "YOLOTS_WEB_DIR", default_value = ".yolots/web")]
    pub web_dir: PathBuf,

    /// Workers running inside the server (0: only standalone `yolots worker`s convert).
    #[arg(long, env = "YOLOTS_WORKERS", default_value_t = 1)]
    pub workers: usize,

    /// Let any browser get its own token from `POST /api/v1/sessions` (local use).
    #[arg(long, env = "YOLOTS_OPEN")]
    pub open: bool,

    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "YOLOTS_HTTP_THREADS")]
    pub http_threads: Option<usize>,

    /// Seconds an upload body may send nothing before the request ends (`408
    /// request_timeout`).
    #[arg(long, env = "YOLOTS_BODY_IDLE_TIMEOUT_SECS", default_value_t = 30.0)]
    pub body_idle_timeout_secs: f64,

    /// Also serve `/metrics` on this address, without a token (bind it where only the
    /// monitoring reaches); on `--bind`, `/metrics` needs an admin token.
    #[arg(long, env = "YOLOTS_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// The address browsers reach this server at (`https://yolots.example.com`), when it
    /// is not `--bind` (behind a proxy): an `https` one makes the session cookie `Secure`,
    /// and its host is an origin state-changing requests may come from. Forwarded headers
    /// (`X-Forwarded-Proto`) are not trusted.
    #[arg(long, env = "YOLOTS_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Uploads the server receives at once; more are refused (`429 too_many_uploads`)
    /// before their body is read. 0: no limit.
    #[arg(long, env = "YOLOTS_MAX_UPLOADS_IN_FLIGHT", default_value_t = 64)]
    pub max_uploads_in_flight: usize,

    /// Uploads one owner may send at once (`429 too_many_uploads` past it), so one
    /// owner cannot take every place. 0: no limit.
    #[arg(
        long,
        env = "YOLOTS_MAX_UPLOADS_IN_FLIGHT_PER_OWNER",
        default_value_t = 32
    )]
    pub max_uploads_in_flight_per_owner: usize,

    /// Days a token stays valid after its last use (sliding; every use renews it); 0:
    /// tokens never expire.
    #[arg(long, env = "YOLOTS_TOKEN_TTL_DAYS", default_value_t = 30)]
    pub token_ttl_days: u32,
}

impl ServeArgs {
    /// How long a token lives after its last use, if it expires.
    pub fn token_ttl(&self) -> Option<Duration> {
        (self.token_ttl_days > 0)
            .then(|| Duration::from_secs(u64::from(self.token_ttl_days) * 86_400))
    }

    /// `--public-url`'s scheme is `https`, and its `host[:port]` (lower case, without
    /// the scheme's default port).
    pub fn public_origin(&self) -> Option<(bool, String)> {
        let url = self.public_url.as_deref()?.trim();
        let (https, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme.eq_ignore_ascii_case("https"), rest),
            None => (false, url),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        Some((https, crate::auth::normal_authority(authority, https)))
    }

    pub fn body_idle_timeout(&self) -> Duration {
        secs(self.body_idle_timeout_secs, 0.1)
    }
}

/// Settings of `yolots worker`.
#[derive(Debug, Clone, Args)]
pub struct StandaloneWorkerArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub storage: StorageArgs,

    #[command(flatten)]
    pub queue: QueueArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub worker: WorkerArgs,

    /// Conversions this process runs at once.
    #[arg(long, env = "YOLOTS_CONCURRENCY", default_value_t = 1)]
    pub concurrency: usize,

    /// Serve this worker's Prometheus metrics on this address (`/metrics`).
    #[arg(long, env = "YOLOTS_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
}

fn secs(value: f64, min: f64) -> Duration {
    Duration::from_secs_f64(if value.is_finite() {
        value.max(min)
    } else {
        min
    })
}
