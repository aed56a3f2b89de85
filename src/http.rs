//! The HTTP server: routes, the access log, JSON errors, security headers and the last line
//! against panics. Health routes need no auth.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

use crate::daemon::Handle;
use crate::readiness::Liveness;

/// Every route of the daemon, with the access log around them: health (no auth), the operator
/// API under `/api` (bearer token, through [`crate::api::gate`]), holder key reveal under
/// `/holder` (wallet signatures) and `/metrics`. Every response carries the security headers.
pub fn router(handle: Handle) -> Router {
    let api_gate = crate::api::ApiGate::new(handle.settings.clone());
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .merge(crate::api::router(handle.clone()))
        .merge(crate::holder::router(handle.clone()))
        .merge(crate::metrics::router(handle.clone()))
        .fallback(not_found)
        // Innermost first: a panicking handler still gets the gate's and the security headers.
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn_with_state(api_gate, crate::api::gate))
        .layer(middleware::from_fn(security_headers))
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

/// What every response of the daemon carries: it serves JSON to programs, never pages, so
/// nothing may be sniffed, framed, loaded from it or sent on as a referrer.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    response
}

/// A handler that panics answers a generic 500 in the API's shape (instead of hyper dropping
/// the connection); the panic is logged once here.
async fn catch_panic(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let url = request.uri().path().to_string();
    match CatchUnwind(Box::pin(next.run(request))).await {
        Ok(response) => response,
        Err(payload) => {
            let cause = payload
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic payload".to_string());
            tracing::error!(
                req.method = %method,
                req.url = url,
                error = cause,
                "request handler panicked"
            );
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error; the cause is in the daemon's log",
            )
        }
    }
}

/// Polls a future, turning a panic inside it into `Err(payload)` (futures' `catch_unwind`,
/// which is not a dependency).
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_generic_500_with_the_security_headers() {
        async fn boom() -> &'static str {
            panic!("secret-looking detail")
        }
        let app = Router::new()
            .route("/boom", get(boom))
            .layer(middleware::from_fn(catch_panic))
            .layer(middleware::from_fn(security_headers));
        let (address, task) = crate::sandbox::serve_on_loopback(app).await.unwrap();
        let response = reqwest::get(format!("http://{address}/boom"))
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(!body.to_string().contains("secret-looking"));
        task.abort();
    }
}
