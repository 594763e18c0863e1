//! `yolots worker`: conversions only, against the same database and storage as the
//! server (for GPU machines). Stops on Ctrl-C or SIGTERM: the running conversion gets the
//! grace period, then its job goes back to the queue.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use yolots_protocol::DeviceChoice;

use crate::config::StandaloneWorkerArgs;
use crate::metrics::Metrics;
use crate::queue::notify::Hub;
use crate::queue::{Queue, QueueSettings};
use crate::worker::{WorkerConfig, WorkerContext};

pub async fn run(args: StandaloneWorkerArgs) -> anyhow::Result<()> {
    // A bad storage setting is refused before waiting for the database.
    let (storage, location) = args.storage.open().context("opening the object store")?;
    tracing::info!(storage = %location, "object store");
    let pool = crate::db::pool(&args.database).context("invalid DATABASE_URL")?;
    crate::db::migrate_when_up(&pool, Duration::from_secs(60))
        .await
        .context("applying database migrations")?;
    // The converter loads libtorch; this process never does.
    let converter = crate::converter::locate().context("locating the converter")?;
    crate::converter::require(&converter)?;
    let cuda_devices = if args.worker.device == DeviceChoice::Auto {
        crate::converter::probe(&converter).await.cuda_devices
    } else {
        0
    };
    let queue = Queue::new(pool.clone(), QueueSettings::from(&args.queue));
    let stop = CancellationToken::new();
    let hub = Hub::spawn(pool, stop.clone());
    let metrics = Metrics::new();
    let config = WorkerConfig::new(
        &args.worker,
        &args.queue,
        &args.limits,
        cuda_devices,
        args.concurrency.max(1),
    );
    tracing::info!(device = %config.device, concurrency = args.concurrency, "worker starting");
    let ctx = Arc::new(WorkerContext {
        queue: queue.clone(),
        storage,
        hub,
        metrics: metrics.clone(),
        config,
        exe: converter,
    });
    let reaper = tokio::spawn(crate::queue::reaper::run(
        queue.clone(),
        (args.queue.lease() / 2).max(Duration::from_millis(200)),
        stop.clone(),
    ));
    if let Some(bind) = args.metrics_bind {
        let metrics = metrics.clone();
        let queue = queue.clone();
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding {bind}"))?;
        tokio::spawn(serve_metrics(listener, metrics, queue));
    }
    let signals = {
        let stop = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping: the running conversion gets its grace period");
            stop.cancel();
        })
    };
    crate::worker::run_workers(ctx, args.concurrency.max(1), stop.clone()).await;
    signals.abort();
    let _ = reaper.await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A minimal `/metrics` endpoint (one request per connection).
async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Metrics, queue: Queue) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let body = metrics.render(Some(&queue)).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
        });
    }
}
