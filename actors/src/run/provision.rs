//! PROVISIONING, each allocation exactly once (DESIGN §4): a top-up's absolute target limit is
//! stored before OpenRouter is called, so a retry sends the same value; a holder without a key
//! gets one with a deterministic name, and a key of that name left by a crash is adopted rather
//! than duplicated (a creation is never repeated, so its target is stored with the key); a new
//! key's one-time plaintext is sealed in the vault before it is stored.
//!
//! The target depends on the mode the run allocated in (`store::allowance::AllocationRecord`):
//! credits grants are added to the key's current limit (capped by `MAX_KEY_LIMIT`); allowances
//! replace it — the target is the allowance itself, 0 ends it — and every key an allowance run
//! touches or creates gets the strategy's `limit_reset`. An allowance of 0 for a holder without a
//! key creates nothing (the row is marked `skipped`). A key from allowance mode topped up in
//! credits mode stops resetting, and its limit becomes its all-time usage plus the grant.
//!
//! Allocations are applied several at a time (the phase keeps `RunPolicy::provision_concurrency`
//! in flight, so OpenRouter latency is paid once per batch, not once per holder). Each is applied
//! in a task of its own ([`apply_once`]) under a per-allocation lock:
//! a worker killed in the middle of an OpenRouter call does not cancel the call (it runs in the
//! OpenRouterActor), so the task goes on to record what OpenRouter answered, and the restarted
//! worker waits for it before it looks at that allocation again. Without this, a creation still
//! in flight is invisible to the restarted worker's orphan lookup and the holder gets two keys.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex as StdMutex, PoisonError};
use std::time::Instant;

use chrono::Utc;
use serde_json::json;
use tokio::sync::{Mutex, oneshot};

use super::RunContext;
use super::phases::{PhaseError, audit};
use crate::openrouter::{
    CreateKey, Key, KeyUpdate, LimitReset as OpenRouterReset, actor as openrouter,
};
use crate::store::allocations::{
    Allocation, AllocationTarget, mark_allocation_applied_on, set_allocation_target_on,
};
use crate::store::audit::{AuditEntry, append_audit};
use crate::store::keys::{NewUserKey, insert_user_key_on};
use crate::store::runs::{Run, RunState};
use crate::store::strategies::StoredStrategy;
use crate::store::{Store, StoreError};
use crate::strategy::LimitReset;

/// What applying one allocation did.
pub(super) enum Applied {
    Created,
    /// A credits top-up, or an allowance set (or ended) on an existing key.
    ToppedUp,
    Adopted,
    /// Nothing to do: an allowance of 0 for a holder without a key (marked `skipped`).
    Skipped,
}

/// Counts for the run row and the audit log.
#[derive(Default)]
pub(super) struct Tally {
    pub created: u64,
    pub updated: u64,
    pub adopted: u64,
    pub skipped: u64,
    pub failed: Vec<PhaseError>,
}

impl Tally {
    pub(super) fn count(&mut self, applied: Applied) {
        match applied {
            Applied::Created => self.created += 1,
            Applied::ToppedUp => self.updated += 1,
            Applied::Adopted => {
                self.adopted += 1;
                self.updated += 1;
            }
            Applied::Skipped => self.skipped += 1,
        }
    }
}

/// The run's key counts over all its attempts (a resumed pass applies only what was left): keys
/// created = holders with a `key_created` entry in the run's audit log; updated = the other
/// applied allocations (top-ups and adoptions).
pub(super) async fn run_totals(context: &RunContext, run: &Run) -> Result<(u64, u64), PhaseError> {
    let applied: std::collections::HashSet<String> = context
        .store
        .allocations_for_run(&run.run_id)
        .await?
        .into_iter()
        .filter(|allocation| {
            !allocation.dry_run
                && allocation.status == crate::store::allocations::AllocationStatus::Applied
        })
        .map(|allocation| allocation.holder_wallet)
        .collect();
    let created: std::collections::HashSet<String> = context
        .store
        .audit_for_run(&run.run_id)
        .await?
        .into_iter()
        .filter(|entry| entry.action == "key_created")
        .filter_map(|entry| {
            entry
                .details
                .get("wallet")
                .and_then(|wallet| wallet.as_str())
                .map(str::to_string)
        })
        .filter(|wallet| applied.contains(wallet))
        .collect();
    let created = created.len() as u64;
    Ok((created, applied.len() as u64 - created))
}

