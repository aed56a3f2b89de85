//! Runs in the store: the run row as the checkpoint (DESIGN §4) — creation under the daily cap,
//! runs blocked by policy, optimistic state advances inside the phase's own transaction, failure,
//! and resume at the failed phase — plus run leases, the runtime kill switch and daily run counts.
//!
//! Every state change here appends its audit row in the same transaction (`run_created`,
//! `run_blocked`, `state_advanced`, `run_failed`, `run_resumed`, `kill_switch_on/off`), so the
//! history can never disagree with the rows. Workers add their own rows (amounts, transactions).
//!
//! Decisions the policy relies on:
//! - `MAX_DAILY_RUNS` counts *started* runs (DESIGN §4). A run blocked by policy never started: it
//!   is recorded (FAILED, `error_failed_state = PENDING`, `skipped_reason = blocked_by_policy`) but
//!   not counted, so a scheduler firing into a kill switch does not use up the day's runs, and a
//!   DAILY_LIMIT refusal does not count itself. A blocked run can never be resumed (resuming it
//!   would bypass the policy that refused it): start a new run.
//! - A resume continues a run already counted when it started; it is not counted again.
//! - The count is checked and incremented in one statement inside the creating transaction, so
//!   two starts (two instances) cannot both take the last slot, and a start that fails afterwards
//!   (a concurrent active run) rolls its increment back.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, QueryBuilder, Row, Sqlite, SqliteConnection};

use super::audit::{AuditEntry, append_audit};
use super::{Store, StoreError, format_timestamp};

/// `skipped_reason` of a run recorded as blocked by policy (it never entered CLAIMING).
pub const BLOCKED_REASON: &str = "blocked_by_policy";

/// `skipped_reason` of a FAILED run an operator cancelled (see `Store::cancel_run`).
pub const CANCELLED_REASON: &str = "cancelled";

/// The audit actor of state changes made by the pipeline itself.
pub const WORKER_ACTOR: &str = "worker";

/// `runs.state`: the phase in progress or next to run, or a terminal state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunState {
    Pending,
    Claiming,
    Swapping,
    Bridging,
    Allocating,
    Provisioning,
    Complete,
    Failed,
}

impl RunState {
    pub const ALL: [RunState; 8] = [
        RunState::Pending,
        RunState::Claiming,
        RunState::Swapping,
        RunState::Bridging,
        RunState::Allocating,
        RunState::Provisioning,
        RunState::Complete,
        RunState::Failed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RunState::Pending => "PENDING",
            RunState::Claiming => "CLAIMING",
            RunState::Swapping => "SWAPPING",
            RunState::Bridging => "BRIDGING",
            RunState::Allocating => "ALLOCATING",
            RunState::Provisioning => "PROVISIONING",
            RunState::Complete => "COMPLETE",
            RunState::Failed => "FAILED",
        }
    }

    /// COMPLETE or FAILED.
    pub fn is_terminal(&self) -> bool {
        matches!(self, RunState::Complete | RunState::Failed)
    }

    /// The state after this one's phase succeeds; BRIDGING only when `bridging` (an EVM key is
    /// configured). `None` for terminal states. A phase that finds nothing to do may instead
    /// advance straight to COMPLETE (any forward move is allowed by [`advance`]).
    pub fn next(&self, bridging: bool) -> Option<RunState> {
        match self {
            RunState::Pending => Some(RunState::Claiming),
            RunState::Claiming => Some(RunState::Swapping),
            RunState::Swapping if bridging => Some(RunState::Bridging),
            RunState::Swapping | RunState::Bridging => Some(RunState::Allocating),
            RunState::Allocating => Some(RunState::Provisioning),
            RunState::Provisioning => Some(RunState::Complete),
            RunState::Complete | RunState::Failed => None,
        }
    }

    /// Position in the pipeline (FAILED has none: it is reached from anywhere).
    fn rank(&self) -> Option<u8> {
        match self {
            RunState::Pending => Some(0),
            RunState::Claiming => Some(1),
            RunState::Swapping => Some(2),
            RunState::Bridging => Some(3),
            RunState::Allocating => Some(4),
            RunState::Provisioning => Some(5),
            RunState::Complete => Some(6),
            RunState::Failed => None,
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| format!("unknown run state {text:?}"))
    }
}

/// Who started a run (`runs.triggered_by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TriggeredBy {
    Manual,
    Schedule,
    Api,
}

impl TriggeredBy {
    pub fn as_str(&self) -> &'static str {
        match self {
            TriggeredBy::Manual => "manual",
            TriggeredBy::Schedule => "schedule",
            TriggeredBy::Api => "api",
        }
    }
}

impl fmt::Display for TriggeredBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TriggeredBy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "manual" => Ok(TriggeredBy::Manual),
            "schedule" => Ok(TriggeredBy::Schedule),
            "api" => Ok(TriggeredBy::Api),
            other => Err(format!("unknown run trigger {other:?}")),
        }
    }
}

/// A row of `runs`. Amounts are `None` until their phase has run (then measured, or 0 with a
/// `skipped_reason`); lamports and USDC base units are `u64`, micro-USD `i64` like the rest of
/// the code base (never negative here: the schema CHECKs it).
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub run_id: String,
    pub strategy_id: String,
    pub state: RunState,
    pub triggered_by: TriggeredBy,
    pub dry_run: bool,
    /// The strategy as it was when the run started.
    pub strategy_snapshot: Option<serde_json::Value>,
    pub resume_count: u32,
    pub started_at: String,
    /// Set exactly when COMPLETE or FAILED.
    pub finished_at: Option<String>,
    pub updated_at: String,
    pub claimed_lamports: Option<u64>,
    pub swap_in_lamports: Option<u64>,
    pub swapped_usdc_base_units: Option<u64>,
    pub bridged_usdc_base_units: Option<u64>,
    pub bridge_mint_tx_hash: Option<String>,
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
    /// Set exactly when FAILED (with `error_failed_state`; the detail may be `None`).
    pub error_code: Option<String>,
    pub error_detail: Option<String>,
    /// The state the run failed in; resume re-enters it.
    pub error_failed_state: Option<RunState>,
}

