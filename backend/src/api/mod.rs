//! The HTTP routes: the REST API under `/api/v1`, `/readyz` and `/metrics`; [`headers`]:
//! the security headers every response carries.
//!
//! One module per resource: [`jobs`] (and [`upload`], the streaming upload), [`events`]
//! (live events), [`sessions`], [`meta`] (client config, OpenAPI), [`health`]; errors are
//! [`problem`] documents.

use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

pub mod body;
pub mod events;
pub mod headers;
pub mod health;
pub mod jobs;
pub mod meta;
pub mod problem;
pub mod sessions;
pub mod slots;
pub mod upload;

/// Registers every route (and, through utoipa-actix-web, its OpenAPI description).
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(health::readyz)
        .service(health::metrics)
        .service(
            scope::scope("/api/v1")
                .app_data(problem::json_config())
                .app_data(problem::query_config())
                .app_data(problem::path_config())
                .service(health::health)
                .service(meta::config)
                .service(meta::openapi)
                .service(sessions::create_session)
                .service(sessions::get_session)
                .service(sessions::delete_session)
                .service(jobs::create_job)
                .service(jobs::list_jobs)
                .service(jobs::get_job)
                .service(jobs::delete_job)
                .service(jobs::retry_job)
                .service(jobs::get_report)
                .service(jobs::get_artifact)
                .service(events::job_events),
        );
}