/// OpenRouter's keys by name, listed once per provisioning pass and only if a holder has no key:
/// the only way to find a key created just before a crash.
#[derive(Default)]
pub(super) struct OrphanIndex {
    /// Every key of a name (a name may have several: an expired or rotated key the ledger still
    /// knows, or duplicates an older bug left), and when the list was taken.
    by_name: Option<(HashMap<String, Vec<Key>>, Instant)>,
}

impl OrphanIndex {
    /// The key named `name` that the ledger does not know, if any: an orphan to adopt. A key the
    /// ledger knows (an old key of the holder's, no longer current) is not one.
    async fn find(&mut self, context: &RunContext, name: &str) -> Result<Option<Key>, PhaseError> {
        if self.by_name.is_none() {
            let taken_at = Instant::now();
            let actor = context.openrouter()?;
            let keys = openrouter::list_all_keys(&actor, false, context.policy.call_timeout)
                .await
                .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
            let mut by_name: HashMap<String, Vec<Key>> = HashMap::new();
            for key in keys {
                by_name.entry(key.name.clone()).or_default().push(key);
            }
            self.by_name = Some((by_name, taken_at));
        }
        let candidates = self
            .by_name
            .as_ref()
            .and_then(|(keys, _)| keys.get(name))
            .cloned()
            .unwrap_or_default();
        let mut unknown = Vec::new();
        for key in candidates {
            if context.store.key_by_hash(&key.hash).await?.is_none() {
                unknown.push(key);
            }
        }
        if unknown.len() > 1 {
            tracing::warn!(
                name,
                orphans = unknown.len(),
                "several unrecorded keys share a holder's name; adopting one, reconcile reports the rest"
            );
        }
        Ok(unknown.into_iter().next())
    }

    /// Forgets the list if it was taken before `at` (something may have created a key since).
    fn forget_if_older_than(&mut self, at: Instant) {
        if self
            .by_name
            .as_ref()
            .is_some_and(|(_, taken_at)| *taken_at < at)
        {
            self.by_name = None;
        }
    }
}

/// What the applications of one provisioning pass share.
#[derive(Default)]
pub(super) struct PassState {
    /// The orphan index, locked only for a lookup (listing it first if need be), not for a whole
    /// application, so applications run side by side: a key another application is creating
    /// meanwhile has another holder's name, and this allocation's own earlier application is
    /// covered by `Pass::previous_finished`.
    orphans: Mutex<OrphanIndex>,
    /// Taken around each write. SQLite has one writer: concurrent writers that find the lock
    /// taken sleep in its busy handler (1, 2, 5, 10 ms …) while the lock may already be free,
    /// and the pass would wait on those sleeps. Queued here instead, in order, each write
    /// starts the moment the previous one commits. Never held across an OpenRouter call.
    writes: Mutex<()>,
    /// The frequent writes (targets, records of applications) waiting for the writer: whoever
    /// takes `writes` next commits all of them in one transaction (group commit), so one fsync
    /// serves every application that wrote meanwhile instead of one each.
    queued: StdMutex<Vec<Queued>>,
}

/// A frequent write of one application, committed with whatever else is queued (see
/// [`PassState::queued`]) and answered only once that commit is durable.
enum Write {
    /// A top-up's target, stored before the OpenRouter call (`set_allocation_target`).
    Target {
        allocation_id: i64,
        target: i64,
        key_hash: String,
    },
    /// What an application did (see [`record_applied`]).
    Applied {
        allocation_id: i64,
        key_hash: String,
        /// A key the application created, with the target it was created with.
        new_key: Option<Box<(NewUserKey, i64)>>,
        audit: Box<AuditEntry>,
    },
}

enum Written {
    /// The stored target; `None` when the row is gone or no longer open.
    Target(Option<AllocationTarget>),
    Applied,
}

struct Queued {
    write: Write,
    answer: oneshot::Sender<Result<Written, PhaseError>>,
}

/// The pass state, shared with its application tasks.
pub(super) type SharedPass = Arc<PassState>;

/// One application's view of its pass.
pub(super) struct Pass {
    shared: SharedPass,
    /// When the last earlier application of this allocation finished, if one did.
    previous_finished: Option<Instant>,
}

impl Pass {
    async fn find_orphan(
        &self,
        context: &RunContext,
        name: &str,
    ) -> Result<Option<Key>, PhaseError> {
        let mut index = self.shared.orphans.lock().await;
        if let Some(at) = self.previous_finished {
            index.forget_if_older_than(at);
        }
        index.find(context, name).await
    }