impl Run {
    /// Cancelled by an operator after it failed: never resumed again.
    pub fn was_cancelled(&self) -> bool {
        self.state == RunState::Failed && self.skipped_reason.as_deref() == Some(CANCELLED_REASON)
    }

    /// Recorded as blocked by policy: it never started and cannot be resumed.
    pub fn was_blocked(&self) -> bool {
        self.skipped_reason.as_deref() == Some(BLOCKED_REASON)
            && self.error_failed_state == Some(RunState::Pending)
    }
}

fn decode_error(column: &str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: message.into(),
    }
}

fn unsigned(row: &SqliteRow, column: &str) -> Result<Option<u64>, sqlx::Error> {
    let value: Option<i64> = row.try_get(column)?;
    value
        .map(|v| u64::try_from(v).map_err(|_| decode_error(column, format!("negative value {v}"))))
        .transpose()
}

// Written out because sqlx's `macros` feature (and its derive) is off to halve the build.
impl FromRow<'_, SqliteRow> for Run {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        let state: String = row.try_get("state")?;
        let triggered_by: String = row.try_get("triggered_by")?;
        let dry_run: i64 = row.try_get("dry_run")?;
        let snapshot: Option<String> = row.try_get("strategy_snapshot")?;
        let resume_count: i64 = row.try_get("resume_count")?;
        let failed_state: Option<String> = row.try_get("error_failed_state")?;
        Ok(Self {
            run_id: row.try_get("run_id")?,
            strategy_id: row.try_get("strategy_id")?,
            state: state.parse().map_err(|e| decode_error("state", e))?,
            triggered_by: triggered_by
                .parse()
                .map_err(|e| decode_error("triggered_by", e))?,
            dry_run: dry_run != 0,
            strategy_snapshot: snapshot
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| decode_error("strategy_snapshot", e.to_string()))?,
            resume_count: u32::try_from(resume_count).map_err(|_| {
                decode_error("resume_count", format!("out of range {resume_count}"))
            })?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            updated_at: row.try_get("updated_at")?,
            claimed_lamports: unsigned(row, "claimed_lamports")?,
            swap_in_lamports: unsigned(row, "swap_in_lamports")?,
            swapped_usdc_base_units: unsigned(row, "swapped_usdc_base_units")?,
            bridged_usdc_base_units: unsigned(row, "bridged_usdc_base_units")?,
            bridge_mint_tx_hash: row.try_get("bridge_mint_tx_hash")?,
            budget_micro_usd: row.try_get("budget_micro_usd")?,
            carry_in_micro_usd: row.try_get("carry_in_micro_usd")?,
            headroom_micro_usd: row.try_get("headroom_micro_usd")?,
            allocated_micro_usd: row.try_get("allocated_micro_usd")?,
            carry_out_micro_usd: row.try_get("carry_out_micro_usd")?,
            holders_count: unsigned(row, "holders_count")?,
            keys_created: unsigned(row, "keys_created")?,
            keys_updated: unsigned(row, "keys_updated")?,
            keys_failed: unsigned(row, "keys_failed")?,
            skipped_reason: row.try_get("skipped_reason")?,
            error_code: row.try_get("error_code")?,
            error_detail: row.try_get("error_detail")?,
            error_failed_state: failed_state
                .map(|s| s.parse())
                .transpose()
                .map_err(|e| decode_error("error_failed_state", e))?,
        })
    }
}

/// What a new run needs.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    /// A fresh UUID when `None`.
    pub run_id: Option<String>,
    pub strategy_id: String,
    pub triggered_by: TriggeredBy,
    pub dry_run: bool,
    /// The strategy as the run starts with it (`StoredStrategy::to_json`); `Null` stores NULL.
    pub strategy_snapshot: serde_json::Value,
}

/// A run created by [`Store::create_run`], with the strategy's count of started runs for the
/// run's UTC day, this one included.
#[derive(Clone, Debug, PartialEq)]
pub struct CreatedRun {
    pub run: Run,
    pub daily_count: u32,
}

/// The output columns a phase sets when it advances the run; `None` leaves a column unchanged.
/// [`advance`] accepts only the outputs of the phases the advance completes (or skips): from
/// `from` up to, not including, `to` — a phase never writes a neighbour's number (I4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhaseOutputs {
    /// CLAIMING: the signer's measured lamport delta.
    pub claimed_lamports: Option<u64>,
    /// SWAPPING: lamports sent into the swap, and USDC measured out.
    pub swap_in_lamports: Option<u64>,
    pub swapped_usdc_base_units: Option<u64>,
    /// BRIDGING.
    pub bridged_usdc_base_units: Option<u64>,
    pub bridge_mint_tx_hash: Option<String>,
    /// ALLOCATING: allocated + carry_out = budget (I2), checked here and by the schema.
    pub budget_micro_usd: Option<i64>,
    pub carry_in_micro_usd: Option<i64>,
    pub headroom_micro_usd: Option<i64>,
    pub allocated_micro_usd: Option<i64>,
    pub carry_out_micro_usd: Option<i64>,
    pub holders_count: Option<u64>,
    /// PROVISIONING.
    pub keys_created: Option<u64>,
    pub keys_updated: Option<u64>,
    pub keys_failed: Option<u64>,
    /// Why a phase (or the rest of the run) did nothing (`below_threshold`, `no_holders` ...).
    pub skipped_reason: Option<String>,
}

