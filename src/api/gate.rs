//! What every `/api` request passes before its handler: the auth-failure throttle, CORS
//! (preflights answered here), the bearer token, the per-route rate limit, the body size limit;
//! and what every `/api` response gets on the way out (`Cache-Control: no-store`, CORS headers
//! for a listed origin).
//!
//! Order matters: a throttled address is refused before anything else (a correct token does not
//! bypass it); auth comes before validation (the handler's extractors run after this gate), so
//! an unauthenticated request learns nothing about its body or query.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::extract::{ApiError, declared_length, has_body, read_limited};
use super::routes::{self, Access, LimitClass};
use crate::daemon::FrontendSettings;
use crate::rate_limit::{FixedWindows, evict_oldest, retry_after_secs};

/// Failed authentications an address may make within [`FAILURE_WINDOW`] before it is refused.
pub const MAX_AUTH_FAILURES: usize = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Rate limits count requests in fixed windows of this length.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The most runs, resumes and reconciles one address may start per window.
pub const MAX_WORK_PER_MIN: u32 = 30;

/// Addresses (or address × route pairs) remembered at most: the maps cannot grow without limit
/// when someone sprays requests from many addresses.
pub const MAX_TRACKED: usize = 10_000;

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: u32 = 600;
const CORS_ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
/// `last-event-id`: a fetch-based SSE client resumes the events stream with it.
const CORS_ALLOW_HEADERS: &str = "authorization, content-type, last-event-id";
const CORS_EXPOSE_HEADERS: &str = "location, retry-after, www-authenticate";

/// The gate's state: shared by every request of one HTTP server.
#[derive(Clone)]
pub struct ApiGate {
    inner: Arc<GateState>,
}

struct GateState {
    settings: Arc<FrontendSettings>,
    failures: Mutex<FailureLog>,
    windows: Mutex<FixedWindows<(IpAddr, &'static str)>>,
}

impl ApiGate {
    pub fn new(settings: Arc<FrontendSettings>) -> Self {
        Self {
            inner: Arc::new(GateState {
                settings,
                failures: Mutex::new(FailureLog::default()),
                windows: Mutex::new(FixedWindows::new(RATE_WINDOW, MAX_TRACKED)),
            }),
        }
    }

    /// The per-minute limit of a class for this daemon.
    pub fn limit_per_min(&self, class: LimitClass) -> u32 {
        class_limit(self.inner.settings.api_rate_limit_per_min, class)
    }
}

/// Reads use the configured limit; writes a tenth of it (at least 1); work (runs, resumes,
/// reconciles) the write limit, at most [`MAX_WORK_PER_MIN`].
pub fn class_limit(read_limit: u32, class: LimitClass) -> u32 {
    let write = (read_limit / 10).max(1);
    match class {
        LimitClass::Read => read_limit.max(1),
        LimitClass::Write => write,
        LimitClass::Work => write.min(MAX_WORK_PER_MIN),
    }
}

fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent whatever panicked while holding them (each update is one step).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The middleware (layered over the whole daemon by `crate::http`; other paths pass through).
pub async fn gate(State(gate): State<ApiGate>, request: Request, next: Next) -> Response {
    if !is_api_path(request.uri().path()) {
        return next.run(request).await;
    }
    let origin = allowed_origin(&gate.inner.settings, request.headers());
    let mut response = match refusal(&gate, &request) {
        None => match buffer_body(request).await {
            Ok(request) => next.run(request).await,
            Err(refusal) => closing(refusal.into_response()),
        },
        // The body was not read: the connection cannot carry another request.
        Some(refusal) if has_body(request.headers()) => closing(refusal),
        Some(refusal) => refusal,
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(origin) = origin {
        add_cors_headers(headers, origin);
    }
    response
}

/// The response that refuses (or, for a preflight, answers) the request; `None` lets it through.
fn refusal(gate: &ApiGate, request: &Request) -> Option<Response> {
    let settings = &gate.inner.settings;
    let client = client_address(request);
    let now = Instant::now();
    if let Some(wait) = lock(&gate.inner.failures).blocked_for(client, now) {
        return Some(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_auth_failures",
                format!(
                    "too many failed authentications from this address; retry in {} s",
                    retry_after_secs(wait)
                ),
            )
            .with_retry_after(retry_after_secs(wait))
            .into_response(),
        );
    }
    if is_preflight(request) {
        return Some(preflight(settings, request.headers()));
    }
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| routes::find(request.method(), path.as_str()));
    let access = matched.map_or(Access::Bearer, |route| route.access);
    if access == Access::Bearer {
        match check_bearer(request.headers(), settings.api_auth_token.expose()) {
            Ok(()) => {}
            Err(AuthFailure::Missing) => return Some(unauthorized("a bearer token is required")),
            Err(failure) => {
                let blocked = lock(&gate.inner.failures).record(client, now);
                tracing::warn!(
                    req.remoteAddress = %client,
                    reason = failure.as_str(),
                    throttled = blocked,
                    "api authentication failed"
                );
                return Some(unauthorized("the bearer token is not valid"));
            }
        }
    }
    // Requests no route serves (404s, 405s) count under one key per method class, so probing
    // for routes is limited too.
    let (key, class) = match matched {
        Some(route) => (route.operation_id, route.limit),
        None if request.method() == Method::GET || request.method() == Method::HEAD => {
            ("unrouted-read", LimitClass::Read)
        }
        None => ("unrouted-write", LimitClass::Write),
    };
    let limit = gate.limit_per_min(class);
    if let Err(wait) = lock(&gate.inner.windows).hit((client, key), limit, now) {
        return Some(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "more than {limit} requests a minute to this route from this address; retry in {} s",
                retry_after_secs(wait)
            ),
        )
        .with_retry_after(retry_after_secs(wait))
        .into_response());
    }
    None
}

