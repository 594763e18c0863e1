//! `yolots serve`: the HTTP server, the embedded workers, and what they share.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;
use tokio_util::sync::CancellationToken;
use utoipa_actix_web::AppExt;
use yolots_protocol::DeviceChoice;

use crate::config::ServeArgs;
use crate::converter::Runtime;
use crate::metrics::Metrics;
use crate::queue::notify::Hub;
use crate::queue::{Queue, QueueSettings};
use crate::storage::Storage;
use crate::upload_check::UploadChecker;
use crate::worker::{WorkerConfig, WorkerContext};

/// The API's settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub max_upload_bytes: u64,
    pub max_parameters: u64,
    pub max_layers: u64,
    /// Most pixels (height x width) a conversion may ask for.
    pub max_pixels: u64,
    pub job_timeout: Duration,
    /// Longest wait for the next bytes of an upload body.
    pub body_idle_timeout: Duration,
    pub open: bool,
    pub allow_test_faults: bool,
    /// How long a token lives after its last use; `None`: forever.
    pub token_ttl: Option<Duration>,
    /// The session cookie is `Secure` (the public address is `https`).
    pub secure_cookie: bool,
    /// The public address's `host[:port]`, an origin besides the request's own `Host`.
    pub public_authority: Option<String>,
}

/// State shared by every request handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub queue: Queue,
    pub storage: Storage,
    pub hub: Hub,
    pub metrics: Metrics,
    /// The converter's libtorch and CUDA devices (asked once, in the background).
    pub runtime: Runtime,
    pub settings: ApiSettings,
    /// Reads uploads in bounded child processes.
    pub upload_check: UploadChecker,
    /// Uploads in flight, bounded in all and per owner.
    pub uploads: crate::api::slots::UploadSlots,
    /// The OpenAPI document (JSON), made once.
    pub openapi: String,
}

