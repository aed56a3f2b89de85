//! The Scheduler against the real daemon pieces on the sandbox: a Scheduler actor spawned beside
//! an in-process daemon (its store, RunCoordinator and OpenRouterActor) with an injected clock.
//! Scheduled fires create `schedule` runs once per slot, never while a run is active, never for a
//! paused strategy, once after a downtime; the kill switch's blocked run is recorded. The usage
//! poll folds OpenRouter's usage into the ledger with snapshots, marks exhausted, expired and
//! reactivated keys, prunes old snapshots, and survives a failing OpenRouter.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use creditbrain::config::Config;
use creditbrain::daemon::RunningDaemon;
use creditbrain::sandbox::faults::{Fault, FaultMode, FaultRule};
use creditbrain::sandbox::world::WorldOptions;
use creditbrain::sandbox::{Sandbox, SandboxOptions};
use creditbrain_actors::openrouter::CreateKey;
use creditbrain_actors::openrouter::actor as openrouter;
use creditbrain_actors::scheduler::{
    self, ManualClock, Scheduler, SchedulerArgs, SchedulerMsg, UsagePollError,
};
use creditbrain_actors::store::keys::{KeyStatus, NewUserKey};
use creditbrain_actors::store::parse_timestamp;
use creditbrain_actors::store::runs::{NewRun, Run, RunState, TriggeredBy};
use creditbrain_actors::store::strategies::NewStrategy;
use creditbrain_actors::store::usage::NewUsageSnapshot;
use creditbrain_actors::strategy::StrategyStatus;
use ractor::{Actor, ActorRef};
use solana_sdk::signature::{Keypair, Signer};

use crate::support::eventually;

const CALL: Duration = Duration::from_secs(30);
const EVERY_MINUTE: &str = "* * * * *";
/// More lamports than the sandbox's positions hold: every run completes at once as skipped
/// (below threshold), touching no fake.
const UNREACHABLE_THRESHOLD: i64 = 1_000_000_000_000_000;

struct Harness {
    sandbox: Sandbox,
    _dir: tempfile::TempDir,
    daemon: RunningDaemon,
}

