//! The operations both frontends offer (HTTP API and admin socket): one function per command or
//! query, answering serializable views or an [`OpError`] with a stable snake_case code.
//!
//! Commands go to the actors (runs to the RunCoordinator, reconcile and rotation to
//! KeyMaintenance, the pool to the PoolActor); queries read the store directly (DESIGN §3).
//! Strategy changes are written by the store in one transaction each and then the Scheduler is
//! told to re-sync, so a new, changed, paused or deleted schedule takes effect at once.

use std::collections::BTreeMap;

use creditbrain_actors::keys_maintenance::{
    self, KeyMaintenanceError, ReconcileReport, RevokedKey, RotatedKey,
};
use creditbrain_actors::pool::actor::{PoolError, PoolReport, pool_status};
use creditbrain_actors::run::{self as runs, CoordinatorError, StartedRun};
use creditbrain_actors::scheduler::request_resync;
use creditbrain_actors::store::StoreError;
use creditbrain_actors::store::audit::AuditRecord;
use creditbrain_actors::store::cancel::CancelledRun;
use creditbrain_actors::store::keys::UserKey;
use creditbrain_actors::store::runs::{Run, RunError, RunFilter, RunState, TriggeredBy};
use creditbrain_actors::store::strategies::{StoredStrategy, StrategyStoreError};
use creditbrain_actors::store::transactions::StoredTransaction;
use creditbrain_actors::store::usage::UsageSnapshot;
use creditbrain_actors::strategy::{StrategyInput, StrategyPatch, StrategySpec, StrategyStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::daemon::Handle;

/// How an error maps onto HTTP; the admin socket carries only the code and message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 400: the request is wrong; the message names what.
    BadRequest,
    /// 404.
    NotFound,
    /// 409: refused in the current state (history, a run in progress, policy).
    Conflict,
    /// 503: a dependency or actor is down or slow; retry later.
    Unavailable,
    /// 500: our fault; the body stays generic and the cause is logged once.
    Internal,
}

impl ErrorKind {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

/// A refused or failed operation: `{"error":{"code","message", ...details}}` on HTTP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpError {
    pub kind: ErrorKind,
    /// Stable snake_case code (documented in RUNBOOK.md).
    pub code: String,
    pub message: String,
    /// Extra fields merged into the error object (e.g. `fields` of a validation error, the
    /// `runId` of a run blocked by policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl OpError {
    pub fn new(kind: ErrorKind, code: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.to_string(),
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// A 500: the cause is logged here, once; the message the client sees is generic.
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, operation = context, "operation failed");
        Self::new(
            ErrorKind::Internal,
            "internal_error",
            "internal error; the cause is in the daemon's log",
        )
    }

    /// The whole error object as the API sends it (`details` merged in).
    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(map), Some(serde_json::Value::Object(extra))) =
            (error.as_object_mut(), &self.details)
        {
            for (key, value) in extra {
                map.insert(key.clone(), value.clone());
            }
        }
        json!({ "error": error })
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

fn store_error(context: &str, error: StoreError) -> OpError {
    if error.is_locked() {
        store_locked()
    } else {
        OpError::internal(context, &error)
    }
}

fn store_locked() -> OpError {
    OpError::new(
        ErrorKind::Unavailable,
        "database_locked",
        "the database is busy; retry",
    )
}

fn strategy_error(context: &str, error: StrategyStoreError) -> OpError {
    match error {
        StrategyStoreError::NotFound { strategy_id } => strategy_not_found(&strategy_id),
        StrategyStoreError::Invalid(errors) => invalid_strategy(&errors),
        StrategyStoreError::HasRuns { .. } => {
            OpError::new(ErrorKind::Conflict, "strategy_has_runs", error.to_string())
        }
        StrategyStoreError::Store(error) => store_error(context, error),
    }
}

fn invalid_strategy(errors: &creditbrain_actors::strategy::StrategyErrors) -> OpError {
    let fields: Vec<serde_json::Value> = errors
        .problems
        .iter()
        .map(|(field, message)| json!({"field": field, "message": message}))
        .collect();
    let summary = errors
        .problems
        .iter()
        .map(|(field, message)| format!("{field}: {message}"))
        .collect::<Vec<_>>()
        .join("; ");
    OpError::bad_request("invalid_strategy", format!("invalid strategy: {summary}"))
        .with_details(json!({ "fields": fields }))
}

fn strategy_not_found(strategy_id: &str) -> OpError {
    OpError::not_found(
        "strategy_not_found",
        format!("strategy {strategy_id} not found"),
    )
}

fn run_not_found(run_id: &str) -> OpError {
    OpError::not_found("run_not_found", format!("run {run_id} not found"))
}

