//! `GET /api/v1/config`: what the web page needs before an upload (limits, devices,
//! default options), and `GET /api/v1/openapi.json`.

use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::model::JobOptions;
use crate::server::AppState;

/// Limits the service applies.
#[derive(Debug, Serialize, ToSchema)]
pub struct Limits {
    pub max_parameters: u64,
    pub max_layers: u64,
    /// Most pixels (height x width of `img_size`) a conversion may ask for.
    pub max_pixels: u64,
    pub job_timeout_seconds: f64,
}

/// The service's settings as the web page needs them.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceConfig {
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: u64,
    pub limits: Limits,
    /// Devices of the workers seen recently (`cpu`, `cuda:0`, ...); `auto` is always
    /// accepted.
    pub devices: Vec<String>,
    pub defaults: JobOptions,
    /// Whether `POST /api/v1/sessions` hands out sessions.
    pub open: bool,
}

/// Service settings for clients.
#[utoipa::path(tag = "service", responses((status = 200, body = ServiceConfig)))]
#[get("/config")]
pub async fn config(state: web::Data<AppState>) -> HttpResponse {
    let mut devices = if crate::db::known_down() {
        Vec::new()
    } else {
        state
            .queue
            .live_devices(Duration::from_secs(60))
            .await
            .unwrap_or_default()
    };
    if !devices.iter().any(|d| d == "cpu") {
        devices.insert(0, "cpu".to_owned());
    }
    let s = &state.settings;
    HttpResponse::Ok().json(ServiceConfig {
        max_upload_bytes: s.max_upload_bytes,
        limits: Limits {
            max_parameters: s.max_parameters,
            max_layers: s.max_layers,
            max_pixels: s.max_pixels,
            job_timeout_seconds: s.job_timeout.as_secs_f64(),
        },
        devices,
        defaults: JobOptions::default(),
        open: s.open,
    })
}

/// This document.
#[utoipa::path(tag = "service", responses((status = 200, description = "The OpenAPI document", body = Object)))]
#[get("/openapi.json")]
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(state.openapi.clone())
}
