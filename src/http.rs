//! The HTTP server: routes, the access log, and JSON errors. Health routes need no auth.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

use crate::daemon::Handle;
use crate::readiness::Liveness;

/// Every route of the daemon, with the access log around them: health (no auth), the operator
/// API under `/api` (bearer token), holder key reveal under `/holder` (wallet signatures) and
/// `/metrics`.
pub fn router(handle: Handle) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .merge(crate::api::router(handle.clone()))
        .merge(crate::holder::router(handle.clone()))
        .merge(crate::metrics::router(handle.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn(access_log))
        .with_state(handle)
}

/// `GET /health/live`: 200 while the process runs.
async fn live(State(handle): State<Handle>) -> Json<Liveness> {
    Json(Liveness::now(handle.started_at))
}

/// `GET /health/ready`: the HealthActor's last results; 503 and `degraded` when a dependency is
/// down. Answered from memory, so it stays fast while a dependency hangs.
async fn ready(State(handle): State<Handle>) -> Response {
    let readiness = handle.readiness();
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no route for {method} {}", uri.path()),
    )
}

/// `{"error":{"code","message"}}`, the one error shape of the API.
pub fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// One line per request: `req {method, url, remoteAddress}`, `res {statusCode}`, `responseTime` (ms).
async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // The path only: a query string could carry a token someone pasted into a URL.
    let url = request.uri().path().to_string();
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip().to_string())
        .unwrap_or_default();
    let response = next.run(request).await;
    let response_time = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        req.method = %method,
        req.url = url,
        req.remoteAddress = remote,
        res.statusCode = response.status().as_u16() as u64,
        responseTime = (response_time * 100.0).round() / 100.0,
        "request completed"
    );
    response
}
