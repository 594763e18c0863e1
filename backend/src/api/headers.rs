//! Security headers on every response, pages and API alike.

use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;

/// What the page may load: its own scripts, styles, images, worker and wasm (compiling
/// wasm needs `'wasm-unsafe-eval'`), requests to its own origin only, no framing, no
/// plugins, no `<base>` and forms posting only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
     script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; \
     img-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The headers, added to every response that does not set its own.
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"))
}