/// Runs the server until Ctrl-C or SIGTERM; then the workers finish or hand back their
/// jobs.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // A bad storage setting is refused before waiting for the database.
    let (storage, location) = args.storage.open().context("opening the object store")?;
    tracing::info!(storage = %location, "object store");
    let pool = crate::db::pool(&args.database).context("invalid DATABASE_URL")?;
    crate::db::migrate_when_up(&pool, Duration::from_secs(60))
        .await
        .context("applying database migrations")?;
    // The converter loads libtorch; this process never does.
    let converter = crate::converter::locate().context("locating the converter")?;
    let runtime = Runtime::start(converter.clone());
    let queue = Queue::new(pool.clone(), QueueSettings::from(&args.queue));
    let stop = CancellationToken::new();
    let hub = Hub::spawn(pool.clone(), stop.clone());
    let metrics = Metrics::new();
    let reaper = actix_web::rt::spawn(crate::queue::reaper::run(
        queue.clone(),
        (args.queue.lease() / 2).max(Duration::from_millis(200)),
        stop.clone(),
    ));
    let workers = if args.workers > 0 {
        crate::converter::require(&converter)?;
        let cuda_devices = if args.worker.device == DeviceChoice::Auto {
            runtime.facts().await.cuda_devices
        } else {
            0
        };
        let ctx = Arc::new(WorkerContext {
            queue: queue.clone(),
            storage: storage.clone(),
            hub: hub.clone(),
            metrics: metrics.clone(),
            config: WorkerConfig::new(
                &args.worker,
                &args.queue,
                &args.limits,
                cuda_devices,
                args.workers,
            ),
            exe: converter,
        });
        tracing::info!(workers = args.workers, device = %ctx.config.device, "embedded workers");
        Some(actix_web::rt::spawn(crate::worker::run_workers(
            ctx,
            args.workers,
            stop.clone(),
        )))
    } else {
        None
    };
    let state = web::Data::new(AppState {
        queue,
        storage,
        hub,
        metrics,
        runtime,
        settings: ApiSettings {
            max_upload_bytes: args.limits.max_upload_bytes,
            max_parameters: args.limits.max_parameters,
            max_layers: args.limits.max_layers,
            max_pixels: args.limits.max_pixels,
            job_timeout: args.limits.job_timeout(),
            body_idle_timeout: args.body_idle_timeout(),
            open: args.open,
            allow_test_faults: args.worker.allow_test_faults(),
            token_ttl: args.token_ttl(),
            secure_cookie: args.public_origin().is_some_and(|(https, _)| https),
            public_authority: args.public_origin().map(|(_, authority)| authority),
        },
        uploads: crate::api::slots::UploadSlots::new(
            args.max_uploads_in_flight,
            args.max_uploads_in_flight_per_owner,
        ),
        upload_check: UploadChecker::new(
            std::env::current_exe().context("locating the yolots binary")?,
            &args.upload_check,
        ),
        openapi: crate::openapi::json(),
    });
    let metrics_server = match args.metrics_bind {
        Some(bind) => Some(metrics_server(state.clone(), bind)?),
        None => None,
    };
    let web_dir = page_folder(&args.web_dir);
    let mut server = HttpServer::new(move || {
        let app = App::new()
            .app_data(state.clone())
            .wrap(crate::api::headers::security_headers())
            .wrap(middleware::Logger::default())
            .into_utoipa_app()
            .configure(crate::api::routes)
            .into_app();
        if web_dir.join("index.html").is_file() {
            app.service(actix_files::Files::new("/", &web_dir).index_file("index.html"))
        } else {
            app.service(actix_files::Files::new("/", &web_dir))
        }
    })
    .shutdown_timeout(5)
    // The request head must arrive within this (the body is bounded by the upload's idle
    // timeout). A connection closed after a refused body has this long to read its answer;
    // what it still sends meanwhile is dropped.
    .client_request_timeout(Duration::from_secs(10))
    .client_disconnect_timeout(Duration::from_secs(1))
    // Longer than clients' idle pools usually keep connections, so a client rarely
    // reuses a connection the server is closing at that moment.
    .keep_alive(Duration::from_secs(75));
    if let Some(threads) = args.http_threads {
        server = server.workers(threads.max(1));
    }
    let server = server
        .bind(args.bind)
        .with_context(|| format!("binding {}", args.bind))?;
    tracing::info!(address = %args.bind, open = args.open, "listening");
    let metrics_handle = metrics_server.map(|metrics| {
        let handle = metrics.handle();
        actix_web::rt::spawn(metrics);
        handle
    });
    let served = server.run().await.context("HTTP server failed");
    if let Some(handle) = metrics_handle {
        handle.stop(true).await;
    }
    tracing::info!("HTTP server stopped; stopping the workers");
    stop.cancel();
    if let Some(workers) = workers {
        let _ = workers.await;
    }
    let _ = reaper.await;
    served
}

/// `/metrics` alone on an address of its own, without a token; it stops with the main
/// server.
fn metrics_server(
    state: web::Data<AppState>,
    bind: std::net::SocketAddr,
) -> anyhow::Result<actix_web::dev::Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(crate::api::headers::security_headers())
            .route("/metrics", web::get().to(crate::api::health::open_metrics))
    })
    .workers(1)
    .disable_signals()
    .bind(bind)
    .with_context(|| format!("binding the metrics address {bind}"))?
    .run();
    tracing::info!(address = %bind, "metrics listening");
    Ok(server)
}

/// The folder the page is served from: the one configured, or, when that holds no page,
/// `web/` beside the binary's folder (`<prefix>/bin/yolots` with `<prefix>/web`, the layout
/// of an installed or distributed yolots), so `yolots serve` works from any folder.
fn page_folder(configured: &std::path::Path) -> std::path::PathBuf {
    let has_page = |dir: &std::path::Path| dir.join("index.html").is_file();
    if has_page(configured) {
        return configured.to_path_buf();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("web")))
        .filter(|dir| has_page(dir));
    match beside {
        Some(dir) => {
            tracing::info!(page = %dir.display(), "no page in {}; serving the one beside the binary", configured.display());
            dir
        }
        None => {
            tracing::warn!(page = %configured.display(), "no web page found (index.html); the API is served without it");
            configured.to_path_buf()
        }
    }
}
