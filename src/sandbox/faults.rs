//! The sandbox's fault layer: per-fake and per-route latency and fault injection (429, 5xx, hangs,
//! dropped connections, malformed JSON, dropped transactions), request counters, and the
//! `/_sandbox/faults` and `/_sandbox/requests` control routes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The fakes a rule can name.
pub const FAKE_NAMES: [&str; 4] = ["bags", "rpc", "helius", "openrouter"];

/// The JSON-RPC method whose requests `Fault::DropTransaction` affects.
const SEND_TRANSACTION: &str = "sendTransaction";

/// How long a `Hang` lasts: far beyond any client timeout. A hung request holds nothing but a
/// timer, so abandoned ones cost nothing.
const HANG_FOR: Duration = Duration::from_secs(3600);

/// The largest JSON-RPC body the layer buffers to read the method (Solana transactions are
/// at most 1,232 bytes; this leaves room for big batches).
const MAX_RPC_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How a fake renders an injected error body (each service has its own shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorStyle {
    /// `{"success":false,"error":"…"}` (429 adds `limit`, `remaining`, `resetTime`).
    Bags,
    /// `{"jsonrpc":"2.0","error":{"code":…,"message":…},"id":…}` for Solana RPC / Helius.
    JsonRpc,
    /// `{"error":{"code":<status>,"message":"…"}}`.
    OpenRouter,
}

/// Shared fault plan and request counters for every fake of one sandbox.
#[derive(Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<Plan>>,
}

/// One injected behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// 429 with `Retry-After: retry_after_secs`.
    RateLimited { retry_after_secs: u64 },
    /// This status with the fake's error body (a 5xx usually; any 400–599 is accepted).
    ServerError { status: u16 },
    /// Never answer (the client times out).
    Hang,
    /// Close the connection without an HTTP response.
    DropConnection,
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// RPC `sendTransaction` only: answer with the signature but never land the transaction.
    DropTransaction,
}

/// When a rule's fault applies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum FaultMode {
    Always {
        fault: Fault,
    },
    /// Each matching request independently with probability `probability` (0.0–1.0).
    Probability {
        probability: f64,
        fault: Fault,
    },
    /// One entry per matching request in order (`null` = answer normally); then normal again.
    Script {
        steps: Vec<Option<Fault>>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Latency {
    Fixed { ms: u64 },
    Uniform { min_ms: u64, max_ms: u64 },
}

/// A rule: for `fake` (`bags`, `rpc`, `helius`, `openrouter`) and optionally one `route`
/// (REST: `"GET /api/v1/trade/quote"` with the path template; JSON-RPC: the method name), add
/// `latency` and/or apply `mode`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    pub fake: String,
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub latency: Option<Latency>,
    #[serde(default)]
    pub mode: Option<FaultMode>,
}

/// Why a rule was refused by [`Faults::try_add_rule`] (and `POST /_sandbox/faults`).
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum FaultRuleError {
    #[error("unknown fake {0:?}: expected one of bags, rpc, helius, openrouter")]
    UnknownFake(String),
    #[error("route must not be empty (omit it or use null for every route of the fake)")]
    EmptyRoute,
    #[error("probability must be between 0.0 and 1.0, got {0}")]
    Probability(f64),
    #[error("uniform latency needs min_ms <= max_ms, got min_ms {min_ms} and max_ms {max_ms}")]
    LatencyRange { min_ms: u64, max_ms: u64 },
    #[error("server_error status must be between 400 and 599, got {0}")]
    Status(u16),
}

