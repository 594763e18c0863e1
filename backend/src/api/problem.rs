//! Errors as `application/problem+json` (RFC 9457) with a stable `code`.
//!
//! Every handler returns [`ApiError`]; its `code` is the contract (the web page and scripts
//! branch on it), `detail` is for people.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;
use yolots_protocol::ErrorCode;

/// Where problem types are documented; the code is appended.
pub const TYPE_BASE: &str = "https://yolots.dev/problems/";

/// A problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `https://yolots.dev/problems/<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine code (`not_found`, `invalid_options`, a reader code...).
    pub code: String,
    /// The option refused (`invalid_options` about one option: `precision`, `img_size`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub option: Option<String>,
}

/// An error answered as a problem document.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: String,
    /// The option refused, when the problem is about one.
    pub option: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            option: None,
        }
    }

    /// The same problem, naming the option refused.
    pub fn with_option(mut self, option: Option<&'static str>) -> Self {
        self.option = option;
        self
    }

    pub fn bad_request(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such job")
    }

    pub fn conflict(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn unauthorized(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::DatabaseUnavailable,
            "the database is unavailable; try again shortly",
        )
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            detail,
        )
    }

    pub fn storage(error: &crate::storage::StorageError) -> Self {
        tracing::error!(%error, "storage failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageUnavailable,
            "the artifact store failed; try again shortly",
        )
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("{TYPE_BASE}{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.as_str().to_owned(),
            option: self.option.map(str::to_owned),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        // The body was not read to its end: the connection cannot carry another request.
        if matches!(
            self.status,
            StatusCode::REQUEST_TIMEOUT
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::TOO_MANY_REQUESTS
        ) {
            response.insert_header((header::CONNECTION, "close"));
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        response.json(self.problem())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&error) {
            tracing::warn!(%error, "database unavailable");
            crate::db::note_unavailable();
            ApiError::unavailable()
        } else {
            tracing::error!(%error, "database query failed");
            ApiError::internal("a database query failed")
        }
    }
}

impl From<crate::queue::QueueError> for ApiError {
    fn from(error: crate::queue::QueueError) -> Self {
        match error {
            crate::queue::QueueError::Database(e) => e.into(),
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// Answers malformed paths, queries and JSON bodies with problem documents too.
pub fn json_config() -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default().error_handler(|error, _| {
        ApiError::bad_request(ErrorCode::InvalidRequest, error.to_string()).into()
    })
}

pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default().error_handler(|error, _| {
        ApiError::bad_request(ErrorCode::InvalidQuery, error.to_string()).into()
    })
}

pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default().error_handler(|error, _| {
        ApiError::bad_request(ErrorCode::MalformedId, error.to_string()).into()
    })
}