    /// Waits for the pass's turn to write (see [`PassState::writes`]).
    async fn writing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.shared.writes.lock().await
    }

    /// Queues `write`, and once this task has the writer, commits everything queued (unless an
    /// earlier holder already committed this write with its own); answers when it is durable.
    async fn write(&self, context: &RunContext, write: Write) -> Result<Written, PhaseError> {
        let (answer, answered) = oneshot::channel();
        lock(&self.shared.queued).push(Queued { write, answer });
        {
            let _writing = self.writing().await;
            let batch = std::mem::take(&mut *lock(&self.shared.queued));
            if !batch.is_empty() {
                commit_batch(&context.store, batch).await;
            }
        }
        answered.await.unwrap_or_else(|_| {
            Err(PhaseError::new(
                "DB_ERROR",
                "a queued write was abandoned before its commit",
            ))
        })
    }
}

fn lock<T>(mutex: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Commits `batch` in one transaction, each write in a savepoint of its own so that a failing
/// write fails alone, and answers every write once the transaction is committed.
async fn commit_batch(store: &Store, batch: Vec<Queued>) {
    let mut tx = match store.begin_write().await {
        Ok(tx) => tx,
        Err(error) => {
            let error = PhaseError::from(error);
            for queued in batch {
                let _ = queued.answer.send(Err(error.clone()));
            }
            return;
        }
    };
    let mut answers = Vec::with_capacity(batch.len());
    for Queued { write, answer } in batch {
        let written = write_in_savepoint(&mut tx, write).await;
        answers.push((answer, written));
    }
    match tx.commit().await {
        Ok(()) => {
            for (answer, written) in answers {
                let _ = answer.send(written);
            }
        }
        Err(error) => {
            let error = PhaseError::from(StoreError::from(error));
            for (answer, _) in answers {
                let _ = answer.send(Err(error.clone()));
            }
        }
    }
}

async fn write_in_savepoint(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    write: Write,
) -> Result<Written, PhaseError> {
    let mut savepoint = sqlx::Acquire::begin(&mut *tx)
        .await
        .map_err(StoreError::from)?;
    let written: Result<Written, StoreError> = async {
        match write {
            Write::Target {
                allocation_id,
                target,
                key_hash,
            } => Ok(Written::Target(
                set_allocation_target_on(&mut savepoint, allocation_id, target, Some(&key_hash))
                    .await?,
            )),
            Write::Applied {
                allocation_id,
                key_hash,
                new_key,
                audit,
            } => {
                if let Some((new_key, target)) = new_key.map(|boxed| *boxed) {
                    set_allocation_target_on(&mut savepoint, allocation_id, target, None).await?;
                    insert_user_key_on(&mut savepoint, &new_key).await?;
                }
                mark_allocation_applied_on(&mut savepoint, allocation_id, Some(&key_hash)).await?;
                append_audit(&mut *savepoint, &audit).await?;
                Ok(Written::Applied)
            }
        }
    }
    .await;
    match written {
        Ok(written) => {
            savepoint.commit().await.map_err(StoreError::from)?;
            Ok(written)
        }
        Err(error) => {
            savepoint.rollback().await.map_err(StoreError::from)?;
            Err(error.into())
        }
    }
}

/// One lock per (run, allocation), process-wide. It holds when its last holder finished: a
/// holder that finished after the orphan index was listed may have created a key the list lacks.
type AllocationLock = Arc<Mutex<Option<Instant>>>;

static ALLOCATION_LOCKS: LazyLock<StdMutex<HashMap<(String, i64), AllocationLock>>> =
    LazyLock::new(|| StdMutex::new(HashMap::new()));

fn allocation_lock(run_id: &str, allocation_id: i64) -> AllocationLock {
    ALLOCATION_LOCKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry((run_id.to_string(), allocation_id))
        .or_default()
        .clone()
}

/// Drops the run's allocation locks once its provisioning is done (none is held then).
pub(super) fn forget_allocation_locks(run_id: &str) {
    ALLOCATION_LOCKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(run, _), _| run != run_id);
}

/// What became of one allocation in [`apply_once`].
pub(super) enum Attempt {
    Applied(Applied),
    /// Applied before this pass looked at it (by an earlier worker's task).
    AlreadyApplied,
    /// Not applied; recorded on the allocation (`failed`) and in the audit log.
    Failed(PhaseError),
}

