//! Scheduler: starts each active strategy's runs on its cron schedule (UTC) through the
//! RunCoordinator, and polls OpenRouter usage on a timer into the key ledger and its snapshots.
//!
//! **Fires.** The plan holds one next fire per active strategy; one timer is armed for the
//! earliest. A fire starts a run with `triggered_by = schedule` unless the strategy already has an
//! active run (then the slot is skipped quietly: a scheduled fire during a run is not a failure,
//! and no blocked run is recorded). The kill switch and the daily cap are the coordinator's: it
//! records those blocked runs itself. After a fire, or a skip, the next fire is the first slot
//! strictly after *now*, so one slot never fires twice and a late timer fires once, not once per
//! slot it missed.
//!
//! **Downtime.** When a strategy enters the plan (actor start, or a strategy new to a resync) its
//! first fire is the first slot after its last activity (its latest run's start, or its last
//! edit, whichever is later). If the daemon was down across one or more slots, that slot is in
//! the past: the strategy fires once at once, then follows its schedule (catch up at most once,
//! never a backlog). A strategy just created, edited or re-activated has its last activity *now*,
//! so it waits for its next slot.
//!
//! **Resync.** Frontends send [`SchedulerMsg::Resync`] when strategies are created, edited,
//! paused, activated or deleted; a periodic resync ([`RESYNC_INTERVAL`]) covers changes made
//! elsewhere (another instance, a hand edit). Paused and deleted strategies leave the plan; a
//! strategy whose schedule is unchanged keeps its pending fire (a resync landing just as a slot
//! falls due neither loses nor repeats it). At its slot a due strategy is read again: paused,
//! deleted or rescheduled meanwhile (without a resync) means no fire and a reload of the plan
//! (the old service kept firing paused strategies). A stored schedule that does not parse, or
//! that fires more often than `min_cron_interval_hours`, is left out with one warning.
//!
//! **Usage poll.** Every `usage_poll_interval` (and once at start): one paginated pass over
//! OpenRouter's keys through the OpenRouterActor (not one call per key), matched to the ledger by
//! hash; usage folded into `user_keys`, one snapshot per key, exhausted / expired / back-to-active
//! transitions, all in one transaction; then snapshots older than `usage_retention` are pruned.
//! Keys on OpenRouter but not in the ledger are left to reconcile. A failed poll is logged and
//! the next interval tries again.
//!
//! Exhaustion rule (decided here): a key with a limit is exhausted when the usage OpenRouter
//! counts against that limit has reached it — all-time usage for credits keys (no reset), the
//! current period's usage (`usage_daily/weekly/monthly`) for allowance keys — or OpenRouter
//! reports `limit_remaining ≤ 0`. An exhausted key goes back to `active` as soon as it has
//! headroom again: a top-up raised its limit, or an allowance period reset. A key without a
//! limit on OpenRouter is never exhausted. Expired (ledger or OpenRouter `expires_at` ≤ now)
//! wins over both and is final. Only current keys (active, exhausted) change status; revoked,
//! rotated and expired keys only have their usage folded and snapshotted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use serde::Serialize;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use crate::openrouter::actor::{self as openrouter, OpenRouterMsg};
use crate::openrouter::{Key, LimitReset};
use crate::run::{CoordinatorMsg, start_run};
use crate::schedule::CronSchedule;
use crate::store::keys::{KeyStatus, UserKey};
use crate::store::runs::TriggeredBy;
use crate::store::usage::{KeyUsageUpdate, NewUsageSnapshot};
use crate::store::{Store, StoreError, parse_timestamp};
use crate::strategy::StrategyStatus;
use crate::supervisor::ActorSlot;

/// The fire timer never sleeps longer than this: a long `sleep` runs on the monotonic clock, so
/// after a suspend or a wall-clock step it could wake hours off. Waking every minute to compare
/// against the wall clock costs nothing (no I/O unless something is due).
pub const MAX_TIMER_SLEEP: Duration = Duration::from_secs(60);

/// How often the plan is reloaded even without a [`SchedulerMsg::Resync`].
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// How long a scheduled start may wait for the coordinator's answer.
pub const START_RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the paginated key list may take, retries included.
pub const LIST_KEYS_TIMEOUT: Duration = Duration::from_secs(120);

/// A fire waits this long for a restarting coordinator (its slot empty) before giving up the slot.
const COORDINATOR_WAIT: Duration = Duration::from_secs(10);

/// Where the Scheduler reads the time. The system clock in production; tests inject a
/// [`ManualClock`] to make slots due without waiting for them.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// `Utc::now()`.
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

/// A clock that only moves when told (for tests).
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(now)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// A [`Clock`] reading this one.
    pub fn clock(&self) -> Clock {
        let this = self.clone();
        Clock::from_fn(move || this.now())
    }
}

// ---------------------------------------------------------------------------------------------
// The plan (pure)
// ---------------------------------------------------------------------------------------------

/// One strategy's schedule and the slot it fires at next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub schedule: CronSchedule,
    pub next_fire: DateTime<Utc>,
}

/// The next fire of every scheduled strategy, by strategy id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    entries: BTreeMap<String, Planned>,
}

impl Plan {
    pub fn insert(&mut self, strategy_id: impl Into<String>, planned: Planned) {
        self.entries.insert(strategy_id.into(), planned);
    }

    pub fn remove(&mut self, strategy_id: &str) -> Option<Planned> {
        self.entries.remove(strategy_id)
    }

