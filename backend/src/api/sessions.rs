//! `POST /api/v1/sessions` (in `--open` mode, a browser gets an owner and a token of its
//! own, in an HttpOnly cookie) and `GET /api/v1/session` (who the caller is).

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::{ApiError, Problem};
use crate::auth::{self, COOKIE, Caller, Owner};
use crate::server::AppState;
use yolots_protocol::ErrorCode;

/// A session: the token (also set as the `yolots_token` cookie) and its owner.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub token: String,
    pub owner: SessionOwner,
}

/// The owner of a new session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOwner {
    pub id: uuid::Uuid,
    pub name: String,
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub owner: Owner,
}

fn cookie(token: &str) -> Cookie<'static> {
    Cookie::build(COOKIE, token.to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(time::Duration::days(365))
        .finish()
}

/// Get a session (only when the server runs with `--open`).
///
/// A request that already carries a valid token keeps its owner (200); otherwise a new
/// owner and token are made (201). The token is also set as an HttpOnly cookie.
#[utoipa::path(
    tag = "sessions",
    responses(
        (status = 200, description = "The caller's session, refreshed", body = Session),
        (status = 201, description = "A new owner and token", body = Session),
        (status = 403, description = "sessions_disabled", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/sessions")]
pub async fn create_session(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !state.settings.open {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::SessionsDisabled,
            "this server hands out no sessions: use a token from `yolots token create`",
        ));
    }
    if crate::db::known_down() {
        return Err(ApiError::unavailable());
    }
    if let Ok(Some(token)) = auth::request_token(&req)
        && let Some(owner) = auth::lookup(&state.queue.pool, &token).await?
    {
        return Ok(HttpResponse::Ok().cookie(cookie(&token)).json(Session {
            owner: SessionOwner {
                id: owner.id,
                name: owner.name,
            },
            token,
        }));
    }
    let short = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("browser-{}", short.get(..8).unwrap_or_default());
    let (owner, token) = auth::create_owner(&state.queue.pool, &name, false, "session").await?;
    tracing::info!(owner = %owner.id, "session created");
    Ok(HttpResponse::Created()
        .cookie(cookie(&token))
        .json(Session {
            owner: SessionOwner {
                id: owner.id,
                name: owner.name,
            },
            token,
        }))
}

/// Who the caller is.
#[utoipa::path(
    tag = "sessions",
    responses(
        (status = 200, body = Me),
        (status = 401, description = "unauthorized, invalid_token", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
#[get("/session")]
pub async fn get_session(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(Me {
        owner: caller.owner,
    })
}
