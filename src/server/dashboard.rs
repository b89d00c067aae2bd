//! `GET /dashboard`: a live presence dashboard for the browser, served from the binary itself.
//!
//! Three static files embedded at build time (no build step, nothing fetched from elsewhere):
//! the page, its script and its own MessagePack reader. The page connects to `/ws` of the same
//! host with the dispatcher's token as its subprotocol and renders what the router sends
//! (`protocol/PROTOCOL.md` section 4). Every answer carries a strict Content-Security-Policy (no
//! inline script, no other origin), `Cache-Control: no-store` and `Referrer-Policy: no-referrer`
//! (the token may arrive in the address).

use super::http::Reply;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const MSGPACK: &str = include_str!("dashboard/msgpack.js");

/// Scripts and connections of the page's own origin only; styles of its own `<style>` block.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; img-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Whether `path` is one of the dashboard's.
pub(super) fn is_dashboard_path(path: &str) -> bool {
    asset(path).is_some()
}

/// The file at `path` and its content type.
fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/dashboard" | "/dashboard/" | "/dashboard/index.html" => {
            Some((INDEX, "text/html; charset=utf-8"))
        }
        "/dashboard/dashboard.js" => Some((SCRIPT, "application/javascript; charset=utf-8")),
        "/dashboard/msgpack.js" => Some((MSGPACK, "application/javascript; charset=utf-8")),
        _ => None,
    }
}

/// The answer to `GET path`, `None` when it is no dashboard path.
pub(super) fn serve(path: &str) -> Option<Reply> {
    let (body, content_type) = asset(path)?;
    let mut reply = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = reply.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    Some(reply)
}