impl FaultRule {
    /// Checks what serde cannot: a known fake, a probability in 0..=1, a sane latency range and
    /// an HTTP error status.
    pub fn validate(&self) -> Result<(), FaultRuleError> {
        if !FAKE_NAMES.contains(&self.fake.as_str()) {
            return Err(FaultRuleError::UnknownFake(self.fake.clone()));
        }
        if self
            .route
            .as_deref()
            .is_some_and(|route| route.trim().is_empty())
        {
            return Err(FaultRuleError::EmptyRoute);
        }
        if let Some(Latency::Uniform { min_ms, max_ms }) = self.latency
            && min_ms > max_ms
        {
            return Err(FaultRuleError::LatencyRange { min_ms, max_ms });
        }
        let faults: Vec<&Fault> = match &self.mode {
            None => Vec::new(),
            Some(FaultMode::Always { fault }) => vec![fault],
            Some(FaultMode::Probability { probability, fault }) => {
                if !(0.0..=1.0).contains(probability) {
                    return Err(FaultRuleError::Probability(*probability));
                }
                vec![fault]
            }
            Some(FaultMode::Script { steps }) => steps.iter().flatten().collect(),
        };
        for fault in faults {
            if let Fault::ServerError { status } = fault
                && !(400..=599).contains(status)
            {
                return Err(FaultRuleError::Status(*status));
            }
        }
        Ok(())
    }
}

/// The mutable part: rules with their script positions, and the counters.
#[derive(Default)]
struct Plan {
    rules: Vec<ActiveRule>,
    counts: BTreeMap<String, BTreeMap<String, u64>>,
}

struct ActiveRule {
    rule: FaultRule,
    /// Index of the next script step to hand out.
    next_step: usize,
}

/// What to do with one request.
#[derive(Debug, Default)]
struct Decision {
    latency: Option<Duration>,
    fault: Option<Fault>,
}

impl Plan {
    /// Latency and fault for one request to `route` of `fake`. A rule naming the route wins over
    /// a fake-wide one (`route: None`), separately for latency and for the fault mode; within a
    /// tier the oldest rule wins. Consumes a script step / rolls the probability of the winner.
    fn decide(&mut self, fake: &str, route: &str) -> Decision {
        let mut latency_rule = None;
        let mut mode_rule = None;
        for specific in [true, false] {
            for (index, active) in self.rules.iter().enumerate() {
                let rule = &active.rule;
                let matches = rule.fake == fake
                    && match &rule.route {
                        Some(r) => specific && r == route,
                        None => !specific,
                    };
                if !matches {
                    continue;
                }
                if latency_rule.is_none() && rule.latency.is_some() {
                    latency_rule = Some(index);
                }
                if mode_rule.is_none() && rule.mode.is_some() {
                    mode_rule = Some(index);
                }
            }
        }
        let latency = latency_rule
            .and_then(|index| self.rules[index].rule.latency.as_ref())
            .map(sample_latency);
        let fault = mode_rule.and_then(|index| self.rules[index].next_fault());
        Decision { latency, fault }
    }

    fn count(&mut self, fake: &str, route: &str) {
        *self
            .counts
            .entry(fake.to_string())
            .or_default()
            .entry(route.to_string())
            .or_default() += 1;
    }
}