fn coordinator_error(error: CoordinatorError) -> OpError {
    match error {
        CoordinatorError::StrategyNotFound(id) => strategy_not_found(&id),
        CoordinatorError::Run(RunError::NotFound { run_id }) => run_not_found(&run_id),
        CoordinatorError::Run(RunError::StrategyNotFound { strategy_id }) => {
            strategy_not_found(&strategy_id)
        }
        CoordinatorError::Run(
            error @ (RunError::NotResumable { .. }
            | RunError::NeverStarted { .. }
            | RunError::Cancelled { .. }),
        ) => OpError::new(ErrorKind::Conflict, "run_not_resumable", error.to_string()),
        CoordinatorError::Run(error @ RunError::NotCancellable { .. }) => OpError::new(
            ErrorKind::Conflict,
            "run_not_cancellable",
            error.to_string(),
        ),
        CoordinatorError::Run(error @ RunError::RunInProgress { .. }) => {
            OpError::new(ErrorKind::Conflict, "run_in_progress", error.to_string())
        }
        CoordinatorError::Run(RunError::Store(error)) => store_error("run", error),
        CoordinatorError::Run(error) => {
            OpError::new(ErrorKind::Conflict, "run_refused", error.to_string())
        }
        CoordinatorError::ActorDown | CoordinatorError::ActorTimeout(_) => OpError::new(
            ErrorKind::Unavailable,
            "coordinator_unavailable",
            error.to_string(),
        ),
    }
}