impl PhaseOutputs {
    /// `(column, phase that owns it, is set)` for every phase output.
    fn owners(&self) -> [(&'static str, RunState, bool); 14] {
        use RunState::*;
        [
            (
                "claimed_lamports",
                Claiming,
                self.claimed_lamports.is_some(),
            ),
            (
                "swap_in_lamports",
                Swapping,
                self.swap_in_lamports.is_some(),
            ),
            (
                "swapped_usdc_base_units",
                Swapping,
                self.swapped_usdc_base_units.is_some(),
            ),
            (
                "bridged_usdc_base_units",
                Bridging,
                self.bridged_usdc_base_units.is_some(),
            ),
            (
                "bridge_mint_tx_hash",
                Bridging,
                self.bridge_mint_tx_hash.is_some(),
            ),
            (
                "budget_micro_usd",
                Allocating,
                self.budget_micro_usd.is_some(),
            ),
            (
                "carry_in_micro_usd",
                Allocating,
                self.carry_in_micro_usd.is_some(),
            ),
            (
                "headroom_micro_usd",
                Allocating,
                self.headroom_micro_usd.is_some(),
            ),
            (
                "allocated_micro_usd",
                Allocating,
                self.allocated_micro_usd.is_some(),
            ),
            (
                "carry_out_micro_usd",
                Allocating,
                self.carry_out_micro_usd.is_some(),
            ),
            ("holders_count", Allocating, self.holders_count.is_some()),
            ("keys_created", Provisioning, self.keys_created.is_some()),
            ("keys_updated", Provisioning, self.keys_updated.is_some()),
            ("keys_failed", Provisioning, self.keys_failed.is_some()),
        ]
    }

    /// The set outputs as JSON, keyed by column (for the audit row).
    fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        let mut put = |key: &str, value: serde_json::Value| {
            if !value.is_null() {
                map.insert(key.to_owned(), value);
            }
        };
        put("claimed_lamports", json!(self.claimed_lamports));
        put("swap_in_lamports", json!(self.swap_in_lamports));
        put(
            "swapped_usdc_base_units",
            json!(self.swapped_usdc_base_units),
        );
        put(
            "bridged_usdc_base_units",
            json!(self.bridged_usdc_base_units),
        );
        put("bridge_mint_tx_hash", json!(self.bridge_mint_tx_hash));
        put("budget_micro_usd", json!(self.budget_micro_usd));
        put("carry_in_micro_usd", json!(self.carry_in_micro_usd));
        put("headroom_micro_usd", json!(self.headroom_micro_usd));
        put("allocated_micro_usd", json!(self.allocated_micro_usd));
        put("carry_out_micro_usd", json!(self.carry_out_micro_usd));
        put("holders_count", json!(self.holders_count));
        put("keys_created", json!(self.keys_created));
        put("keys_updated", json!(self.keys_updated));
        put("keys_failed", json!(self.keys_failed));
        put("skipped_reason", json!(self.skipped_reason));
        serde_json::Value::Object(map)
    }

    /// Refuses outputs of phases outside `from..to`, negative micro-USD, u64 amounts SQLite's
    /// INTEGER cannot hold, and an unbalanced allocation (I2).
    fn validate(&self, from: RunState, to: RunState) -> Result<(), RunError> {
        let (Some(from_rank), Some(to_rank)) = (from.rank(), to.rank()) else {
            return Err(RunError::InvalidTransition { from, to });
        };
        for (column, owner, set) in self.owners() {
            let rank = owner.rank().unwrap_or(u8::MAX);
            if set && !(from_rank..to_rank).contains(&rank) {
                return Err(RunError::Invalid(format!(
                    "{column} is an output of {owner}, which the advance {from} → {to} does not \
                     complete"
                )));
            }
        }
        for (column, value) in [
            ("budget_micro_usd", self.budget_micro_usd),
            ("carry_in_micro_usd", self.carry_in_micro_usd),
            ("headroom_micro_usd", self.headroom_micro_usd),
            ("allocated_micro_usd", self.allocated_micro_usd),
            ("carry_out_micro_usd", self.carry_out_micro_usd),
        ] {
            if value.is_some_and(|v| v < 0) {
                return Err(RunError::Invalid(format!("{column} is negative")));
            }
        }
        if let (Some(budget), Some(allocated), Some(carry_out)) = (
            self.budget_micro_usd,
            self.allocated_micro_usd,
            self.carry_out_micro_usd,
        ) && allocated.checked_add(carry_out) != Some(budget)
        {
            return Err(RunError::Invalid(format!(
                "allocated ({allocated}) + carry-out ({carry_out}) must equal the budget \
                 ({budget}) to the micro-dollar (I2)"
            )));
        }
        Ok(())
    }
}

/// Filter for [`Store::runs`]; newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunFilter {
    pub state: Option<RunState>,
    pub strategy_id: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

impl Default for RunFilter {
    fn default() -> Self {
        Self {
            state: None,
            strategy_id: None,
            limit: 50,
            offset: 0,
        }
    }
}

/// A row of `run_leases`: which daemon instance drives a strategy's active run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub strategy_id: String,
    pub run_id: String,
    pub instance_id: String,
    pub acquired_at: String,
    pub heartbeat_at: String,
    pub expires_at: String,
}

impl Lease {
    /// Expired at `now`: anyone may take it over.
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= format_timestamp(now)
    }
}

