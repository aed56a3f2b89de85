//! The admin protocol: one request enum and one response enum, shared by server and client.
//!
//! Every connection opens with `Hello` carrying [`PROTOCOL_VERSION`]; the daemon refuses other
//! versions, so a CLI from another build fails with a clear message instead of misreading replies.
//! Each message is one JSON object on one line.

use creditbrain_actors::health::HealthReport;
use serde::{Deserialize, Serialize};

use crate::readiness::Readiness;

/// Bumped whenever a message changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest line either side accepts; protects the daemon from a runaway client.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminRequest {
    /// The handshake; must be the first message.
    Hello { protocol: u32, client: String },
    /// Dependency health as `/health/ready` reports it, with details.
    Health,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminResponse {
    Hello {
        protocol: u32,
        daemon: String,
    },
    Health(HealthReply),
    /// A request failed; `code` is a stable snake_case code shared with the HTTP API.
    Error {
        code: String,
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthReply {
    /// The runbook's readiness JSON.
    pub readiness: Readiness,
    /// The HealthActor's last probe round, with the reason a dependency is down.
    pub report: HealthReport,
    /// Actor restarts since the daemon started, by role.
    pub restarts: std::collections::BTreeMap<String, u64>,
    /// Each integration's breaker with request counts and the last error.
    pub breakers: Vec<creditbrain_actors::resilience::BreakerSnapshot>,
}

impl AdminResponse {
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self::Error {
            code: code.to_string(),
            message: message.into(),
        }
    }
}