/// Applies the allocation `allocation_id` once, in a task that outlives the caller (see the module
/// documentation): it waits for any earlier application of the same allocation, re-reads the row,
/// applies it if still open and records a failure on the row. `Err` only when the store fails.
/// `allowance` is the mode the run allocated in (`Some`: the rows are absolute allowances).
pub(super) async fn apply_once(
    context: RunContext,
    run: Arc<Run>,
    strategy: Arc<StoredStrategy>,
    allocation_id: i64,
    pass: SharedPass,
    allowance: Option<LimitReset>,
) -> Result<Attempt, PhaseError> {
    let lock = allocation_lock(&run.run_id, allocation_id);
    let task = tokio::spawn(async move {
        let mut finished = lock.lock_owned().await;
        let outcome = apply_locked(
            &context,
            &run,
            &strategy,
            allocation_id,
            pass,
            *finished,
            allowance,
        )
        .await;
        *finished = Some(Instant::now());
        outcome
    });
    task.await.unwrap_or_else(|error| {
        Err(PhaseError::new(
            "PROVISION_TASK_FAILED",
            format!("applying allocation {allocation_id} panicked: {error}"),
        ))
    })
}

async fn apply_locked(
    context: &RunContext,
    run: &Run,
    strategy: &StoredStrategy,
    allocation_id: i64,
    pass: SharedPass,
    previous_finished: Option<Instant>,
    allowance: Option<LimitReset>,
) -> Result<Attempt, PhaseError> {
    let Some(allocation) = context.store.allocation(allocation_id).await? else {
        return Err(PhaseError::new(
            "DB_ERROR",
            format!("allocation {allocation_id} vanished"),
        ));
    };
    if !allocation.status.is_open() {
        return Ok(Attempt::AlreadyApplied);
    }
    let pass = Pass {
        shared: pass,
        previous_finished,
    };
    match apply(context, run, strategy, &allocation, &pass, allowance).await {
        Ok(applied) => Ok(Attempt::Applied(applied)),
        Err(error) => {
            let _writing = pass.writing().await;
            context
                .store
                .mark_allocation_failed(allocation.id, &format!("{}: {}", error.code, error.detail))
                .await?;
            audit(
                context,
                run,
                RunState::Provisioning,
                "key_failed",
                json!({
                    "wallet": allocation.holder_wallet,
                    "code": error.code,
                    "detail": error.detail,
                }),
            )
            .await?;
            Ok(Attempt::Failed(error))
        }
    }
}

/// `creditbrain-<strategy>-<wallet>`: the same holder always maps to the same name.
pub fn key_name(strategy_id: &str, wallet: &str) -> String {
    format!("creditbrain-{strategy_id}-{wallet}")
}

fn openrouter_reset(reset: Option<LimitReset>) -> Option<OpenRouterReset> {
    reset.map(|reset| match reset {
        LimitReset::Daily => OpenRouterReset::Daily,
        LimitReset::Weekly => OpenRouterReset::Weekly,
        LimitReset::Monthly => OpenRouterReset::Monthly,
    })
}

