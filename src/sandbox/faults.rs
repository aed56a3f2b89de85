//! API CONTRACT STUB — helper A replaces the bodies. Signatures are the agreed interface.
#![allow(unused)]

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use serde::{Deserialize, Serialize};

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
pub struct Faults {}

/// One injected behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// 429 with `Retry-After: retry_after_secs`.
    RateLimited { retry_after_secs: u64 },
    /// This 5xx status with the fake's error body.
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
    Always { fault: Fault },
    /// Each matching request independently with probability `probability` (0.0–1.0).
    Probability { probability: f64, fault: Fault },
    /// One entry per matching request in order (`null` = answer normally); then normal again.
    Script { steps: Vec<Option<Fault>> },
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

impl Faults {
    pub fn new() -> Self {
        unimplemented!()
    }
    /// Wraps a fake's router: counts requests per route, applies latency and faults.
    pub fn wrap(&self, fake: &'static str, style: ErrorStyle, router: Router) -> Router {
        unimplemented!()
    }
    pub fn add_rule(&self, rule: FaultRule) {
        unimplemented!()
    }
    /// Removes every rule for `fake`, or all rules.
    pub fn clear(&self, fake: Option<&str>) {
        unimplemented!()
    }
    pub fn rules(&self) -> Vec<FaultRule> {
        unimplemented!()
    }
    /// For the RPC fake's `sendTransaction`: whether the current rules say to drop this one
    /// (consumes a script step / rolls the probability like any other fault).
    pub fn should_drop_transaction(&self, fake: &str) -> bool {
        unimplemented!()
    }
    /// fake → route → requests received (including faulted ones).
    pub fn request_counts(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        unimplemented!()
    }
    /// `/_sandbox/faults` (GET list, POST add a rule, DELETE clear `?fake=`) and
    /// `/_sandbox/requests` (GET counts), for the control server.
    pub fn control_routes(&self) -> Router {
        unimplemented!()
    }
}

#[allow(dead_code)]
fn _unused(_: Duration) {}
