//! Unit tests of the run store on a temp database: daily counts per UTC day and the cap, blocked
//! runs, one active run per strategy, optimistic advances, fail → resume at the failed phase,
//! leases, the kill switch, listings and the runbook's query.

use chrono::TimeZone;

use super::*;
use crate::store::strategies::NewStrategy;

const OWNER: &str = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU";
const MINT: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";

async fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
    (dir, store)
}

async fn strategy(store: &Store) -> String {
    store
        .insert_strategy(&NewStrategy {
            owner_wallet: OWNER.to_owned(),
            token_mint: MINT.to_owned(),
            fee_source: "CLAIMABLE_POSITIONS".to_owned(),
            threshold_lamports: 5_000_000_000,
            slippage_bps: 50,
            distribution_mode: "TOP_N_HOLDERS".to_owned(),
            top_n: 100,
            min_holding_base_units: "0".to_owned(),
            max_grant_micro_usd: 10_000_000,
            max_key_limit_micro_usd: 100_000_000,
            key_limit_reset: Some("monthly".to_owned()),
            key_expiry_days: 365,
            reserve_bps: 1000,
            cron_schedule: "0 */6 * * *".to_owned(),
            status: "active".to_owned(),
        })
        .await
        .unwrap()
        .strategy_id
}

fn new_run(strategy_id: &str) -> NewRun {
    NewRun {
        run_id: None,
        strategy_id: strategy_id.to_owned(),
        triggered_by: TriggeredBy::Manual,
        dry_run: false,
        strategy_snapshot: json!({"topN": 100}),
    }
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn date(y: i32, mo: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, mo, d).unwrap()
}

/// Advances in its own transaction.
async fn step(
    store: &Store,
    run_id: &str,
    from: RunState,
    to: RunState,
    outputs: PhaseOutputs,
) -> Result<Run, RunError> {
    let mut tx = store.begin_write().await?;
    let run = advance(&mut tx, run_id, from, to, &outputs).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(run)
}

/// Ends a run as COMPLETE (skipped), freeing the strategy for the next run.
async fn finish(store: &Store, run_id: &str) {
    step(
        store,
        run_id,
        RunState::Pending,
        RunState::Complete,
        PhaseOutputs {
            skipped_reason: Some("test".to_owned()),
            ..PhaseOutputs::default()
        },
    )
    .await
    .unwrap();
}

/// Drives a run from PENDING to ALLOCATING with measured outputs.
async fn to_allocating(store: &Store, run_id: &str) {
    step(
        store,
        run_id,
        RunState::Pending,
        RunState::Claiming,
        PhaseOutputs::default(),
    )
    .await
    .unwrap();
    step(
        store,
        run_id,
        RunState::Claiming,
        RunState::Swapping,
        PhaseOutputs {
            claimed_lamports: Some(6_000_000_000),
            ..PhaseOutputs::default()
        },
    )
    .await
    .unwrap();
    step(
        store,
        run_id,
        RunState::Swapping,
        RunState::Allocating,
        PhaseOutputs {
            swap_in_lamports: Some(5_990_000_000),
            swapped_usdc_base_units: Some(812_345_678),
            ..PhaseOutputs::default()
        },
    )
    .await
    .unwrap();
}

async fn audit_actions(store: &Store, run_id: &str) -> Vec<String> {
    store
        .audit_for_run(run_id)
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.action)
        .collect()
}

#[test]
fn states_round_trip_and_follow_the_pipeline() {
    for state in RunState::ALL {
        assert_eq!(state.as_str().parse::<RunState>(), Ok(state));
    }
    assert!("failed".parse::<RunState>().is_err());
    assert_eq!(RunState::Swapping.next(false), Some(RunState::Allocating));
    assert_eq!(RunState::Swapping.next(true), Some(RunState::Bridging));
    assert_eq!(RunState::Provisioning.next(false), Some(RunState::Complete));
    assert_eq!(RunState::Failed.next(true), None);
}

