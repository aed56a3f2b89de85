//! `GET /metrics` in the Prometheus text format (bearer `API_AUTH_TOKEN`, like `/api`): runs by
//! state and error code, phase durations, grants and keys, the pool as last read, breaker states,
//! integration request counts and latencies, actor restarts, dependency health.
//!
//! Counts come from the store at scrape time (one aggregate query each, so they are right after a
//! restart too); durations from the in-process registry (`creditbrain_actors::metrics`); the pool
//! from its last recorded reading, so a scrape never calls OpenRouter.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use creditbrain_actors::resilience::BreakerState;

use crate::daemon::Handle;
use crate::http::api_error;

/// The text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `/metrics` route.
pub fn router(_handle: Handle) -> Router<Handle> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(handle): State<Handle>, headers: HeaderMap) -> Response {
    if !crate::api::gate::bearer_is_valid(&headers, handle.settings.api_auth_token.expose()) {
        let mut response = api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <API_AUTH_TOKEN>",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    match render(&handle).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::error!(error = %error, "metrics scrape failed");
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error; the cause is in the daemon's log",
            )
        }
    }
}

/// Writes one metric family: HELP, TYPE and its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
            return;
        }
        let labels: Vec<String> = labels
            .iter()
            .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
            .collect();
        let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
    }

    /// A family with one label, one sample per entry.
    fn by_label(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        values: &BTreeMap<String, u64>,
    ) {
        self.header(name, kind, help);
        for (key, value) in values {
            self.sample(name, &[(label, key)], value);
        }
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.header(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn render(handle: &Handle) -> Result<String, creditbrain_actors::store::StoreError> {
    let store = &handle.store;
    let stats = store.stats().await?;
    let open_grants = store.open_grants_total().await?;
    let kill_switch = store.kill_switch().await?;
    let last_pool = store.pool_history(1).await?.into_iter().next();

    let mut out = String::new();
    let mut family = Family { out: &mut out };
    family.single("creditbrain_up", "gauge", "1 while the daemon serves.", 1);
    family.header(
        "creditbrain_build_info",
        "gauge",
        "The running version (value always 1).",
    );
    family.sample(
        "creditbrain_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    family.single(
        "creditbrain_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        handle.started_at.elapsed().as_secs(),
    );
    let readiness = handle.readiness();
    family.header(
        "creditbrain_dependency_up",
        "gauge",
        "1 when the last health probe of the dependency succeeded.",
    );
    for (dependency, up) in [
        ("database", readiness.dependencies.database),
        ("openrouter", readiness.dependencies.openrouter),
    ] {
        family.sample(
            "creditbrain_dependency_up",
            &[("dependency", dependency)],
            u8::from(up),
        );
    }
    let env_switch = handle.settings.kill_switch_env;
    family.single(
        "creditbrain_kill_switch_engaged",
        "gauge",
        "1 while runs are blocked (EXECUTION_KILL_SWITCH or the runtime toggle).",
        u8::from(env_switch || kill_switch),
    );

    family.by_label(
        "creditbrain_strategies",
        "gauge",
        "Strategies by status.",
        "status",
        &stats.strategies_by_status,
    );
    family.by_label(
        "creditbrain_runs",
        "gauge",
        "Runs recorded, by state.",
        "state",
        &stats.runs_by_state,
    );
    family.by_label(
        "creditbrain_failed_runs",
        "gauge",
        "FAILED runs, by error code.",
        "code",
        &stats.failed_runs_by_code,
    );
    family.by_label(
        "creditbrain_keys",
        "gauge",
        "Holder keys in the ledger, by status.",
        "status",
        &stats.keys_by_status,
    );
    family.single(
        "creditbrain_granted_micro_usd_total",
        "counter",
        "Grants applied to holders' keys by live runs, all time, in micro-USD.",
        stats.granted_micro_usd,
    );
    family.single(
        "creditbrain_claimed_lamports_total",
        "counter",
        "Fees claimed by live runs, all time, in lamports.",
        stats.claimed_lamports,
    );
    family.single(
        "creditbrain_swapped_usdc_base_units_total",
        "counter",
        "USDC received from swaps by live runs, all time, in base units.",
        stats.swapped_usdc_base_units,
    );

    family.single(
        "creditbrain_pool_open_grants_micro_usd",
        "gauge",
        "Grants allocated by runs and not yet applied to keys, in micro-USD.",
        open_grants,
    );
    if let Some(pool) = last_pool {
        let balance = pool.total_credits_micro_usd - pool.total_usage_micro_usd;
        let headroom = (balance - pool.reserve_micro_usd - pool.promised_micro_usd).max(0);
        for (name, help, value) in [
            (
                "creditbrain_pool_balance_micro_usd",
                "OpenRouter credits minus usage at the last pool reading, in micro-USD.",
                balance,
            ),
            (
                "creditbrain_pool_promised_micro_usd",
                "Credit promised to holders' keys at the last pool reading, in micro-USD.",
                pool.promised_micro_usd,
            ),
            (
                "creditbrain_pool_reserve_micro_usd",
                "The reserve held back at the last pool reading, in micro-USD.",
                pool.reserve_micro_usd,
            ),
            (
                "creditbrain_pool_headroom_micro_usd",
                "What runs could grant at the last pool reading (before open grants), in micro-USD.",
                headroom,
            ),
        ] {
            family.single(name, "gauge", help, value);
        }
        family.single(
            "creditbrain_pool_reading_timestamp_seconds",
            "gauge",
            "When the pool was last read (Unix time).",
            pool.taken_at.timestamp(),
        );
    }

    let breakers = handle.breakers.snapshots();
    family.header(
        "creditbrain_breaker_state",
        "gauge",
        "Circuit breaker state per integration: 0 closed, 1 half-open, 2 open.",
    );
    for breaker in &breakers {
        let state = match breaker.state {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        };
        family.sample(
            "creditbrain_breaker_state",
            &[("integration", breaker.integration.as_str())],
            state,
        );
    }
    for (name, help, value) in [
        (
            "creditbrain_integration_requests_total",
            "Request attempts let through to the integration (each retry counts).",
            (|b: &creditbrain_actors::resilience::BreakerSnapshot| b.requests)
                as fn(&creditbrain_actors::resilience::BreakerSnapshot) -> u64,
        ),
        (
            "creditbrain_integration_failures_total",
            "Request attempts that failed transiently (counted by the breaker).",
            |b| b.failures,
        ),
        (
            "creditbrain_integration_rejected_total",
            "Calls refused without contacting the integration (breaker open).",
            |b| b.rejected,
        ),
    ] {
        family.header(name, "counter", help);
        for breaker in &breakers {
            family.sample(
                name,
                &[("integration", breaker.integration.as_str())],
                value(breaker),
            );
        }
    }
    let restarts: BTreeMap<String, u64> = handle
        .restart_counts
        .snapshot()
        .into_iter()
        .map(|(actor, count)| (actor.to_string(), count))
        .collect();
    family.by_label(
        "creditbrain_actor_restarts_total",
        "counter",
        "Actor restarts by the supervisor since the daemon started.",
        "actor",
        &restarts,
    );
    out.push_str(&creditbrain_actors::metrics::global().render());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
