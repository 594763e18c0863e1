//! The REST API under `/api/v1`.

use actix_web::web;

mod health;

/// Registers every route of the API.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/api/v1").service(health::health));
}
