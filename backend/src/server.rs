//! `yolots serve`: the HTTP server and what it shares between requests.

use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;
use sqlx::PgPool;

use crate::config::ServeArgs;

/// Facts about libtorch, read once at start.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    pub libtorch: Option<String>,
    pub cuda_devices: usize,
}

impl RuntimeInfo {
    pub fn detect() -> Self {
        Self {
            libtorch: yolots_converter::runtime::libtorch_version(),
            cuda_devices: yolots_converter::runtime::cuda_device_count(),
        }
    }
}

/// State shared by every request handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub runtime: RuntimeInfo,
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let pool = crate::db::pool(&args.database).context("invalid DATABASE_URL")?;
    crate::db::migrate(&pool)
        .await
        .context("applying database migrations")?;
    let runtime = RuntimeInfo::detect();
    tracing::info!(
        libtorch = runtime.libtorch.as_deref().unwrap_or("unknown"),
        cuda_devices = runtime.cuda_devices,
        "libtorch loaded"
    );
    let state = web::Data::new(AppState { pool, runtime });
    let web_dir = args.web_dir.clone();
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(state.clone())
            .wrap(middleware::Logger::default())
            .configure(crate::api::routes);
        if web_dir.join("index.html").is_file() {
            app.service(actix_files::Files::new("/", &web_dir).index_file("index.html"))
        } else {
            app.service(actix_files::Files::new("/", &web_dir))
        }
    })
    .bind(args.bind)
    .with_context(|| format!("binding {}", args.bind))?;
    tracing::info!(address = %args.bind, "listening");
    server.run().await.context("HTTP server failed")
}
