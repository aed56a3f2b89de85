//! KeyMaintenance: keeps the key ledger (`user_keys`) and OpenRouter's keys in agreement
//! (reconcile, optionally repairing) and rotates keys older than `KEY_ROTATION_DAYS` (DESIGN §5),
//! auditing every repair and every rotation.
//!
//! # Reconcile
//!
//! One listing of OpenRouter's keys (disabled ones included), then the ledger, compared:
//! `missing` (a current key OpenRouter no longer has: deleted behind our back; confirmed by a
//! direct `GET` so a listing that shifted while it was paged cannot invent one), `orphaned` (a key
//! named `creditbrain-<strategy>-<wallet>` for an existing strategy that the ledger does not
//! know, the only such key for its holder, and the holder has no live current key), `limit_mismatch`
//! (OpenRouter's limit differs from the ledger's), `duplicate_names` (two or more keys for one
//! holder's name: unknown keys beside the holder's live key, or several unknown ones), `disabled`
//! (a current key disabled on OpenRouter: it cannot spend) and `pending_delete` (a rotated or
//! revoked key still on OpenRouter). Keys whose names are not ours, or name a strategy this
//! database does not have (another deployment sharing the account), are only counted.
//!
//! With `fix`: missing keys are marked `revoked` (and already deleted remotely), orphans are
//! adopted (no plaintext: the holder obtains one by signed rotation) and limits are set back to the
//! ledger's values. Nothing is ever deleted on OpenRouter by a reconcile, and duplicates, disabled
//! keys and pending deletes are left for a person (or the next rotation pass) to resolve. A
//! strategy with a run in progress is not repaired (its keys are in flux); the item says
//! `deferred`.
//!
//! Revoking a missing key keeps I1 honest: a key OpenRouter no longer has cannot spend, so the
//! credit the ledger still promised through it is released. The holder's unspent remainder on it
//! is lost with the key (it returns to the pool's headroom); their next grant creates a new key.
//! Adopting an orphan can only make promised credit larger (the key could spend before; now the
//! ledger counts it), and its limit is capped at the strategy's per-key maximum on OpenRouter first.
//!
//! # Rotation
//!
//! The new key keeps the holder's deterministic name, so orphan detection and provisioning's
//! adoption keep working, and the ledger tells old from new by hash. For one current key:
//!
//! 1. Not while a run could be using it: a strategy with a run in progress, or an open allocation
//!    of a failed run that targets the key, defers it (checked again inside the recording
//!    transaction). Keys disabled on OpenRouter (an operator's decision) and keys about to expire
//!    are not rotated.
//! 2. Unknown keys with the holder's name are deleted: leftovers of a rotation that crashed after
//!    creating its key and before recording it (their plaintext was never stored anywhere).
//! 3. The old key is frozen: its OpenRouter limit is set to 0, so it cannot spend while its
//!    successor exists, and the answer carries its final usage.
//! 4. The new key is created with the remaining limit (credits mode: ledger limit − usage, floored
//!    to whole cents; allowance mode: the same allowance, because balance already excludes what
//!    the old key spent and a whole allowance is promised anyway), the same `limit_reset` and the
//!    same `expires_at` (rotation replaces the credential, not the entitlement).
//! 5. Its plaintext is sealed with the vault (associated data: the new hash), and in one write
//!    transaction the old key becomes `rotated`, the new one current, and `key_rotated` is
//!    audited.
//! 6. The old key is deleted on OpenRouter and marked deleted. A failed delete leaves it pending
//!    (`keys_pending_remote_delete`); every pass retries those first (a 404 counts as deleted).
//!
//! Crashes: before 3 nothing changed. Between 3 and 5 the old key is frozen (the holder cannot
//! spend until the next pass; reconcile shows a limit mismatch) and a created key may be unknown
//! to the ledger (reconcile shows a duplicate name); the next pass finds the old key still due,
//! deletes the leftover (2), freezes again (3) and completes. A failure the actor sees (rather than
//! a crash) undoes what it can at once: the new key is deleted and the old limit restored. After 5
//! the rotation is done; only the delete may be outstanding, and it is retried.
//!
//! One maintenance job (reconcile, rotation pass, single rotation) runs at a time, so a reconcile
//! never sees a rotation half done and two passes never race for one key. This is per process:
//! several daemons on one database would need a lease.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use serde_json::json;
use tokio::task::{JoinHandle, JoinSet};

use crate::keyvault::{KeyVault, KeyVaultError};
use crate::openrouter::{
    CreateKey, Key, KeyUpdate, LimitReset, OpenRouterCallError, OpenRouterError, OpenRouterMsg,
    actor as openrouter,
};
use crate::run::provision::key_name;
use crate::store::audit::AuditEntry;
use crate::store::key_queries::{RotationBlocker, RotationRecord};
use crate::store::keys::{KeyStatus, NewUserKey, UserKey};
use crate::store::{Store, StoreError, parse_timestamp};
use crate::supervisor::ActorSlot;

/// Key limits are whole cents (DESIGN §5).
const MICROS_PER_CENT: i64 = 10_000;

/// The name prefix of every key CreditBrain creates ([`key_name`]).
const NAME_PREFIX: &str = "creditbrain-";

/// A key expiring sooner than this is left to expire rather than rotated.
const EXPIRY_MARGIN: chrono::Duration = chrono::Duration::minutes(10);

/// The shortest rotation-check interval (a zero period would make the timer panic).
const MIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long a graceful stop waits for a job in progress before abandoning it.
const DRAIN_ON_STOP: Duration = Duration::from_secs(10);

/// Who the timer's passes are audited as.
const TIMER_ACTOR: &str = "scheduler";

/// Why a key-maintenance command failed; [`KeyMaintenanceError::code`] is stable.
#[derive(thiserror::Error, Debug)]
pub enum KeyMaintenanceError {
    #[error("openrouter: {0}")]
    OpenRouter(OpenRouterCallError),
    /// The OpenRouterActor is restarting.
    #[error("the openrouter actor is not running")]
    OpenRouterDown,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A ledger row the database's checks should have prevented.
    #[error("key {key_hash}: {problem}")]
    Ledger { key_hash: String, problem: String },
    #[error("holder {wallet} has no current key in strategy {strategy_id}")]
    KeyNotFound { strategy_id: String, wallet: String },
    #[error("strategy {strategy_id} has run {run_id} in progress; its keys rotate after it ends")]
    RunInProgress { strategy_id: String, run_id: String },
    #[error(
        "allocation {allocation_id} of run {run_id} still targets key {key_hash}; \
         resume the run before rotating the key"
    )]
    OpenAllocation {
        key_hash: String,
        allocation_id: i64,
        run_id: String,
    },
    #[error("key {key_hash} is disabled on openrouter; enable or revoke it instead")]
    KeyDisabled { key_hash: String },
    #[error("key {key_hash} expires at {expires_at}; it is left to expire")]
    KeyExpiring {
        key_hash: String,
        expires_at: String,
    },
    #[error("key {key_hash} is not on openrouter any more; reconcile revokes it")]
    KeyMissing { key_hash: String },
    #[error("key {key_hash} stopped being the holder's current key during the rotation")]
    KeyNotCurrent { key_hash: String },
    #[error("key vault: {0}")]
    Vault(KeyVaultError),
    #[error("key maintenance actor is not running")]
    ActorDown,
    #[error("key maintenance actor did not answer within {} s", .0.as_secs())]
    ActorTimeout(Duration),
}