#[tokio::test]
async fn daily_counts_are_kept_per_utc_date() {
    let (_dir, store) = temp_store().await;
    let s = strategy(&store).await;

    let first = store
        .create_run_at(&new_run(&s), 0, at(2026, 3, 1, 0, 0, 0))
        .await
        .unwrap();
    assert_eq!(first.daily_count, 1);
    assert_eq!(first.run.state, RunState::Pending);
    assert_eq!(first.run.started_at, "2026-03-01T00:00:00.000Z");
    finish(&store, &first.run.run_id).await;

    let second = store
        .create_run_at(&new_run(&s), 0, at(2026, 3, 1, 23, 59, 59))
        .await
        .unwrap();
    assert_eq!(second.daily_count, 2, "same UTC day");
    finish(&store, &second.run.run_id).await;

    let third = store
        .create_run_at(&new_run(&s), 0, at(2026, 3, 2, 0, 0, 0))
        .await
        .unwrap();
    assert_eq!(third.daily_count, 1, "the next UTC day starts again");

    assert_eq!(
        store.daily_run_count(&s, date(2026, 3, 1)).await.unwrap(),
        2
    );
    assert_eq!(
        store.daily_run_count(&s, date(2026, 3, 2)).await.unwrap(),
        1
    );
    assert_eq!(
        store.daily_run_count(&s, date(2026, 3, 3)).await.unwrap(),
        0
    );
    assert_eq!(
        audit_actions(&store, &third.run.run_id).await,
        ["run_created"]
    );
}

#[tokio::test]
async fn the_daily_cap_refuses_without_writing_and_zero_is_unlimited() {
    let (_dir, store) = temp_store().await;
    let s = strategy(&store).await;
    let day = at(2026, 3, 1, 12, 0, 0);
    for expected in 1..=2 {
        let created = store.create_run_at(&new_run(&s), 2, day).await.unwrap();
        assert_eq!(created.daily_count, expected);
        finish(&store, &created.run.run_id).await;
    }
    let error = store.create_run_at(&new_run(&s), 2, day).await.unwrap_err();
    assert!(
        matches!(
            &error,
            RunError::DailyLimit { count: 2, max: 2, utc_date, .. } if utc_date == "2026-03-01"
        ),
        "{error:?}"
    );
    assert_eq!(
        store.daily_run_count(&s, date(2026, 3, 1)).await.unwrap(),
        2
    );
    assert_eq!(store.runs_for_strategy(&s, 10).await.unwrap().len(), 2);

    // 0 = unlimited (the old service blocked everything with 0).
    for expected in 3..=5 {
        let created = store.create_run_at(&new_run(&s), 0, day).await.unwrap();
        assert_eq!(created.daily_count, expected);
        finish(&store, &created.run.run_id).await;
    }
}