impl ActiveRule {
    fn next_fault(&mut self) -> Option<Fault> {
        match self.rule.mode.as_ref()? {
            FaultMode::Always { fault } => Some(fault.clone()),
            // `gen::<f64>()` is in [0, 1): probability 1.0 always fires, 0.0 never, and an
            // out-of-range value added through `add_rule` cannot panic (unlike `gen_bool`).
            FaultMode::Probability { probability, fault } => {
                (rand::thread_rng().r#gen::<f64>() < *probability).then(|| fault.clone())
            }
            FaultMode::Script { steps } => {
                let step = steps.get(self.next_step).cloned().flatten();
                self.next_step = self.next_step.saturating_add(1).min(steps.len());
                step
            }
        }
    }
}

fn sample_latency(latency: &Latency) -> Duration {
    match *latency {
        Latency::Fixed { ms } => Duration::from_millis(ms),
        Latency::Uniform { min_ms, max_ms } => {
            let (low, high) = (min_ms.min(max_ms), min_ms.max(max_ms));
            Duration::from_millis(rand::thread_rng().gen_range(low..=high))
        }
    }
}

tokio::task_local! {
    /// The layer's decision for the request being handled, so that `should_drop_transaction`
    /// called from the handler reuses it instead of consuming a second script step.
    static CURRENT: Scoped;
}

#[derive(Clone, Copy)]
struct Scoped {
    fake: &'static str,
    drop_transaction: bool,
}

impl Faults {
    pub fn new() -> Self {
        Self::default()
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        // A panic elsewhere while holding the lock cannot leave the plan half-updated in a way
        // that matters to a fake; keep serving.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wraps a fake's router: counts requests per route, applies latency and faults.
    ///
    /// REST routes are named `"<METHOD> <path template>"` (the unmatched path when no route
    /// matches); JSON-RPC routes by the body's `method` (every call of a batch is counted; the
    /// fault for a batch is decided by its first call).
    pub fn wrap(&self, fake: &'static str, style: ErrorStyle, router: Router) -> Router {
        let layer = Layer {
            faults: self.clone(),
            fake,
            style,
        };
        router.layer(middleware::from_fn_with_state(layer, fault_layer))
    }

    /// Adds a rule without checking it (see [`FaultRule::validate`]); out-of-range values are
    /// tolerated: a probability above 1 always fires, an inverted latency range is swapped.
    pub fn add_rule(&self, rule: FaultRule) {
        self.plan().rules.push(ActiveRule { rule, next_step: 0 });
    }

    /// Validates, then adds the rule.
    pub fn try_add_rule(&self, rule: FaultRule) -> Result<(), FaultRuleError> {
        rule.validate()?;
        self.add_rule(rule);
        Ok(())
    }

    /// Removes every rule for `fake`, or all rules.
    pub fn clear(&self, fake: Option<&str>) {
        let mut plan = self.plan();
        match fake {
            Some(fake) => plan.rules.retain(|active| active.rule.fake != fake),
            None => plan.rules.clear(),
        }
    }

    pub fn rules(&self) -> Vec<FaultRule> {
        self.plan()
            .rules
            .iter()
            .map(|active| active.rule.clone())
            .collect()
    }

    /// For the RPC fake's `sendTransaction`: whether the current rules say to drop this one
    /// (consumes a script step / rolls the probability like any other fault).
    ///
    /// Inside a request that came through [`Faults::wrap`] the layer has already consumed the
    /// step for this request, so its decision is returned (call this from the handler's own task,
    /// not from a spawned one). Outside the layer the rules for `sendTransaction` and fake-wide
    /// rules are evaluated here.
    pub fn should_drop_transaction(&self, fake: &str) -> bool {
        let scoped = CURRENT
            .try_with(|scoped| (scoped.fake == fake).then_some(scoped.drop_transaction))
            .ok()
            .flatten();
        match scoped {
            Some(drop_transaction) => drop_transaction,
            None => matches!(
                self.plan().decide(fake, SEND_TRANSACTION).fault,
                Some(Fault::DropTransaction)
            ),
        }
    }

    /// fake → route → requests received (including faulted ones).
    pub fn request_counts(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.plan().counts.clone()
    }

    /// `/_sandbox/faults` (GET list, POST add a rule, DELETE clear `?fake=`) and
    /// `/_sandbox/requests` (GET counts), for the control server.
    pub fn control_routes(&self) -> Router {
        Router::new()
            .route(
                "/_sandbox/faults",
                get(list_rules).post(post_rule).delete(delete_rules),
            )
            .route("/_sandbox/requests", get(get_counts))
            .with_state(self.clone())
    }

    /// Counts the request on each route and decides, for the first route, what happens to it.
    fn on_request(&self, fake: &str, routes: &[String]) -> Decision {
        let mut plan = self.plan();
        for route in routes {
            plan.count(fake, route);
        }
        match routes.first() {
            Some(route) => plan.decide(fake, route),
            None => Decision::default(),
        }
    }
}

#[derive(Clone)]
struct Layer {
    faults: Faults,
    fake: &'static str,
    style: ErrorStyle,
}

async fn fault_layer(State(layer): State<Layer>, request: Request, next: Next) -> Response {
    // REST: the matched path template; unmatched requests (and, for JSON-RPC fakes, requests
    // whose body names no method, such as `GET /health`) by their literal path.
    let rest_route = {
        let path = match request.extensions().get::<MatchedPath>() {
            Some(matched) => matched.as_str().to_string(),
            None => request.uri().path().to_string(),
        };
        format!("{} {}", request.method(), path)
    };
    let (routes, rpc_id, request) = match layer.style {
        ErrorStyle::JsonRpc => {
            let (parts, body) = request.into_parts();
            let bytes = match axum::body::to_bytes(body, MAX_RPC_BODY_BYTES).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    layer.faults.on_request(layer.fake, &[rest_route]);
                    return rpc_error(
                        StatusCode::BAD_REQUEST,
                        -32700,
                        &format!("failed to read the request body: {error}"),
                        Value::Null,
                    );
                }
            };
            let (routes, id) = rpc_routes(&bytes, &rest_route);
            (routes, id, Request::from_parts(parts, Body::from(bytes)))
        }
        ErrorStyle::Bags | ErrorStyle::OpenRouter => (vec![rest_route], Value::Null, request),
    };