impl KeyMaintenanceError {
    /// `OPENROUTER_*` (passed through from the OpenRouterActor; `OPENROUTER_UNAVAILABLE` also
    /// while it restarts), `DB_LOCKED`, `DB_ERROR`, `KEY_NOT_FOUND`, `RUN_IN_PROGRESS`,
    /// `ALLOCATION_OPEN`, `KEY_DISABLED`, `KEY_EXPIRING`, `KEY_MISSING`, `KEY_NOT_CURRENT`,
    /// `KEY_VAULT_ERROR`, `KEY_MAINTENANCE_DOWN`, `KEY_MAINTENANCE_TIMEOUT`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::OpenRouter(error) => error.code(),
            Self::OpenRouterDown => "OPENROUTER_UNAVAILABLE",
            Self::Store(error) if error.is_locked() => "DB_LOCKED",
            Self::Store(_) | Self::Ledger { .. } => "DB_ERROR",
            Self::KeyNotFound { .. } => "KEY_NOT_FOUND",
            Self::RunInProgress { .. } => "RUN_IN_PROGRESS",
            Self::OpenAllocation { .. } => "ALLOCATION_OPEN",
            Self::KeyDisabled { .. } => "KEY_DISABLED",
            Self::KeyExpiring { .. } => "KEY_EXPIRING",
            Self::KeyMissing { .. } => "KEY_MISSING",
            Self::KeyNotCurrent { .. } => "KEY_NOT_CURRENT",
            Self::Vault(_) => "KEY_VAULT_ERROR",
            Self::ActorDown => "KEY_MAINTENANCE_DOWN",
            Self::ActorTimeout(_) => "KEY_MAINTENANCE_TIMEOUT",
        }
    }

    /// Not a failure but "not now": a run is using the key; a later pass rotates it.
    pub fn is_deferral(&self) -> bool {
        matches!(
            self,
            Self::RunInProgress { .. } | Self::OpenAllocation { .. }
        )
    }
}

impl From<OpenRouterCallError> for KeyMaintenanceError {
    fn from(error: OpenRouterCallError) -> Self {
        Self::OpenRouter(error)
    }
}

fn is_not_found(error: &OpenRouterCallError) -> bool {
    error.code() == "OPENROUTER_NOT_FOUND"
}

/// Whether a failed `POST /keys` may have created the key after all (the request may have
/// reached OpenRouter): then a leftover must be looked for.
fn may_have_created(error: &OpenRouterCallError) -> bool {
    match error {
        // A 4xx refusal or a request never sent created nothing; a timeout, a broken
        // connection, a 5xx or an unreadable answer may have.
        OpenRouterCallError::Api(error) => {
            !error.is_safe_to_repeat()
                && !matches!(
                    error,
                    OpenRouterError::Status { .. } | OpenRouterError::InvalidRequest(_)
                )
        }
        OpenRouterCallError::ActorTimeout(_) | OpenRouterCallError::ActorDown => true,
        OpenRouterCallError::Unavailable { .. } => false,
    }
}

/// What a repair did to one drift item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FixOutcome {
    Fixed,
    /// Not now (a run is in progress for the strategy); a later reconcile repairs it.
    Deferred {
        reason: String,
    },
    /// Not repaired automatically; the reason says what a person should look at.
    Skipped {
        reason: String,
    },
    Failed {
        code: String,
        message: String,
    },
}

impl FixOutcome {
    fn failed(error: &KeyMaintenanceError) -> Self {
        Self::Failed {
            code: error.code().to_string(),
            message: error.to_string(),
        }
    }
}

/// A current ledger key OpenRouter does not have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MissingKey {
    pub key_hash: String,
    pub strategy_id: String,
    pub holder_wallet: String,
    pub limit_micro_usd: i64,
    pub usage_micro_usd: i64,
    /// `None` unless a fix was requested.
    pub fix: Option<FixOutcome>,
}

/// A key with one of our holders' names that the ledger does not know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrphanedKey {
    pub key_hash: String,
    pub name: String,
    pub strategy_id: String,
    pub holder_wallet: String,
    /// `None`: no limit on OpenRouter.
    pub limit_micro_usd: Option<i64>,
    pub usage_micro_usd: i64,
    pub disabled: bool,
    pub fix: Option<FixOutcome>,
}

/// A key whose OpenRouter limit is not the ledger's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitMismatch {
    pub key_hash: String,
    pub strategy_id: String,
    pub holder_wallet: String,
    pub ledger_limit_micro_usd: i64,
    /// `None`: no limit on OpenRouter.
    pub openrouter_limit_micro_usd: Option<i64>,
    pub fix: Option<FixOutcome>,
}

/// Several OpenRouter keys for one holder's name (left for a person: which one the holder
/// uses cannot be known).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DuplicateName {
    pub name: String,
    /// Every key with the name (the ledger's included), sorted.
    pub key_hashes: Vec<String>,
    /// The holder's current key in the ledger, if it is one of them.
    pub ledger_key_hash: Option<String>,
}

/// A current key disabled on OpenRouter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DisabledKey {
    pub key_hash: String,
    pub strategy_id: String,
    pub holder_wallet: String,
}

/// A rotated or revoked key still on OpenRouter (the rotation pass deletes it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingDelete {
    pub key_hash: String,
    pub strategy_id: String,
    pub holder_wallet: String,
    /// `rotated` or `revoked`.
    pub status: String,
}

/// How many of each drift kind, and what the repairs did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftCounts {
    pub missing: u64,
    pub orphaned: u64,
    pub limit_mismatch: u64,
    pub duplicate_names: u64,
    pub disabled: u64,
    pub pending_delete: u64,
    pub fixed: u64,
    pub deferred: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// What a reconcile found (and, with `fix`, did). Each list is sorted (strategy, wallet, hash).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub fix_requested: bool,
    /// Keys OpenRouter listed (disabled included).
    pub openrouter_keys: u64,
    /// Current (active or exhausted) keys in the ledger.
    pub ledger_current_keys: u64,
    /// Listed keys that are not ours to judge: other names, or strategies this database lacks.
    pub ignored_keys: u64,
    pub missing: Vec<MissingKey>,
    pub orphaned: Vec<OrphanedKey>,
    pub limit_mismatch: Vec<LimitMismatch>,
    pub duplicate_names: Vec<DuplicateName>,
    pub disabled: Vec<DisabledKey>,
    pub pending_delete: Vec<PendingDelete>,
    pub counts: DriftCounts,
}

impl ReconcileReport {
    /// No drift of any kind.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.orphaned.is_empty()
            && self.limit_mismatch.is_empty()
            && self.duplicate_names.is_empty()
            && self.disabled.is_empty()
            && self.pending_delete.is_empty()
    }

    fn count(&mut self) {
        let mut counts = DriftCounts {
            missing: self.missing.len() as u64,
            orphaned: self.orphaned.len() as u64,
            limit_mismatch: self.limit_mismatch.len() as u64,
            duplicate_names: self.duplicate_names.len() as u64,
            disabled: self.disabled.len() as u64,
            pending_delete: self.pending_delete.len() as u64,
            ..DriftCounts::default()
        };
        let outcomes = self
            .missing
            .iter()
            .map(|item| &item.fix)
            .chain(self.orphaned.iter().map(|item| &item.fix))
            .chain(self.limit_mismatch.iter().map(|item| &item.fix));
        for outcome in outcomes.flatten() {
            match outcome {
                FixOutcome::Fixed => counts.fixed += 1,
                FixOutcome::Deferred { .. } => counts.deferred += 1,
                FixOutcome::Skipped { .. } => counts.skipped += 1,
                FixOutcome::Failed { .. } => counts.failed += 1,
            }
        }
        self.counts = counts;
    }
}

/// One rotation that was recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotatedKey {
    pub strategy_id: String,
    pub holder_wallet: String,
    pub old_key_hash: String,
    pub new_key_hash: String,
    /// The new key's limit (the remaining limit, or the same allowance).
    pub limit_micro_usd: i64,
    pub limit_reset: Option<String>,
    /// The old key's usage as OpenRouter reported it when frozen.
    pub old_usage_micro_usd: i64,
    /// False when deleting the old key failed; the next pass retries.
    pub old_deleted: bool,
}