#[tokio::test]
async fn a_blocked_run_is_recorded_failed_never_claims_and_is_not_counted() {
    let (_dir, store) = temp_store().await;
    let s = strategy(&store).await;
    let blocked = store
        .create_blocked_run(&new_run(&s), "KILL_SWITCH", "the kill switch is on")
        .await
        .unwrap();
    assert_eq!(blocked.state, RunState::Failed);
    assert_eq!(blocked.error_code.as_deref(), Some("KILL_SWITCH"));
    assert_eq!(
        blocked.error_detail.as_deref(),
        Some("the kill switch is on")
    );
    assert_eq!(blocked.error_failed_state, Some(RunState::Pending));
    assert_eq!(
        blocked.finished_at.as_deref(),
        Some(blocked.started_at.as_str())
    );
    assert_eq!(blocked.skipped_reason.as_deref(), Some(BLOCKED_REASON));
    assert!(blocked.was_blocked());
    assert_eq!(blocked.strategy_snapshot, Some(json!({"topN": 100})));

    let today = Utc::now().date_naive();
    assert_eq!(
        store.daily_run_count(&s, today).await.unwrap(),
        0,
        "not started"
    );

    // It can never enter CLAIMING: not by advancing, not by resuming.
    let error = step(
        &store,
        &blocked.run_id,
        RunState::Pending,
        RunState::Claiming,
        PhaseOutputs::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            RunError::StateMismatch {
                actual: RunState::Failed,
                ..
            }
        ),
        "{error:?}"
    );
    let error = store.resume(&blocked.run_id, "cli").await.unwrap_err();
    assert!(
        matches!(&error, RunError::NeverStarted { code, .. } if code == "KILL_SWITCH"),
        "{error:?}"
    );
    assert_eq!(
        audit_actions(&store, &blocked.run_id).await,
        ["run_blocked"]
    );
    let stored = store.run(&blocked.run_id).await.unwrap().unwrap();
    assert_eq!(stored, blocked);

    // It does not occupy the strategy either.
    let created = store.create_run(&new_run(&s), 4).await.unwrap();
    assert_eq!(created.daily_count, 1);

    // Codes are stable words.
    let error = store
        .create_blocked_run(&new_run(&s), "kill switch", "")
        .await
        .unwrap_err();
    assert!(matches!(error, RunError::Invalid(_)), "{error:?}");
    let error = store
        .create_blocked_run(&new_run("missing"), "KILL_SWITCH", "")
        .await
        .unwrap_err();
    assert!(
        matches!(error, RunError::StrategyNotFound { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn one_active_run_per_strategy() {
    let (_dir, store) = temp_store().await;
    let s = strategy(&store).await;
    let other = strategy(&store).await;
    let first = store.create_run(&new_run(&s), 0).await.unwrap();
    let error = store.create_run(&new_run(&s), 0).await.unwrap_err();
    assert!(
        matches!(&error, RunError::RunInProgress { active_run_id: Some(id), .. } if *id == first.run.run_id),
        "{error:?}"
    );
    assert!(error.to_string().contains(&first.run.run_id), "{error}");
    let today = Utc::now().date_naive();
    assert_eq!(
        store.daily_run_count(&s, today).await.unwrap(),
        1,
        "the refused start is not counted"
    );
    // Another strategy is independent.
    store.create_run(&new_run(&other), 0).await.unwrap();
    assert_eq!(
        store.active_run(&s).await.unwrap().map(|r| r.run_id),
        Some(first.run.run_id.clone())
    );

    // Should the pre-check be bypassed, the schema's index still refuses, mapped the same way.
    let mut tx = store.begin_write().await.unwrap();
    let error = insert_run(
        &mut tx,
        "raw-second",
        &new_run(&s),
        &super::super::now_timestamp(),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            RunError::RunInProgress {
                active_run_id: None,
                ..
            }
        ),
        "{error:?}"
    );
    drop(tx);

    // A caller-chosen id is used, and a duplicate one is refused precisely.
    finish(&store, &first.run.run_id).await;
    let chosen = NewRun {
        run_id: Some(first.run.run_id.clone()),
        ..new_run(&s)
    };
    let error = store.create_run(&chosen, 0).await.unwrap_err();
    assert!(
        matches!(error, RunError::DuplicateRunId { .. }),
        "{error:?}"
    );
    let chosen = NewRun {
        run_id: Some("my-run".to_owned()),
        ..new_run(&s)
    };
    assert_eq!(
        store.create_run(&chosen, 0).await.unwrap().run.run_id,
        "my-run"
    );
}

#[tokio::test]
async fn advance_moves_only_from_the_expected_state() {
    let (_dir, store) = temp_store().await;
    let s = strategy(&store).await;
    let run_id = store.create_run(&new_run(&s), 0).await.unwrap().run.run_id;

    let claiming = step(
        &store,
        &run_id,
        RunState::Pending,
        RunState::Claiming,
        PhaseOutputs::default(),
    )
    .await
    .unwrap();
    assert_eq!(claiming.state, RunState::Claiming);
    // A second worker with a stale view changes nothing.
    let error = step(
        &store,
        &run_id,
        RunState::Pending,
        RunState::Claiming,
        PhaseOutputs::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            RunError::StateMismatch {
                expected: RunState::Pending,
                actual: RunState::Claiming,
                ..
            }
        ),
        "{error:?}"
    );
    // Outputs of a phase the advance does not complete are refused (no neighbour's numbers).
    let error = step(
        &store,
        &run_id,
        RunState::Claiming,
        RunState::Swapping,
        PhaseOutputs {
            claimed_lamports: Some(1),
            swapped_usdc_base_units: Some(1),
            ..PhaseOutputs::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(error, RunError::Invalid(_)), "{error:?}");
    // Backwards, to FAILED, from a terminal state: not advances.
    for (from, to) in [
        (RunState::Claiming, RunState::Pending),
        (RunState::Claiming, RunState::Claiming),
        (RunState::Claiming, RunState::Failed),
        (RunState::Complete, RunState::Complete),
    ] {
        let error = step(&store, &run_id, from, to, PhaseOutputs::default())
            .await
            .unwrap_err();
        assert!(
            matches!(error, RunError::InvalidTransition { .. }),
            "{error:?}"
        );
    }
    let error = step(
        &store,
        "nope",
        RunState::Claiming,
        RunState::Swapping,
        PhaseOutputs::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, RunError::NotFound { .. }), "{error:?}");

    // The advance commits with the caller's transaction, or not at all.
    let mut tx = store.begin_write().await.unwrap();
    advance(
        &mut tx,
        &run_id,
        RunState::Claiming,
        RunState::Swapping,
        &PhaseOutputs {
            claimed_lamports: Some(42),
            ..PhaseOutputs::default()
        },
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let run = store.run(&run_id).await.unwrap().unwrap();
    assert_eq!(
        (run.state, run.claimed_lamports),
        (RunState::Claiming, None)
    );
}

#[tokio::test]
async fn a_run_walks_to_complete_with_its_measured_outputs() {
    let (_dir, store) = temp_store().await;
    let s = strategy(&store).await;
    let run_id = store.create_run(&new_run(&s), 0).await.unwrap().run.run_id;
    to_allocating(&store, &run_id).await;

    // I2 is checked before the database sees it.
    let unbalanced = PhaseOutputs {
        budget_micro_usd: Some(812_345_678),
        allocated_micro_usd: Some(812_340_000),
        carry_out_micro_usd: Some(5_000),
        ..PhaseOutputs::default()
    };
    let error = step(
        &store,
        &run_id,
        RunState::Allocating,
        RunState::Provisioning,
        unbalanced,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, RunError::Invalid(m) if m.contains("I2")),
        "{error:?}"
    );

    step(
        &store,
        &run_id,
        RunState::Allocating,
        RunState::Provisioning,
        PhaseOutputs {
            budget_micro_usd: Some(812_345_678),
            carry_in_micro_usd: Some(0),
            headroom_micro_usd: Some(900_000_000),
            allocated_micro_usd: Some(812_340_000),
            carry_out_micro_usd: Some(5_678),
            holders_count: Some(3),
            ..PhaseOutputs::default()
        },
    )
    .await
    .unwrap();
    let done = step(
        &store,
        &run_id,
        RunState::Provisioning,
        RunState::Complete,
        PhaseOutputs {
            keys_created: Some(2),
            keys_updated: Some(1),
            keys_failed: Some(0),
            ..PhaseOutputs::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(done.state, RunState::Complete);
    assert!(done.finished_at.is_some());
    assert_eq!(done.claimed_lamports, Some(6_000_000_000));
    assert_eq!(done.swap_in_lamports, Some(5_990_000_000));
    assert_eq!(done.swapped_usdc_base_units, Some(812_345_678));
    assert_eq!(done.allocated_micro_usd, Some(812_340_000));
    assert_eq!(done.carry_out_micro_usd, Some(5_678));
    assert_eq!(
        (done.keys_created, done.keys_updated, done.keys_failed),
        (Some(2), Some(1), Some(0))
    );
    assert_eq!(done.bridged_usdc_base_units, None, "BRIDGING never ran");
    assert_eq!(store.run(&run_id).await.unwrap(), Some(done));
    assert_eq!(
        audit_actions(&store, &run_id).await,
        [
            "run_created",
            "state_advanced",
            "state_advanced",
            "state_advanced",
            "state_advanced",
            "state_advanced"
        ]
    );
    let records = store.audit_for_run(&run_id).await.unwrap();
    assert_eq!(records[2].phase.as_deref(), Some("CLAIMING"));
    assert_eq!(
        records[2].details,
        json!({"from": "CLAIMING", "to": "SWAPPING", "outputs": {"claimed_lamports": 6_000_000_000_u64}})
    );
    assert_eq!(records[2].actor.as_deref(), Some(WORKER_ACTOR));
}

#[tokio::test]
async fn fail_then_resume_reenters_the_failed_phase_and_clears_the_error() {
    let (_dir, store) = temp_store().await;
    let s = strategy(&store).await;
    let run_id = store.create_run(&new_run(&s), 0).await.unwrap().run.run_id;
    to_allocating(&store, &run_id).await;

    // Failing from the wrong state changes nothing.
    let error = store
        .fail(&run_id, RunState::Swapping, "SWAP_FAILED", "late")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RunError::StateMismatch {
                actual: RunState::Allocating,
                ..
            }
        ),
        "{error:?}"
    );
    let failed = store
        .fail(
            &run_id,
            RunState::Allocating,
            "HOLDERS_UNAVAILABLE",
            "helius 503 x3",
        )
        .await
        .unwrap();
    assert_eq!(failed.state, RunState::Failed);
    assert_eq!(failed.error_code.as_deref(), Some("HOLDERS_UNAVAILABLE"));
    assert_eq!(failed.error_detail.as_deref(), Some("helius 503 x3"));
    assert_eq!(failed.error_failed_state, Some(RunState::Allocating));
    assert!(failed.finished_at.is_some());

    // The runbook's query sees it.
    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT run_id, state, error_code, error_detail FROM runs WHERE state = 'FAILED' ORDER BY
         started_at DESC LIMIT 10;",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        [(
            run_id.clone(),
            "FAILED".to_owned(),
            Some("HOLDERS_UNAVAILABLE".to_owned()),
            Some("helius 503 x3".to_owned())
        )]
    );

    // Resume re-enters ALLOCATING (the old service skipped to the next phase).
    assert_eq!(
        store.resume(&run_id, "cli").await.unwrap(),
        RunState::Allocating
    );
    let resumed = store.run(&run_id).await.unwrap().unwrap();
    assert_eq!(resumed.state, RunState::Allocating);
    assert_eq!(
        (
            &resumed.error_code,
            &resumed.error_detail,
            resumed.error_failed_state,
            &resumed.finished_at
        ),
        (&None, &None, None, &None)
    );
    assert_eq!(resumed.resume_count, 1);
    assert_eq!(
        resumed.swapped_usdc_base_units,
        Some(812_345_678),
        "checkpoints kept"
    );
    assert_eq!(
        store.active_run(&s).await.unwrap().map(|r| r.run_id),
        Some(run_id.clone()),
        "active again"
    );
    // Not counted again: one start today.
    let today = Utc::now().date_naive();
    assert_eq!(store.daily_run_count(&s, today).await.unwrap(), 1);
    let error = store.resume(&run_id, "cli").await.unwrap_err();
    assert!(
        matches!(
            error,
            RunError::NotResumable {
                state: RunState::Allocating,
                ..
            }
        ),
        "{error:?}"
    );
    let actions = audit_actions(&store, &run_id).await;
    assert_eq!(&actions[actions.len() - 2..], ["run_failed", "run_resumed"]);
    let last = store.audit_for_run(&run_id).await.unwrap().pop().unwrap();
    assert_eq!(last.actor.as_deref(), Some("cli"));
    assert_eq!(last.details["previousError"]["code"], "HOLDERS_UNAVAILABLE");

    // A failed run cannot be resumed while the strategy has another active run.
    store
        .fail(&run_id, RunState::Allocating, "POOL_EXHAUSTED", "")
        .await
        .unwrap();
    let other = store.create_run(&new_run(&s), 0).await.unwrap().run.run_id;
    let error = store.resume(&run_id, "cli").await.unwrap_err();
    assert!(
        matches!(&error, RunError::RunInProgress { active_run_id: Some(id), .. } if *id == other),
        "{error:?}"
    );
    let error = store.resume("nope", "cli").await.unwrap_err();
    assert!(matches!(error, RunError::NotFound { .. }), "{error:?}");
}