/// Reads the body into memory once the request is allowed in (at most
/// [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES): 413 past it), so the handler's extractors read it
/// from memory and every response leaves the connection reusable. A request without a body
/// passes untouched.
async fn buffer_body(request: Request) -> Result<Request, ApiError> {
    if !has_body(request.headers()) {
        return Ok(request);
    }
    let declared = declared_length(request.headers());
    let (parts, body) = request.into_parts();
    let bytes = read_limited(body, declared).await?;
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Tells the client this connection closes after the response: an unread body is left on it,
/// and a client reusing it would see its next request fail.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn client_address(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
        // Only a server started without connect info lacks it; all such requests share a limit.
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

// ---------------------------------------------------------------------------------------------
// Bearer token

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthFailure {
    Missing,
    /// Not `Bearer <token>`.
    Malformed,
    Wrong,
}

impl AuthFailure {
    fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Wrong => "wrong",
        }
    }
}

fn check_bearer(headers: &HeaderMap, expected: &str) -> Result<(), AuthFailure> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthFailure::Missing);
    };
    let text = value.to_str().map_err(|_| AuthFailure::Malformed)?;
    let (scheme, token) = text.split_once(' ').ok_or(AuthFailure::Malformed)?;
    // RFC 6750: the scheme is case-insensitive.
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Malformed);
    }
    if constant_time_eq(token.trim().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(AuthFailure::Wrong)
    }
}

/// Whether the request carries `Authorization: Bearer <expected>` (for routes outside `/api`
/// that take the same token, e.g. `/metrics`).
pub fn bearer_is_valid(headers: &HeaderMap, expected: &str) -> bool {
    check_bearer(headers, expected).is_ok()
}

/// Compares without an early exit: the time taken depends on the lengths only (the longer of
/// the two), never on where the first difference is.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let length = given.len().max(expected.len());
    let mut difference = u64::from(given.len() != expected.len());
    for i in 0..length {
        let a = given.get(i).copied().unwrap_or(0);
        let b = expected.get(i).copied().unwrap_or(0);
        difference |= u64::from(a ^ b);
    }
    std::hint::black_box(difference) == 0
}

fn unauthorized(message: &str) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// CORS

/// The request's `Origin` when CORS_ALLOWED_ORIGINS lists it.
fn allowed_origin(settings: &FrontendSettings, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    settings
        .cors_allowed_origins
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(text))
        .then(|| origin.clone())
}

fn add_cors_headers(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(CORS_EXPOSE_HEADERS),
    );
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn preflight(settings: &FrontendSettings, headers: &HeaderMap) -> Response {
    // With no allowed origins every origin is refused: the API does no CORS at all.
    if allowed_origin(settings, headers).is_none() {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cors_origin_not_allowed",
            format!("origin {origin:?} is not in CORS_ALLOWED_ORIGINS"),
        )
        .with_details(json!({ "origin": origin }))
        .into_response();
    }
    // The allowed origin itself is added by `gate` on the way out.
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(CORS_ALLOW_METHODS),
    );
    out.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_ALLOW_HEADERS),
    );
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(PREFLIGHT_MAX_AGE_SECS),
    );
    response
}

