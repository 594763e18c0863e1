//! Health and readiness: `GET /api/v1/health` (the service, its database and libtorch),
//! `GET /readyz` (ready for traffic: the database answers), `GET /metrics` (Prometheus, for
//! admin tokens, or without a token on `--metrics-bind`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;
use yolots_protocol::ErrorCode;

use super::problem::{ApiError, Problem};
use crate::auth::Caller;
use crate::server::AppState;

/// The health document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when every dependency answers, `degraded` otherwise.
    pub status: &'static str,
    /// `ok` or `unavailable`.
    pub database: &'static str,
    /// The version of the libtorch the conversions load (the converter's).
    pub libtorch: Option<String>,
    /// CUDA devices the conversions' libtorch can use.
    pub cuda_devices: usize,
    /// The version of yolots.
    pub version: &'static str,
}

async fn database_ok(state: &AppState) -> bool {
    if crate::db::known_down() {
        return false;
    }
    match crate::db::ping(&state.queue.pool).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "database ping failed");
            crate::db::note_unavailable();
            false
        }
    }
}

/// Service health (503 while the database is down).
#[utoipa::path(
    tag = "service",
    responses((status = 200, body = Health), (status = 503, description = "The database is down", body = Health))
)]
#[get("/health")]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let ok = database_ok(&state).await;
    let runtime = state.runtime.facts().await;
    let body = Health {
        status: if ok { "ok" } else { "degraded" },
        database: if ok { "ok" } else { "unavailable" },
        libtorch: runtime.libtorch,
        cuda_devices: runtime.cuda_devices,
        version: env!("CARGO_PKG_VERSION"),
    };
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Readiness for traffic.
#[utoipa::path(
    tag = "service",
    responses(
        (status = 200, description = "ready", content_type = "text/plain", body = String),
        (status = 503, description = "the database is down", content_type = "text/plain", body = String)
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if database_ok(&state).await {
        HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("database unavailable\n")
    }
}

/// Prometheus metrics (text format), for admin tokens: job counts of every owner, byte
/// totals and refusal codes are the operators' business. `--metrics-bind` serves them
/// without a token on an address of their own.
#[utoipa::path(
    tag = "service",
    responses(
        (status = 200, description = "Metrics in the OpenMetrics text format", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "unauthorized, invalid_token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "admin_only: the token is not an admin's", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    if !caller.owner.is_admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AdminOnly,
            "the metrics are for admin tokens",
        ));
    }
    Ok(render_metrics(&state).await)
}

/// `/metrics` on `--metrics-bind`: no token; the address itself is the access control.
pub async fn open_metrics(state: web::Data<AppState>) -> HttpResponse {
    render_metrics(&state).await
}

async fn render_metrics(state: &AppState) -> HttpResponse {
    let queue = (!crate::db::known_down()).then_some(&state.queue);
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render(queue).await)
}