#[tokio::test]
async fn leases_are_acquired_refused_taken_over_after_expiry_and_released() {
    let (_dir, store) = temp_store().await;
    let s = strategy(&store).await;
    let run_id = store.create_run(&new_run(&s), 0).await.unwrap().run.run_id;
    let ttl = Duration::from_secs(30);
    let t0 = at(2026, 3, 1, 12, 0, 0);
    let secs = chrono::Duration::seconds;

    assert!(
        store
            .acquire_lease_at(&s, &run_id, "a", ttl, t0)
            .await
            .unwrap()
    );
    let lease = store.current_lease(&s).await.unwrap().unwrap();
    assert_eq!(lease.instance_id, "a");
    assert_eq!(lease.expires_at, "2026-03-01T12:00:30.000Z");
    assert!(!lease.is_expired_at(t0 + secs(29)));
    assert!(lease.is_expired_at(t0 + secs(30)));

    // Live: another instance is refused; the holder may re-acquire (refresh).
    assert!(
        !store
            .acquire_lease_at(&s, &run_id, "b", ttl, t0 + secs(10))
            .await
            .unwrap()
    );
    assert!(
        store
            .acquire_lease_at(&s, &run_id, "a", ttl, t0 + secs(10))
            .await
            .unwrap()
    );
    assert!(
        store
            .renew_lease_at(&s, &run_id, "a", ttl, t0 + secs(20))
            .await
            .unwrap()
    );
    assert!(
        !store
            .acquire_lease_at(&s, &run_id, "b", ttl, t0 + secs(49))
            .await
            .unwrap()
    );

    // Expired (the holder stopped renewing): taken over.
    assert!(
        store
            .acquire_lease_at(&s, &run_id, "b", ttl, t0 + secs(50))
            .await
            .unwrap()
    );
    let lease = store.current_lease(&s).await.unwrap().unwrap();
    assert_eq!(
        (lease.instance_id.as_str(), lease.acquired_at.as_str()),
        ("b", "2026-03-01T12:00:50.000Z")
    );
    // The old holder learns it lost the lease and cannot release the new holder's.
    assert!(
        !store
            .renew_lease_at(&s, &run_id, "a", ttl, t0 + secs(51))
            .await
            .unwrap()
    );
    assert!(!store.release_lease(&s, &run_id, "a").await.unwrap());
    assert!(store.release_lease(&s, &run_id, "b").await.unwrap());
    assert_eq!(store.current_lease(&s).await.unwrap(), None);

    // Finishing the run releases its lease with it.
    assert!(store.acquire_lease(&s, &run_id, "a", ttl).await.unwrap());
    store
        .fail(&run_id, RunState::Pending, "DB_LOCKED", "")
        .await
        .unwrap();
    assert_eq!(store.current_lease(&s).await.unwrap(), None);
    let error = store
        .acquire_lease(&s, &run_id, "a", ttl)
        .await
        .unwrap_err();
    assert!(matches!(error, RunError::NotActive { .. }), "{error:?}");

    // Bad arguments.
    let error = store
        .acquire_lease(&s, &run_id, "a", Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(error, RunError::Invalid(_)), "{error:?}");
    let other = strategy(&store).await;
    let error = store
        .acquire_lease(&other, &run_id, "a", ttl)
        .await
        .unwrap_err();
    assert!(matches!(error, RunError::Invalid(_)), "{error:?}");
}

