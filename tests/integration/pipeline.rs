//! The pipeline end to end on the sandbox: a run claims, swaps, allocates and provisions with the
//! fakes' ledger and OpenRouter keys equal to the run's records; a second run tops up; a dry run
//! changes nothing; the kill switch and the daily cap record FAILED runs with their codes.

use std::time::Duration;

use creditbrain::sandbox::world::LAMPORTS_PER_SOL;
use creditbrain_actors::keyvault::{KeyVault, Sealed};
use creditbrain_actors::run::{CoordinatorMsg, start_run};
use creditbrain_actors::store::runs::{RunState, TriggeredBy};
use solana_sdk::signature::Signer;

use crate::support::{SandboxDaemon, eventually};

/// The pipeline tests' world: the shared sandbox daemon with 30 holders and the seeded strategy
/// (TOP_N_HOLDERS 20, $10 per grant, $100 per key, credits mode, 1 SOL threshold).
type Pipeline = SandboxDaemon;

async fn start(extra: &[(&str, &str)]) -> Pipeline {
    SandboxDaemon::start(30, extra).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_completes_with_the_fakes_state_equal_to_its_records_and_a_second_tops_up() {
    let pipeline = start(&[]).await;
    let store = pipeline.daemon.handle.store.clone();
    let signer = pipeline.sandbox.world.signer.pubkey();
    let lamports_before = pipeline.sandbox.ledger.lamports(&signer);

    let run = pipeline.run_to_end(None).await;
    assert_eq!(
        run.state,
        RunState::Complete,
        "{:?} {:?}",
        run.error_code,
        run.error_detail
    );
    let seeded: u64 = pipeline
        .sandbox
        .world
        .positions
        .iter()
        .map(|(_, lamports)| lamports)
        .sum();
    let claimed = run.claimed_lamports.unwrap();
    assert!(
        claimed > seeded - 100_000 && claimed < seeded,
        "claimed {claimed} of {seeded}"
    );
    let swapped = run.swapped_usdc_base_units.unwrap();
    assert!(swapped > 0);
    // The signer kept the float and the fees, no more: the ledger agrees with the records.
    let lamports_after = pipeline.sandbox.ledger.lamports(&signer);
    assert!(lamports_after < lamports_before + claimed);

    // Σ grants + carry-over = budget, and every grant is a key on OpenRouter with that limit.
    let allocations = store.allocations_for_run(&run.run_id).await.unwrap();
    let granted: i64 = allocations.iter().map(|a| a.grant_micro_usd).sum();
    assert_eq!(granted, run.allocated_micro_usd.unwrap());
    assert_eq!(
        granted + run.carry_out_micro_usd.unwrap(),
        run.budget_micro_usd.unwrap()
    );
    let keys = pipeline.sandbox.openrouter.keys();
    assert_eq!(keys.len(), allocations.len());
    assert_eq!(run.keys_created, Some(allocations.len() as u64));
    for allocation in &allocations {
        let key = keys
            .iter()
            .find(|key| Some(&key.hash) == allocation.key_hash.as_ref())
            .expect("every allocation has its key on OpenRouter");
        assert_eq!(key.limit_micro_usd, Some(allocation.grant_micro_usd));
        assert_eq!(
            key.name,
            format!(
                "creditbrain-{}-{}",
                pipeline.strategy_id, allocation.holder_wallet
            )
        );
    }
    let strategy = store
        .stored_strategy(&pipeline.strategy_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        strategy.carry_over_micro_usd,
        run.carry_out_micro_usd.unwrap()
    );

    // The plaintext is sealed at rest and opens with the vault beside the database.
    let vault = KeyVault::from_config(None, &pipeline.dir.path().join("daemon.db")).unwrap();
    let stored = store
        .key_by_hash(allocations[0].key_hash.as_ref().unwrap())
        .await
        .unwrap()
        .unwrap();
    let sealed = Sealed::from((
        stored.encrypted_key.clone().unwrap(),
        stored.key_nonce.unwrap(),
    ));
    let plaintext = vault.decrypt(&sealed, &stored.key_hash).unwrap();
    assert!(plaintext.expose().starts_with("sk-or-v1-"));

    // More fees arrive; the second run tops the same holders' keys up instead of creating keys.
    pipeline.sandbox.bags.add_position(
        &signer,
        &pipeline.sandbox.world.token_mint,
        2 * LAMPORTS_PER_SOL,
    );
    let second = pipeline.run_to_end(None).await;
    assert_eq!(
        second.state,
        RunState::Complete,
        "{:?} {:?}",
        second.error_code,
        second.error_detail
    );
    assert_eq!(second.keys_created, Some(0));
    assert!(second.keys_updated.unwrap() > 0);
    let keys_after = pipeline.sandbox.openrouter.keys();
    assert_eq!(
        keys_after.len(),
        keys.len(),
        "no new key for a holder who has one"
    );
    for key in &keys_after {
        let ledger = store.key_by_hash(&key.hash).await.unwrap().unwrap();
        assert_eq!(
            key.limit_micro_usd,
            Some(ledger.limit_micro_usd),
            "OpenRouter = ledger"
        );
    }
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_changes_nothing_anywhere_and_predicts_the_live_run() {
    let pipeline = start(&[]).await;
    let store = pipeline.daemon.handle.store.clone();
    let signer = pipeline.sandbox.world.signer.pubkey();
    let lamports = pipeline.sandbox.ledger.lamports(&signer);
    let run = pipeline.run_to_end(Some(true)).await;
    assert_eq!(
        run.state,
        RunState::Complete,
        "{:?} {:?}",
        run.error_code,
        run.error_detail
    );
    assert!(run.dry_run);
    assert_eq!(pipeline.sandbox.ledger.lamports(&signer), lamports);
    assert!(
        pipeline.sandbox.ledger.received().is_empty(),
        "no transaction sent"
    );
    assert!(
        pipeline.sandbox.openrouter.keys().is_empty(),
        "no key created"
    );
    let strategy = store
        .stored_strategy(&pipeline.strategy_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(strategy.carry_over_micro_usd, 0, "carry-over untouched");
    let allocations = store.allocations_for_run(&run.run_id).await.unwrap();
    assert!(allocations.iter().all(|allocation| allocation.dry_run));
    let audit = store.audit_for_run(&run.run_id).await.unwrap();
    assert!(audit.iter().any(|entry| entry.action == "claim_planned"));
    assert!(
        audit
            .iter()
            .any(|entry| entry.action == "provision_planned")
    );

    // It still computed what it would do: the swap quoted, the quote split. The live run that
    // follows (same world) measures what the dry run predicted and grants what it planned.
    let quoted: u64 = audit
        .iter()
        .find(|entry| entry.action == "swap_quoted")
        .and_then(|entry| entry.details["quotedUsdc"].as_str()?.parse().ok())
        .expect("the dry swap was quoted");
    assert!(quoted > 0);
    assert_eq!(run.budget_micro_usd, Some(quoted as i64));
    assert!(!allocations.is_empty());
    let live = pipeline.run_to_end(Some(false)).await;
    assert_eq!(live.state, RunState::Complete, "{live:?}");
    // The plan claims the gross claimable; the live claim nets its transaction fees, so the live
    // swap is a hair smaller than the quote.
    let swapped = live.swapped_usdc_base_units.unwrap();
    assert!(
        swapped <= quoted && quoted - swapped <= quoted / 1_000,
        "quoted {quoted}, swapped {swapped}"
    );
    let planned: Vec<(String, i64)> = allocations
        .iter()
        .map(|a| (a.holder_wallet.clone(), a.grant_micro_usd))
        .collect();
    let granted: Vec<(String, i64)> = store
        .allocations_for_run(&live.run_id)
        .await
        .unwrap()
        .iter()
        .map(|a| (a.holder_wallet.clone(), a.grant_micro_usd))
        .collect();
    assert_eq!(
        planned, granted,
        "the dry run planned exactly what the live run granted"
    );
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kill_switch_and_the_daily_cap_record_failed_runs_with_their_codes() {
    let pipeline = start(&[("MAX_DAILY_RUNS", "1")]).await;
    let store = pipeline.daemon.handle.store.clone();
    let coordinator = pipeline.coordinator();
    let (reply, answer) = ractor::concurrency::oneshot();
    coordinator
        .send_message(CoordinatorMsg::SetKillSwitch {
            on: true,
            actor: "test".into(),
            reply: reply.into(),
        })
        .unwrap();
    answer.await.unwrap().unwrap();
    let blocked = start_run(
        &coordinator,
        &pipeline.strategy_id,
        TriggeredBy::Manual,
        Some(true),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(blocked.state, RunState::Failed);
    assert_eq!(blocked.blocked_code.as_deref(), Some("KILL_SWITCH"));
    let run = store.run(&blocked.run_id).await.unwrap().unwrap();
    assert_eq!(run.error_code.as_deref(), Some("KILL_SWITCH"));
    assert_eq!(
        run.error_failed_state,
        Some(RunState::Pending),
        "never entered CLAIMING"
    );

    let (reply, answer) = ractor::concurrency::oneshot();
    coordinator
        .send_message(CoordinatorMsg::SetKillSwitch {
            on: false,
            actor: "test".into(),
            reply: reply.into(),
        })
        .unwrap();
    answer.await.unwrap().unwrap();
    let first = pipeline.run_to_end(Some(true)).await;
    assert_eq!(first.state, RunState::Complete);
    let capped = start_run(
        &coordinator,
        &pipeline.strategy_id,
        TriggeredBy::Manual,
        Some(true),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(capped.blocked_code.as_deref(), Some("DAILY_LIMIT"));
    let run = store.run(&capped.run_id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(run.error_code.as_deref(), Some("DAILY_LIMIT"));
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_lost_its_lease_steps_back_instead_of_racing_the_new_holder() {
    use creditbrain::sandbox::faults::{FaultRule, Latency};

    let pipeline = start(&[]).await;
    let store = pipeline.daemon.handle.store.clone();
    // The swap's quote takes a second: time to take the lease over mid-phase.
    pipeline.sandbox.faults.add_rule(FaultRule {
        fake: "bags".into(),
        route: Some("GET /api/v1/trade/quote".into()),
        latency: Some(Latency::Fixed { ms: 1_000 }),
        mode: None,
    });
    let started = start_run(
        &pipeline.coordinator(),
        &pipeline.strategy_id,
        TriggeredBy::Manual,
        None,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(30), || async {
        let run = store.run(&started.run_id).await.unwrap().unwrap();
        (run.state == RunState::Swapping).then_some(())
    })
    .await;
    // Another instance takes the lease over (as it may once ours has expired).
    sqlx::query("UPDATE run_leases SET instance_id = 'other-instance' WHERE run_id = ?")
        .bind(&started.run_id)
        .execute(store.pool())
        .await
        .unwrap();
    // The swap finishes, then the worker sees the lease gone and does not start ALLOCATING.
    eventually(Duration::from_secs(30), || async {
        let run = store.run(&started.run_id).await.unwrap().unwrap();
        (run.state == RunState::Allocating).then_some(())
    })
    .await;
    let coordinator = pipeline.coordinator();
    eventually(Duration::from_secs(10), || async {
        let active = ractor::call_t!(coordinator, CoordinatorMsg::ActiveRuns, 1_000).unwrap();
        active.is_empty().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let run = store.run(&started.run_id).await.unwrap().unwrap();
    assert_eq!(
        run.state,
        RunState::Allocating,
        "left to the lease holder, not failed"
    );
    assert!(
        store
            .allocations_for_run(&run.run_id)
            .await
            .unwrap()
            .is_empty()
    );
    pipeline.stop().await;
}
