//! `GET /api/v1/health`: whether the service, its database and libtorch are usable.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;

use crate::server::AppState;

/// The health document.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok` when every dependency answers, `degraded` otherwise.
    pub status: &'static str,
    /// `ok` or `unavailable`.
    pub database: &'static str,
    /// The version of the libtorch loaded in this process.
    pub libtorch: Option<String>,
    /// CUDA devices libtorch can use.
    pub cuda_devices: usize,
    /// The version of yolots.
    pub version: &'static str,
}

#[get("/health")]
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let database = match crate::db::ping(&state.pool).await {
        Ok(()) => "ok",
        Err(error) => {
            tracing::warn!(%error, "database ping failed");
            "unavailable"
        }
    };
    let body = Health {
        status: if database == "ok" { "ok" } else { "degraded" },
        database,
        libtorch: state.runtime.libtorch.clone(),
        cuda_devices: state.runtime.cuda_devices,
        version: env!("CARGO_PKG_VERSION"),
    };
    if database == "ok" {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