/// A key a pass did not rotate or delete, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyIssue {
    pub key_hash: String,
    pub strategy_id: String,
    pub holder_wallet: String,
    pub code: String,
    pub message: String,
}

impl KeyIssue {
    fn new(key: &UserKey, error: &KeyMaintenanceError) -> Self {
        Self {
            key_hash: key.key_hash.clone(),
            strategy_id: key.strategy_id.clone(),
            holder_wallet: key.holder_wallet.clone(),
            code: error.code().to_string(),
            message: error.to_string(),
        }
    }
}

/// What one rotation pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationReport {
    pub rotated: Vec<RotatedKey>,
    /// Due, but a run is using the key.
    pub deferred: Vec<KeyIssue>,
    pub failed: Vec<KeyIssue>,
    /// Keys retired earlier (rotated, or revoked) whose pending delete succeeded in this pass;
    /// the keys this pass rotates are in `rotated` (`old_deleted`).
    pub remote_deleted: Vec<String>,
    pub remote_delete_failed: Vec<KeyIssue>,
    /// Unrecorded keys with a rotated holder's name, deleted before rotating (crash leftovers).
    pub leftovers_deleted: Vec<String>,
}

pub struct KeyMaintenance;

#[derive(Clone)]
pub struct KeyMaintenanceArgs {
    pub store: Store,
    /// Where the OpenRouterActor can be found (it may be restarting).
    pub openrouter: ActorSlot<OpenRouterMsg>,
    /// Seals new keys' plaintexts (associated data: the key's hash).
    pub vault: KeyVault,
    /// KEY_ROTATION_DAYS: current keys created longer ago than this are rotated.
    pub rotation_after: Duration,
    /// How often the timer runs a rotation pass (the first one after one interval).
    pub rotation_check_interval: Duration,
    /// How long one OpenRouter call may take, retries included.
    pub call_timeout: Duration,
}

pub struct KeyMaintenanceState {
    worker: Worker,
    /// The jobs; dropping the state aborts them (a crash, as far as a job is concerned).
    in_flight: JoinSet<()>,
    /// Set while a timer pass is queued or running, so ticks do not pile up behind a slow one.
    timer_pass_pending: Arc<AtomicBool>,
    timer: Option<JoinHandle<()>>,
}

type Reply<T> = RpcReplyPort<Result<T, KeyMaintenanceError>>;

pub enum KeyMaintenanceMsg {
    /// Compare the ledger with OpenRouter's keys and report drift; with `fix`, adopt orphans,
    /// restore limits and revoke missing keys (never deleting anything on OpenRouter).
    Reconcile {
        fix: bool,
        /// Who asked (`cli`, `api` ...), for the audit log.
        requested_by: String,
        reply: Reply<ReconcileReport>,
    },
    /// Retry pending remote deletes, then rotate every current key older than `rotation_after`.
    /// The timer sends it without a reply port.
    RotateDue {
        requested_by: String,
        reply: Option<Reply<RotationReport>>,
    },
    /// Rotate one holder's current key now, whatever its age (a signed request for a lost key).
    Rotate {
        strategy_id: String,
        wallet: String,
        requested_by: String,
        reply: Reply<RotatedKey>,
    },
    /// Revoke one current key for good: marked `revoked` (its promise leaves the pool, its
    /// unrevealed plaintext is erased), then deleted on OpenRouter (a failed delete is retried by
    /// every rotation pass).
    Revoke {
        key_hash: String,
        requested_by: String,
        reply: Reply<RevokedKey>,
    },
}

/// What a revoke did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokedKey {
    pub key_hash: String,
    pub strategy_id: String,
    pub holder_wallet: String,
    /// False when the OpenRouter delete failed; the next rotation pass retries it.
    pub remote_deleted: bool,
}

