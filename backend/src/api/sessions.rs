//! `POST /api/v1/sessions` (in `--open` mode, a browser gets an owner and a token of its
//! own, in an HttpOnly cookie), `GET /api/v1/session` (who the caller is) and
//! `DELETE /api/v1/sessions/current` (the caller's token revoked, the cookie cleared).

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::{ApiError, Problem};
use crate::auth::{self, COOKIE, Caller, Owner};
use crate::server::{ApiSettings, AppState};
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

/// The session cookie: it lives as long as an unused token does (a year when tokens do
/// not expire), `Secure` when the public address is `https`.
fn cookie(token: &str, settings: &ApiSettings) -> Cookie<'static> {
    let max_age = settings.token_ttl.map_or(time::Duration::days(365), |ttl| {
        time::Duration::seconds(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
    });
    Cookie::build(COOKIE, token.to_owned())
        .path("/")
        .http_only(true)
        .secure(settings.secure_cookie)
        .same_site(SameSite::Strict)
        .max_age(max_age)
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
        (status = 403, description = "sessions_disabled; cross_site_request: a browser's request from another origin", body = Problem, content_type = "application/problem+json"),
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
    // Another site's page may not hand a browser a session of its choosing.
    auth::check_same_origin(&req, state.settings.public_authority.as_deref())?;
    if crate::db::known_down() {
        return Err(ApiError::unavailable());
    }
    let settings = &state.settings;
    if let Ok(Some(token)) = auth::request_token(&req)
        && let Some(owner) = auth::lookup(&state.queue.pool, &token, settings.token_ttl).await?
    {
        return Ok(HttpResponse::Ok()
            .cookie(cookie(&token, settings))
            .json(Session {
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
        .cookie(cookie(&token, settings))
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

/// End the caller's session: its token (the cookie's or the bearer's) is revoked and the
/// cookie cleared. Other tokens of the same owner stay valid.
#[utoipa::path(
    tag = "sessions",
    responses(
        (status = 204, description = "The token is revoked"),
        (status = 401, description = "unauthorized, invalid_token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "cross_site_request: a browser's request from another origin", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
#[delete("/sessions/current")]
pub async fn delete_session(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    auth::revoke_token(&state.queue.pool, &caller.token).await?;
    tracing::info!(owner = %caller.owner.id, "session ended");
    let mut gone = Cookie::build(COOKIE, "")
        .path("/")
        .http_only(true)
        .secure(state.settings.secure_cookie)
        .same_site(SameSite::Strict)
        .finish();
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}