fn coordinator(handle: &Handle) -> Result<ractor::ActorRef<runs::CoordinatorMsg>, OpError> {
    handle.coordinator.get().ok_or_else(|| {
        OpError::new(
            ErrorKind::Unavailable,
            "coordinator_unavailable",
            "the run coordinator is restarting; retry",
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// `POST /api/strategies`, `creditbrain create-strategy`.
pub async fn create_strategy(
    handle: &Handle,
    input: &StrategyInput,
    actor: &str,
) -> Result<serde_json::Value, OpError> {
    let spec = StrategySpec::from_input(input, &handle.settings.strategy_defaults)
        .map_err(|errors| invalid_strategy(&errors))?;
    let created = handle
        .store
        .create_strategy(&spec, actor)
        .await
        .map_err(|error| strategy_error("create strategy", error))?;
    request_resync(&handle.scheduler);
    Ok(created.to_json())
}

/// `GET /api/strategies`, `creditbrain list-strategies`.
pub async fn list_strategies(
    handle: &Handle,
    status: Option<&str>,
) -> Result<Vec<serde_json::Value>, OpError> {
    let status = status.map(parse_strategy_status).transpose()?;
    let strategies = handle
        .store
        .list_strategies(status)
        .await
        .map_err(|error| store_error("list strategies", error))?;
    Ok(strategies.iter().map(StoredStrategy::to_json).collect())
}

/// `GET /api/strategies/{id}`.
pub async fn get_strategy(
    handle: &Handle,
    strategy_id: &str,
) -> Result<serde_json::Value, OpError> {
    handle
        .store
        .stored_strategy(strategy_id)
        .await
        .map_err(|error| store_error("get strategy", error))?
        .map(|strategy| strategy.to_json())
        .ok_or_else(|| strategy_not_found(strategy_id))
}

/// `PATCH /api/strategies/{id}`, `creditbrain update-strategy`.
pub async fn update_strategy(
    handle: &Handle,
    strategy_id: &str,
    patch: &StrategyPatch,
    actor: &str,
) -> Result<serde_json::Value, OpError> {
    let updated = handle
        .store
        .update_strategy(
            strategy_id,
            patch,
            handle.settings.strategy_defaults.min_cron_interval_hours,
            actor,
        )
        .await
        .map_err(|error| strategy_error("update strategy", error))?;
    request_resync(&handle.scheduler);
    Ok(updated.to_json())
}

/// `POST /api/strategies/{id}/enable|disable`.
pub async fn set_strategy_status(
    handle: &Handle,
    strategy_id: &str,
    status: StrategyStatus,
    actor: &str,
) -> Result<serde_json::Value, OpError> {
    let updated = handle
        .store
        .set_strategy_status(strategy_id, status, actor)
        .await
        .map_err(|error| strategy_error("set strategy status", error))?;
    request_resync(&handle.scheduler);
    Ok(updated.to_json())
}

/// `DELETE /api/strategies/{id}`, `creditbrain delete-strategy`: 409 `strategy_has_runs` when
/// its history must stay (pause it instead).
pub async fn delete_strategy(
    handle: &Handle,
    strategy_id: &str,
    actor: &str,
) -> Result<(), OpError> {
    handle
        .store
        .delete_strategy(strategy_id, actor)
        .await
        .map_err(|error| strategy_error("delete strategy", error))?;
    request_resync(&handle.scheduler);
    Ok(())
}

fn parse_strategy_status(text: &str) -> Result<StrategyStatus, OpError> {
    text.parse().map_err(|_| {
        OpError::bad_request(
            "invalid_status",
            format!("status must be active or paused, not {text:?}"),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Runs

/// A run as the frontends show it: every column of `runs`, camelCase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub run_id: String,
    pub strategy_id: String,
    pub state: String,
    pub triggered_by: String,
    pub dry_run: bool,
    pub resume_count: u32,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub updated_at: String,
    pub claimed_lamports: Option<u64>,
    pub swap_in_lamports: Option<u64>,
    pub swapped_usdc_base_units: Option<u64>,
    pub budget_micro_usd: Option<i64>,
    pub carry_in_micro_usd: Option<i64>,
    pub headroom_micro_usd: Option<i64>,
    pub allocated_micro_usd: Option<i64>,
    pub carry_out_micro_usd: Option<i64>,
    pub holders_count: Option<u64>,
    pub keys_created: Option<u64>,
    pub keys_updated: Option<u64>,
    pub keys_failed: Option<u64>,
    pub skipped_reason: Option<String>,
    pub error_code: Option<String>,
    pub error_detail: Option<String>,
    pub error_failed_state: Option<String>,
}

impl From<&Run> for RunView {
    fn from(run: &Run) -> Self {
        Self {
            run_id: run.run_id.clone(),
            strategy_id: run.strategy_id.clone(),
            state: run.state.as_str().to_string(),
            triggered_by: run.triggered_by.as_str().to_string(),
            dry_run: run.dry_run,
            resume_count: run.resume_count,
            started_at: run.started_at.clone(),
            finished_at: run.finished_at.clone(),
            updated_at: run.updated_at.clone(),
            claimed_lamports: run.claimed_lamports,
            swap_in_lamports: run.swap_in_lamports,
            swapped_usdc_base_units: run.swapped_usdc_base_units,
            budget_micro_usd: run.budget_micro_usd,
            carry_in_micro_usd: run.carry_in_micro_usd,
            headroom_micro_usd: run.headroom_micro_usd,
            allocated_micro_usd: run.allocated_micro_usd,
            carry_out_micro_usd: run.carry_out_micro_usd,
            holders_count: run.holders_count,
            keys_created: run.keys_created,
            keys_updated: run.keys_updated,
            keys_failed: run.keys_failed,
            skipped_reason: run.skipped_reason.clone(),
            error_code: run.error_code.clone(),
            error_detail: run.error_detail.clone(),
            error_failed_state: run.error_failed_state.map(|s| s.as_str().to_string()),
        }
    }
}

impl RunView {
    pub fn is_terminal(&self) -> bool {
        self.state == "COMPLETE" || self.state == "FAILED"
    }
}

/// One audit row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub id: i64,
    pub run_id: Option<String>,
    pub strategy_id: Option<String>,
    pub phase: Option<String>,
    pub action: String,
    pub actor: Option<String>,
    pub details: serde_json::Value,
    pub tx_signature: Option<String>,
    pub created_at: String,
}

impl AuditView {
    /// The run state this row records the run entering, if it records a state change: every
    /// state change appends its row in the same transaction (store::runs), so a run's rows in
    /// id order replay its states exactly.
    pub fn state_entered(&self) -> Option<&str> {
        match self.action.as_str() {
            "run_created" => Some(RunState::Pending.as_str()),
            "run_blocked" | "run_failed" => Some(RunState::Failed.as_str()),
            "state_advanced" => self.details.get("to").and_then(serde_json::Value::as_str),
            "run_resumed" => self
                .details
                .get("resumeAt")
                .and_then(serde_json::Value::as_str),
            _ => None,
        }
    }
}

impl From<&AuditRecord> for AuditView {
    fn from(record: &AuditRecord) -> Self {
        Self {
            id: record.id,
            run_id: record.run_id.clone(),
            strategy_id: record.strategy_id.clone(),
            phase: record.phase.clone(),
            action: record.action.clone(),
            actor: record.actor.clone(),
            details: record.details.clone(),
            tx_signature: record.tx_signature.clone(),
            created_at: record.created_at.clone(),
        }
    }
}

/// One Solana transaction of a run (never its signed bytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionView {
    pub phase: String,
    pub purpose: String,
    pub attempt: u32,
    pub signature: String,
    pub status: String,
    pub slot: Option<u64>,
    pub error: Option<String>,
    pub created_at: String,
}

impl From<&StoredTransaction> for TransactionView {
    fn from(tx: &StoredTransaction) -> Self {
        Self {
            phase: tx.phase.as_str().to_string(),
            purpose: tx.purpose.clone(),
            attempt: tx.attempt,
            signature: tx.signature.clone(),
            status: tx.status.as_str().to_string(),
            slot: tx.slot,
            error: tx.error.clone(),
            created_at: tx.created_at.clone(),
        }
    }
}

/// A run with its phase log: `GET /api/runs/{id}`, `creditbrain status --run`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetail {
    pub run: RunView,
    /// Every audit row of the run, oldest first.
    pub audit: Vec<AuditView>,
    pub transactions: Vec<TransactionView>,
    /// Allocation rows by status (`applied`, `pending`, `failed`, `skipped` ...).
    pub allocations: BTreeMap<String, u64>,
}

/// What starting or resuming answered: the run goes on in its worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStarted {
    pub run_id: String,
    pub state: String,
}

fn started(outcome: StartedRun) -> Result<RunStarted, OpError> {
    match outcome.blocked_code {
        // Recorded as FAILED without entering CLAIMING: a 409 naming the policy and the run.
        Some(code) => Err(OpError::new(
            ErrorKind::Conflict,
            &code.to_ascii_lowercase(),
            format!(
                "run {} was recorded as FAILED: blocked by policy ({code})",
                outcome.run_id
            ),
        )
        .with_details(json!({ "runId": outcome.run_id, "runErrorCode": code }))),
        None => Ok(RunStarted {
            run_id: outcome.run_id,
            state: outcome.state.as_str().to_string(),
        }),
    }
}

/// `POST /api/runs`, `creditbrain run --strategy`: answers as soon as the run is recorded.
pub async fn start_run(
    handle: &Handle,
    strategy_id: &str,
    dry_run: Option<bool>,
    triggered_by: TriggeredBy,
) -> Result<RunStarted, OpError> {
    let coordinator = coordinator(handle)?;
    let outcome = runs::start_run(
        &coordinator,
        strategy_id,
        triggered_by,
        dry_run,
        handle.settings.command_timeout,
    )
    .await
    .map_err(coordinator_error)?;
    started(outcome)
}

/// `POST /api/runs/{id}/resume`, `creditbrain run --resume`.
pub async fn resume_run(handle: &Handle, run_id: &str) -> Result<RunStarted, OpError> {
    let coordinator = coordinator(handle)?;
    let outcome = runs::resume_run(&coordinator, run_id, handle.settings.command_timeout)
        .await
        .map_err(coordinator_error)?;
    started(outcome)
}

/// `POST /api/runs/{id}/cancel`, `creditbrain run --cancel`: gives up a FAILED run for good; its
/// unapplied grants are released (carried over in credits mode). `reason` is audited.
pub async fn cancel_run(
    handle: &Handle,
    run_id: &str,
    reason: &str,
    actor: &str,
) -> Result<CancelledRun, OpError> {
    if reason.trim().is_empty() {
        return Err(OpError::bad_request(
            "invalid_reason",
            "say why the run is cancelled (it is kept in the audit log)",
        ));
    }
    let coordinator = coordinator(handle)?;
    runs::cancel_run(
        &coordinator,
        run_id,
        reason,
        actor,
        handle.settings.command_timeout,
    )
    .await
    .map_err(coordinator_error)
}

/// Filters of `GET /api/runs` and `creditbrain status --strategy`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunQuery {
    pub strategy_id: Option<String>,
    /// A run state (`COMPLETE`, `FAILED` ...).
    pub state: Option<String>,
    /// 1–500, default 50.
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

pub const MAX_PAGE: u32 = 500;

/// `GET /api/runs`: newest first.
pub async fn list_runs(handle: &Handle, query: &RunQuery) -> Result<Vec<RunView>, OpError> {
    let state = query
        .state
        .as_deref()
        .map(|text| {
            text.to_ascii_uppercase().parse::<RunState>().map_err(|_| {
                OpError::bad_request(
                    "invalid_state",
                    format!(
                        "state must be one of PENDING, CLAIMING, SWAPPING, BRIDGING, ALLOCATING, PROVISIONING, COMPLETE, FAILED; not {text:?}"
                    ),
                )
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(50);
    check_limit(limit)?;
    let filter = RunFilter {
        state,
        strategy_id: query.strategy_id.clone(),
        limit,
        offset: query.offset.unwrap_or(0),
    };
    let found = handle
        .store
        .runs(&filter)
        .await
        .map_err(|error| store_error("list runs", error))?;
    Ok(found.iter().map(RunView::from).collect())
}

/// The run row alone (cheap; what progress polling reads).
pub async fn get_run(handle: &Handle, run_id: &str) -> Result<RunView, OpError> {
    handle
        .store
        .run(run_id)
        .await
        .map_err(|error| store_error("get run", error))?
        .map(|run| RunView::from(&run))
        .ok_or_else(|| run_not_found(run_id))
}

/// `GET /api/runs/{id}`, `creditbrain status --run`: the run with its phase log.
pub async fn run_detail(handle: &Handle, run_id: &str) -> Result<RunDetail, OpError> {
    let run = get_run(handle, run_id).await?;
    let store = &handle.store;
    let audit = store
        .audit_for_run(run_id)
        .await
        .map_err(|error| store_error("run audit", error))?;
    let transactions = store
        .txs_for_run(run_id)
        .await
        .map_err(|error| store_error("run transactions", error))?;
    let mut allocations = BTreeMap::new();
    for allocation in store
        .allocations_for_run(run_id)
        .await
        .map_err(|error| store_error("run allocations", error))?
    {
        *allocations
            .entry(allocation.status.as_str().to_string())
            .or_insert(0u64) += 1;
    }
    Ok(RunDetail {
        run,
        audit: audit.iter().map(AuditView::from).collect(),
        transactions: transactions.iter().map(TransactionView::from).collect(),
        allocations,
    })
}

/// What a progress feed polls: the run row, then its audit rows newer than a cursor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunProgress {
    pub run: RunView,
    /// Audit rows with `id > after_id`, oldest first.
    pub audit: Vec<AuditView>,
}

/// `GET /api/runs/{id}/events`: the run, then its audit rows after `after_id` (all when `None`).
/// The run is read first, so when it is terminal every row of its last state change is in
/// `audit` already (they commit together).
pub async fn run_progress(
    handle: &Handle,
    run_id: &str,
    after_id: Option<i64>,
) -> Result<RunProgress, OpError> {
    let run = get_run(handle, run_id).await?;
    // Only the new rows: a watcher polls this several times a second for a run's whole life.
    // (The store has no such query; this is `audit_for_run` with a lower bound.)
    let audit = sqlx::query_as::<_, AuditRecord>(
        "SELECT * FROM audit_log WHERE run_id = ? AND id > ? ORDER BY id",
    )
    .bind(run_id)
    .bind(after_id.unwrap_or(i64::MIN))
    .fetch_all(handle.store.pool())
    .await
    .map_err(|error| store_error("run audit", StoreError::from(error)))?;
    Ok(RunProgress {
        run,
        audit: audit.iter().map(AuditView::from).collect(),
    })
}

/// `creditbrain status --strategy`: the strategy and its recent runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyStatusView {
    pub strategy: serde_json::Value,
    /// Newest first.
    pub runs: Vec<RunView>,
    /// The latest run's phase log.
    pub latest_audit: Vec<AuditView>,
}

pub async fn strategy_status(
    handle: &Handle,
    strategy_id: &str,
) -> Result<StrategyStatusView, OpError> {
    let strategy = get_strategy(handle, strategy_id).await?;
    let runs = list_runs(
        handle,
        &RunQuery {
            strategy_id: Some(strategy_id.to_string()),
            limit: Some(20),
            ..RunQuery::default()
        },
    )
    .await?;
    let latest_audit = match runs.first() {
        Some(latest) => run_detail(handle, &latest.run_id).await?.audit,
        None => Vec::new(),
    };
    Ok(StrategyStatusView {
        strategy,
        runs,
        latest_audit,
    })
}

// ---------------------------------------------------------------------------------------------
// Kill switch

/// The kill switch: the environment's (fixed at start) and the runtime toggle (persisted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KillSwitchView {
    /// EXECUTION_KILL_SWITCH.
    pub env: bool,
    /// `creditbrain kill-switch on|off`, persisted in the database.
    pub runtime: bool,
    /// Runs are blocked when either is on.
    pub engaged: bool,
}

pub async fn kill_switch_status(handle: &Handle) -> Result<KillSwitchView, OpError> {
    let runtime = handle
        .store
        .kill_switch()
        .await
        .map_err(|error| store_error("kill switch", error))?;
    Ok(kill_switch_view(handle, runtime))
}

fn kill_switch_view(handle: &Handle, runtime: bool) -> KillSwitchView {
    let env = handle.settings.kill_switch_env;
    KillSwitchView {
        env,
        runtime,
        engaged: env || runtime,
    }
}

/// Sets the runtime kill switch through the coordinator (persisted and audited).
pub async fn set_kill_switch(
    handle: &Handle,
    on: bool,
    actor: &str,
) -> Result<KillSwitchView, OpError> {
    let coordinator = coordinator(handle)?;
    let actor = actor.to_string();
    // The coordinator answers the previous value; the switch is now `on`.
    let _previous = creditbrain_actors::supervisor::ask(
        &coordinator,
        handle.settings.command_timeout,
        |reply| runs::CoordinatorMsg::SetKillSwitch { on, actor, reply },
    )
    .await
    .map_err(|_| {
        OpError::new(
            ErrorKind::Unavailable,
            "coordinator_unavailable",
            "the run coordinator did not answer; retry",
        )
    })?
    .map_err(coordinator_error)?;
    Ok(kill_switch_view(handle, on))
}

// ---------------------------------------------------------------------------------------------
// Pool

/// `GET /api/pool`, `creditbrain pool-status`: the account now, with the grants runs have
/// allocated but not yet applied (`openGrants`) taken off what is still available.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolView {
    pub balance_micro_usd: i64,
    pub promised_micro_usd: i64,
    pub reserve_bps: u32,
    pub reserve_micro_usd: i64,
    /// Allocated by runs still provisioning (or failed there): promised already.
    pub open_grants_micro_usd: i64,
    /// `max(0, balance − reserve − promised − openGrants)`: what the next run may grant.
    pub available_micro_usd: i64,
    pub total_credits_micro_usd: i64,
    pub total_usage_micro_usd: i64,
    pub runway_secs: Option<u64>,
    pub checked_at: String,
}

pub async fn pool_status_view(handle: &Handle) -> Result<PoolView, OpError> {
    let pool = handle.pool.get().ok_or_else(|| {
        OpError::new(
            ErrorKind::Unavailable,
            "pool_unavailable",
            "the pool actor is restarting; retry",
        )
    })?;
    let report: PoolReport = pool_status(
        &pool,
        u32::from(handle.settings.pool_reserve_bps),
        None,
        handle.settings.command_timeout,
    )
    .await
    .map_err(|error| match error {
        PoolError::Store(error) => store_error("pool status", error),
        other => OpError::new(
            ErrorKind::Unavailable,
            "pool_unavailable",
            format!("the pool cannot be read: {other}"),
        ),
    })?;
    let open_grants = handle
        .store
        .open_grants_total()
        .await
        .map_err(|error| store_error("open grants", error))?;
    let status = report.status;
    Ok(PoolView {
        balance_micro_usd: status.balance_micro_usd,
        promised_micro_usd: status.promised_micro_usd,
        reserve_bps: status.reserve_bps,
        reserve_micro_usd: status.reserve_micro_usd,
        open_grants_micro_usd: open_grants,
        available_micro_usd: status.headroom_micro_usd.saturating_sub(open_grants).max(0),
        total_credits_micro_usd: report.total_credits_micro_usd,
        total_usage_micro_usd: report.total_usage_micro_usd,
        runway_secs: report.runway_secs,
        checked_at: creditbrain_actors::store::format_timestamp(report.checked_at),
    })
}

/// One recorded reading of the pool (`GET /api/pool/history`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolSnapshotView {
    pub total_credits_micro_usd: i64,
    pub total_usage_micro_usd: i64,
    pub promised_micro_usd: i64,
    pub reserve_micro_usd: i64,
    pub taken_at: String,
}

pub async fn pool_history(handle: &Handle, limit: u32) -> Result<Vec<PoolSnapshotView>, OpError> {
    check_limit(limit)?;
    let history = handle
        .store
        .pool_history(limit)
        .await
        .map_err(|error| store_error("pool history", error))?;
    Ok(history
        .iter()
        .map(|snapshot| PoolSnapshotView {
            total_credits_micro_usd: snapshot.total_credits_micro_usd,
            total_usage_micro_usd: snapshot.total_usage_micro_usd,
            promised_micro_usd: snapshot.promised_micro_usd,
            reserve_micro_usd: snapshot.reserve_micro_usd,
            taken_at: creditbrain_actors::store::format_timestamp(snapshot.taken_at),
        })
        .collect())
}

fn check_limit(limit: u32) -> Result<(), OpError> {
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(())
    } else {
        Err(OpError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_PAGE}, not {limit}"),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Keys

/// A holder's key as operators see it: never its plaintext or ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub key_hash: String,
    pub strategy_id: String,
    pub holder_wallet: String,
    pub name: String,
    pub limit_micro_usd: i64,
    pub usage_micro_usd: i64,
    pub limit_reset: Option<String>,
    pub status: String,
    pub replaced_by_hash: Option<String>,
    /// The sealed plaintext is still waiting for the holder's reveal.
    pub awaiting_reveal: bool,
    pub revealed_at: Option<String>,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub last_synced_at: Option<String>,
}

impl From<&UserKey> for KeyView {
    fn from(key: &UserKey) -> Self {
        Self {
            key_hash: key.key_hash.clone(),
            strategy_id: key.strategy_id.clone(),
            holder_wallet: key.holder_wallet.clone(),
            name: key.name.clone(),
            limit_micro_usd: key.limit_micro_usd,
            usage_micro_usd: key.usage_micro_usd,
            limit_reset: key.limit_reset.clone(),
            status: key.status.as_str().to_string(),
            replaced_by_hash: key.replaced_by_hash.clone(),
            awaiting_reveal: key.has_encrypted_key(),
            revealed_at: key.revealed_at.clone(),
            expires_at: key.expires_at.clone(),
            created_at: key.created_at.clone(),
            last_synced_at: key.last_synced_at.clone(),
        }
    }
}

/// `GET /api/keys[?strategyId=&wallet=]`, `creditbrain list-keys [--strategy]`.
pub async fn list_keys(
    handle: &Handle,
    strategy_id: Option<&str>,
    wallet: Option<&str>,
) -> Result<Vec<KeyView>, OpError> {
    let store = &handle.store;
    let keys = match (strategy_id, wallet) {
        (_, Some(wallet)) => store.keys_for_holder(wallet).await,
        (Some(strategy_id), None) => store.keys_for_strategy(strategy_id, &[]).await,
        (None, None) => store.all_user_keys().await,
    }
    .map_err(|error| store_error("list keys", error))?;
    Ok(keys
        .iter()
        .filter(|key| strategy_id.is_none_or(|id| key.strategy_id == id))
        .map(KeyView::from)
        .collect())
}

/// `GET /api/strategies/{id}/keys`: every key of one strategy (404 for an unknown strategy).
pub async fn strategy_keys(handle: &Handle, strategy_id: &str) -> Result<Vec<KeyView>, OpError> {
    get_strategy(handle, strategy_id).await?;
    list_keys(handle, Some(strategy_id), None).await
}

/// A holder wallet given by a client must be a base58 Solana address (400 `invalid_wallet`).
pub fn check_wallet(wallet: &str) -> Result<(), OpError> {
    wallet
        .parse::<solana_sdk::pubkey::Pubkey>()
        .map(|_| ())
        .map_err(|_| {
            OpError::bad_request(
                "invalid_wallet",
                format!("wallet must be a base58 Solana address, not {wallet:?}"),
            )
        })
}

/// One usage reading of a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    pub key_hash: String,
    pub strategy_id: String,
    pub usage_micro_usd: i64,
    pub usage_daily_micro_usd: i64,
    pub usage_weekly_micro_usd: i64,
    pub usage_monthly_micro_usd: i64,
    pub limit_micro_usd: Option<i64>,
    pub limit_remaining_micro_usd: Option<i64>,
    pub polled_at: String,
}

impl From<&UsageSnapshot> for UsageView {
    fn from(s: &UsageSnapshot) -> Self {
        Self {
            key_hash: s.key_hash.clone(),
            strategy_id: s.strategy_id.clone(),
            usage_micro_usd: s.usage_micro_usd,
            usage_daily_micro_usd: s.usage_daily_micro_usd,
            usage_weekly_micro_usd: s.usage_weekly_micro_usd,
            usage_monthly_micro_usd: s.usage_monthly_micro_usd,
            limit_micro_usd: s.limit_micro_usd,
            limit_remaining_micro_usd: s.limit_remaining_micro_usd,
            polled_at: s.polled_at.clone(),
        }
    }
}

/// `GET /api/keys/{hash}/usage`: newest first.
pub async fn key_usage(
    handle: &Handle,
    key_hash: &str,
    limit: u32,
) -> Result<Vec<UsageView>, OpError> {
    check_limit(limit)?;
    require_key(handle, key_hash).await?;
    let usage = handle
        .store
        .usage_for_key(key_hash, limit)
        .await
        .map_err(|error| store_error("key usage", error))?;
    Ok(usage.iter().map(UsageView::from).collect())
}

/// `GET /api/usage?strategyId=`: a strategy's readings, newest first.
pub async fn strategy_usage(
    handle: &Handle,
    strategy_id: &str,
    limit: u32,
) -> Result<Vec<UsageView>, OpError> {
    check_limit(limit)?;
    get_strategy(handle, strategy_id).await?;
    let usage = handle
        .store
        .usage_for_strategy(strategy_id, limit)
        .await
        .map_err(|error| store_error("strategy usage", error))?;
    Ok(usage.iter().map(UsageView::from).collect())
}

async fn require_key(handle: &Handle, key_hash: &str) -> Result<UserKey, OpError> {
    handle
        .store
        .key_by_hash(key_hash)
        .await
        .map_err(|error| store_error("get key", error))?
        .ok_or_else(|| OpError::not_found("key_not_found", format!("key {key_hash} not found")))
}

fn key_maintenance_error(error: KeyMaintenanceError) -> OpError {
    let kind = match error.code() {
        "KEY_NOT_FOUND" => ErrorKind::NotFound,
        "RUN_IN_PROGRESS" | "ALLOCATION_OPEN" | "KEY_DISABLED" | "KEY_EXPIRING" | "KEY_MISSING"
        | "KEY_NOT_CURRENT" => ErrorKind::Conflict,
        "DB_ERROR" | "KEY_VAULT_ERROR" => return OpError::internal("key maintenance", &error),
        "DB_LOCKED" => return store_locked(),
        _ => ErrorKind::Unavailable,
    };
    OpError::new(kind, &error.code().to_ascii_lowercase(), error.to_string())
}

fn key_maintenance(
    handle: &Handle,
) -> Result<ractor::ActorRef<keys_maintenance::KeyMaintenanceMsg>, OpError> {
    handle.key_maintenance.get().ok_or_else(|| {
        OpError::new(
            ErrorKind::Unavailable,
            "key_maintenance_unavailable",
            "key maintenance is restarting; retry",
        )
    })
}

/// `POST /api/keys/{hash}/rotate`: a new key with the remaining limit, the old one deleted; the
/// holder reveals the new one.
pub async fn rotate_key(
    handle: &Handle,
    key_hash: &str,
    actor: &str,
) -> Result<RotatedKey, OpError> {
    let key = require_key(handle, key_hash).await?;
    if !key.status.is_current() {
        return Err(OpError::new(
            ErrorKind::Conflict,
            "key_not_current",
            format!(
                "key {key_hash} is {}; only a current key can be rotated",
                key.status.as_str()
            ),
        ));
    }
    rotate_holder_key(handle, &key.strategy_id, &key.holder_wallet, actor).await
}

/// Rotates a holder's current key in a strategy (operator or signed holder request).
pub async fn rotate_holder_key(
    handle: &Handle,
    strategy_id: &str,
    wallet: &str,
    actor: &str,
) -> Result<RotatedKey, OpError> {
    let actor_ref = key_maintenance(handle)?;
    keys_maintenance::rotate(
        &actor_ref,
        strategy_id,
        wallet,
        actor,
        handle.settings.command_timeout,
    )
    .await
    .map_err(key_maintenance_error)
}

/// `POST /api/keys/{hash}/revoke`: the key is disabled for good (deleted on OpenRouter) and its
/// promise leaves the pool.
pub async fn revoke_key(
    handle: &Handle,
    key_hash: &str,
    actor: &str,
) -> Result<RevokedKey, OpError> {
    let key = require_key(handle, key_hash).await?;
    if !key.status.is_current() {
        return Err(OpError::new(
            ErrorKind::Conflict,
            "key_not_current",
            format!("key {key_hash} is already {}", key.status.as_str()),
        ));
    }
    let actor_ref = key_maintenance(handle)?;
    keys_maintenance::revoke(&actor_ref, key_hash, actor, handle.settings.command_timeout)
        .await
        .map_err(key_maintenance_error)
}

/// `POST /api/reconcile`, `creditbrain reconcile [--fix]`.
pub async fn reconcile(
    handle: &Handle,
    fix: bool,
    actor: &str,
) -> Result<ReconcileReport, OpError> {
    let actor_ref = key_maintenance(handle)?;
    keys_maintenance::reconcile(&actor_ref, fix, actor, handle.settings.command_timeout)
        .await
        .map_err(key_maintenance_error)
}

// ---------------------------------------------------------------------------------------------
// Stats

/// `GET /api/stats`: counts for dashboards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsView {
    pub strategies_by_status: BTreeMap<String, u64>,
    pub runs_by_state: BTreeMap<String, u64>,
    /// FAILED runs by error code.
    pub failed_runs_by_code: BTreeMap<String, u64>,
    pub keys_by_status: BTreeMap<String, u64>,
    /// Σ grants applied to keys, all time (live runs).
    pub granted_micro_usd: i64,
    /// Σ measured USDC of completed swaps, all time.
    pub swapped_usdc_base_units: i64,
    /// Σ claimed lamports, all time.
    pub claimed_lamports: i64,
}

pub async fn stats(handle: &Handle) -> Result<StatsView, OpError> {
    let stats = handle
        .store
        .stats()
        .await
        .map_err(|error| store_error("stats", error))?;
    Ok(StatsView {
        strategies_by_status: stats.strategies_by_status,
        runs_by_state: stats.runs_by_state,
        failed_runs_by_code: stats.failed_runs_by_code,
        keys_by_status: stats.keys_by_status,
        granted_micro_usd: stats.granted_micro_usd,
        swapped_usdc_base_units: stats.swapped_usdc_base_units,
        claimed_lamports: stats.claimed_lamports,
    })
}