impl Actor for KeyMaintenance {
    type Msg = KeyMaintenanceMsg;
    type State = KeyMaintenanceState;
    type Arguments = KeyMaintenanceArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: KeyMaintenanceArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let interval = args.rotation_check_interval.max(MIN_CHECK_INTERVAL);
        let timer = myself.send_interval(interval, || KeyMaintenanceMsg::RotateDue {
            requested_by: TIMER_ACTOR.to_string(),
            reply: None,
        });
        Ok(KeyMaintenanceState {
            worker: Worker {
                args,
                exclusive: Arc::new(tokio::sync::Mutex::new(())),
            },
            in_flight: JoinSet::new(),
            timer_pass_pending: Arc::new(AtomicBool::new(false)),
            timer: Some(timer),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::failpoint::check_actor(&myself);
        while state.in_flight.try_join_next().is_some() {}
        let worker = state.worker.clone();
        match message {
            KeyMaintenanceMsg::Reconcile {
                fix,
                requested_by,
                reply,
            } => {
                state.in_flight.spawn(async move {
                    let result = worker.reconcile(fix, &requested_by).await;
                    if let Err(error) = &result {
                        tracing::warn!(code = error.code(), error = %error, "key reconcile failed");
                    }
                    let _ = reply.send(result);
                });
            }
            KeyMaintenanceMsg::RotateDue {
                requested_by,
                reply: None,
            } => {
                if state.timer_pass_pending.swap(true, Ordering::SeqCst) {
                    return Ok(());
                }
                let pending = PendingFlag(state.timer_pass_pending.clone());
                state.in_flight.spawn(async move {
                    let _pending = pending;
                    if let Err(error) = worker.rotate_due(&requested_by).await {
                        tracing::warn!(code = error.code(), error = %error, "key rotation pass failed");
                    }
                });
            }
            KeyMaintenanceMsg::RotateDue {
                requested_by,
                reply: Some(reply),
            } => {
                state.in_flight.spawn(async move {
                    let result = worker.rotate_due(&requested_by).await;
                    if let Err(error) = &result {
                        tracing::warn!(code = error.code(), error = %error, "key rotation pass failed");
                    }
                    let _ = reply.send(result);
                });
            }
            KeyMaintenanceMsg::Revoke {
                key_hash,
                requested_by,
                reply,
            } => {
                state.in_flight.spawn(async move {
                    let _ = reply.send(worker.revoke(&key_hash, &requested_by).await);
                });
            }
            KeyMaintenanceMsg::Rotate {
                strategy_id,
                wallet,
                requested_by,
                reply,
            } => {
                state.in_flight.spawn(async move {
                    let result = worker
                        .rotate_holder(&strategy_id, &wallet, &requested_by)
                        .await;
                    let _ = reply.send(result);
                });
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        // A job cut short mid-rotation is recovered by the next pass, but letting it finish
        // spares the holder a frozen key until then.
        let drained = tokio::time::timeout(DRAIN_ON_STOP, async {
            while state.in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                inFlight = state.in_flight.len() as u64,
                "key maintenance jobs still running at stop, abandoning them"
            );
        }
        Ok(())
    }
}

/// Clears the timer-pass flag when the pass ends, however it ends (aborted tasks included).
struct PendingFlag(Arc<AtomicBool>);

impl Drop for PendingFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// What a job needs (cheap clones).
#[derive(Clone)]
struct Worker {
    args: KeyMaintenanceArgs,
    /// One job at a time (see the module docs).
    exclusive: Arc<tokio::sync::Mutex<()>>,
}

/// Floors micro-USD to whole cents (never up: rounding must not create credit).
fn floor_cents(micro_usd: i64) -> i64 {
    micro_usd.max(0) / MICROS_PER_CENT * MICROS_PER_CENT
}

/// Base58 (no 0, O, I, l), 32–44 characters: the wallets the ledger accepts.
fn is_wallet(text: &str) -> bool {
    (32..=44).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() && !matches!(byte, b'0' | b'O' | b'I' | b'l'))
}

/// `creditbrain-<strategy>-<wallet>` back to its parts. Strategy ids may contain `-`; wallets
/// (base58) never do, so the wallet is what follows the last one.
fn parse_key_name(name: &str) -> Option<(&str, &str)> {
    let (strategy_id, wallet) = name.strip_prefix(NAME_PREFIX)?.rsplit_once('-')?;
    (!strategy_id.is_empty() && is_wallet(wallet)).then_some((strategy_id, wallet))
}

/// Orders report items by (strategy, holder, key hash), so reports are stable.
fn sort_by_holder<T>(items: &mut [T], key: for<'a> fn(&'a T) -> (&'a str, &'a str, &'a str)) {
    items.sort_by(|a, b| key(a).cmp(&key(b)));
}

impl Worker {
    fn openrouter(&self) -> Result<ActorRef<OpenRouterMsg>, KeyMaintenanceError> {
        self.args
            .openrouter
            .get()
            .ok_or(KeyMaintenanceError::OpenRouterDown)
    }

    fn store(&self) -> &Store {
        &self.args.store
    }

    async fn reconcile(
        &self,
        fix: bool,
        requested_by: &str,
    ) -> Result<ReconcileReport, KeyMaintenanceError> {
        let _turn = self.exclusive.lock().await;
        let actor = self.openrouter()?;
        let timeout = self.args.call_timeout;
        // OpenRouter first, then the ledger: a key a run creates and records between the two
        // reads is then in the ledger rather than taken for an orphan. A paged listing may show
        // a key twice (keys created while paging shift the pages); the map keeps one.
        let mut remote: BTreeMap<String, Key> = openrouter::list_all_keys(&actor, true, timeout)
            .await?
            .into_iter()
            .map(|key| (key.hash.clone(), key))
            .collect();
        let ledger = self.store().all_user_keys().await?;
        let strategies: HashSet<String> = self
            .store()
            .strategies()
            .await?
            .into_iter()
            .map(|strategy| strategy.strategy_id)
            .collect();
        let ledger_by_hash: HashMap<&str, &UserKey> = ledger
            .iter()
            .map(|key| (key.key_hash.as_str(), key))
            .collect();
        let current: Vec<&UserKey> = ledger
            .iter()
            .filter(|key| key.status.is_current())
            .collect();
        let mut report = ReconcileReport {
            fix_requested: fix,
            ledger_current_keys: current.len() as u64,
            ..ReconcileReport::default()
        };

        // The ledger's current keys against OpenRouter. Live ones by holder name, for the
        // orphan and duplicate checks below.
        let mut live_by_name: HashMap<String, &UserKey> = HashMap::new();
        for key in &current {
            let on_remote = match remote.get(&key.key_hash) {
                Some(found) => found.clone(),
                // Absent from the listing: ask for it directly before calling it missing (a
                // key deleted while the listing was paged shifts later keys out of view).
                None => match openrouter::get_key(&actor, key.key_hash.clone(), timeout).await {
                    Ok(found) => {
                        remote.insert(found.hash.clone(), found.clone());
                        found
                    }
                    Err(error) if is_not_found(&error) => {
                        report.missing.push(MissingKey {
                            key_hash: key.key_hash.clone(),
                            strategy_id: key.strategy_id.clone(),
                            holder_wallet: key.holder_wallet.clone(),
                            limit_micro_usd: key.limit_micro_usd,
                            usage_micro_usd: key.usage_micro_usd,
                            fix: None,
                        });
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                },
            };
            live_by_name.insert(key_name(&key.strategy_id, &key.holder_wallet), key);
            if on_remote.disabled {
                report.disabled.push(DisabledKey {
                    key_hash: key.key_hash.clone(),
                    strategy_id: key.strategy_id.clone(),
                    holder_wallet: key.holder_wallet.clone(),
                });
            }
            if on_remote.limit_micro_usd != Some(key.limit_micro_usd) {
                report.limit_mismatch.push(LimitMismatch {
                    key_hash: key.key_hash.clone(),
                    strategy_id: key.strategy_id.clone(),
                    holder_wallet: key.holder_wallet.clone(),
                    ledger_limit_micro_usd: key.limit_micro_usd,
                    openrouter_limit_micro_usd: on_remote.limit_micro_usd,
                    fix: None,
                });
            }
        }
        report.openrouter_keys = remote.len() as u64;

        // OpenRouter's keys against the ledger.
        let mut unknown_by_name: BTreeMap<&str, Vec<&Key>> = BTreeMap::new();
        for key in remote.values() {
            match ledger_by_hash.get(key.hash.as_str()) {
                Some(known) if matches!(known.status, KeyStatus::Rotated | KeyStatus::Revoked) => {
                    report.pending_delete.push(PendingDelete {
                        key_hash: key.hash.clone(),
                        strategy_id: known.strategy_id.clone(),
                        holder_wallet: known.holder_wallet.clone(),
                        status: known.status.as_str().to_string(),
                    });
                }
                // Current keys were compared above; expired ones cannot spend.
                Some(_) => {}
                None => match parse_key_name(&key.name) {
                    Some((strategy_id, _)) if strategies.contains(strategy_id) => {
                        unknown_by_name.entry(&key.name).or_default().push(key);
                    }
                    _ => report.ignored_keys += 1,
                },
            }
        }
        for (name, unknown) in unknown_by_name {
            let live = live_by_name.get(name);
            if unknown.len() + usize::from(live.is_some()) > 1 {
                let mut key_hashes: Vec<String> =
                    unknown.iter().map(|key| key.hash.clone()).collect();
                key_hashes.extend(live.map(|key| key.key_hash.clone()));
                key_hashes.sort();
                report.duplicate_names.push(DuplicateName {
                    name: name.to_string(),
                    key_hashes,
                    ledger_key_hash: live.map(|key| key.key_hash.clone()),
                });
                continue;
            }
            let key = unknown[0];
            let Some((strategy_id, wallet)) = parse_key_name(name) else {
                continue;
            };
            report.orphaned.push(OrphanedKey {
                key_hash: key.hash.clone(),
                name: name.to_string(),
                strategy_id: strategy_id.to_string(),
                holder_wallet: wallet.to_string(),
                limit_micro_usd: key.limit_micro_usd,
                usage_micro_usd: key.usage_micro_usd,
                disabled: key.disabled,
                fix: None,
            });
        }
        sort_by_holder(&mut report.missing, |k| {
            (&k.strategy_id, &k.holder_wallet, &k.key_hash)
        });
        sort_by_holder(&mut report.orphaned, |k| {
            (&k.strategy_id, &k.holder_wallet, &k.key_hash)
        });
        sort_by_holder(&mut report.limit_mismatch, |k| {
            (&k.strategy_id, &k.holder_wallet, &k.key_hash)
        });
        sort_by_holder(&mut report.disabled, |k| {
            (&k.strategy_id, &k.holder_wallet, &k.key_hash)
        });
        sort_by_holder(&mut report.pending_delete, |k| {
            (&k.strategy_id, &k.holder_wallet, &k.key_hash)
        });

        if fix {
            // Missing keys first: revoking one frees its holder for the adoption of an orphan.
            for item in &mut report.missing {
                let outcome = self.fix_missing(item, requested_by).await;
                item.fix = Some(outcome.unwrap_or_else(|error| FixOutcome::failed(&error)));
            }
            for item in &mut report.orphaned {
                let outcome = match remote.get(&item.key_hash) {
                    Some(key) => self.fix_orphan(&actor, item, key, requested_by).await,
                    None => Ok(FixOutcome::Skipped {
                        reason: "no longer listed".to_string(),
                    }),
                };
                item.fix = Some(outcome.unwrap_or_else(|error| FixOutcome::failed(&error)));
            }
            for item in &mut report.limit_mismatch {
                let outcome = self.fix_limit(&actor, item, requested_by).await;
                item.fix = Some(outcome.unwrap_or_else(|error| FixOutcome::failed(&error)));
            }
        }
        report.count();
        if fix {
            let entry = AuditEntry::new("keys_reconciled")
                .actor(requested_by)
                .details(json!({
                    "openrouterKeys": report.openrouter_keys,
                    "ledgerCurrentKeys": report.ledger_current_keys,
                    "counts": report.counts,
                }));
            self.store().append_audit(&entry).await?;
        }
        if !report.is_empty() {
            tracing::info!(
                missing = report.counts.missing,
                orphaned = report.counts.orphaned,
                limitMismatch = report.counts.limit_mismatch,
                duplicateNames = report.counts.duplicate_names,
                disabled = report.counts.disabled,
                pendingDelete = report.counts.pending_delete,
                fixed = report.counts.fixed,
                "key drift found"
            );
        }
        Ok(report)
    }

    /// A fix waits while the strategy has a run in progress (its keys are being changed).
    async fn run_in_progress(&self, strategy_id: &str) -> Result<Option<FixOutcome>, StoreError> {
        Ok(self
            .store()
            .active_run(strategy_id)
            .await?
            .map(|run| FixOutcome::Deferred {
                reason: format!("run {} is in progress", run.run_id),
            }))
    }

    async fn fix_missing(
        &self,
        item: &MissingKey,
        requested_by: &str,
    ) -> Result<FixOutcome, KeyMaintenanceError> {
        if let Some(deferred) = self.run_in_progress(&item.strategy_id).await? {
            return Ok(deferred);
        }
        let entry = AuditEntry::new("key_revoked_missing")
            .strategy(&item.strategy_id)
            .actor(requested_by)
            .details(json!({
                "wallet": item.holder_wallet,
                "keyHash": item.key_hash,
                "limitMicroUsd": item.limit_micro_usd,
                "usageMicroUsd": item.usage_micro_usd,
                "reason": "the key is no longer on OpenRouter; the credit it promised is released",
            }));
        Ok(
            if self
                .store()
                .revoke_missing_key(&item.key_hash, &entry)
                .await?
            {
                FixOutcome::Fixed
            } else {
                FixOutcome::Skipped {
                    reason: "no longer a current key".to_string(),
                }
            },
        )
    }

    async fn fix_orphan(
        &self,
        actor: &ActorRef<OpenRouterMsg>,
        item: &OrphanedKey,
        key: &Key,
        requested_by: &str,
    ) -> Result<FixOutcome, KeyMaintenanceError> {
        if key.disabled {
            return Ok(FixOutcome::Skipped {
                reason: "disabled on OpenRouter: enable or delete it by hand".to_string(),
            });
        }
        if key.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Ok(FixOutcome::Skipped {
                reason: "expired on OpenRouter".to_string(),
            });
        }
        if let Some(deferred) = self.run_in_progress(&item.strategy_id).await? {
            return Ok(deferred);
        }
        let Some(strategy) = self.store().strategy(&item.strategy_id).await? else {
            return Ok(FixOutcome::Skipped {
                reason: "the strategy no longer exists".to_string(),
            });
        };
        if self
            .store()
            .current_key(&item.strategy_id, &item.holder_wallet)
            .await?
            .is_some()
        {
            return Ok(FixOutcome::Skipped {
                reason: "the holder has a current key: resolve the two by hand".to_string(),
            });
        }
        // The ledger will promise this limit, so OpenRouter must not allow more: no limit, or one
        // above the strategy's per-key maximum, is lowered before the key is recorded.
        let limit =
            floor_cents(key.limit_micro_usd.unwrap_or(0)).min(strategy.max_key_limit_micro_usd);
        if key.limit_micro_usd != Some(limit) {
            openrouter::update_key(
                actor,
                key.hash.clone(),
                KeyUpdate {
                    limit_micro_usd: Some(Some(limit)),
                    ..KeyUpdate::default()
                },
                self.args.call_timeout,
            )
            .await?;
        }
        let new = NewUserKey {
            key_hash: key.hash.clone(),
            strategy_id: item.strategy_id.clone(),
            holder_wallet: item.holder_wallet.clone(),
            name: key.name.clone(),
            limit_micro_usd: limit,
            limit_reset: key.limit_reset.map(|reset| reset.as_str().to_string()),
            encrypted: None,
            expires_at: key.expires_at,
        };
        let entry = AuditEntry::new("key_adopted")
            .strategy(&item.strategy_id)
            .actor(requested_by)
            .details(json!({
                "wallet": item.holder_wallet,
                "keyHash": key.hash,
                "limitMicroUsd": limit,
                "openrouterLimitMicroUsd": key.limit_micro_usd,
                "usageMicroUsd": key.usage_micro_usd,
                "reason": "reconcile: a key with this holder's name existed on OpenRouter but not \
                           in the ledger; the holder obtains its plaintext by signed rotation",
            }));
        match self
            .store()
            .adopt_key(&new, key.usage_micro_usd, &entry)
            .await
        {
            Ok(_) => Ok(FixOutcome::Fixed),
            Err(error) if error.is_unique_violation() => Ok(FixOutcome::Skipped {
                reason: "recorded meanwhile, or the holder now has a current key".to_string(),
            }),
            Err(error) => Err(error.into()),
        }
    }

    async fn fix_limit(
        &self,
        actor: &ActorRef<OpenRouterMsg>,
        item: &LimitMismatch,
        requested_by: &str,
    ) -> Result<FixOutcome, KeyMaintenanceError> {
        if let Some(deferred) = self.run_in_progress(&item.strategy_id).await? {
            return Ok(deferred);
        }
        let mut target = None;
        // The ledger is read again just before and after the PATCH: should a writer change the
        // limit in between, its value is sent too, so OpenRouter ends at the ledger's latest.
        for _ in 0..2 {
            let Some(key) = self
                .store()
                .key_by_hash(&item.key_hash)
                .await?
                .filter(|key| key.status.is_current())
            else {
                return Ok(FixOutcome::Skipped {
                    reason: "no longer a current key".to_string(),
                });
            };
            if target == Some(key.limit_micro_usd) {
                break;
            }
            openrouter::update_key(
                actor,
                item.key_hash.clone(),
                KeyUpdate {
                    limit_micro_usd: Some(Some(key.limit_micro_usd)),
                    ..KeyUpdate::default()
                },
                self.args.call_timeout,
            )
            .await?;
            target = Some(key.limit_micro_usd);
        }
        let entry = AuditEntry::new("key_limit_restored")
            .strategy(&item.strategy_id)
            .actor(requested_by)
            .details(json!({
                "wallet": item.holder_wallet,
                "keyHash": item.key_hash,
                "fromMicroUsd": item.openrouter_limit_micro_usd,
                "toMicroUsd": target,
            }));
        self.store().append_audit(&entry).await?;
        Ok(FixOutcome::Fixed)
    }

    async fn rotate_due(&self, requested_by: &str) -> Result<RotationReport, KeyMaintenanceError> {
        let _turn = self.exclusive.lock().await;
        let actor = self.openrouter()?;
        let mut report = RotationReport::default();
        for key in self.store().keys_pending_remote_delete().await? {
            match self.delete_remote(&actor, &key, requested_by).await {
                Ok(()) => report.remote_deleted.push(key.key_hash.clone()),
                Err(error) => {
                    tracing::warn!(
                        strategyId = %key.strategy_id,
                        keyHash = %key.key_hash,
                        code = error.code(),
                        error = %error,
                        "deleting a retired key failed; the next pass retries"
                    );
                    report
                        .remote_delete_failed
                        .push(KeyIssue::new(&key, &error));
                }
            }
        }
        let Some(cutoff) = chrono::Duration::from_std(self.args.rotation_after)
            .ok()
            .and_then(|age| Utc::now().checked_sub_signed(age))
        else {
            return Ok(report);
        };
        let due = self.store().current_keys_created_before(cutoff).await?;
        if due.is_empty() {
            return Ok(report);
        }
        let listed = openrouter::list_all_keys(&actor, true, self.args.call_timeout).await?;
        for key in &due {
            match self
                .rotate_key(
                    &actor,
                    key,
                    &listed,
                    requested_by,
                    &mut report.leftovers_deleted,
                )
                .await
            {
                Ok((rotated, delete_error)) => {
                    if let Some(error) = delete_error {
                        report.remote_delete_failed.push(KeyIssue::new(key, &error));
                    }
                    report.rotated.push(rotated);
                }
                Err(error) if error.is_deferral() => {
                    report.deferred.push(KeyIssue::new(key, &error));
                }
                Err(error) => {
                    tracing::warn!(
                        strategyId = %key.strategy_id,
                        keyHash = %key.key_hash,
                        code = error.code(),
                        error = %error,
                        "key rotation failed; the next pass retries"
                    );
                    report.failed.push(KeyIssue::new(key, &error));
                }
            }
        }
        tracing::info!(
            due = due.len() as u64,
            rotated = report.rotated.len() as u64,
            deferred = report.deferred.len() as u64,
            failed = report.failed.len() as u64,
            remoteDeleted = report.remote_deleted.len() as u64,
            "key rotation pass"
        );
        Ok(report)
    }

    async fn rotate_holder(
        &self,
        strategy_id: &str,
        wallet: &str,
        requested_by: &str,
    ) -> Result<RotatedKey, KeyMaintenanceError> {
        let _turn = self.exclusive.lock().await;
        let actor = self.openrouter()?;
        let key = self
            .store()
            .current_key(strategy_id, wallet)
            .await?
            .ok_or_else(|| KeyMaintenanceError::KeyNotFound {
                strategy_id: strategy_id.to_string(),
                wallet: wallet.to_string(),
            })?;
        let listed = openrouter::list_all_keys(&actor, true, self.args.call_timeout).await?;
        let (rotated, delete_error) = self
            .rotate_key(&actor, &key, &listed, requested_by, &mut Vec::new())
            .await?;
        if let Some(error) = delete_error {
            tracing::warn!(
                strategyId = %key.strategy_id,
                keyHash = %key.key_hash,
                code = error.code(),
                error = %error,
                "deleting the rotated key failed; the next pass retries"
            );
        }
        Ok(rotated)
    }

    async fn revoke(
        &self,
        key_hash: &str,
        requested_by: &str,
    ) -> Result<RevokedKey, KeyMaintenanceError> {
        let _turn = self.exclusive.lock().await;
        let actor = self.openrouter()?;
        let not_current = || KeyMaintenanceError::KeyNotCurrent {
            key_hash: key_hash.to_string(),
        };
        let key = self
            .store()
            .key_by_hash(key_hash)
            .await?
            .ok_or_else(not_current)?;
        if !key.status.is_current() {
            return Err(not_current());
        }
        // A run about to raise this key's limit would grant into a revoked key.
        if let Some(blocker) = self
            .store()
            .rotation_blocker(&key.strategy_id, &key.key_hash)
            .await?
        {
            return Err(blocked(&key, blocker));
        }
        let entry = AuditEntry::new("key_revoked")
            .strategy(&key.strategy_id)
            .actor(requested_by)
            .details(json!({
                "wallet": key.holder_wallet,
                "keyHash": key.key_hash,
                "limitMicroUsd": key.limit_micro_usd,
                "usageMicroUsd": key.usage_micro_usd,
            }));
        if !self.store().revoke_key(key_hash, &entry).await? {
            return Err(not_current());
        }
        let remote_deleted = match self.delete_remote(&actor, &key, requested_by).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(
                    strategyId = %key.strategy_id,
                    keyHash = %key.key_hash,
                    code = error.code(),
                    error = %error,
                    "deleting the revoked key failed; the next pass retries"
                );
                false
            }
        };
        Ok(RevokedKey {
            key_hash: key.key_hash.clone(),
            strategy_id: key.strategy_id.clone(),
            holder_wallet: key.holder_wallet.clone(),
            remote_deleted,
        })
    }

