//! The readiness view shared by `GET /health/ready` and `creditbrain health`: the runbook's JSON
//! (`status`, `timestamp`, `uptime`, `dependencies {openrouter, database}`, `responseTimeMs`).

use std::time::{Duration, Instant};

use chrono::Utc;
use std::collections::BTreeMap;

use creditbrain_actors::health::HealthReport;
use creditbrain_actors::resilience::{BreakerSnapshot, BreakerState};
use creditbrain_actors::store::now_timestamp;
use serde::{Deserialize, Serialize};

/// The readiness body, exactly as the operator runbook documents it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// `ok` or `degraded`.
    pub status: String,
    pub timestamp: String,
    /// Seconds since the daemon started.
    pub uptime: u64,
    pub dependencies: Dependencies,
    pub response_time_ms: u64,
    /// Each integration's circuit breaker (`closed`, `open`, `half_open`), keyed `bags`,
    /// `solana-rpc`, `helius-das`, `openrouter`. Informational: readiness itself is the runbook's
    /// database + OpenRouter check, so an open Bags breaker does not take the API out of a load
    /// balancer.
    pub integrations: BTreeMap<String, BreakerState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependencies {
    pub openrouter: bool,
    pub database: bool,
}

/// The liveness body: `status`, `timestamp`, `uptime`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    pub status: String,
    pub timestamp: String,
    pub uptime: u64,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.status == "ok"
    }

    /// Builds the view from the HealthActor's last report. A report older than `max_age` (the actor
    /// stopped probing) counts as every dependency down: stale good news is not readiness.
    pub fn from_report(
        report: &HealthReport,
        breakers: &[BreakerSnapshot],
        started: Instant,
        max_age: Duration,
    ) -> Self {
        let now = Utc::now();
        let ready = report.is_ready(now, max_age);
        let fresh = report.is_fresh(now, max_age);
        Self {
            status: if ready { "ok" } else { "degraded" }.to_string(),
            timestamp: now_timestamp(),
            uptime: started.elapsed().as_secs(),
            dependencies: Dependencies {
                openrouter: fresh && report.openrouter.ok,
                database: fresh && report.database.ok,
            },
            response_time_ms: report.response_time_ms,
            integrations: breakers
                .iter()
                .map(|breaker| (breaker.integration.as_str().to_string(), breaker.state))
                .collect(),
        }
    }
}

impl Liveness {
    pub fn now(started: Instant) -> Self {
        Self {
            status: "ok".to_string(),
            timestamp: now_timestamp(),
            uptime: started.elapsed().as_secs(),
        }
    }
}