    pub fn get(&self, strategy_id: &str) -> Option<&Planned> {
        self.entries.get(strategy_id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The earliest next fire: when the timer should wake.
    pub fn earliest(&self) -> Option<DateTime<Utc>> {
        self.entries.values().map(|planned| planned.next_fire).min()
    }

    /// Every strategy with its next fire, soonest first (ties by id).
    pub fn next_fires(&self) -> Vec<(String, DateTime<Utc>)> {
        let mut fires: Vec<_> = self
            .entries
            .iter()
            .map(|(id, planned)| (id.clone(), planned.next_fire))
            .collect();
        fires.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        fires
    }

    /// The strategies due at `now` (next fire ≤ now), soonest first, each with the slot it fires
    /// for and its schedule's text. Each is advanced to its first slot strictly after `now`
    /// (however many slots were missed: one fire, no backlog), so asking again at the same `now`
    /// returns nothing. A schedule with no slot left (past the cron calendar) leaves the plan.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<DueFire> {
        let mut due: Vec<DueFire> = self
            .entries
            .iter()
            .filter(|(_, planned)| planned.next_fire <= now)
            .map(|(id, planned)| DueFire {
                strategy_id: id.clone(),
                slot: planned.next_fire,
                schedule: planned.schedule.source().to_owned(),
            })
            .collect();
        due.sort_by(|a, b| {
            a.slot
                .cmp(&b.slot)
                .then_with(|| a.strategy_id.cmp(&b.strategy_id))
        });
        for fire in &due {
            let next = self
                .entries
                .get(&fire.strategy_id)
                .and_then(|planned| planned.schedule.next_after(now));
            match next {
                Some(next) => {
                    if let Some(planned) = self.entries.get_mut(&fire.strategy_id) {
                        planned.next_fire = next;
                    }
                }
                None => {
                    self.entries.remove(&fire.strategy_id);
                }
            }
        }
        due
    }
}

/// A strategy due to fire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueFire {
    pub strategy_id: String,
    /// The slot it fires for (≤ now).
    pub slot: DateTime<Utc>,
    /// The schedule's text when planned; the fire stands down if the strategy's differs.
    pub schedule: String,
}

/// The first fire of a strategy entering the plan: the first slot after its last activity
/// (`baseline`), which is in the past when slots were missed while nobody was scheduling (one
/// catch-up fire). A baseline in the future (clock skew) counts as now.
pub fn first_fire(
    schedule: &CronSchedule,
    baseline: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    schedule.next_after(baseline.min(now))
}

/// A strategy's last activity: the latest of its creation, its last edit (status changes and
/// carry-over writes included) and its latest run's start (timestamps as stored). `None` if none
/// of them parses.
pub fn last_activity(
    created_at: &str,
    updated_at: &str,
    latest_run_started_at: Option<&str>,
) -> Option<DateTime<Utc>> {
    [Some(created_at), Some(updated_at), latest_run_started_at]
        .into_iter()
        .flatten()
        .filter_map(parse_timestamp)
        .max()
}

/// The timer delay until `next` (zero when due), capped at [`MAX_TIMER_SLEEP`].
pub fn timer_delay(next: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (next - now)
        .to_std()
        .unwrap_or(Duration::ZERO)
        .min(MAX_TIMER_SLEEP)
}

// ---------------------------------------------------------------------------------------------
// The usage fold (pure)
// ---------------------------------------------------------------------------------------------

/// Whether OpenRouter will refuse the key for lack of credit (see the module docs).
pub fn is_exhausted(remote: &Key) -> bool {
    let Some(limit) = remote.limit_micro_usd else {
        return false;
    };
    let counted = match remote.limit_reset {
        None => remote.usage_micro_usd,
        Some(LimitReset::Daily) => remote.usage_daily_micro_usd,
        Some(LimitReset::Weekly) => remote.usage_weekly_micro_usd,
        Some(LimitReset::Monthly) => remote.usage_monthly_micro_usd,
    };
    counted >= limit
        || remote
            .limit_remaining_micro_usd
            .is_some_and(|left| left <= 0)
}

/// The status change a poll makes to a ledger key, as `(from, to)`, if any.
pub fn status_change(
    key: &UserKey,
    remote: &Key,
    now: DateTime<Utc>,
) -> Option<(KeyStatus, KeyStatus)> {
    if !key.status.is_current() {
        return None;
    }
    let ledger_expiry = key.expires_at.as_deref().and_then(parse_timestamp);
    let expired = ledger_expiry
        .into_iter()
        .chain(remote.expires_at)
        .any(|at| at <= now);
    let to = if expired {
        KeyStatus::Expired
    } else if is_exhausted(remote) {
        KeyStatus::Exhausted
    } else {
        KeyStatus::Active
    };
    (to != key.status).then_some((key.status, to))
}

/// What one poll writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageFold {
    pub updates: Vec<KeyUsageUpdate>,
    pub snapshots: Vec<NewUsageSnapshot>,
    /// Current ledger keys that OpenRouter did not list (deleted there?): reconcile's business.
    pub missing_remote: Vec<String>,
}

/// Matches OpenRouter's keys to the ledger by hash and computes the writes; OpenRouter keys not
/// in the ledger are ignored.
pub fn fold_usage(ledger: &[UserKey], remote: &[Key], now: DateTime<Utc>) -> UsageFold {
    let by_hash: HashMap<&str, &Key> = remote.iter().map(|k| (k.hash.as_str(), k)).collect();
    let mut fold = UsageFold::default();
    for key in ledger {
        let Some(remote) = by_hash.get(key.key_hash.as_str()) else {
            if key.status.is_current() {
                fold.missing_remote.push(key.key_hash.clone());
            }
            continue;
        };
        fold.updates.push(KeyUsageUpdate {
            key_hash: key.key_hash.clone(),
            usage_micro_usd: remote.usage_micro_usd.max(0),
            status_change: status_change(key, remote, now),
        });
        // The schema CHECKs non-negative usage and limit; OpenRouter never reports negatives,
        // but a bad answer must not fail the whole poll's transaction.
        fold.snapshots.push(NewUsageSnapshot {
            key_hash: key.key_hash.clone(),
            strategy_id: key.strategy_id.clone(),
            usage_micro_usd: remote.usage_micro_usd.max(0),
            usage_daily_micro_usd: remote.usage_daily_micro_usd.max(0),
            usage_weekly_micro_usd: remote.usage_weekly_micro_usd.max(0),
            usage_monthly_micro_usd: remote.usage_monthly_micro_usd.max(0),
            limit_micro_usd: remote.limit_micro_usd.map(|limit| limit.max(0)),
            limit_remaining_micro_usd: remote.limit_remaining_micro_usd,
            polled_at: now,
        });
    }
    fold
}