impl FromRow<'_, SqliteRow> for Lease {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            strategy_id: row.try_get("strategy_id")?,
            run_id: row.try_get("run_id")?,
            instance_id: row.try_get("instance_id")?,
            acquired_at: row.try_get("acquired_at")?,
            heartbeat_at: row.try_get("heartbeat_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

/// Why a run operation was refused. The policy refusals name what the coordinator records:
/// `RunInProgress` → RUN_IN_PROGRESS, `DailyLimit` → DAILY_LIMIT, `StrategyNotFound` →
/// STRATEGY_NOT_FOUND, a locked store ([`StoreError::is_locked`]) → DB_LOCKED.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("run {run_id} not found")]
    NotFound { run_id: String },
    #[error("strategy {strategy_id} not found")]
    StrategyNotFound { strategy_id: String },
    #[error("a run with id {run_id} already exists")]
    DuplicateRunId { run_id: String },
    /// The optimistic check failed: the run is not in the state the caller expected (another
    /// worker moved it, or it failed meanwhile). Nothing was written.
    #[error("run {run_id} is {actual}, not {expected}: nothing was changed")]
    StateMismatch {
        run_id: String,
        expected: RunState,
        actual: RunState,
    },
    /// The strategy already has a non-terminal run (at most one, by the schema).
    #[error("strategy {strategy_id} already has an active run{}", active_run_id.as_ref().map(|id| format!(" ({id})")).unwrap_or_default())]
    RunInProgress {
        strategy_id: String,
        active_run_id: Option<String>,
    },
    #[error(
        "daily run limit reached for strategy {strategy_id}: {count} of {max} runs started on {utc_date} (UTC)"
    )]
    DailyLimit {
        strategy_id: String,
        utc_date: String,
        count: u32,
        max: u32,
    },
    #[error("a run cannot go from {from} to {to}")]
    InvalidTransition { from: RunState, to: RunState },
    #[error("run {run_id} is {state}: only FAILED runs can be resumed")]
    NotResumable { run_id: String, state: RunState },
    #[error("run {run_id} was blocked by policy ({code}) and never started: start a new run")]
    NeverStarted { run_id: String, code: String },
    #[error("run {run_id} was cancelled: start a new run")]
    Cancelled { run_id: String },
    #[error("run {run_id} cannot be cancelled: {why}")]
    NotCancellable { run_id: String, why: String },
    #[error("run {run_id} is {state}: there is nothing to drive")]
    NotActive { run_id: String, state: RunState },
    /// Bad arguments (outputs of another phase, an unbalanced allocation, an empty code ...).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RunError {
    fn from(error: sqlx::Error) -> Self {
        RunError::Store(error.into())
    }
}

fn to_i64(column: &str, value: u64) -> Result<i64, RunError> {
    i64::try_from(value)
        .map_err(|_| RunError::Invalid(format!("{column} {value} does not fit SQLite's INTEGER")))
}

fn opt_i64(column: &str, value: Option<u64>) -> Result<Option<i64>, RunError> {
    value.map(|v| to_i64(column, v)).transpose()
}

/// Error codes are stable SCREAMING_SNAKE_CASE words (KILL_SWITCH, TX_FAILED ...).
fn check_code(code: &str) -> Result<(), RunError> {
    if code.is_empty()
        || !code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(RunError::Invalid(format!(
            "error code {code:?} must be a non-empty SCREAMING_SNAKE_CASE word"
        )));
    }
    Ok(())
}

fn ttl_of(ttl: Duration) -> Result<chrono::Duration, RunError> {
    // Timestamps have millisecond precision and the schema requires expires_at > heartbeat_at.
    chrono::Duration::from_std(ttl)
        .ok()
        .filter(|ttl| *ttl >= chrono::Duration::milliseconds(1))
        .ok_or_else(|| RunError::Invalid(format!("lease ttl {ttl:?} must be at least 1 ms")))
}

fn format_date(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

pub(crate) async fn fetch_run(
    conn: &mut SqliteConnection,
    run_id: &str,
) -> Result<Option<Run>, StoreError> {
    Ok(
        sqlx::query_as::<_, Run>("SELECT * FROM runs WHERE run_id = ?")
            .bind(run_id)
            .fetch_optional(conn)
            .await?,
    )
}

async fn fetch_active_run(
    conn: &mut SqliteConnection,
    strategy_id: &str,
) -> Result<Option<Run>, StoreError> {
    Ok(sqlx::query_as::<_, Run>(
        "SELECT * FROM runs WHERE strategy_id = ? AND state NOT IN ('COMPLETE', 'FAILED')",
    )
    .bind(strategy_id)
    .fetch_optional(conn)
    .await?)
}

/// The precise error for an optimistic update that matched no row.
async fn mismatch(conn: &mut SqliteConnection, run_id: &str, expected: RunState) -> RunError {
    match fetch_run(conn, run_id).await {
        Ok(Some(run)) => RunError::StateMismatch {
            run_id: run_id.to_owned(),
            expected,
            actual: run.state,
        },
        Ok(None) => RunError::NotFound {
            run_id: run_id.to_owned(),
        },
        Err(error) => error.into(),
    }
}

async fn strategy_exists(
    conn: &mut SqliteConnection,
    strategy_id: &str,
) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM strategies WHERE strategy_id = ?")
            .bind(strategy_id)
            .fetch_one(conn)
            .await?
            > 0,
    )
}

/// Inserts the run row; a unique violation of the active-run index becomes `RunInProgress`.
async fn insert_run(
    conn: &mut SqliteConnection,
    run_id: &str,
    new: &NewRun,
    now: &str,
    failure: Option<(&str, &str)>,
) -> Result<Run, RunError> {
    let snapshot = match &new.strategy_snapshot {
        serde_json::Value::Null => None,
        value => Some(value.to_string()),
    };
    let (state, finished_at, skipped) = match failure {
        Some(_) => (RunState::Failed, Some(now), Some(BLOCKED_REASON)),
        None => (RunState::Pending, None, None),
    };
    let result = sqlx::query_as::<_, Run>(
        "INSERT INTO runs (run_id, strategy_id, state, triggered_by, dry_run, strategy_snapshot,
             started_at, finished_at, updated_at, skipped_reason, error_code, error_detail,
             error_failed_state)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         RETURNING *",
    )
    .bind(run_id)
    .bind(&new.strategy_id)
    .bind(state.as_str())
    .bind(new.triggered_by.as_str())
    .bind(i64::from(new.dry_run))
    .bind(snapshot)
    .bind(now)
    .bind(finished_at)
    .bind(now)
    .bind(skipped)
    .bind(failure.map(|(code, _)| code))
    .bind(failure.map(|(_, detail)| detail).filter(|d| !d.is_empty()))
    .bind(failure.map(|_| RunState::Pending.as_str()))
    .fetch_one(conn)
    .await;
    match result {
        Ok(run) => Ok(run),
        Err(error) => {
            let error = StoreError::from(error);
            if error.is_unique_violation() {
                // The run id was checked free in this transaction: the active-run index refused.
                Err(RunError::RunInProgress {
                    strategy_id: new.strategy_id.clone(),
                    active_run_id: None,
                })
            } else {
                Err(error.into())
            }
        }
    }
}