// ---------------------------------------------------------------------------------------------
// Bounded per-address bookkeeping

/// Recent authentication failures per address (at most [`MAX_AUTH_FAILURES`] instants each).
#[derive(Default)]
struct FailureLog {
    by_address: HashMap<IpAddr, VecDeque<Instant>>,
}

impl FailureLog {
    /// How long `address` is still refused, if it is.
    fn blocked_for(&mut self, address: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.by_address.get_mut(&address)?;
        prune(failures, now);
        if failures.is_empty() {
            self.by_address.remove(&address);
            return None;
        }
        if failures.len() < MAX_AUTH_FAILURES {
            return None;
        }
        // Refused until the oldest of the last MAX_AUTH_FAILURES leaves the window.
        failures
            .front()
            .map(|oldest| (*oldest + FAILURE_WINDOW).saturating_duration_since(now))
    }

    /// Records a failure; true when the address is now refused.
    fn record(&mut self, address: IpAddr, now: Instant) -> bool {
        if !self.by_address.contains_key(&address) && self.by_address.len() >= MAX_TRACKED {
            self.by_address.retain(|_, failures| {
                prune(failures, now);
                !failures.is_empty()
            });
            if self.by_address.len() >= MAX_TRACKED {
                evict_oldest(&mut self.by_address, |failures| failures.back().copied());
            }
        }
        let failures = self.by_address.entry(address).or_default();
        prune(failures, now);
        failures.push_back(now);
        while failures.len() > MAX_AUTH_FAILURES {
            failures.pop_front();
        }
        failures.len() >= MAX_AUTH_FAILURES
    }
}

fn prune(failures: &mut VecDeque<Instant>, now: Instant) {
    while failures
        .front()
        .is_some_and(|first| now.saturating_duration_since(*first) >= FAILURE_WINDOW)
    {
        failures.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-tokem", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token-and-more", b"secret-token"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
        assert!(!constant_time_eq(b"", b"secret-token"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_header_is_parsed_strictly() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert_eq!(check_bearer(&headers("Bearer abc"), "abc"), Ok(()));
        assert_eq!(check_bearer(&headers("bearer abc"), "abc"), Ok(()));
        assert_eq!(
            check_bearer(&headers("Bearer abd"), "abc"),
            Err(AuthFailure::Wrong)
        );
        assert_eq!(
            check_bearer(&headers("Basic abc"), "abc"),
            Err(AuthFailure::Malformed)
        );
        assert_eq!(
            check_bearer(&headers("abc"), "abc"),
            Err(AuthFailure::Malformed)
        );
        assert_eq!(
            check_bearer(&HeaderMap::new(), "abc"),
            Err(AuthFailure::Missing)
        );
    }

    #[test]
    fn class_limits_follow_the_read_limit() {
        assert_eq!(class_limit(600, LimitClass::Read), 600);
        assert_eq!(class_limit(600, LimitClass::Write), 60);
        assert_eq!(class_limit(600, LimitClass::Work), 30);
        assert_eq!(class_limit(5, LimitClass::Write), 1);
        assert_eq!(class_limit(20, LimitClass::Work), 2);
    }

    #[test]
    fn failures_block_an_address_until_the_window_passes() {
        let start = Instant::now();
        let mut log = FailureLog::default();
        for i in 0..MAX_AUTH_FAILURES {
            assert!(log.blocked_for(address(1), start).is_none());
            let blocked = log.record(address(1), start + Duration::from_secs(i as u64));
            assert_eq!(blocked, i + 1 == MAX_AUTH_FAILURES);
        }
        let at = start + Duration::from_secs(20);
        assert_eq!(
            log.blocked_for(address(1), at),
            Some(Duration::from_secs(40))
        );
        assert!(log.blocked_for(address(2), at).is_none());
        assert!(
            log.blocked_for(address(1), start + FAILURE_WINDOW)
                .is_none()
        );
    }

    #[test]
    fn the_failure_log_stays_bounded() {
        let start = Instant::now();
        let mut log = FailureLog::default();
        for n in 0..(MAX_TRACKED as u32 + 50) {
            let now = start + Duration::from_millis(u64::from(n));
            log.record(address(n), now);
        }
        assert_eq!(log.by_address.len(), MAX_TRACKED);
        // The newest are kept.
        assert!(
            log.by_address
                .contains_key(&address(MAX_TRACKED as u32 + 49))
        );
    }
}