    /// Rotates `old` (see the module docs for the steps and their crash behaviour). Returns the
    /// rotation and, when deleting the old key failed, why (the rotation itself stands).
    async fn rotate_key(
        &self,
        actor: &ActorRef<OpenRouterMsg>,
        old: &UserKey,
        listed: &[Key],
        requested_by: &str,
        leftovers_deleted: &mut Vec<String>,
    ) -> Result<(RotatedKey, Option<KeyMaintenanceError>), KeyMaintenanceError> {
        let timeout = self.args.call_timeout;
        if let Some(blocker) = self
            .store()
            .rotation_blocker(&old.strategy_id, &old.key_hash)
            .await?
        {
            return Err(blocked(old, blocker));
        }
        let expires_at = match old.expires_at.as_deref() {
            Some(text) => {
                Some(
                    parse_timestamp(text).ok_or_else(|| KeyMaintenanceError::Ledger {
                        key_hash: old.key_hash.clone(),
                        problem: format!("unreadable expires_at {text:?}"),
                    })?,
                )
            }
            None => None,
        };
        if let Some(at) = expires_at
            && at <= Utc::now() + EXPIRY_MARGIN
        {
            return Err(KeyMaintenanceError::KeyExpiring {
                key_hash: old.key_hash.clone(),
                expires_at: crate::store::format_timestamp(at),
            });
        }
        let limit_reset = match old.limit_reset.as_deref() {
            Some(text) => {
                Some(
                    LimitReset::parse(text).ok_or_else(|| KeyMaintenanceError::Ledger {
                        key_hash: old.key_hash.clone(),
                        problem: format!("unknown limit_reset {text:?}"),
                    })?,
                )
            }
            None => None,
        };
        // We never disable keys ourselves, so a disabled one is someone's decision: a rotation
        // would hand the holder a working key behind it.
        if listed
            .iter()
            .any(|key| key.hash == old.key_hash && key.disabled)
        {
            return Err(KeyMaintenanceError::KeyDisabled {
                key_hash: old.key_hash.clone(),
            });
        }
        let name = key_name(&old.strategy_id, &old.holder_wallet);
        self.delete_leftovers(actor, &name, listed, old, requested_by, leftovers_deleted)
            .await?;

        // Freeze: from here on the old key cannot spend, and the answer has its final usage.
        let frozen = match openrouter::update_key(
            actor,
            old.key_hash.clone(),
            KeyUpdate {
                limit_micro_usd: Some(Some(0)),
                ..KeyUpdate::default()
            },
            timeout,
        )
        .await
        {
            Ok(frozen) => frozen,
            Err(error) if is_not_found(&error) => {
                return Err(KeyMaintenanceError::KeyMissing {
                    key_hash: old.key_hash.clone(),
                });
            }
            Err(error) => {
                // The freeze may have landed (a timeout): undo it.
                self.restore_old_limit(actor, old).await;
                return Err(error.into());
            }
        };
        let limit = if limit_reset.is_some() {
            floor_cents(old.limit_micro_usd)
        } else {
            floor_cents(old.limit_micro_usd.saturating_sub(frozen.usage_micro_usd))
        };
        let created = match openrouter::create_key(
            actor,
            CreateKey {
                name: name.clone(),
                limit_micro_usd: Some(limit),
                limit_reset,
                expires_at,
                include_byok_in_limit: None,
            },
            timeout,
        )
        .await
        {
            Ok(created) => created,
            Err(error) => {
                if may_have_created(&error) {
                    self.clean_up_after_failed_create(actor, &name, old, requested_by)
                        .await;
                }
                self.restore_old_limit(actor, old).await;
                return Err(error.into());
            }
        };
        let new_hash = created.key.hash.clone();
        let sealed = match self.args.vault.encrypt(&created.plaintext, &new_hash) {
            Ok(sealed) => sealed,
            Err(error) => {
                let error = KeyMaintenanceError::Vault(error);
                self.abandon_new_key(actor, old, &new_hash, &error, requested_by)
                    .await;
                return Err(error);
            }
        };
        // The plaintext exists only sealed from here on.
        drop(created);
        let new = NewUserKey {
            key_hash: new_hash.clone(),
            strategy_id: old.strategy_id.clone(),
            holder_wallet: old.holder_wallet.clone(),
            name,
            limit_micro_usd: limit,
            limit_reset: old.limit_reset.clone(),
            encrypted: Some(sealed.into_parts()),
            expires_at,
        };
        let entry = AuditEntry::new("key_rotated")
            .strategy(&old.strategy_id)
            .actor(requested_by)
            .details(json!({
                "wallet": old.holder_wallet,
                "oldKeyHash": old.key_hash,
                "newKeyHash": new_hash,
                "oldLimitMicroUsd": old.limit_micro_usd,
                "oldUsageMicroUsd": frozen.usage_micro_usd,
                "limitMicroUsd": limit,
                "limitReset": old.limit_reset,
                "expiresAt": old.expires_at,
                "oldCreatedAt": old.created_at,
            }));
        let recorded = self
            .store()
            .record_rotation(&old.key_hash, frozen.usage_micro_usd, &new, &entry)
            .await;
        let failure = match recorded {
            Ok(RotationRecord::Recorded(_)) => None,
            Ok(RotationRecord::Blocked(blocker)) => Some(blocked(old, blocker)),
            Ok(RotationRecord::NotCurrent) => Some(KeyMaintenanceError::KeyNotCurrent {
                key_hash: old.key_hash.clone(),
            }),
            Err(error) => match self.store().key_by_hash(&new_hash).await {
                // The commit's answer was lost but the commit happened.
                Ok(Some(_)) => None,
                Ok(None) => Some(error.into()),
                // Unknown: leave the new key; if unrecorded, the next pass deletes it.
                Err(_) => return Err(error.into()),
            },
        };
        if let Some(error) = failure {
            self.abandon_new_key(actor, old, &new_hash, &error, requested_by)
                .await;
            return Err(error);
        }

        let mut retired = old.clone();
        retired.status = KeyStatus::Rotated;
        let delete_error = self
            .delete_remote(actor, &retired, requested_by)
            .await
            .err();
        tracing::info!(
            strategyId = %old.strategy_id,
            oldKeyHash = %old.key_hash,
            newKeyHash = %new_hash,
            limitMicroUsd = limit,
            "key rotated"
        );
        Ok((
            RotatedKey {
                strategy_id: old.strategy_id.clone(),
                holder_wallet: old.holder_wallet.clone(),
                old_key_hash: old.key_hash.clone(),
                new_key_hash: new_hash,
                limit_micro_usd: limit,
                limit_reset: old.limit_reset.clone(),
                old_usage_micro_usd: frozen.usage_micro_usd,
                old_deleted: delete_error.is_none(),
            },
            delete_error,
        ))
    }

