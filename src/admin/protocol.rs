//! The admin protocol: one request enum and one response enum, shared by server and client.
//!
//! Every connection opens with `Hello` carrying [`PROTOCOL_VERSION`]; the daemon refuses other
//! versions, so a CLI from another build fails with a clear message instead of misreading replies.
//! Each message is one JSON object on one line. There is one request per operation of
//! [`crate::ops`], and replies carry the operations layer's own views, so the CLI shows what the
//! HTTP API shows; a refusal carries the same stable snake_case code as the API's error body.

use std::time::Duration;

use creditbrain_actors::health::HealthReport;
use creditbrain_actors::store::cancel::CancelledRun;
use creditbrain_actors::strategy::StrategyInput;
use serde::{Deserialize, Serialize};

use crate::ops::{
    KeyView, KillSwitchView, OpError, PoolView, RunDetail, RunStarted, RunView, StrategyStatusView,
};
use crate::readiness::Readiness;

/// Bumped whenever a message changes incompatibly.
/// 2: one request per operation (strategies, runs, status, pool, keys, kill switch, reconcile);
/// `error` replies carry `details`.
pub const PROTOCOL_VERSION: u32 = 2;

/// The longest line either side accepts; protects the daemon from a runaway client.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// How long the client waits for a reply that only reads (health, lists, status).
const READ_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the client waits for a reply that goes through an actor: longer than the daemon's
/// own command timeout (120 s), so the daemon's timeout error, with its code, arrives first.
const COMMAND_REPLY_TIMEOUT: Duration = Duration::from_secs(150);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminRequest {
    /// The handshake; must be the first message.
    Hello { protocol: u32, client: String },
    /// Dependency health as `/health/ready` reports it, with details.
    Health,
    /// Creates a strategy; absent fields take the environment's defaults.
    CreateStrategy { strategy: StrategyInput },
    /// Every strategy, optionally only `active` or `paused` ones.
    ListStrategies { status: Option<String> },
    /// Changes only the fields the patch gives.
    UpdateStrategy {
        strategy_id: String,
        patch: StrategyInput,
    },
    /// Refused with `strategy_has_runs` while runs reference it.
    DeleteStrategy { strategy_id: String },
    /// Starts a manual run; answered once it is recorded (the run goes on in its worker).
    /// `dry_run: None` takes the daemon's DRY_RUN default.
    StartRun {
        strategy_id: String,
        dry_run: Option<bool>,
    },
    /// Resumes a FAILED run at the phase that failed.
    ResumeRun { run_id: String },
    /// Gives up a FAILED run for good (its unapplied grants are released); `reason` is audited.
    CancelRun { run_id: String, reason: String },
    /// The run row alone: what progress polling reads.
    GetRun { run_id: String },
    /// The run with its audit log, transactions and allocation counts.
    RunDetail { run_id: String },
    /// A strategy with its recent runs and the latest run's audit log.
    StrategyStatus { strategy_id: String },
    /// The kill switch: environment, runtime toggle, and whether runs are blocked.
    KillSwitchStatus,
    /// Sets the runtime kill switch (persisted and audited).
    SetKillSwitch { on: bool },
    /// The credit pool with open grants and runway.
    PoolStatus,
    /// Holders' keys (never a plaintext), optionally of one strategy and/or one wallet.
    ListKeys {
        strategy_id: Option<String>,
        wallet: Option<String>,
    },
    /// Compares the ledger with OpenRouter; with `fix`, repairs what can be repaired.
    Reconcile { fix: bool },
}

impl AdminRequest {
    /// How long a client should wait for this request's reply.
    pub fn reply_timeout(&self) -> Duration {
        match self {
            AdminRequest::StartRun { .. }
            | AdminRequest::ResumeRun { .. }
            | AdminRequest::CancelRun { .. }
            | AdminRequest::SetKillSwitch { .. }
            | AdminRequest::PoolStatus
            | AdminRequest::Reconcile { .. } => COMMAND_REPLY_TIMEOUT,
            _ => READ_REPLY_TIMEOUT,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminResponse {
    Hello {
        protocol: u32,
        daemon: String,
    },
    Health(HealthReply),
    /// A created or updated strategy (the operations layer's JSON, with `strategyId`).
    Strategy {
        strategy: serde_json::Value,
    },
    Strategies {
        strategies: Vec<serde_json::Value>,
    },
    StrategyDeleted {
        strategy_id: String,
    },
    /// A run was started or resumed and is now in `state`.
    RunStarted(RunStarted),
    Run(RunView),
    RunCancelled(CancelledRun),
    RunDetail(RunDetail),
    StrategyStatus(StrategyStatusView),
    KillSwitch(KillSwitchView),
    Pool(PoolView),
    Keys {
        keys: Vec<KeyView>,
    },
    Reconciled(ReconcileReply),
    /// A request failed; `code` is a stable snake_case code shared with the HTTP API, `details`
    /// what the API merges into its error object (`fields` of an invalid strategy, the `runId`
    /// of a run blocked by policy).
    Error {
        code: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<serde_json::Value>,
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

/// What a reconcile found and did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReply {
    /// Drift still there after the command: every finding without a `fixed` outcome (all of
    /// them when no fix was requested). The CLI exits 1 when it is not 0.
    pub drift_remaining: u64,
    /// The key maintenance report as the HTTP API sends it (camelCase).
    pub report: serde_json::Value,
}

impl AdminResponse {
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self::Error {
            code: code.to_string(),
            message: message.into(),
            details: None,
        }
    }
}

impl From<OpError> for AdminResponse {
    fn from(error: OpError) -> Self {
        Self::Error {
            code: error.code,
            message: error.message,
            details: error.details,
        }
    }
}