#[tokio::test]
async fn the_kill_switch_is_persisted_and_every_toggle_audited() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let store = Store::open(&path).await.unwrap();
    assert!(!store.kill_switch().await.unwrap(), "seeded off");
    assert!(
        !store.set_kill_switch(true, "cli").await.unwrap(),
        "previous value"
    );
    assert!(store.kill_switch().await.unwrap());
    store.close().await;

    let store = Store::open(&path).await.unwrap();
    assert!(store.kill_switch().await.unwrap(), "survives a restart");
    assert!(store.set_kill_switch(false, "api").await.unwrap());
    assert!(!store.kill_switch().await.unwrap());

    let audit = store.recent_audit(10).await.unwrap();
    let toggles: Vec<(&str, Option<&str>, &serde_json::Value)> = audit
        .iter()
        .map(|r| (r.action.as_str(), r.actor.as_deref(), &r.details))
        .collect();
    assert_eq!(
        toggles,
        [
            (
                "kill_switch_off",
                Some("api"),
                &json!({"previous": true, "value": false})
            ),
            (
                "kill_switch_on",
                Some("cli"),
                &json!({"previous": false, "value": true})
            ),
        ]
    );
    assert!(audit.iter().all(|r| r.run_id.is_none()));
}

#[tokio::test]
async fn listings_filter_order_and_page() {
    let (_dir, store) = temp_store().await;
    let s1 = strategy(&store).await;
    let s2 = strategy(&store).await;
    let mut s1_runs = Vec::new();
    for hour in 1..=3 {
        let run = store
            .create_run_at(&new_run(&s1), 0, at(2026, 3, 1, hour, 0, 0))
            .await
            .unwrap()
            .run;
        if hour == 2 {
            store
                .fail(&run.run_id, RunState::Pending, "RPC_UNAVAILABLE", "")
                .await
                .unwrap();
        } else if hour == 1 {
            finish(&store, &run.run_id).await;
        }
        s1_runs.push(run.run_id);
    }
    let s2_run = store
        .create_run_at(&new_run(&s2), 0, at(2026, 3, 1, 4, 0, 0))
        .await
        .unwrap()
        .run
        .run_id;

    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.runs_for_strategy(&s1, 10).await.unwrap()),
        [s1_runs[2].clone(), s1_runs[1].clone(), s1_runs[0].clone()]
    );
    assert_eq!(
        store.latest_run(&s1).await.unwrap().map(|r| r.run_id),
        Some(s1_runs[2].clone())
    );
    assert_eq!(
        ids(store.runs(&RunFilter::default()).await.unwrap()),
        [
            s2_run.clone(),
            s1_runs[2].clone(),
            s1_runs[1].clone(),
            s1_runs[0].clone()
        ]
    );
    let failed = RunFilter {
        state: Some(RunState::Failed),
        ..RunFilter::default()
    };
    assert_eq!(
        ids(store.runs(&failed).await.unwrap()),
        [s1_runs[1].clone()]
    );
    let page = RunFilter {
        strategy_id: Some(s1.clone()),
        limit: 1,
        offset: 1,
        ..RunFilter::default()
    };
    assert_eq!(ids(store.runs(&page).await.unwrap()), [s1_runs[1].clone()]);
    let pending_s2 = RunFilter {
        state: Some(RunState::Pending),
        strategy_id: Some(s2.clone()),
        ..RunFilter::default()
    };
    assert_eq!(ids(store.runs(&pending_s2).await.unwrap()), [s2_run]);
    assert_eq!(store.latest_run("missing").await.unwrap(), None);
    assert_eq!(
        store.active_run(&s1).await.unwrap().map(|r| r.run_id),
        Some(s1_runs[2].clone())
    );
}