    /// Deletes every key named `name` in `listed` that the ledger does not know (asked again
    /// just before each delete): leftovers of a crashed rotation of this holder.
    async fn delete_leftovers(
        &self,
        actor: &ActorRef<OpenRouterMsg>,
        name: &str,
        listed: &[Key],
        holder_key: &UserKey,
        requested_by: &str,
        deleted: &mut Vec<String>,
    ) -> Result<(), KeyMaintenanceError> {
        for key in listed
            .iter()
            .filter(|key| key.name == name && key.hash != holder_key.key_hash)
        {
            if self.store().key_by_hash(&key.hash).await?.is_some() {
                // Retired and pending delete, or recorded since the listing: not a leftover.
                continue;
            }
            match openrouter::delete_key(actor, key.hash.clone(), self.args.call_timeout).await {
                Ok(()) => {}
                Err(error) if is_not_found(&error) => {}
                Err(error) => return Err(error.into()),
            }
            let entry = AuditEntry::new("rotation_leftover_deleted")
                .strategy(&holder_key.strategy_id)
                .actor(requested_by)
                .details(json!({
                    "wallet": holder_key.holder_wallet,
                    "keyHash": key.hash,
                    "name": name,
                    "limitMicroUsd": key.limit_micro_usd,
                    "usageMicroUsd": key.usage_micro_usd,
                    "createdAt": key.created_at.map(crate::store::format_timestamp),
                    "reason": "an unrecorded key with the holder's name: left by a rotation \
                               interrupted before recording it, its plaintext never stored",
                }));
            self.store().append_audit(&entry).await?;
            deleted.push(key.hash.clone());
        }
        Ok(())
    }