impl Harness {
    async fn start() -> Self {
        let sandbox = Sandbox::start(SandboxOptions {
            world: WorldOptions {
                holders: 5,
                ..WorldOptions::default()
            },
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut vars = sandbox.daemon_vars();
        for (name, value) in [
            ("API_AUTH_TOKEN", "scheduler-test-token-0123456789"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("MAX_DAILY_RUNS", "0"),
            ("HEALTH_PROBE_INTERVAL_SEC", "1"),
        ] {
            vars.insert(name.into(), value.into());
        }
        vars.insert(
            "DATABASE_PATH".into(),
            dir.path().join("scheduler.db").display().to_string(),
        );
        vars.insert(
            "ADMIN_SOCKET_PATH".into(),
            dir.path().join("scheduler.sock").display().to_string(),
        );
        let config = Config::from_vars(&vars).unwrap_or_else(|errors| panic!("{errors}"));
        let daemon = creditbrain::daemon::start(&config)
            .await
            .expect("daemon starts");
        Self {
            sandbox,
            _dir: dir,
            daemon,
        }
    }

    /// Inserts a strategy with the raw insert (no minimum-interval validation); answers its id
    /// and creation time.
    async fn strategy(&self, cron: &str) -> (String, DateTime<Utc>) {
        let strategy = self
            .daemon
            .handle
            .store
            .insert_strategy(&NewStrategy {
                owner_wallet: self.sandbox.world.signer.pubkey().to_string(),
                token_mint: self.sandbox.world.token_mint.to_string(),
                fee_source: "CLAIMABLE_POSITIONS".into(),
                threshold_lamports: UNREACHABLE_THRESHOLD,
                slippage_bps: 50,
                distribution_mode: "EQUAL_SPLIT".into(),
                top_n: 20,
                min_holding_base_units: "0".into(),
                max_grant_micro_usd: 10_000_000,
                max_key_limit_micro_usd: 100_000_000,
                key_limit_reset: None,
                key_expiry_days: 0,
                reserve_bps: 1_000,
                cron_schedule: cron.into(),
                status: "active".into(),
            })
            .await
            .unwrap();
        let created = parse_timestamp(&strategy.created_at).unwrap();
        (strategy.strategy_id, created)
    }

    /// A Scheduler on this daemon's store and actors, reading `clock`.
    async fn scheduler(
        &self,
        clock: &ManualClock,
        min_cron_interval_hours: u32,
    ) -> ActorRef<SchedulerMsg> {
        let handle = &self.daemon.handle;
        let (actor, _join) = Actor::spawn(
            None,
            Scheduler,
            SchedulerArgs {
                store: handle.store.clone(),
                coordinator: handle.coordinator.clone(),
                openrouter: handle.openrouter.clone(),
                // Only the first poll at start and the ones a test asks for.
                usage_poll_interval: Duration::from_secs(3600),
                usage_retention: Duration::from_secs(30 * 24 * 3600),
                min_cron_interval_hours,
                clock: clock.clock(),
            },
        )
        .await
        .expect("spawn the scheduler");
        actor
    }

    async fn runs(&self, strategy_id: &str) -> Vec<Run> {
        self.daemon
            .handle
            .store
            .runs_for_strategy(strategy_id, 100)
            .await
            .unwrap()
    }

    /// Waits until the strategy has `count` runs and all of them have finished; answers them,
    /// newest first.
    async fn finished_runs(&self, strategy_id: &str, count: usize) -> Vec<Run> {
        eventually(Duration::from_secs(30), || async {
            let runs = self.runs(strategy_id).await;
            assert!(runs.len() <= count, "more runs than expected: {runs:#?}");
            (runs.len() == count && runs.iter().all(|run| run.state.is_terminal())).then_some(runs)
        })
        .await
    }

    async fn stop(self) {
        self.daemon.shutdown_trigger().trigger();
        self.daemon.wait().await.unwrap();
    }
}

async fn next_fires(scheduler: &ActorRef<SchedulerMsg>) -> Vec<(String, DateTime<Utc>)> {
    scheduler::next_fires(scheduler, CALL)
        .await
        .expect("the scheduler answers")
}

/// The first whole minute strictly after `t`.
fn next_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    let whole = t.timestamp() - t.timestamp().rem_euclid(60);
    DateTime::from_timestamp(whole + 60, 0).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_fires_start_one_run_per_slot_and_none_while_a_run_is_active() {
    let harness = Harness::start().await;
    let store = harness.daemon.handle.store.clone();
    let (id, created) = harness.strategy(EVERY_MINUTE).await;
    // The clock starts at the strategy's creation: nothing was missed, the first slot is ahead.
    let clock = ManualClock::new(created);
    let scheduler = harness.scheduler(&clock, 0).await;
    let first_slot = next_minute(created);
    assert_eq!(next_fires(&scheduler).await, vec![(id.clone(), first_slot)]);
    assert!(harness.runs(&id).await.is_empty(), "nothing due yet");

    // The slot comes: one run, triggered by the schedule.
    clock.set(first_slot);
    scheduler.send_message(SchedulerMsg::Tick).unwrap();
    let runs = harness.finished_runs(&id, 1).await;
    assert_eq!(runs[0].triggered_by, TriggeredBy::Schedule);
    assert_eq!(
        runs[0].state,
        RunState::Complete,
        "{:?}",
        runs[0].error_code
    );
    assert_eq!(runs[0].skipped_reason.as_deref(), Some("below_threshold"));
    let second_slot = first_slot + chrono::Duration::minutes(1);
    assert_eq!(
        next_fires(&scheduler).await,
        vec![(id.clone(), second_slot)]
    );

    // Ticks again within the same slot fire nothing.
    clock.set(first_slot + chrono::Duration::seconds(30));
    for _ in 0..3 {
        scheduler.send_message(SchedulerMsg::Tick).unwrap();
    }
    assert_eq!(
        next_fires(&scheduler).await,
        vec![(id.clone(), second_slot)]
    );

    // A run is active (a manual one, driven by nobody here): the next slot is skipped quietly,
    // with no blocked run recorded.
    let active = store
        .create_run(
            &NewRun {
                run_id: None,
                strategy_id: id.clone(),
                triggered_by: TriggeredBy::Manual,
                dry_run: false,
                strategy_snapshot: serde_json::Value::Null,
            },
            0,
        )
        .await
        .unwrap()
        .run;
    clock.set(second_slot);
    scheduler.send_message(SchedulerMsg::Tick).unwrap();
    let third_slot = second_slot + chrono::Duration::minutes(1);
    assert_eq!(next_fires(&scheduler).await, vec![(id.clone(), third_slot)]);
    store
        .fail(
            &active.run_id,
            RunState::Pending,
            "TEST_DONE",
            "test run ended",
        )
        .await
        .unwrap();

    // The run is over: the next slot fires again. Fires run one at a time in order, so a
    // stray fire from the skipped or repeated slots would show up as a fourth run here.
    clock.set(third_slot);
    scheduler.send_message(SchedulerMsg::Tick).unwrap();
    let runs = harness.finished_runs(&id, 3).await;
    let scheduled: Vec<_> = runs
        .iter()
        .filter(|run| run.triggered_by == TriggeredBy::Schedule)
        .collect();
    assert_eq!(scheduled.len(), 2, "{runs:#?}");
    assert!(
        runs.iter()
            .all(|run| run.error_code.as_deref() != Some("RUN_IN_PROGRESS")),
        "a skipped fire records no blocked run: {runs:#?}"
    );

    // With the kill switch on, the fire goes through the coordinator, which records the blocked
    // run (the old scheduler created none).
    store.set_kill_switch(true, "test").await.unwrap();
    clock.set(third_slot + chrono::Duration::minutes(1));
    scheduler.send_message(SchedulerMsg::Tick).unwrap();
    let runs = harness.finished_runs(&id, 4).await;
    assert_eq!(runs[0].triggered_by, TriggeredBy::Schedule);
    assert_eq!(runs[0].state, RunState::Failed);
    assert_eq!(runs[0].error_code.as_deref(), Some("KILL_SWITCH"));

    scheduler.stop(None);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_strategies_never_fire_and_resync_follows_strategy_changes() {
    let harness = Harness::start().await;
    let store = harness.daemon.handle.store.clone();
    let (first, created) = harness.strategy(EVERY_MINUTE).await;
    let clock = ManualClock::new(created);
    let scheduler = harness.scheduler(&clock, 0).await;
    assert_eq!(next_fires(&scheduler).await.len(), 1);

    // Created after the scheduler started: picked up by a resync. A row whose stored schedule
    // no longer parses (a hand edit) is skipped without holding up the others.
    let (second, _) = harness.strategy(EVERY_MINUTE).await;
    let (garbled, _) = harness.strategy("every full moon").await;
    scheduler.send_message(SchedulerMsg::Resync).unwrap();
    let planned: Vec<String> = next_fires(&scheduler)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(planned.len(), 2);
    assert!(planned.contains(&second), "{planned:?}");
    assert!(!planned.contains(&garbled), "{planned:?}");

    // Paused and resynced: out of the plan; its slots pass without a run.
    store
        .set_strategy_status(&first, StrategyStatus::Paused, "test")
        .await
        .unwrap();
    scheduler.send_message(SchedulerMsg::Resync).unwrap();
    let fires = next_fires(&scheduler).await;
    assert_eq!(fires.len(), 1);
    assert_eq!(fires[0].0, second);

    // Paused with no resync (a change the scheduler was not told about): at its slot the fire
    // re-reads the strategy, stands down and resyncs.
    store
        .set_strategy_status(&second, StrategyStatus::Paused, "test")
        .await
        .unwrap();
    clock.set(fires[0].1 + chrono::Duration::minutes(5));
    scheduler.send_message(SchedulerMsg::Tick).unwrap();
    eventually(Duration::from_secs(10), || async {
        next_fires(&scheduler).await.is_empty().then_some(())
    })
    .await;
    for id in [&first, &second] {
        assert!(harness.runs(id).await.is_empty(), "{id} never fired");
    }

    scheduler.stop(None);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_downtime_missed_slots_fire_once_and_too_frequent_schedules_are_skipped() {
    let harness = Harness::start().await;
    let (every_minute, created) = harness.strategy(EVERY_MINUTE).await;
    // Daily, an hour before the creation time of day: no slot within the downtime below.
    let an_hour_before = created - chrono::Duration::hours(1);
    let daily_cron = format!(
        "{} {} * * *",
        an_hour_before.minute(),
        an_hour_before.hour()
    );
    let (daily, _) = harness.strategy(&daily_cron).await;

    // Nobody scheduled for two hours after the strategies were created: 120 slots of the
    // every-minute strategy missed. It fires once at start, then follows its schedule.
    let back = created + chrono::Duration::hours(2) + chrono::Duration::seconds(30);
    let clock = ManualClock::new(back);
    let scheduler = harness.scheduler(&clock, 0).await;
    let runs = harness.finished_runs(&every_minute, 1).await;
    assert_eq!(runs[0].triggered_by, TriggeredBy::Schedule);
    let fires = next_fires(&scheduler).await;
    let fire_of = |id: &str| fires.iter().find(|(f, _)| f == id).map(|(_, at)| *at);
    assert_eq!(fire_of(&every_minute), Some(next_minute(back)));
    let daily_slot =
        next_minute(an_hour_before + chrono::Duration::days(1)) - chrono::Duration::minutes(1);
    assert_eq!(fire_of(&daily), Some(daily_slot));
    scheduler.stop(None);

    // MIN_CRON_INTERVAL_HOURS = 1: the every-minute strategy is not scheduled at all.
    let clock = ManualClock::new(back);
    let strict = harness.scheduler(&clock, 1).await;
    let planned: Vec<String> = next_fires(&strict)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(planned, vec![daily.clone()]);
    strict.stop(None);

    assert_eq!(harness.runs(&every_minute).await.len(), 1);
    assert!(harness.runs(&daily).await.is_empty());
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_usage_poll_folds_usage_marks_keys_and_prunes_old_snapshots() {
    let harness = Harness::start().await;
    let store = harness.daemon.handle.store.clone();
    let fake = harness.sandbox.openrouter.clone();
    let (strategy_id, _) = harness.strategy("0 */6 * * *").await;
    let clock = ManualClock::new(Utc::now());
    let scheduler = harness.scheduler(&clock, 0).await;

    // Keys on OpenRouter, each $5, and their ledger rows.
    let actor = harness.daemon.handle.openrouter.get().unwrap();
    let mut hashes = Vec::new();
    for name in ["used", "used-up", "expired", "refilled", "foreign"] {
        let created = openrouter::create_key(
            &actor,
            CreateKey {
                name: format!("creditbrain-test-{name}"),
                limit_micro_usd: Some(5_000_000),
                limit_reset: None,
                expires_at: None,
                include_byok_in_limit: None,
            },
            CALL,
        )
        .await
        .unwrap();
        hashes.push(created.key.hash);
    }
    let [used, used_up, expired, refilled, foreign] = <[String; 5]>::try_from(hashes).unwrap();
    let now = clock.now();
    for (hash, expires_at) in [
        (&used, None),
        (&used_up, None),
        (&expired, Some(now - chrono::Duration::hours(1))),
        (&refilled, None),
        // In the ledger, gone from OpenRouter.
        (&"0".repeat(64), None),
    ] {
        store
            .insert_user_key(&NewUserKey {
                key_hash: hash.clone(),
                strategy_id: strategy_id.clone(),
                holder_wallet: Keypair::new().pubkey().to_string(),
                name: format!("creditbrain-{strategy_id}-{hash}"),
                limit_micro_usd: 5_000_000,
                limit_reset: None,
                encrypted: None,
                expires_at,
            })
            .await
            .unwrap();
    }
    // Marked exhausted by an earlier poll; OpenRouter now shows headroom (a top-up).
    store
        .set_key_status(&refilled, KeyStatus::Exhausted)
        .await
        .unwrap();
    fake.add_usage(&used, 1_250_000).unwrap();
    fake.add_usage(&used_up, 5_000_000).unwrap();
    fake.add_usage(&foreign, 300_000).unwrap();

    // Snapshots from earlier polls: one past the 30-day retention, one within it.
    let old = |days: i64| NewUsageSnapshot {
        key_hash: used.clone(),
        strategy_id: strategy_id.clone(),
        usage_micro_usd: 0,
        usage_daily_micro_usd: 0,
        usage_weekly_micro_usd: 0,
        usage_monthly_micro_usd: 0,
        limit_micro_usd: Some(5_000_000),
        limit_remaining_micro_usd: Some(5_000_000),
        polled_at: now - chrono::Duration::days(days),
    };
    store
        .insert_usage_snapshots(&[old(40), old(10)])
        .await
        .unwrap();

    let report = scheduler::poll_usage(&scheduler, CALL).await.unwrap();
    assert_eq!(report.polled_at, now);
    assert_eq!(report.remote_keys, 5);
    assert_eq!(report.keys_synced, 4, "{report:?}");
    assert_eq!(report.snapshots, 4);
    assert_eq!(report.exhausted, vec![used_up.clone()]);
    assert_eq!(report.expired, vec![expired.clone()]);
    assert_eq!(report.reactivated, vec![refilled.clone()]);
    assert_eq!(report.missing_remote, vec!["0".repeat(64)]);
    assert_eq!(report.pruned, 1);

    let key = |hash: String| {
        let store = store.clone();
        async move { store.key_by_hash(&hash).await.unwrap().unwrap() }
    };
    let used_key = key(used.clone()).await;
    assert_eq!(used_key.usage_micro_usd, 1_250_000);
    assert_eq!(used_key.status, KeyStatus::Active);
    assert!(used_key.last_synced_at.is_some());
    let used_up_key = key(used_up.clone()).await;
    assert_eq!(
        (used_up_key.usage_micro_usd, used_up_key.status),
        (5_000_000, KeyStatus::Exhausted)
    );
    assert_eq!(key(expired.clone()).await.status, KeyStatus::Expired);
    assert_eq!(key(refilled.clone()).await.status, KeyStatus::Active);
    assert!(store.key_by_hash(&foreign).await.unwrap().is_none());

    // One snapshot per ledger key per poll, plus the one still within retention.
    let used_snapshots = store.usage_for_key(&used, 10).await.unwrap();
    assert_eq!(used_snapshots.len(), 2);
    assert_eq!(used_snapshots[0].usage_micro_usd, 1_250_000);
    assert_eq!(used_snapshots[0].limit_remaining_micro_usd, Some(3_750_000));
    assert!(store.usage_for_key(&foreign, 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .usage_for_strategy(&strategy_id, 100)
            .await
            .unwrap()
            .len(),
        5
    );

    // A top-up on OpenRouter gives the used-up key headroom: back to active at the next poll.
    openrouter::update_key(
        &actor,
        used_up.clone(),
        creditbrain_actors::openrouter::KeyUpdate {
            limit_micro_usd: Some(Some(10_000_000)),
            ..Default::default()
        },
        CALL,
    )
    .await
    .unwrap();
    let report = scheduler::poll_usage(&scheduler, CALL).await.unwrap();
    assert_eq!(report.reactivated, vec![used_up.clone()]);
    assert!(report.exhausted.is_empty() && report.expired.is_empty());
    assert_eq!(key(used_up.clone()).await.status, KeyStatus::Active);
    assert_eq!(
        key(expired.clone()).await.status,
        KeyStatus::Expired,
        "final"
    );

    scheduler.stop(None);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_usage_poll_is_reported_and_the_next_one_works() {
    let harness = Harness::start().await;
    let clock = ManualClock::new(Utc::now());
    let scheduler = harness.scheduler(&clock, 0).await;
    harness.sandbox.faults.add_rule(FaultRule {
        fake: "openrouter".into(),
        route: Some("GET /api/v1/keys".into()),
        latency: None,
        mode: Some(FaultMode::Always {
            fault: Fault::MalformedJson,
        }),
    });
    let error = scheduler::poll_usage(&scheduler, CALL).await.unwrap_err();
    assert!(
        matches!(
            error,
            UsagePollError::ListKeys {
                code: "OPENROUTER_BAD_RESPONSE",
                ..
            }
        ),
        "{error}"
    );
    // The actor lives on and answers.
    assert!(next_fires(&scheduler).await.is_empty());

    harness.sandbox.faults.clear(Some("openrouter"));
    let report = scheduler::poll_usage(&scheduler, CALL).await.unwrap();
    assert_eq!(report.remote_keys, 0);
    assert_eq!(report.keys_synced, 0);

    scheduler.stop(None);
    harness.stop().await;
}