    let decision = layer.faults.on_request(layer.fake, &routes);
    if let Some(latency) = decision.latency {
        tokio::time::sleep(latency).await;
    }
    match decision.fault {
        // `DropTransaction` is the RPC fake's to apply (the request itself succeeds).
        None | Some(Fault::DropTransaction) => {
            let scoped = Scoped {
                fake: layer.fake,
                drop_transaction: decision.fault.is_some(),
            };
            CURRENT.scope(scoped, next.run(request)).await
        }
        Some(fault) => fault_response(layer.style, fault, rpc_id).await,
    }
}

/// The methods of a JSON-RPC body (one per call of a batch) and the id of a single call; a call
/// without a readable method is named `fallback`.
fn rpc_routes(body: &[u8], fallback: &str) -> (Vec<String>, Value) {
    let method = |call: &Value| {
        call.get("method")
            .and_then(Value::as_str)
            .unwrap_or(fallback)
            .to_string()
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(calls)) if !calls.is_empty() => {
            (calls.iter().map(method).collect(), Value::Null)
        }
        Ok(call @ Value::Object(_)) => {
            let id = call.get("id").cloned().unwrap_or(Value::Null);
            (vec![method(&call)], id)
        }
        _ => (vec![fallback.to_string()], Value::Null),
    }
}

async fn fault_response(style: ErrorStyle, fault: Fault, rpc_id: Value) -> Response {
    match fault {
        Fault::RateLimited { retry_after_secs } => rate_limited(style, retry_after_secs, rpc_id),
        Fault::ServerError { status } => {
            // `add_rule` does not validate; an impossible status degrades to a plain 500.
            let status = StatusCode::from_u16(status)
                .ok()
                .filter(|status| status.is_client_error() || status.is_server_error())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error_body(style, status, rpc_id)
        }
        Fault::Hang => {
            tokio::time::sleep(HANG_FOR).await;
            error_body(style, StatusCode::GATEWAY_TIMEOUT, rpc_id)
        }
        Fault::DropConnection => drop_connection(),
        Fault::MalformedJson => {
            // A body cut off mid-value, as a proxy that dropped the upstream mid-stream sends.
            let body = match style {
                ErrorStyle::Bags => r#"{"success":true,"response":"#,
                ErrorStyle::JsonRpc => r#"{"jsonrpc":"2.0","result":"#,
                ErrorStyle::OpenRouter => r#"{"data":"#,
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        // Handled by the caller; answering normally is the only sensible fallback here.
        Fault::DropTransaction => error_body(style, StatusCode::INTERNAL_SERVER_ERROR, rpc_id),
    }
}

/// A response hyper refuses to put on the wire, so the connection closes with no bytes sent and
/// the client sees a transport error ("connection closed before message completed"), not an HTTP
/// status.
///
/// hyper's HTTP/1 encoder cancels a head that carries `Transfer-Encoding` followed by
/// `Content-Length` ("unexpected content-length found, canceling"): it rewinds the buffered head,
/// marks the connection failed and drops it. (A body that errors before its first frame would do
/// the same, but building one needs `http-body` or `futures`, which are not dependencies.) Only
/// HTTP/1.1 connections are affected this way, which is what every client of the fakes speaks
/// over plain `http://`.
fn drop_connection() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    // The order matters: hyper checks `Content-Length` after it has seen `Transfer-Encoding`.
    let headers = response.headers_mut();
    headers.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

fn rate_limited(style: ErrorStyle, retry_after_secs: u64, rpc_id: Value) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    let body = match style {
        ErrorStyle::Bags => {
            let reset_time = chrono::Utc::now()
                .timestamp()
                .saturating_add(i64::try_from(retry_after_secs).unwrap_or(i64::MAX));
            headers.insert("x-ratelimit-limit", HeaderValue::from(1000u32));
            headers.insert("x-ratelimit-remaining", HeaderValue::from(0u32));
            headers.insert("x-ratelimit-reset", HeaderValue::from(reset_time));
            json!({
                "success": false,
                "error": "Rate limit exceeded",
                "limit": 1000,
                "remaining": 0,
                "resetTime": reset_time,
            })
        }
        ErrorStyle::OpenRouter => json!({"error": {"code": 429, "message": "Rate limit exceeded"}}),
        // HTTP 429 (not 200 with an error object): solana-client retries on the status.
        ErrorStyle::JsonRpc => json!({
            "jsonrpc": "2.0",
            "error": {"code": 429, "message": "Too many requests"},
            "id": rpc_id,
        }),
    };
    (StatusCode::TOO_MANY_REQUESTS, headers, Json(body)).into_response()
}

fn error_body(style: ErrorStyle, status: StatusCode, rpc_id: Value) -> Response {
    let message = status.canonical_reason().unwrap_or("Server error");
    match style {
        ErrorStyle::Bags => {
            (status, Json(json!({"success": false, "error": message}))).into_response()
        }
        ErrorStyle::OpenRouter => (
            status,
            Json(json!({"error": {"code": status.as_u16(), "message": message}})),
        )
            .into_response(),
        ErrorStyle::JsonRpc => rpc_error(status, i64::from(status.as_u16()), message, rpc_id),
    }
}

fn rpc_error(status: StatusCode, code: i64, message: &str, id: Value) -> Response {
    (
        status,
        Json(json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id})),
    )
        .into_response()
}