    /// After a `POST /keys` that may have created a key: best effort to find and delete it now
    /// (otherwise the next rotation of this holder does).
    async fn clean_up_after_failed_create(
        &self,
        actor: &ActorRef<OpenRouterMsg>,
        name: &str,
        old: &UserKey,
        requested_by: &str,
    ) {
        let listed = match openrouter::list_all_keys(actor, true, self.args.call_timeout).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(
                    keyHash = %old.key_hash,
                    code = error.code(),
                    "cannot look for a key left by a failed create; the next rotation deletes it"
                );
                return;
            }
        };
        if let Err(error) = self
            .delete_leftovers(actor, name, &listed, old, requested_by, &mut Vec::new())
            .await
        {
            tracing::warn!(
                keyHash = %old.key_hash,
                code = error.code(),
                error = %error,
                "cannot delete a key left by a failed create; the next rotation deletes it"
            );
        }
    }

    /// Best effort: gives the old key back the ledger's limit (undoing the freeze) while it is
    /// still the holder's current key. A failure leaves it frozen until the next pass rotates it
    /// or a reconcile restores the limit.
    async fn restore_old_limit(&self, actor: &ActorRef<OpenRouterMsg>, old: &UserKey) {
        let current = match self.store().key_by_hash(&old.key_hash).await {
            Ok(Some(key)) if key.status.is_current() => key,
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(keyHash = %old.key_hash, error = %error, "cannot restore a frozen key's limit");
                return;
            }
        };
        if let Err(error) = openrouter::update_key(
            actor,
            current.key_hash.clone(),
            KeyUpdate {
                limit_micro_usd: Some(Some(current.limit_micro_usd)),
                ..KeyUpdate::default()
            },
            self.args.call_timeout,
        )
        .await
        {
            tracing::warn!(
                keyHash = %old.key_hash,
                code = error.code(),
                "cannot restore a frozen key's limit; the next rotation pass completes the rotation"
            );
        }
    }

    /// A rotation that created its key but cannot record it: deletes the new key (its plaintext
    /// is dropped with it), restores the old key's limit and audits what happened.
    async fn abandon_new_key(
        &self,
        actor: &ActorRef<OpenRouterMsg>,
        old: &UserKey,
        new_hash: &str,
        cause: &KeyMaintenanceError,
        requested_by: &str,
    ) {
        let deleted = match openrouter::delete_key(actor, new_hash, self.args.call_timeout).await {
            Ok(()) => true,
            Err(error) if is_not_found(&error) => true,
            Err(error) => {
                tracing::warn!(
                    keyHash = %new_hash,
                    code = error.code(),
                    "cannot delete an unrecorded new key; the next rotation of the holder does"
                );
                false
            }
        };
        self.restore_old_limit(actor, old).await;
        let entry = AuditEntry::new("key_rotation_abandoned")
            .strategy(&old.strategy_id)
            .actor(requested_by)
            .details(json!({
                "wallet": old.holder_wallet,
                "oldKeyHash": old.key_hash,
                "newKeyHash": new_hash,
                "newKeyDeleted": deleted,
                "code": cause.code(),
                "reason": cause.to_string(),
            }));
        if let Err(error) = self.store().append_audit(&entry).await {
            tracing::warn!(error = %error, "cannot audit an abandoned rotation");
        }
    }

    /// Deletes a retired key on OpenRouter (a 404 counts: it is gone) and records it.
    async fn delete_remote(
        &self,
        actor: &ActorRef<OpenRouterMsg>,
        key: &UserKey,
        requested_by: &str,
    ) -> Result<(), KeyMaintenanceError> {
        let already_gone =
            match openrouter::delete_key(actor, key.key_hash.clone(), self.args.call_timeout).await
            {
                Ok(()) => false,
                Err(error) if is_not_found(&error) => true,
                Err(error) => return Err(error.into()),
            };
        self.store().mark_remote_deleted(&key.key_hash).await?;
        let entry = AuditEntry::new("key_remote_deleted")
            .strategy(&key.strategy_id)
            .actor(requested_by)
            .details(json!({
                "wallet": key.holder_wallet,
                "keyHash": key.key_hash,
                "status": key.status.as_str(),
                "alreadyGone": already_gone,
            }));
        self.store().append_audit(&entry).await?;
        Ok(())
    }
}