// ---------------------------------------------------------------------------------------------
// The actor
// ---------------------------------------------------------------------------------------------

/// Why a usage poll failed. Cloneable: every caller waiting on one poll gets its result.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum UsagePollError {
    #[error("openrouter actor is not running")]
    OpenRouterDown,
    /// Listing the keys failed (after the OpenRouterActor's retries); `code` is its stable code.
    #[error("listing openrouter keys failed ({code}): {message}")]
    ListKeys { code: &'static str, message: String },
    /// Reading the ledger or writing the poll failed; `locked` for SQLITE_BUSY (`DB_LOCKED`).
    #[error("store: {message}")]
    Store { message: String, locked: bool },
    /// The poll task died before answering.
    #[error("the usage poll task died: {0}")]
    TaskDied(String),
    /// The Scheduler is not running or did not answer in time (from [`poll_usage`]).
    #[error("the scheduler did not answer: {0}")]
    NoAnswer(String),
}

impl From<StoreError> for UsagePollError {
    fn from(error: StoreError) -> Self {
        Self::Store {
            locked: error.is_locked(),
            message: error.to_string(),
        }
    }
}

/// What one usage poll did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsagePollReport {
    pub polled_at: DateTime<Utc>,
    /// Keys OpenRouter listed (ours and others).
    pub remote_keys: u64,
    /// Ledger keys whose usage was folded.
    pub keys_synced: u64,
    pub snapshots: u64,
    pub exhausted: Vec<String>,
    pub expired: Vec<String>,
    /// Exhausted keys that had headroom again.
    pub reactivated: Vec<String>,
    /// Current ledger keys OpenRouter did not list.
    pub missing_remote: Vec<String>,
    /// Snapshots deleted by retention.
    pub pruned: u64,
}

type PollReply = RpcReplyPort<Result<UsagePollReport, UsagePollError>>;

/// Two consecutive slots closer together than the minimum interval.
type Gap = (DateTime<Utc>, DateTime<Utc>);

pub struct Scheduler;

#[derive(Clone)]
pub struct SchedulerArgs {
    pub store: Store,
    pub coordinator: ActorSlot<CoordinatorMsg>,
    pub openrouter: ActorSlot<OpenRouterMsg>,
    /// USAGE_POLL_INTERVAL_MIN.
    pub usage_poll_interval: Duration,
    /// Usage snapshots older than this are deleted after each poll (e.g. 30 days).
    pub usage_retention: Duration,
    /// MIN_CRON_INTERVAL_HOURS: a strategy whose schedule fires closer together is not scheduled
    /// (validation normally refuses it; a raised minimum can leave an older strategy below it).
    /// 0 disables the check.
    pub min_cron_interval_hours: u32,
    /// [`Clock::system`] except in tests.
    pub clock: Clock,
}

pub enum SchedulerMsg {
    /// Strategies changed (created, edited, paused, activated, deleted): reload the active ones,
    /// recompute their next fires, fire what is due and re-arm the timer.
    Resync,
    /// Internal (the fire timer): start the runs that are due, then re-arm.
    Tick,
    /// Poll OpenRouter usage now (the usage timer sends `None`). With a port, answered with the
    /// result of a poll that started after this call (one in flight is followed by another).
    PollUsage(Option<PollReply>),
    /// Internal: the usage poll task finished.
    UsagePolled(Result<UsagePollReport, UsagePollError>),
    /// Inspection: every scheduled strategy with its next fire (UTC), soonest first.
    NextFires(RpcReplyPort<Vec<(String, DateTime<Utc>)>>),
}

pub struct SchedulerState {
    args: SchedulerArgs,
    plan: Plan,
    /// The one fire timer; replaced (aborted) whenever the plan changes.
    fire_timer: Option<JoinHandle<Result<(), MessagingErr<SchedulerMsg>>>>,
    /// The usage and resync interval timers.
    interval_timers: Vec<JoinHandle<()>>,
    /// Fire tasks in flight; dropping the state aborts them.
    fires: JoinSet<()>,
    /// Fire tasks run one at a time, so a second fire of a strategy sees the first one's run.
    fire_lock: Arc<tokio::sync::Mutex<()>>,
    /// Minimum-interval verdicts by schedule text: the scan over a year of slots runs once.
    interval_checks: HashMap<String, Option<Gap>>,
    /// (strategy, schedule text) pairs already warned about (invalid or too frequent), so each
    /// warning is logged once.
    warned: HashSet<(String, String)>,
    /// The poll in flight (its task's abort handle) and the callers waiting for it.
    poll: Option<AbortHandle>,
    poll_waiters: Vec<PollReply>,
    /// Callers who asked during a poll: they get the next one, started when this one ends.
    queued_waiters: Option<Vec<PollReply>>,
}