/// The control API's error shape (the daemon's `{"error":{"code","message"}}`).
fn control_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn list_rules(State(faults): State<Faults>) -> Json<Vec<FaultRule>> {
    Json(faults.rules())
}

/// `POST /_sandbox/faults`: one rule as JSON; 201 with the rule, or 400 saying what is wrong.
async fn post_rule(State(faults): State<Faults>, body: Bytes) -> Response {
    let rule: FaultRule = match serde_json::from_slice(&body) {
        Ok(rule) => rule,
        Err(error) => {
            return control_error(
                StatusCode::BAD_REQUEST,
                "invalid_fault_rule",
                &format!("the body is not a fault rule: {error}"),
            );
        }
    };
    match faults.try_add_rule(rule.clone()) {
        Ok(()) => (StatusCode::CREATED, Json(rule)).into_response(),
        Err(error) => control_error(
            StatusCode::BAD_REQUEST,
            "invalid_fault_rule",
            &error.to_string(),
        ),
    }
}

#[derive(Deserialize)]
struct FakeQuery {
    fake: Option<String>,
}

/// `DELETE /_sandbox/faults[?fake=<name>]`: `{"removed": n}`.
async fn delete_rules(
    State(faults): State<Faults>,
    query: Result<Query<FakeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let fake = match query {
        Ok(Query(query)) => query.fake,
        Err(rejection) => {
            return control_error(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                &rejection.body_text(),
            );
        }
    };
    if let Some(fake) = &fake
        && !FAKE_NAMES.contains(&fake.as_str())
    {
        return control_error(
            StatusCode::BAD_REQUEST,
            "unknown_fake",
            &FaultRuleError::UnknownFake(fake.clone()).to_string(),
        );
    }
    let before = faults.plan().rules.len();
    faults.clear(fake.as_deref());
    let removed = before.saturating_sub(faults.plan().rules.len());
    Json(json!({"removed": removed})).into_response()
}