/// Checks what every creation checks: a valid unused run id, an existing strategy.
async fn check_new_run(conn: &mut SqliteConnection, new: &NewRun) -> Result<String, RunError> {
    let run_id = new
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if run_id.is_empty() || run_id.len() > 64 {
        return Err(RunError::Invalid(format!(
            "run id {run_id:?} must be 1 to 64 characters"
        )));
    }
    if fetch_run(conn, &run_id).await?.is_some() {
        return Err(RunError::DuplicateRunId { run_id });
    }
    if !strategy_exists(conn, &new.strategy_id).await? {
        return Err(RunError::StrategyNotFound {
            strategy_id: new.strategy_id.clone(),
        });
    }
    Ok(run_id)
}

/// Moves a run from `from` to `to` and writes the outputs of the phases this completes, inside
/// the caller's transaction (so a phase's rows — allocations, carry-over — commit with the
/// advance, or not at all). Any forward move is allowed (a phase with nothing to do may go
/// straight to COMPLETE); FAILED goes through [`fail_on`]. The update applies only if the run is
/// still in `from`: otherwise nothing is written and the error names the actual state. On
/// COMPLETE it sets `finished_at` and releases the run's lease. Appends a `state_advanced` audit
/// row. Use [`Store::begin_write`] for the transaction.
pub async fn advance(
    conn: &mut SqliteConnection,
    run_id: &str,
    from: RunState,
    to: RunState,
    outputs: &PhaseOutputs,
) -> Result<Run, RunError> {
    let forward = matches!((from.rank(), to.rank()), (Some(f), Some(t)) if t > f);
    if !forward || from.is_terminal() {
        return Err(RunError::InvalidTransition { from, to });
    }
    outputs.validate(from, to)?;
    let now = super::now_timestamp();
    let updated = sqlx::query_as::<_, Run>(
        "UPDATE runs SET
             state = ?1,
             updated_at = ?2,
             finished_at = CASE WHEN ?1 = 'COMPLETE' THEN max(?2, started_at) ELSE finished_at END,
             claimed_lamports = coalesce(?3, claimed_lamports),
             swap_in_lamports = coalesce(?4, swap_in_lamports),
             swapped_usdc_base_units = coalesce(?5, swapped_usdc_base_units),
             bridged_usdc_base_units = coalesce(?6, bridged_usdc_base_units),
             bridge_mint_tx_hash = coalesce(?7, bridge_mint_tx_hash),
             budget_micro_usd = coalesce(?8, budget_micro_usd),
             carry_in_micro_usd = coalesce(?9, carry_in_micro_usd),
             headroom_micro_usd = coalesce(?10, headroom_micro_usd),
             allocated_micro_usd = coalesce(?11, allocated_micro_usd),
             carry_out_micro_usd = coalesce(?12, carry_out_micro_usd),
             holders_count = coalesce(?13, holders_count),
             keys_created = coalesce(?14, keys_created),
             keys_updated = coalesce(?15, keys_updated),
             keys_failed = coalesce(?16, keys_failed),
             skipped_reason = coalesce(?17, skipped_reason)
         WHERE run_id = ?18 AND state = ?19
         RETURNING *",
    )
    .bind(to.as_str())
    .bind(&now)
    .bind(opt_i64("claimed_lamports", outputs.claimed_lamports)?)
    .bind(opt_i64("swap_in_lamports", outputs.swap_in_lamports)?)
    .bind(opt_i64(
        "swapped_usdc_base_units",
        outputs.swapped_usdc_base_units,
    )?)
    .bind(opt_i64(
        "bridged_usdc_base_units",
        outputs.bridged_usdc_base_units,
    )?)
    .bind(&outputs.bridge_mint_tx_hash)
    .bind(outputs.budget_micro_usd)
    .bind(outputs.carry_in_micro_usd)
    .bind(outputs.headroom_micro_usd)
    .bind(outputs.allocated_micro_usd)
    .bind(outputs.carry_out_micro_usd)
    .bind(opt_i64("holders_count", outputs.holders_count)?)
    .bind(opt_i64("keys_created", outputs.keys_created)?)
    .bind(opt_i64("keys_updated", outputs.keys_updated)?)
    .bind(opt_i64("keys_failed", outputs.keys_failed)?)
    .bind(&outputs.skipped_reason)
    .bind(run_id)
    .bind(from.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(run) = updated else {
        return Err(mismatch(conn, run_id, from).await);
    };
    if to == RunState::Complete {
        release_run_lease(conn, run_id).await?;
    }
    let entry = AuditEntry::new("state_advanced")
        .run(run_id)
        .strategy(&run.strategy_id)
        .phase(from.as_str())
        .actor(WORKER_ACTOR)
        .details(json!({
            "from": from.as_str(),
            "to": to.as_str(),
            "outputs": outputs.to_json(),
        }));
    append_audit(&mut *conn, &entry).await?;
    Ok(run)
}

/// Fails a run that is in `failed_state` (optimistic, like [`advance`]): state FAILED, the error
/// columns, `finished_at`; releases its lease; appends a `run_failed` audit row. Inside the
/// caller's transaction; [`Store::fail`] runs it in its own.
pub async fn fail_on(
    conn: &mut SqliteConnection,
    run_id: &str,
    failed_state: RunState,
    code: &str,
    detail: &str,
) -> Result<Run, RunError> {
    if failed_state.is_terminal() {
        return Err(RunError::InvalidTransition {
            from: failed_state,
            to: RunState::Failed,
        });
    }
    check_code(code)?;
    let now = super::now_timestamp();
    let detail = (!detail.is_empty()).then_some(detail);
    let updated = sqlx::query_as::<_, Run>(
        "UPDATE runs SET state = 'FAILED', error_code = ?1, error_detail = ?2,
             error_failed_state = ?3, finished_at = max(?4, started_at), updated_at = ?4
         WHERE run_id = ?5 AND state = ?3
         RETURNING *",
    )
    .bind(code)
    .bind(detail)
    .bind(failed_state.as_str())
    .bind(&now)
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(run) = updated else {
        return Err(mismatch(conn, run_id, failed_state).await);
    };
    release_run_lease(conn, run_id).await?;
    let entry = AuditEntry::new("run_failed")
        .run(run_id)
        .strategy(&run.strategy_id)
        .phase(failed_state.as_str())
        .actor(WORKER_ACTOR)
        .details(json!({"code": code, "detail": detail, "failedState": failed_state.as_str()}));
    append_audit(&mut *conn, &entry).await?;
    Ok(run)
}

/// A finished run drives nothing: its lease (if any) goes with it.
async fn release_run_lease(conn: &mut SqliteConnection, run_id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM run_leases WHERE run_id = ?")
        .bind(run_id)
        .execute(conn)
        .await?;
    Ok(())
}

impl Store {
    /// Creates a run as PENDING and counts it as started for the strategy's current UTC day, in
    /// one write transaction. Refused, with nothing written, when the strategy does not exist,
    /// already has an active run (`RunInProgress`), or has `max_daily_runs` runs today
    /// (`DailyLimit`; 0 = unlimited). Appends a `run_created` audit row.
    pub async fn create_run(
        &self,
        new: &NewRun,
        max_daily_runs: u32,
    ) -> Result<CreatedRun, RunError> {
        self.create_run_at(new, max_daily_runs, Utc::now()).await
    }

    pub(crate) async fn create_run_at(
        &self,
        new: &NewRun,
        max_daily_runs: u32,
        now: DateTime<Utc>,
    ) -> Result<CreatedRun, RunError> {
        let started_at = format_timestamp(now);
        let utc_date = format_date(now.date_naive());
        let mut tx = self.begin_write().await?;
        let run_id = check_new_run(&mut tx, new).await?;
        if let Some(active) = fetch_active_run(&mut tx, &new.strategy_id).await? {
            return Err(RunError::RunInProgress {
                strategy_id: new.strategy_id.clone(),
                active_run_id: Some(active.run_id),
            });
        }
        // Check and count in one statement (the schema's recipe): no row back = at the cap.
        let counted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO daily_run_counts (strategy_id, utc_date, run_count, updated_at)
             VALUES (?1, ?2, 1, ?3)
             ON CONFLICT (strategy_id, utc_date) DO UPDATE
                 SET run_count = run_count + 1, updated_at = excluded.updated_at
                 WHERE ?4 = 0 OR daily_run_counts.run_count < ?4
             RETURNING run_count",
        )
        .bind(&new.strategy_id)
        .bind(&utc_date)
        .bind(&started_at)
        .bind(i64::from(max_daily_runs))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(daily_count) = counted else {
            let count = daily_count_in(&mut tx, &new.strategy_id, &utc_date).await?;
            return Err(RunError::DailyLimit {
                strategy_id: new.strategy_id.clone(),
                utc_date,
                count,
                max: max_daily_runs,
            });
        };
        let daily_count = u32::try_from(daily_count)
            .map_err(|_| RunError::Invalid(format!("daily run count {daily_count} overflows")))?;
        let run = insert_run(&mut tx, &run_id, new, &started_at, None).await?;
        let entry = AuditEntry::new("run_created")
            .run(&run_id)
            .strategy(&new.strategy_id)
            .phase(RunState::Pending.as_str())
            .actor(new.triggered_by.as_str())
            .details(json!({
                "triggeredBy": new.triggered_by.as_str(),
                "dryRun": new.dry_run,
                "utcDate": utc_date,
                "dailyCount": daily_count,
                "maxDailyRuns": max_daily_runs,
            }));
        append_audit(&mut *tx, &entry).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(CreatedRun { run, daily_count })
    }

    /// Records a run the policy refused (KILL_SWITCH, DAILY_LIMIT, RUN_IN_PROGRESS ...): inserted
    /// directly as FAILED with `code`/`detail`, `error_failed_state = PENDING` and
    /// `skipped_reason = blocked_by_policy`. It never enters CLAIMING, is not counted against the
    /// daily cap (it did not start), holds no lease and cannot be resumed. Appends a
    /// `run_blocked` audit row.
    pub async fn create_blocked_run(
        &self,
        new: &NewRun,
        code: &str,
        detail: &str,
    ) -> Result<Run, RunError> {
        check_code(code)?;
        let now = super::now_timestamp();
        let mut tx = self.begin_write().await?;
        let run_id = check_new_run(&mut tx, new).await?;
        let run = insert_run(&mut tx, &run_id, new, &now, Some((code, detail))).await?;
        let entry = AuditEntry::new("run_blocked")
            .run(&run_id)
            .strategy(&new.strategy_id)
            .phase(RunState::Pending.as_str())
            .actor(new.triggered_by.as_str())
            .details(json!({
                "code": code,
                "detail": detail,
                "triggeredBy": new.triggered_by.as_str(),
                "dryRun": new.dry_run,
            }));
        append_audit(&mut *tx, &entry).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(run)
    }

    /// [`fail_on`] in its own write transaction.
    pub async fn fail(
        &self,
        run_id: &str,
        failed_state: RunState,
        code: &str,
        detail: &str,
    ) -> Result<Run, RunError> {
        let mut tx = self.begin_write().await?;
        let run = fail_on(&mut tx, run_id, failed_state, code, detail).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(run)
    }

    /// Resumes a FAILED run at the phase that failed (`error_failed_state`; the old service
    /// skipped it): clears the error columns and `finished_at`, adds 1 to `resume_count`, appends
    /// a `run_resumed` audit row, and returns the state to run next. Refused for runs not FAILED,
    /// for runs blocked by policy (`NeverStarted`), and while the strategy has another active run.
    /// Not counted against the daily cap: the run was counted when it started.
    pub async fn resume(&self, run_id: &str, actor: &str) -> Result<RunState, RunError> {
        let mut tx = self.begin_write().await?;
        let Some(run) = fetch_run(&mut tx, run_id).await? else {
            return Err(RunError::NotFound {
                run_id: run_id.to_owned(),
            });
        };
        if run.state != RunState::Failed {
            return Err(RunError::NotResumable {
                run_id: run_id.to_owned(),
                state: run.state,
            });
        }
        if run.was_blocked() {
            return Err(RunError::NeverStarted {
                run_id: run_id.to_owned(),
                code: run.error_code.unwrap_or_default(),
            });
        }
        if run.was_cancelled() {
            return Err(RunError::Cancelled {
                run_id: run_id.to_owned(),
            });
        }
        let resume_at = run.error_failed_state.ok_or_else(|| {
            RunError::Invalid(format!("run {run_id} is FAILED without error_failed_state"))
        })?;
        if let Some(active) = fetch_active_run(&mut tx, &run.strategy_id).await? {
            return Err(RunError::RunInProgress {
                strategy_id: run.strategy_id,
                active_run_id: Some(active.run_id),
            });
        }
        let now = super::now_timestamp();
        let updated = sqlx::query(
            "UPDATE runs SET state = error_failed_state, error_code = NULL, error_detail = NULL,
                 error_failed_state = NULL, finished_at = NULL, resume_count = resume_count + 1,
                 updated_at = ?
             WHERE run_id = ? AND state = 'FAILED'",
        )
        .bind(&now)
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from);
        match updated {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) => return Err(mismatch(&mut tx, run_id, RunState::Failed).await),
            Err(error) if error.is_unique_violation() => {
                return Err(RunError::RunInProgress {
                    strategy_id: run.strategy_id,
                    active_run_id: None,
                });
            }
            Err(error) => return Err(error.into()),
        }
        let entry = AuditEntry::new("run_resumed")
            .run(run_id)
            .strategy(&run.strategy_id)
            .phase(resume_at.as_str())
            .actor(actor)
            .details(json!({
                "resumeAt": resume_at.as_str(),
                "resumeCount": run.resume_count + 1,
                "previousError": {"code": run.error_code, "detail": run.error_detail},
            }));
        append_audit(&mut *tx, &entry).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(resume_at)
    }

    /// One run by id.
    pub async fn run(&self, run_id: &str) -> Result<Option<Run>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        fetch_run(&mut conn, run_id).await
    }

    /// A strategy's runs, newest first.
    pub async fn runs_for_strategy(
        &self,
        strategy_id: &str,
        limit: u32,
    ) -> Result<Vec<Run>, StoreError> {
        self.runs(&RunFilter {
            strategy_id: Some(strategy_id.to_owned()),
            limit,
            ..RunFilter::default()
        })
        .await
    }

    /// A strategy's newest run.
    pub async fn latest_run(&self, strategy_id: &str) -> Result<Option<Run>, StoreError> {
        Ok(self.runs_for_strategy(strategy_id, 1).await?.pop())
    }

    /// Runs matching `filter`, newest first (`started_at`, then insertion order).
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM runs WHERE 1 = 1");
        if let Some(state) = filter.state {
            query.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(strategy_id) = &filter.strategy_id {
            query
                .push(" AND strategy_id = ")
                .push_bind(strategy_id.clone());
        }
        query
            .push(" ORDER BY started_at DESC, rowid DESC LIMIT ")
            .push_bind(i64::from(filter.limit))
            .push(" OFFSET ")
            .push_bind(i64::from(filter.offset));
        Ok(query.build_query_as::<Run>().fetch_all(self.pool()).await?)
    }

    /// The strategy's non-terminal run, if any (at most one, by the schema).
    pub async fn active_run(&self, strategy_id: &str) -> Result<Option<Run>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        fetch_active_run(&mut conn, strategy_id).await
    }

    /// Runs started by the strategy on a UTC day (0 when none).
    pub async fn daily_run_count(
        &self,
        strategy_id: &str,
        utc_date: NaiveDate,
    ) -> Result<u32, StoreError> {
        let mut conn = self.pool().acquire().await?;
        daily_count_in(&mut conn, strategy_id, &format_date(utc_date)).await
    }

    /// Takes the strategy's lease for `run_id` on behalf of `instance_id` until now + `ttl`.
    /// `true` when acquired: no lease existed, the existing one had expired (taken over), or it
    /// is already this instance's lease for this run (refreshed). `false` when another live
    /// lease holds the strategy. The holder keeps it with [`renew_lease`](Self::renew_lease)
    /// well within `ttl`; a crashed holder's lease expires and another instance takes over.
    pub async fn acquire_lease(
        &self,
        strategy_id: &str,
        run_id: &str,
        instance_id: &str,
        ttl: Duration,
    ) -> Result<bool, RunError> {
        self.acquire_lease_at(strategy_id, run_id, instance_id, ttl, Utc::now())
            .await
    }

    /// Drops every lease. Only for a daemon that holds the database's lock file at start-up:
    /// then no other daemon can be running on this database, so every lease left belongs to a
    /// process that died (killed, crashed, power loss) and would otherwise hold its runs back
    /// until the lease expired. Returns how many were dropped.
    pub async fn clear_leases_of_dead_daemons(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM run_leases")
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn acquire_lease_at(
        &self,
        strategy_id: &str,
        run_id: &str,
        instance_id: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, RunError> {
        let ttl = ttl_of(ttl)?;
        let mut tx = self.begin_write().await?;
        let Some(run) = fetch_run(&mut tx, run_id).await? else {
            return Err(RunError::NotFound {
                run_id: run_id.to_owned(),
            });
        };
        if run.strategy_id != strategy_id {
            return Err(RunError::Invalid(format!(
                "run {run_id} belongs to strategy {}, not {strategy_id}",
                run.strategy_id
            )));
        }
        if run.state.is_terminal() {
            return Err(RunError::NotActive {
                run_id: run_id.to_owned(),
                state: run.state,
            });
        }
        let taken = sqlx::query(
            "INSERT INTO run_leases (strategy_id, run_id, instance_id, acquired_at, heartbeat_at,
                 expires_at)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)
             ON CONFLICT (strategy_id) DO UPDATE SET
                 run_id = excluded.run_id, instance_id = excluded.instance_id,
                 acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at,
                 expires_at = excluded.expires_at
             WHERE run_leases.expires_at <= excluded.acquired_at
                OR (run_leases.run_id = excluded.run_id
                    AND run_leases.instance_id = excluded.instance_id)",
        )
        .bind(strategy_id)
        .bind(run_id)
        .bind(instance_id)
        .bind(format_timestamp(now))
        .bind(format_timestamp(now + ttl))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(taken)
    }

    /// Extends this instance's lease on the run to now + `ttl`. `false` when the lease is no
    /// longer ours (released, or expired and taken over): the worker must stop driving the run.
    pub async fn renew_lease(
        &self,
        strategy_id: &str,
        run_id: &str,
        instance_id: &str,
        ttl: Duration,
    ) -> Result<bool, RunError> {
        self.renew_lease_at(strategy_id, run_id, instance_id, ttl, Utc::now())
            .await
    }

    pub(crate) async fn renew_lease_at(
        &self,
        strategy_id: &str,
        run_id: &str,
        instance_id: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, RunError> {
        let ttl = ttl_of(ttl)?;
        let renewed = sqlx::query(
            "UPDATE run_leases SET heartbeat_at = ?, expires_at = ?
             WHERE strategy_id = ? AND run_id = ? AND instance_id = ?",
        )
        .bind(format_timestamp(now))
        .bind(format_timestamp(now + ttl))
        .bind(strategy_id)
        .bind(run_id)
        .bind(instance_id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(renewed == 1)
    }

    /// Releases this instance's lease on the run; `false` when it held none (another instance
    /// that took the lease over keeps it: the old service deleted locks with no owner check).
    /// Leases are also released when their run completes or fails.
    pub async fn release_lease(
        &self,
        strategy_id: &str,
        run_id: &str,
        instance_id: &str,
    ) -> Result<bool, StoreError> {
        let released = sqlx::query(
            "DELETE FROM run_leases WHERE strategy_id = ? AND run_id = ? AND instance_id = ?",
        )
        .bind(strategy_id)
        .bind(run_id)
        .bind(instance_id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(released == 1)
    }

    /// The strategy's lease row, live or expired ([`Lease::is_expired_at`]).
    pub async fn current_lease(&self, strategy_id: &str) -> Result<Option<Lease>, StoreError> {
        Ok(
            sqlx::query_as::<_, Lease>("SELECT * FROM run_leases WHERE strategy_id = ?")
                .bind(strategy_id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The runtime kill switch (`settings.kill_switch`). The policy blocks runs when this *or*
    /// EXECUTION_KILL_SWITCH is on. A missing row is an error, not "off": the migration seeds it,
    /// so its absence means the database was tampered with.
    pub async fn kill_switch(&self) -> Result<bool, StoreError> {
        let value: String =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'kill_switch'")
                .fetch_one(self.pool())
                .await?;
        Ok(value == "true")
    }

    /// Sets the runtime kill switch and appends `kill_switch_on` / `kill_switch_off` with `actor`
    /// and the previous value, in one transaction (also when the value does not change: the
    /// operator's action is recorded). Returns the previous value.
    pub async fn set_kill_switch(&self, on: bool, actor: &str) -> Result<bool, StoreError> {
        let now = super::now_timestamp();
        let mut tx = self.begin_write().await?;
        let previous: Option<String> =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'kill_switch'")
                .fetch_optional(&mut *tx)
                .await?;
        let previous = previous.as_deref() == Some("true");
        let value = if on { "true" } else { "false" };
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ('kill_switch', ?, ?)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(value)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        let action = if on {
            "kill_switch_on"
        } else {
            "kill_switch_off"
        };
        let entry = AuditEntry::new(action)
            .actor(actor)
            .details(json!({"previous": previous, "value": on}));
        append_audit(&mut *tx, &entry).await?;
        tx.commit().await?;
        Ok(previous)
    }
}

async fn daily_count_in(
    conn: &mut SqliteConnection,
    strategy_id: &str,
    utc_date: &str,
) -> Result<u32, StoreError> {
    let count: Option<i64> = sqlx::query_scalar(
        "SELECT run_count FROM daily_run_counts WHERE strategy_id = ? AND utc_date = ?",
    )
    .bind(strategy_id)
    .bind(utc_date)
    .fetch_optional(conn)
    .await?;
    count
        .map(|c| {
            u32::try_from(c).map_err(|_| {
                StoreError::Sqlx(decode_error("run_count", format!("out of range {c}")))
            })
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

#[cfg(test)]
mod tests;