pub(super) async fn apply(
    context: &RunContext,
    run: &Run,
    strategy: &StoredStrategy,
    allocation: &Allocation,
    pass: &Pass,
    allowance: Option<LimitReset>,
) -> Result<Applied, PhaseError> {
    let spec = &strategy.spec;
    let actor = context.openrouter()?;
    let timeout = context.policy.call_timeout;
    let store = &context.store;
    let wallet = &allocation.holder_wallet;
    if let Some(key) = store.current_key(&run.strategy_id, wallet).await? {
        // An earlier attempt of this allocation went the creation way (a target stored without a
        // key) and recorded this key (created or adopted) before it was cut off: this finishes
        // that creation; the stored target is the key's whole limit, not a top-up on top of it.
        let finishes_creation =
            allocation.target_limit_micro_usd.is_some() && allocation.key_hash.is_none();
        // Top-up: the new absolute limit, stored first; a retry after a crash finds it stored and
        // sends the same number instead of adding the grant again. An allowance replaces the
        // limit: the target is the allowance itself (0 ends it).
        // A key left by allowance mode (it still resets) joining credits mode: its allowance
        // ends, and its credit starts from what it has spent in all, read fresh from OpenRouter —
        // without the reset its limit counts against all-time usage, so `usage + grant` is
        // exactly the grant to spend. Read only when no target is stored yet; a retry sends the
        // stored one.
        let leaves_allowance = allowance.is_none() && key.limit_reset.is_some();
        let wanted = match allowance {
            Some(_) => allocation.grant_micro_usd.min(spec.max_key_limit_micro_usd),
            None if leaves_allowance && allocation.target_limit_micro_usd.is_none() => {
                let spent = openrouter::get_key(&actor, key.key_hash.clone(), timeout)
                    .await
                    .map_err(|error| PhaseError::new(error.code(), error.to_string()))?
                    .usage_micro_usd;
                spent.saturating_add(allocation.grant_micro_usd.min(spec.max_key_limit_micro_usd))
            }
            None => key
                .limit_micro_usd
                .saturating_add(allocation.grant_micro_usd)
                .min(spec.max_key_limit_micro_usd),
        };
        let stored = pass
            .write(
                context,
                Write::Target {
                    allocation_id: allocation.id,
                    target: wanted,
                    key_hash: key.key_hash.clone(),
                },
            )
            .await?;
        let Written::Target(Some(target)) = stored else {
            return Err(PhaseError::new(
                "DB_ERROR",
                format!("allocation {} vanished", allocation.id),
            ));
        };
        let hash = target.key_hash.clone().unwrap_or(key.key_hash.clone());
        openrouter::update_key(
            &actor,
            hash.clone(),
            KeyUpdate {
                limit_micro_usd: Some(Some(target.target_limit_micro_usd)),
                // Every allowance key resets with the strategy's period (a key from credits mode
                // starts to), and a credits key never does (one from allowance mode stops);
                // sent whenever it differs, so a retry converges too.
                limit_reset: match allowance {
                    Some(reset) => Some(openrouter_reset(Some(reset))),
                    None if leaves_allowance => Some(None),
                    None => None,
                },
                ..KeyUpdate::default()
            },
            timeout,
        )
        .await
        .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
        if key.limit_reset.as_deref() != allowance.map(|reset| reset.as_str()) {
            let _writing = pass.writing().await;
            store.set_key_limit_reset(&hash, allowance).await?;
        }
        let action = match (finishes_creation, allowance) {
            (true, _) => "key_created",
            (false, None) => "key_topped_up",
            (false, Some(_)) if target.target_limit_micro_usd == 0 => "allowance_ended",
            (false, Some(_)) => "allowance_set",
        };
        record_applied(
            context,
            pass,
            run,
            Recorded {
                allocation_id: allocation.id,
                key_hash: &hash,
                new_key: None,
                action,
                details: json!({
                "wallet": wallet,
                "keyHash": hash,
                "grantMicroUsd": allocation.grant_micro_usd,
                "previousLimitMicroUsd": key.limit_micro_usd,
                "limitMicroUsd": target.target_limit_micro_usd,
                "limitReset": allowance.map(|reset| reset.as_str()),
                "finishesInterruptedCreation": finishes_creation,
                }),
            },
        )
        .await?;
        return Ok(if finishes_creation {
            Applied::Created
        } else {
            Applied::ToppedUp
        });
    }

    if allowance.is_some() && allocation.grant_micro_usd == 0 {
        // An allowance ends for a holder whose key is gone since ALLOCATING (revoked, expired):
        // nothing to set, and no $0 key is created.
        let _writing = pass.writing().await;
        store
            .mark_allocation_skipped(
                allocation.id,
                "no current key: an allowance of 0 creates none",
            )
            .await?;
        audit(
            context,
            run,
            RunState::Provisioning,
            "allowance_skipped",
            json!({"wallet": wallet, "reason": "no current key"}),
        )
        .await?;
        return Ok(Applied::Skipped);
    }
    // A new key's limit: a target an earlier attempt stored wins (the row was read under the
    // allocation lock). Nothing is stored before the creation: a retry does not repeat a
    // creation but adopts the key by name (below), storing its target first, and sets the limit
    // absolutely; so the target is stored with the key in `record_applied`, one commit in all.
    let target = allocation
        .target_limit_micro_usd
        .unwrap_or_else(|| allocation.grant_micro_usd.min(spec.max_key_limit_micro_usd));
    let name = key_name(&run.strategy_id, wallet);
    let expires_at = (spec.key_expiry_days > 0)
        .then(|| Utc::now() + chrono::Duration::days(i64::from(spec.key_expiry_days)));

    if let Some(orphan) = pass.find_orphan(context, &name).await? {
        // Created by an attempt that crashed before recording it. Its plaintext is gone (OpenRouter
        // shows it once), so the holder obtains it through a signed rotation; the key itself and
        // its limit are ours to set. The target is stored before the key: an adoption cut off
        // after recording the key is finished by the top-up path, which needs it.
        let _writing = pass.writing().await;
        let target = store
            .set_allocation_target(allocation.id, target, None)
            .await?
            .ok_or_else(|| {
                PhaseError::new("DB_ERROR", format!("allocation {} vanished", allocation.id))
            })?;
        store
            .insert_user_key(&NewUserKey {
                key_hash: orphan.hash.clone(),
                strategy_id: run.strategy_id.clone(),
                holder_wallet: wallet.clone(),
                name: name.clone(),
                limit_micro_usd: orphan.limit_micro_usd.unwrap_or(0).max(0),
                limit_reset: allowance.map(|reset| reset.as_str().to_string()),
                encrypted: None,
                expires_at: orphan.expires_at,
            })
            .await?;
        drop(_writing);
        openrouter::update_key(
            &actor,
            orphan.hash.clone(),
            KeyUpdate {
                limit_micro_usd: Some(Some(target.target_limit_micro_usd)),
                limit_reset: allowance.map(|reset| openrouter_reset(Some(reset))),
                ..KeyUpdate::default()
            },
            timeout,
        )
        .await
        .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
        record_applied(context, pass, run, Recorded {
            allocation_id: allocation.id,
            key_hash: &orphan.hash,
            new_key: None,
            action: "key_adopted",
            details: json!({
                "wallet": wallet,
                "keyHash": orphan.hash,
                "limitMicroUsd": target.target_limit_micro_usd,
                "reason": "a key with this holder's name existed on OpenRouter but not in the ledger",
            }),
        })
        .await?;
        return Ok(Applied::Adopted);
    }

    let created = openrouter::create_key(
        &actor,
        CreateKey {
            name: name.clone(),
            limit_micro_usd: Some(target),
            limit_reset: openrouter_reset(allowance),
            expires_at,
            include_byok_in_limit: None,
        },
        timeout,
    )
    .await
    .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
    let sealed = context
        .vault
        .encrypt(&created.plaintext, &created.key.hash)
        .map_err(|error| PhaseError::new("KEY_VAULT_ERROR", error.to_string()))?;
    let new_key = NewUserKey {
        key_hash: created.key.hash.clone(),
        strategy_id: run.strategy_id.clone(),
        holder_wallet: wallet.clone(),
        name,
        limit_micro_usd: target,
        limit_reset: allowance.map(|reset| reset.as_str().to_string()),
        encrypted: Some(sealed.into_parts()),
        expires_at,
    };
    record_applied(
        context,
        pass,
        run,
        Recorded {
            allocation_id: allocation.id,
            key_hash: &created.key.hash,
            new_key: Some((new_key, target)),
            action: "key_created",
            details: json!({
                "wallet": wallet,
                "keyHash": created.key.hash,
                "limitMicroUsd": target,
                "expiresAt": expires_at.map(crate::store::format_timestamp),
            }),
        },
    )
    .await?;
    Ok(Applied::Created)
}