async fn get_counts(State(faults): State<Faults>) -> Json<BTreeMap<String, BTreeMap<String, u64>>> {
    Json(faults.request_counts())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(fake: &str, route: Option<&str>, steps: Vec<Option<Fault>>) -> FaultRule {
        FaultRule {
            fake: fake.to_string(),
            route: route.map(str::to_string),
            latency: None,
            mode: Some(FaultMode::Script { steps }),
        }
    }

    #[test]
    fn should_drop_transaction_consumes_one_script_step_per_call() {
        let faults = Faults::new();
        faults.add_rule(script(
            "rpc",
            Some("sendTransaction"),
            vec![
                Some(Fault::DropTransaction),
                None,
                Some(Fault::DropTransaction),
            ],
        ));
        let seen: Vec<bool> = (0..5)
            .map(|_| faults.should_drop_transaction("rpc"))
            .collect();
        assert_eq!(seen, [true, false, true, false, false]);
    }

    #[test]
    fn should_drop_transaction_ignores_other_routes_and_fakes_and_other_faults() {
        let faults = Faults::new();
        faults.add_rule(script(
            "rpc",
            Some("getBalance"),
            vec![Some(Fault::DropTransaction)],
        ));
        faults.add_rule(script("helius", None, vec![Some(Fault::DropTransaction)]));
        assert!(!faults.should_drop_transaction("rpc"));

        // A fake-wide script is consumed by `sendTransaction`; a non-drop step is not a drop.
        faults.add_rule(script(
            "rpc",
            None,
            vec![Some(Fault::Hang), Some(Fault::DropTransaction)],
        ));
        assert!(!faults.should_drop_transaction("rpc"));
        assert!(faults.should_drop_transaction("rpc"));
        assert!(!faults.should_drop_transaction("rpc"));
        // The rules for other routes and fakes were not consumed.
        assert!(faults.should_drop_transaction("helius"));
    }

    #[test]
    fn a_route_rule_wins_over_a_fake_wide_one_and_keeps_the_other_unconsumed() {
        let faults = Faults::new();
        faults.add_rule(script("rpc", None, vec![Some(Fault::DropTransaction)]));
        faults.add_rule(script("rpc", Some("sendTransaction"), vec![None]));
        assert!(!faults.should_drop_transaction("rpc"));
        // The route script is exhausted (normal again); it still wins over the fake-wide rule.
        assert!(!faults.should_drop_transaction("rpc"));
        faults.clear(Some("rpc"));
        assert!(faults.rules().is_empty());
    }

    #[test]
    fn probability_extremes() {
        let faults = Faults::new();
        faults.add_rule(FaultRule {
            fake: "rpc".into(),
            route: None,
            latency: None,
            mode: Some(FaultMode::Probability {
                probability: 1.0,
                fault: Fault::DropTransaction,
            }),
        });
        assert!((0..50).all(|_| faults.should_drop_transaction("rpc")));
        faults.clear(None);
        faults.add_rule(FaultRule {
            fake: "rpc".into(),
            route: None,
            latency: None,
            mode: Some(FaultMode::Probability {
                probability: 0.0,
                fault: Fault::DropTransaction,
            }),
        });
        assert!((0..50).all(|_| !faults.should_drop_transaction("rpc")));
    }

    #[test]
    fn validation_rejects_what_serde_accepts() {
        let mut rule = script("nope", None, vec![]);
        assert_eq!(
            rule.validate(),
            Err(FaultRuleError::UnknownFake("nope".into()))
        );
        rule.fake = "bags".into();
        assert_eq!(rule.validate(), Ok(()));
        rule.mode = Some(FaultMode::Probability {
            probability: 1.5,
            fault: Fault::Hang,
        });
        assert_eq!(rule.validate(), Err(FaultRuleError::Probability(1.5)));
        rule.mode = Some(FaultMode::Script {
            steps: vec![None, Some(Fault::ServerError { status: 200 })],
        });
        assert_eq!(rule.validate(), Err(FaultRuleError::Status(200)));
        rule.mode = None;
        rule.latency = Some(Latency::Uniform {
            min_ms: 10,
            max_ms: 5,
        });
        assert!(matches!(
            rule.validate(),
            Err(FaultRuleError::LatencyRange { .. })
        ));
    }

    /// `DropConnection` must surface as a transport error, on fresh and on pooled connections.
    #[tokio::test]
    async fn drop_connection_is_a_transport_error_not_a_response() {
        let faults = Faults::new();
        let fake = Router::new().route("/api/v1/things/{id}", get(|| async { "ok" }));
        faults.add_rule(FaultRule {
            fake: "bags".into(),
            route: Some("GET /api/v1/things/{id}".into()),
            latency: None,
            mode: Some(FaultMode::Script {
                steps: vec![None, Some(Fault::DropConnection), None],
            }),
        });
        let (address, server) =
            crate::sandbox::serve_on_loopback(faults.wrap("bags", ErrorStyle::Bags, fake))
                .await
                .expect("bind loopback");
        let client = reqwest::Client::new();
        let url = format!("http://{address}/api/v1/things/1");
        let first = client.get(&url).send().await.expect("first answer");
        assert_eq!(first.text().await.expect("body"), "ok");
        // The second request reuses the pooled connection, which the fault then kills.
        let error = client
            .get(&url)
            .send()
            .await
            .expect_err("a dropped connection is not a response");
        assert!(!error.is_status(), "{error:?}");
        let third = client.get(&url).send().await.expect("third answer");
        assert_eq!(third.text().await.expect("body"), "ok");
        let missing = client
            .get(format!("http://{address}/nowhere"))
            .send()
            .await
            .expect("404");
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let counts = faults.request_counts();
        assert_eq!(counts["bags"]["GET /api/v1/things/{id}"], 3);
        assert_eq!(counts["bags"]["GET /nowhere"], 1);
        server.abort();
    }

    /// A JSON-RPC fake behind the layer: counted by method, the 429 carries the call's id, and a
    /// `DropTransaction` step reaches the handler through `should_drop_transaction` exactly once.
    #[tokio::test]
    async fn json_rpc_layer_counts_methods_and_shares_its_decision_with_the_handler() {
        let faults = Faults::new();
        let handler_faults = faults.clone();
        let fake = Router::new().route(
            "/",
            axum::routing::post(move |body: Bytes| {
                let faults = handler_faults.clone();
                async move {
                    let call: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let dropped =
                        call["method"] == SEND_TRANSACTION && faults.should_drop_transaction("rpc");
                    Json(
                        json!({"jsonrpc": "2.0", "result": {"dropped": dropped}, "id": call["id"]}),
                    )
                }
            }),
        );
        faults.add_rule(script(
            "rpc",
            Some("sendTransaction"),
            vec![
                Some(Fault::RateLimited {
                    retry_after_secs: 1,
                }),
                Some(Fault::DropTransaction),
                None,
            ],
        ));
        let (address, server) =
            crate::sandbox::serve_on_loopback(faults.wrap("rpc", ErrorStyle::JsonRpc, fake))
                .await
                .expect("bind loopback");
        let client = reqwest::Client::new();
        let url = format!("http://{address}/");
        let send = |id: u64| {
            client
                .post(&url)
                .json(
                    &json!({"jsonrpc": "2.0", "id": id, "method": "sendTransaction", "params": []}),
                )
                .send()
        };

        let first = send(7).await.expect("first answer");
        assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(first.headers()["retry-after"], "1");
        let body: Value = first.json().await.expect("json 429");
        assert_eq!(
            body,
            json!({"jsonrpc": "2.0", "error": {"code": 429, "message": "Too many requests"}, "id": 7})
        );

        for (id, dropped) in [(8, true), (9, false), (10, false)] {
            let answer = send(id).await.expect("answer");
            assert_eq!(answer.status(), StatusCode::OK);
            let body: Value = answer.json().await.expect("json");
            assert_eq!(body["result"]["dropped"], dropped, "call {id}");
        }

        let batch = json!([
            {"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
            {"jsonrpc": "2.0", "id": 2, "method": "getSlot"},
        ]);
        let answer = client.post(&url).json(&batch).send().await.expect("batch");
        assert_eq!(answer.status(), StatusCode::OK);
        client
            .post(&url)
            .body("not json")
            .send()
            .await
            .expect("garbage");

        client.get(&url).send().await.expect("a GET without a body");

        let counts = faults.request_counts();
        let rpc = &counts["rpc"];
        assert_eq!(rpc["sendTransaction"], 4);
        assert_eq!(rpc["getSlot"], 2);
        assert_eq!(rpc["POST /"], 1);
        assert_eq!(rpc["GET /"], 1);
        server.abort();
    }
}