impl Actor for Scheduler {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = SchedulerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SchedulerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let interval_timers = vec![
            // tokio's interval panics on a zero period.
            myself.send_interval(args.usage_poll_interval.max(Duration::from_secs(1)), || {
                SchedulerMsg::PollUsage(None)
            }),
            myself.send_interval(RESYNC_INTERVAL, || SchedulerMsg::Resync),
        ];
        // The first poll and the first plan as soon as the mailbox runs.
        myself.send_message(SchedulerMsg::PollUsage(None))?;
        myself.send_message(SchedulerMsg::Resync)?;
        Ok(SchedulerState {
            args,
            plan: Plan::default(),
            fire_timer: None,
            interval_timers,
            fires: JoinSet::new(),
            fire_lock: Arc::new(tokio::sync::Mutex::new(())),
            interval_checks: HashMap::new(),
            warned: HashSet::new(),
            poll: None,
            poll_waiters: Vec::new(),
            queued_waiters: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::failpoint::check_actor(&myself);
        while state.fires.try_join_next().is_some() {}
        match message {
            SchedulerMsg::Resync => {
                let now = state.args.clock.now();
                if let Err(error) = state.resync(now).await {
                    // The plan so far stays; the periodic resync tries again.
                    tracing::warn!(error = %error, "cannot load strategies, schedule unchanged");
                }
                state.tick(&myself, now).await;
            }
            SchedulerMsg::Tick => {
                let now = state.args.clock.now();
                state.tick(&myself, now).await;
            }
            SchedulerMsg::PollUsage(reply) => {
                if state.poll.is_none() {
                    state.poll_waiters.extend(reply);
                    state.start_poll(&myself);
                } else if let Some(reply) = reply {
                    state.queued_waiters.get_or_insert_default().push(reply);
                }
                // A timer poll during a poll is dropped: the one in flight serves it.
            }
            SchedulerMsg::UsagePolled(result) => {
                state.poll = None;
                log_poll(&result);
                for waiter in state.poll_waiters.drain(..) {
                    let _ = waiter.send(result.clone());
                }
                if let Some(queued) = state.queued_waiters.take() {
                    state.poll_waiters = queued;
                    state.start_poll(&myself);
                }
            }
            SchedulerMsg::NextFires(reply) => {
                let _ = reply.send(state.plan.next_fires());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.fire_timer.take() {
            timer.abort();
        }
        for timer in state.interval_timers.drain(..) {
            timer.abort();
        }
        if let Some(poll) = state.poll.take() {
            poll.abort();
        }
        state.fires.abort_all();
        Ok(())
    }
}

impl SchedulerState {
    /// Reloads the active strategies into the plan (see the module docs).
    ///
    /// Reads the raw rows, not the typed specs: one row that no longer decodes (a hand edit)
    /// must not stop every other strategy from being scheduled; it is skipped with a warning.
    async fn resync(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let store = self.args.store.clone();
        let strategies = store.strategies().await?;
        let mut plan = Plan::default();
        for strategy in strategies {
            if strategy.status != StrategyStatus::Active.as_str() {
                continue;
            }
            let id = strategy.strategy_id.clone();
            let Some(schedule) = self.parse_schedule(&id, &strategy.cron_schedule) else {
                continue;
            };
            if !self.interval_allowed(&id, &schedule, now) {
                continue;
            }
            if let Some(kept) = self.plan.remove(&id).filter(|p| p.schedule == schedule) {
                plan.insert(id, kept);
                continue;
            }
            let latest_run = match store.latest_run(&id).await {
                Ok(run) => run.map(|run| run.started_at),
                Err(error) => {
                    // Without it, no catch-up fire: wait for the next slot.
                    tracing::warn!(strategyId = %id, error = %error, "cannot read the latest run");
                    None
                }
            };
            let baseline = last_activity(
                &strategy.created_at,
                &strategy.updated_at,
                latest_run.as_deref(),
            )
            .unwrap_or(now);
            match first_fire(&schedule, baseline, now) {
                Some(next_fire) => {
                    tracing::info!(strategyId = %id, schedule = %schedule, nextFire = %next_fire, "strategy scheduled");
                    plan.insert(
                        id,
                        Planned {
                            schedule,
                            next_fire,
                        },
                    );
                }
                None => {
                    tracing::warn!(strategyId = %id, schedule = %schedule, "schedule has no future slot, not scheduled")
                }
            }
        }
        for gone in self.plan.entries.keys() {
            tracing::info!(strategyId = %gone, "strategy unscheduled (paused, deleted or rescheduled out)");
        }
        self.plan = plan;
        Ok(())
    }

    /// The row's schedule; a stored expression that does not parse is warned about once.
    fn parse_schedule(&mut self, id: &str, text: &str) -> Option<CronSchedule> {
        match CronSchedule::parse(text) {
            Ok(schedule) => Some(schedule),
            Err(error) => {
                if self.warned.insert((id.to_owned(), text.to_owned())) {
                    tracing::warn!(strategyId = %id, schedule = %text, error = %error, "stored schedule is invalid, not scheduled");
                }
                None
            }
        }
    }

    /// Whether the schedule respects MIN_CRON_INTERVAL_HOURS (warns once per strategy and
    /// schedule when it does not).
    fn interval_allowed(&mut self, id: &str, schedule: &CronSchedule, now: DateTime<Utc>) -> bool {
        let hours = self.args.min_cron_interval_hours;
        if hours == 0 {
            return true;
        }
        let source = schedule.source().to_owned();
        let offending = *self
            .interval_checks
            .entry(source.clone())
            .or_insert_with(|| {
                schedule.first_gap_shorter_than(now, chrono::Duration::hours(i64::from(hours)))
            });
        let Some((earlier, later)) = offending else {
            return true;
        };
        if self.warned.insert((id.to_owned(), source.clone())) {
            tracing::warn!(
                strategyId = %id,
                schedule = %source,
                minIntervalHours = hours,
                earlier = %earlier,
                later = %later,
                "schedule fires more often than MIN_CRON_INTERVAL_HOURS, not scheduled"
            );
        }
        false
    }

    /// Takes the due strategies off the plan (advancing them past `now`), checks each (still
    /// active with the planned schedule, no active run) and starts the runs in fire tasks; then
    /// re-arms the timer.
    ///
    /// The checks read the local database here, in the handler, so that once a `Tick` is
    /// processed its skips are decided; only the coordinator call runs in a task.
    async fn tick(&mut self, myself: &ActorRef<SchedulerMsg>, now: DateTime<Utc>) {
        let mut stale = false;
        for fire in self.plan.take_due(now) {
            match check_fire(&self.args.store, &fire).await {
                FireCheck::Go => {
                    let context = FireContext {
                        store: self.args.store.clone(),
                        coordinator: self.args.coordinator.clone(),
                        lock: self.fire_lock.clone(),
                    };
                    self.fires.spawn(context.start(fire));
                }
                FireCheck::Skip => {}
                FireCheck::Stale => stale = true,
            }
        }
        if stale {
            // Paused, deleted or rescheduled without a Resync: reload now rather than fire on
            // a plan the database no longer agrees with.
            if let Err(error) = self.resync(now).await {
                tracing::warn!(error = %error, "cannot load strategies, schedule unchanged");
            }
        }
        self.arm(myself, now);
    }

    /// Replaces the fire timer with one for the earliest next fire.
    fn arm(&mut self, myself: &ActorRef<SchedulerMsg>, now: DateTime<Utc>) {
        if let Some(timer) = self.fire_timer.take() {
            timer.abort();
        }
        if let Some(next) = self.plan.earliest() {
            let delay = timer_delay(next, now);
            self.fire_timer = Some(myself.send_after(delay, || SchedulerMsg::Tick));
        }
    }

    fn start_poll(&mut self, myself: &ActorRef<SchedulerMsg>) {
        let context = PollContext {
            store: self.args.store.clone(),
            openrouter: self.args.openrouter.clone(),
            clock: self.args.clock.clone(),
            retention: self.args.usage_retention,
        };
        // The poll runs in its own task, awaited by a second one that always reports back, so
        // even a panicking poll ends with `UsagePolled` and the next poll can start.
        let poll = tokio::spawn(context.poll());
        self.poll = Some(poll.abort_handle());
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = match poll.await {
                Ok(result) => result,
                Err(error) => Err(UsagePollError::TaskDied(error.to_string())),
            };
            let _ = myself.send_message(SchedulerMsg::UsagePolled(result));
        });
    }
}

fn log_poll(result: &Result<UsagePollReport, UsagePollError>) {
    match result {
        Ok(report) => tracing::info!(
            remoteKeys = report.remote_keys,
            keysSynced = report.keys_synced,
            snapshots = report.snapshots,
            exhausted = report.exhausted.len() as u64,
            expired = report.expired.len() as u64,
            reactivated = report.reactivated.len() as u64,
            missingRemote = report.missing_remote.len() as u64,
            pruned = report.pruned,
            "usage polled"
        ),
        Err(error) => {
            tracing::warn!(error = %error, "usage poll failed, retrying at the next interval")
        }
    }
}

/// Whether a due fire goes ahead.
enum FireCheck {
    Go,
    /// Not this slot (a run is active, or the database could not say).
    Skip,
    /// The strategy is no longer what was planned: resync.
    Stale,
}

/// Re-reads the strategy (the old service fired paused strategies: its callback never looked)
/// and looks for an active run.
async fn check_fire(store: &Store, fire: &DueFire) -> FireCheck {
    let id = fire.strategy_id.as_str();
    match store.strategy(id).await {
        Ok(Some(row))
            if row.status == StrategyStatus::Active.as_str()
                && normalised(&row.cron_schedule) == fire.schedule => {}
        Ok(_) => {
            tracing::info!(strategyId = %id, "strategy paused, deleted or rescheduled since planned, not firing");
            return FireCheck::Stale;
        }
        Err(error) => {
            tracing::warn!(strategyId = %id, error = %error, "cannot read the strategy, scheduled fire skipped");
            return FireCheck::Skip;
        }
    }
    match store.active_run(id).await {
        Ok(None) => FireCheck::Go,
        // Not a failure and not a blocked run: the run in progress will claim these fees too.
        Ok(Some(run)) => {
            tracing::info!(strategyId = %id, runId = %run.run_id, slot = %fire.slot, "scheduled fire skipped: a run is active");
            FireCheck::Skip
        }
        Err(error) => {
            tracing::warn!(strategyId = %id, error = %error, "cannot check for an active run, scheduled fire skipped");
            FireCheck::Skip
        }
    }
}

/// Cron text with single spaces, as [`CronSchedule::source`] keeps it.
fn normalised(expression: &str) -> String {
    expression.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a fire task needs.
struct FireContext {
    store: Store,
    coordinator: ActorSlot<CoordinatorMsg>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl FireContext {
    /// Starts the scheduled run through the coordinator (which applies the kill switch and the
    /// daily cap, and records a blocked run itself).
    async fn start(self, fire: DueFire) {
        let _one_at_a_time = self.lock.lock().await;
        let id = fire.strategy_id.as_str();
        // Again under the lock: an earlier fire task may have started a run since the check.
        if let Ok(Some(run)) = self.store.active_run(id).await {
            tracing::info!(strategyId = %id, runId = %run.run_id, slot = %fire.slot, "scheduled fire skipped: a run is active");
            return;
        }
        let Some(coordinator) = wait_for(&self.coordinator, COORDINATOR_WAIT).await else {
            tracing::warn!(strategyId = %id, slot = %fire.slot, "run coordinator is down, scheduled fire skipped");
            return;
        };
        match start_run(
            &coordinator,
            id,
            TriggeredBy::Schedule,
            None,
            START_RUN_TIMEOUT,
        )
        .await
        {
            Ok(started) => match started.blocked_code {
                // The coordinator recorded the blocked run and logged it.
                Some(code) => {
                    tracing::info!(strategyId = %id, runId = %started.run_id, code = %code, "scheduled run blocked by policy")
                }
                None => {
                    tracing::info!(strategyId = %id, runId = %started.run_id, slot = %fire.slot, "scheduled run started")
                }
            },
            Err(error) => {
                tracing::warn!(strategyId = %id, code = error.code(), error = %error, "scheduled run could not start")
            }
        }
    }
}

/// The slot's actor, waiting up to `limit` for a restarting one.
async fn wait_for<M>(slot: &ActorSlot<M>, limit: Duration) -> Option<ActorRef<M>> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(actor) = slot.get() {
            return Some(actor);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a poll task needs.
struct PollContext {
    store: Store,
    openrouter: ActorSlot<OpenRouterMsg>,
    clock: Clock,
    retention: Duration,
}

impl PollContext {
    async fn poll(self) -> Result<UsagePollReport, UsagePollError> {
        let now = self.clock.now();
        let actor = self
            .openrouter
            .get()
            .ok_or(UsagePollError::OpenRouterDown)?;
        // Disabled keys too: a disabled key of ours still has usage to record.
        let remote = openrouter::list_all_keys(&actor, true, LIST_KEYS_TIMEOUT)
            .await
            .map_err(|error| UsagePollError::ListKeys {
                code: error.code(),
                message: error.to_string(),
            })?;
        let ledger = self.store.keys_for_usage_poll().await?;
        let fold = fold_usage(&ledger, &remote, now);
        let applied = self
            .store
            .apply_usage_poll(&fold.updates, &fold.snapshots, now)
            .await?;
        let mut report = UsagePollReport {
            polled_at: now,
            remote_keys: remote.len() as u64,
            keys_synced: applied.keys_synced,
            snapshots: applied.snapshots,
            missing_remote: fold.missing_remote,
            ..UsagePollReport::default()
        };
        for (hash, from, to) in applied.status_changes {
            tracing::info!(keyHash = %hash, from = %from, to = %to, "key status changed by usage");
            match to {
                KeyStatus::Exhausted => report.exhausted.push(hash),
                KeyStatus::Expired => report.expired.push(hash),
                KeyStatus::Active => report.reactivated.push(hash),
                KeyStatus::Revoked | KeyStatus::Rotated => {}
            }
        }
        let cutoff = chrono::Duration::from_std(self.retention)
            .ok()
            .and_then(|retention| now.checked_sub_signed(retention));
        if let Some(cutoff) = cutoff {
            report.pruned = self.store.prune_usage_snapshots(cutoff).await?;
        }
        Ok(report)
    }
}

/// Asks the Scheduler to reload the strategies (after a create, edit, pause, activate or
/// delete). False when it is not running (the periodic resync of its next instance catches up).
pub fn request_resync(scheduler: &ActorSlot<SchedulerMsg>) -> bool {
    scheduler
        .get()
        .is_some_and(|actor| actor.send_message(SchedulerMsg::Resync).is_ok())
}

/// Every scheduled strategy with its next fire, through the actor; `None` if it is down or
/// does not answer within `timeout`.
pub async fn next_fires(
    scheduler: &ActorRef<SchedulerMsg>,
    timeout: Duration,
) -> Option<Vec<(String, DateTime<Utc>)>> {
    crate::supervisor::ask(scheduler, timeout, SchedulerMsg::NextFires)
        .await
        .ok()
}

/// Polls usage now through the actor and waits for the result (`NoAnswer` if the actor is down
/// or does not answer within `timeout`).
pub async fn poll_usage(
    scheduler: &ActorRef<SchedulerMsg>,
    timeout: Duration,
) -> Result<UsagePollReport, UsagePollError> {
    crate::supervisor::ask(scheduler, timeout, |reply| {
        SchedulerMsg::PollUsage(Some(reply))
    })
    .await
    .map_err(|no_answer| {
        UsagePollError::NoAnswer(match no_answer {
            crate::supervisor::NoAnswer::Timeout(timeout) => {
                format!("no answer within {} ms", timeout.as_millis())
            }
            crate::supervisor::NoAnswer::Down => "the scheduler is not running".into(),
        })
    })?
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn planned(expression: &str, next_fire: DateTime<Utc>) -> Planned {
        Planned {
            schedule: CronSchedule::parse(expression).unwrap(),
            next_fire,
        }
    }

    fn ids(fires: &[DueFire]) -> Vec<&str> {
        fires.iter().map(|f| f.strategy_id.as_str()).collect()
    }

    #[test]
    fn next_fire_after_now_over_several_strategies() {
        let now = at(2026, 3, 2, 10, 17);
        let mut plan = Plan::default();
        for (id, expression) in [
            ("six-hourly", "0 */6 * * *"),
            ("daily-9", "0 9 * * *"),
            ("monday", "30 8 * * 1"),
        ] {
            let schedule = CronSchedule::parse(expression).unwrap();
            let next_fire = first_fire(&schedule, now, now).unwrap();
            plan.insert(
                id,
                Planned {
                    schedule,
                    next_fire,
                },
            );
        }
        // 2026-03-02 is a Monday: 12:00 today, 09:00 tomorrow, 08:30 next Monday.
        assert_eq!(
            plan.next_fires(),
            vec![
                ("six-hourly".to_string(), at(2026, 3, 2, 12, 0)),
                ("daily-9".to_string(), at(2026, 3, 3, 9, 0)),
                ("monday".to_string(), at(2026, 3, 9, 8, 30)),
            ]
        );
        assert_eq!(plan.earliest(), Some(at(2026, 3, 2, 12, 0)));
        // A slot exactly at now is not "after now".
        let noon = at(2026, 3, 2, 12, 0);
        let six = CronSchedule::parse("0 */6 * * *").unwrap();
        assert_eq!(first_fire(&six, noon, noon), Some(at(2026, 3, 2, 18, 0)));
    }

    #[test]
    fn only_due_strategies_fire_and_each_is_advanced_past_now() {
        let mut plan = Plan::default();
        plan.insert("a", planned("0 */6 * * *", at(2026, 3, 2, 12, 0)));
        plan.insert("b", planned("0 9 * * *", at(2026, 3, 3, 9, 0)));
        plan.insert("c", planned("*/30 * * * *", at(2026, 3, 2, 11, 30)));
        assert!(plan.take_due(at(2026, 3, 2, 11, 29)).is_empty());

        let due = plan.take_due(at(2026, 3, 2, 12, 0));
        assert_eq!(ids(&due), ["c", "a"], "soonest slot first");
        assert_eq!(due[1].slot, at(2026, 3, 2, 12, 0));
        assert_eq!(due[1].schedule, "0 */6 * * *");
        assert_eq!(plan.get("a").unwrap().next_fire, at(2026, 3, 2, 18, 0));
        assert_eq!(plan.get("b").unwrap().next_fire, at(2026, 3, 3, 9, 0));
        assert_eq!(plan.get("c").unwrap().next_fire, at(2026, 3, 2, 12, 30));
    }

    #[test]
    fn one_slot_never_fires_twice() {
        let mut plan = Plan::default();
        plan.insert("a", planned("0 */6 * * *", at(2026, 3, 2, 12, 0)));
        let slot = at(2026, 3, 2, 12, 0);
        assert_eq!(ids(&plan.take_due(slot)), ["a"]);
        // A second tick at the same instant, or a little later in the same slot: nothing.
        assert!(plan.take_due(slot).is_empty());
        assert!(
            plan.take_due(slot + chrono::Duration::seconds(59))
                .is_empty()
        );
        assert!(plan.take_due(at(2026, 3, 2, 17, 59)).is_empty());
        assert_eq!(ids(&plan.take_due(at(2026, 3, 2, 18, 0))), ["a"]);
    }

    #[test]
    fn missed_slots_fire_once_then_the_schedule_resumes() {
        // The timer woke (or the daemon came back) three days and twelve slots late.
        let mut plan = Plan::default();
        plan.insert("a", planned("0 */6 * * *", at(2026, 3, 2, 12, 0)));
        let late = at(2026, 3, 5, 13, 7);
        let due = plan.take_due(late);
        assert_eq!(ids(&due), ["a"]);
        assert_eq!(due[0].slot, at(2026, 3, 2, 12, 0));
        assert_eq!(plan.get("a").unwrap().next_fire, at(2026, 3, 5, 18, 0));
        assert!(plan.take_due(late).is_empty());

        // Entering the plan after a downtime: the first slot after the last activity is in the
        // past, so it is due at once (one catch-up fire) ...
        let six = CronSchedule::parse("0 */6 * * *").unwrap();
        let last_run = at(2026, 3, 1, 6, 0);
        let first = first_fire(&six, last_run, late).unwrap();
        assert_eq!(first, at(2026, 3, 1, 12, 0));
        let mut plan = Plan::default();
        plan.insert(
            "a",
            Planned {
                schedule: six.clone(),
                next_fire: first,
            },
        );
        assert_eq!(ids(&plan.take_due(late)), ["a"]);
        assert!(plan.take_due(late).is_empty());
        assert_eq!(plan.get("a").unwrap().next_fire, at(2026, 3, 5, 18, 0));
        // ... while a strategy active just now (or a clock gone backwards) waits for its slot.
        assert_eq!(first_fire(&six, late, late), Some(at(2026, 3, 5, 18, 0)));
        assert_eq!(
            first_fire(&six, late + chrono::Duration::days(3), late),
            Some(at(2026, 3, 5, 18, 0))
        );
    }

    #[test]
    fn a_schedule_without_slots_left_leaves_the_plan() {
        let mut plan = Plan::default();
        // The cron crate's calendar ends in 2100: this slot is the last one it knows.
        let last = Utc.with_ymd_and_hms(2100, 12, 31, 23, 59, 0).unwrap();
        plan.insert("end", planned("59 23 31 12 *", last));
        let due = plan.take_due(last);
        assert_eq!(ids(&due), ["end"]);
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn last_activity_is_the_later_of_edit_and_latest_run() {
        let (created, edited) = ("2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z");
        assert_eq!(
            last_activity(created, edited, None),
            Some(at(2026, 2, 1, 0, 0))
        );
        assert_eq!(
            last_activity(created, edited, Some("2026-02-03T04:05:00.000Z")),
            Some(at(2026, 2, 3, 4, 5))
        );
        assert_eq!(
            last_activity(created, edited, Some("2026-01-15T00:00:00.000Z")),
            Some(at(2026, 2, 1, 0, 0))
        );
        assert_eq!(
            last_activity(created, "garbled", None),
            Some(at(2026, 1, 1, 0, 0))
        );
        assert_eq!(last_activity("x", "y", None), None);
    }

    #[test]
    fn the_timer_waits_for_the_earliest_fire_but_never_long() {
        let now = at(2026, 3, 2, 11, 59);
        assert_eq!(
            timer_delay(now + chrono::Duration::seconds(30), now),
            Duration::from_secs(30)
        );
        assert_eq!(timer_delay(at(2026, 3, 2, 18, 0), now), MAX_TIMER_SLEEP);
        assert_eq!(timer_delay(at(2026, 3, 2, 11, 0), now), Duration::ZERO);
    }

    fn remote(hash: &str, limit: Option<i64>, usage: i64) -> Key {
        Key {
            hash: hash.into(),
            name: format!("creditbrain-s-{hash}"),
            label: "sk-or-v1-abc...f90".into(),
            disabled: false,
            limit_micro_usd: limit,
            limit_remaining_micro_usd: limit.map(|limit| (limit - usage).max(0)),
            limit_reset: None,
            include_byok_in_limit: false,
            usage_micro_usd: usage,
            usage_daily_micro_usd: 0,
            usage_weekly_micro_usd: 0,
            usage_monthly_micro_usd: 0,
            byok_usage_micro_usd: 0,
            byok_usage_daily_micro_usd: 0,
            byok_usage_weekly_micro_usd: 0,
            byok_usage_monthly_micro_usd: 0,
            created_at: None,
            updated_at: None,
            expires_at: None,
            creator_user_id: None,
            workspace_id: None,
        }
    }

    fn ledger(hash: &str, status: KeyStatus, expires_at: Option<&str>) -> UserKey {
        UserKey {
            key_hash: hash.into(),
            strategy_id: "s".into(),
            holder_wallet: "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM".into(),
            name: format!("creditbrain-s-{hash}"),
            limit_micro_usd: 5_000_000,
            usage_micro_usd: 0,
            limit_reset: None,
            status,
            replaced_by_hash: None,
            encrypted_key: None,
            key_nonce: None,
            revealed_at: None,
            expires_at: expires_at.map(str::to_owned),
            remote_deleted_at: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            last_synced_at: None,
        }
    }

    #[test]
    fn exhaustion_follows_the_usage_openrouter_counts_against_the_limit() {
        // Credits keys: all-time usage.
        assert!(!is_exhausted(&remote("k", Some(5_000_000), 4_999_999)));
        assert!(is_exhausted(&remote("k", Some(5_000_000), 5_000_000)));
        assert!(is_exhausted(&remote("k", Some(5_000_000), 5_300_000)));
        assert!(!is_exhausted(&remote("k", None, 99_000_000)), "no limit");
        // Allowance keys: the current period's usage; last month's spend does not count.
        let mut monthly = remote("k", Some(5_000_000), 12_000_000);
        monthly.limit_reset = Some(LimitReset::Monthly);
        monthly.usage_monthly_micro_usd = 1_000_000;
        monthly.limit_remaining_micro_usd = Some(4_000_000);
        assert!(!is_exhausted(&monthly));
        monthly.usage_monthly_micro_usd = 5_000_000;
        monthly.limit_remaining_micro_usd = Some(0);
        assert!(is_exhausted(&monthly));
        // OpenRouter's own word counts too (a negative remainder after an overshoot).
        let mut overshot = remote("k", Some(5_000_000), 1);
        overshot.limit_remaining_micro_usd = Some(-10);
        assert!(is_exhausted(&overshot));
    }

    #[test]
    fn status_changes_expired_first_then_exhausted_and_back() {
        let now = at(2026, 3, 2, 12, 0);
        let used_up = remote("k", Some(5_000_000), 5_000_000);
        let headroom = remote("k", Some(10_000_000), 5_000_000);
        let active = ledger("k", KeyStatus::Active, None);
        let exhausted = ledger("k", KeyStatus::Exhausted, None);
        assert_eq!(
            status_change(&active, &used_up, now),
            Some((KeyStatus::Active, KeyStatus::Exhausted))
        );
        assert_eq!(status_change(&active, &headroom, now), None);
        assert_eq!(status_change(&exhausted, &used_up, now), None);
        assert_eq!(
            status_change(&exhausted, &headroom, now),
            Some((KeyStatus::Exhausted, KeyStatus::Active))
        );
        // Expiry wins, from the ledger's date or OpenRouter's; exactly at expiry counts.
        let expiring = ledger("k", KeyStatus::Exhausted, Some("2026-03-02T12:00:00.000Z"));
        assert_eq!(
            status_change(&expiring, &headroom, now),
            Some((KeyStatus::Exhausted, KeyStatus::Expired))
        );
        let not_yet = ledger("k", KeyStatus::Active, Some("2026-03-02T12:00:00.001Z"));
        assert_eq!(status_change(&not_yet, &headroom, now), None);
        let mut remote_expired = headroom.clone();
        remote_expired.expires_at = Some(at(2026, 3, 1, 0, 0));
        assert_eq!(
            status_change(&active, &remote_expired, now),
            Some((KeyStatus::Active, KeyStatus::Expired))
        );
        // Keys no longer current never change here.
        for status in [KeyStatus::Expired, KeyStatus::Revoked, KeyStatus::Rotated] {
            assert_eq!(
                status_change(&ledger("k", status, None), &used_up, now),
                None
            );
        }
    }

    #[test]
    fn the_fold_matches_by_hash_and_ignores_keys_not_in_the_ledger() {
        let now = at(2026, 3, 2, 12, 0);
        let ledger_keys = [
            ledger("ours", KeyStatus::Active, None),
            ledger("gone", KeyStatus::Active, None),
            ledger("old", KeyStatus::Rotated, None),
        ];
        let remote_keys = [
            remote("ours", Some(5_000_000), 1_250_000),
            remote("foreign", Some(1_000_000), 1_000_000),
            remote("old", Some(5_000_000), 700_000),
        ];
        let fold = fold_usage(&ledger_keys, &remote_keys, now);
        let hashes: Vec<&str> = fold.updates.iter().map(|u| u.key_hash.as_str()).collect();
        assert_eq!(hashes, ["ours", "old"]);
        assert_eq!(fold.updates[0].usage_micro_usd, 1_250_000);
        assert_eq!(fold.updates[0].status_change, None);
        assert_eq!(fold.updates[1].status_change, None, "rotated stays rotated");
        assert_eq!(fold.snapshots.len(), 2);
        assert_eq!(fold.snapshots[0].strategy_id, "s");
        assert_eq!(fold.snapshots[0].limit_remaining_micro_usd, Some(3_750_000));
        assert_eq!(fold.snapshots[0].polled_at, now);
        assert_eq!(fold.missing_remote, ["gone"]);
    }
}