/// What [`record_applied`] records.
struct Recorded<'a> {
    allocation_id: i64,
    /// The key the allocation went to.
    key_hash: &'a str,
    /// A key this application created, with the target limit it was created with.
    new_key: Option<(NewUserKey, i64)>,
    action: &'a str,
    details: serde_json::Value,
}

/// Records what an application did in one transaction: the key it created with its target (if
/// `new_key`), the allocation applied with the key's limit (`mark_allocation_applied_on`), and
/// the audit entry. Together, instead of three or four commits, and grouped with the other
/// applications' writes (see [`PassState::queued`]): SQLite has one writer and each commit is an
/// fsync under synchronous=FULL, so commits per allocation would bound PROVISIONING however many
/// run at once. All or nothing, too: a crash leaves a created key unrecorded (adopted by name
/// on resume), never half-recorded.
async fn record_applied(
    context: &RunContext,
    pass: &Pass,
    run: &Run,
    recorded: Recorded<'_>,
) -> Result<(), PhaseError> {
    let Recorded {
        allocation_id,
        key_hash,
        new_key,
        action,
        details,
    } = recorded;
    let audit = AuditEntry::new(action)
        .run(&run.run_id)
        .strategy(&run.strategy_id)
        .phase(RunState::Provisioning.as_str())
        .actor("worker")
        .details(details);
    pass.write(
        context,
        Write::Applied {
            allocation_id,
            key_hash: key_hash.to_string(),
            new_key: new_key.map(Box::new),
            audit: Box::new(audit),
        },
    )
    .await?;
    Ok(())
}
