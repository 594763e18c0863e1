//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations as
//! utoipa-actix-web collects them from the same route table the server runs.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "yolots",
        description = "YOLOv7 checkpoints to TorchScript and ONNX: upload a checkpoint, follow its \
                       conversion, download the artifact and its validation report. Errors are \
                       application/problem+json documents with a stable `code`.",
    ),
    modifiers(&Security),
    tags(
        (name = "jobs", description = "Conversion jobs"),
        (name = "sessions", description = "Browser sessions and the caller"),
        (name = "service", description = "Health, readiness, metrics, configuration"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token from `yolots token create`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::COOKIE,
                "Set by POST /api/v1/sessions in --open mode",
            ))),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::api::routes)
        .split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api
}

/// The document as JSON.
pub fn json() -> String {
    serde_json::to_string_pretty(&document()).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn documents_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/api/v1/jobs",
            "/api/v1/jobs/{id}",
            "/api/v1/jobs/{id}/retry",
            "/api/v1/jobs/{id}/report",
            "/api/v1/jobs/{id}/artifact",
            "/api/v1/jobs/{id}/events",
            "/api/v1/sessions",
            "/api/v1/sessions/current",
            "/api/v1/session",
            "/api/v1/config",
            "/api/v1/health",
            "/api/v1/openapi.json",
            "/readyz",
            "/metrics",
        ] {
            assert!(
                paths.contains_key(path),
                "{path} missing: {:?}",
                paths.keys()
            );
        }
        assert!(doc["components"]["schemas"]["JobView"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}

#[cfg(test)]
mod option_schema_tests {
    #[test]
    fn option_defaults_and_limits_come_from_the_protocol() {
        use yolots_protocol::limits;
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let props = &doc["components"]["schemas"]["JobOptions"]["properties"];
        assert_eq!(props["conf"]["default"], limits::DEFAULT_CONF);
        assert_eq!(props["conf"]["minimum"], 0.0);
        assert_eq!(props["conf"]["maximum"], 1.0);
        assert_eq!(props["conf"]["type"], "number");
        assert_eq!(props["iou"]["default"], limits::DEFAULT_IOU);
        assert_eq!(props["max_det"]["default"], limits::DEFAULT_MAX_DET);
        assert_eq!(props["max_det"]["maximum"], *limits::MAX_DET.end());
        assert_eq!(props["max_det"]["type"], "integer");
        assert_eq!(
            props["img_size"]["items"]["maximum"],
            *limits::IMAGE_SIDE.end()
        );
    }
}