fn blocked(key: &UserKey, blocker: RotationBlocker) -> KeyMaintenanceError {
    match blocker {
        RotationBlocker::RunInProgress { run_id } => KeyMaintenanceError::RunInProgress {
            strategy_id: key.strategy_id.clone(),
            run_id,
        },
        RotationBlocker::OpenAllocation {
            allocation_id,
            run_id,
        } => KeyMaintenanceError::OpenAllocation {
            key_hash: key.key_hash.clone(),
            allocation_id,
            run_id,
        },
    }
}

async fn ask<T: Send + 'static>(
    actor: &ActorRef<KeyMaintenanceMsg>,
    timeout: Duration,
    build: impl FnOnce(Reply<T>) -> KeyMaintenanceMsg,
) -> Result<T, KeyMaintenanceError> {
    crate::supervisor::ask(actor, timeout, build)
        .await
        .map_err(|no_answer| match no_answer {
            crate::supervisor::NoAnswer::Down => KeyMaintenanceError::ActorDown,
            crate::supervisor::NoAnswer::Timeout(timeout) => {
                KeyMaintenanceError::ActorTimeout(timeout)
            }
        })?
}

/// A reconcile through the actor. `timeout` covers the whole job (and any job queued before
/// it): a listing, a few calls per drift item.
pub async fn reconcile(
    actor: &ActorRef<KeyMaintenanceMsg>,
    fix: bool,
    requested_by: &str,
    timeout: Duration,
) -> Result<ReconcileReport, KeyMaintenanceError> {
    let requested_by = requested_by.to_string();
    ask(actor, timeout, |reply| KeyMaintenanceMsg::Reconcile {
        fix,
        requested_by,
        reply,
    })
    .await
}

/// A rotation pass through the actor.
pub async fn rotate_due(
    actor: &ActorRef<KeyMaintenanceMsg>,
    requested_by: &str,
    timeout: Duration,
) -> Result<RotationReport, KeyMaintenanceError> {
    let requested_by = requested_by.to_string();
    ask(actor, timeout, |reply| KeyMaintenanceMsg::RotateDue {
        requested_by,
        reply: Some(reply),
    })
    .await
}

/// One holder's rotation through the actor.
pub async fn rotate(
    actor: &ActorRef<KeyMaintenanceMsg>,
    strategy_id: &str,
    wallet: &str,
    requested_by: &str,
    timeout: Duration,
) -> Result<RotatedKey, KeyMaintenanceError> {
    let (strategy_id, wallet, requested_by) = (
        strategy_id.to_string(),
        wallet.to_string(),
        requested_by.to_string(),
    );
    ask(actor, timeout, |reply| KeyMaintenanceMsg::Rotate {
        strategy_id,
        wallet,
        requested_by,
        reply,
    })
    .await
}

/// Revokes one current key through the actor.
pub async fn revoke(
    actor: &ActorRef<KeyMaintenanceMsg>,
    key_hash: &str,
    requested_by: &str,
    timeout: Duration,
) -> Result<RevokedKey, KeyMaintenanceError> {
    let (key_hash, requested_by) = (key_hash.to_string(), requested_by.to_string());
    ask(actor, timeout, |reply| KeyMaintenanceMsg::Revoke {
        key_hash,
        requested_by,
        reply,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALLET: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";

    #[test]
    fn key_names_parse_back_to_strategy_and_wallet() {
        let name = key_name("s-1-x", WALLET);
        assert_eq!(parse_key_name(&name), Some(("s-1-x", WALLET)));
        assert_eq!(
            parse_key_name(&key_name("s1", WALLET)),
            Some(("s1", WALLET))
        );
        // Not ours, or not a wallet at the end.
        assert_eq!(parse_key_name(&format!("other-s1-{WALLET}")), None);
        assert_eq!(parse_key_name("creditbrain-s1-short"), None);
        assert_eq!(parse_key_name(&format!("creditbrain--{WALLET}")), None);
        assert_eq!(parse_key_name(&format!("creditbrain-{WALLET}")), None);
        // 0, O, I and l are not base58.
        let bad = format!("creditbrain-s1-0{}", &WALLET[1..]);
        assert_eq!(parse_key_name(&bad), None);
    }

    #[test]
    fn remaining_limits_floor_to_cents() {
        assert_eq!(floor_cents(6_543_211), 6_540_000);
        assert_eq!(floor_cents(10_000), 10_000);
        assert_eq!(floor_cents(9_999), 0);
        assert_eq!(floor_cents(-5), 0);
    }

    #[test]
    fn codes_are_stable() {
        let key = || "h".to_string();
        assert_eq!(
            KeyMaintenanceError::KeyNotFound {
                strategy_id: "s".into(),
                wallet: "w".into()
            }
            .code(),
            "KEY_NOT_FOUND"
        );
        assert_eq!(
            KeyMaintenanceError::OpenRouter(OpenRouterCallError::ActorDown).code(),
            "OPENROUTER_ACTOR_DOWN"
        );
        assert_eq!(
            KeyMaintenanceError::OpenRouterDown.code(),
            "OPENROUTER_UNAVAILABLE"
        );
        let run = KeyMaintenanceError::RunInProgress {
            strategy_id: "s".into(),
            run_id: "r".into(),
        };
        assert_eq!(run.code(), "RUN_IN_PROGRESS");
        assert!(run.is_deferral());
        let open = KeyMaintenanceError::OpenAllocation {
            key_hash: key(),
            allocation_id: 1,
            run_id: "r".into(),
        };
        assert_eq!(open.code(), "ALLOCATION_OPEN");
        assert!(open.is_deferral());
        assert_eq!(
            KeyMaintenanceError::KeyDisabled { key_hash: key() }.code(),
            "KEY_DISABLED"
        );
        assert_eq!(
            KeyMaintenanceError::KeyMissing { key_hash: key() }.code(),
            "KEY_MISSING"
        );
        assert!(!KeyMaintenanceError::KeyMissing { key_hash: key() }.is_deferral());
        assert_eq!(
            KeyMaintenanceError::ActorDown.code(),
            "KEY_MAINTENANCE_DOWN"
        );
    }
}
