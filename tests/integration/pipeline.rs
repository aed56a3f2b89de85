//! The pipeline end to end on the sandbox: a run claims, swaps, allocates and provisions with the
//! fakes' ledger and OpenRouter keys equal to the run's records; a second run tops up; a dry run
//! changes nothing; the kill switch and the daily cap record FAILED runs with their codes.

use std::time::Duration;

use creditbrain::config::Config;
use creditbrain::daemon::RunningDaemon;
use creditbrain::sandbox::ledger::LedgerOptions;
use creditbrain::sandbox::world::{LAMPORTS_PER_SOL, WorldOptions};
use creditbrain::sandbox::{Sandbox, SandboxOptions};
use creditbrain_actors::keyvault::{KeyVault, Sealed};
use creditbrain_actors::run::{CoordinatorMsg, start_run};
use creditbrain_actors::store::runs::{Run, RunState, TriggeredBy};
use creditbrain_actors::store::strategies::NewStrategy;
use ractor::ActorRef;
use solana_sdk::signature::Signer;

use crate::support::eventually;

struct Pipeline {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    daemon: RunningDaemon,
    strategy_id: String,
}

impl Pipeline {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let sandbox = Sandbox::start(SandboxOptions {
            world: WorldOptions {
                holders: 30,
                ..WorldOptions::default()
            },
            ledger: LedgerOptions {
                slot_duration: Duration::from_millis(20),
                ..LedgerOptions::default()
            },
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut vars = sandbox.daemon_vars();
        for (name, value) in [
            ("API_AUTH_TOKEN", "pipeline-test-token-0123456789"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("KEY_LIMIT_RESET", "null"),
            ("HEALTH_PROBE_INTERVAL_SEC", "1"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        {
            vars.insert(name.into(), value.into());
        }
        vars.insert(
            "DATABASE_PATH".into(),
            dir.path().join("pipeline.db").display().to_string(),
        );
        vars.insert(
            "ADMIN_SOCKET_PATH".into(),
            dir.path().join("pipeline.sock").display().to_string(),
        );
        let config = Config::from_vars(&vars).unwrap_or_else(|errors| panic!("{errors}"));
        let daemon = creditbrain::daemon::start(&config)
            .await
            .expect("daemon starts");
        let strategy = daemon
            .handle
            .store
            .insert_strategy(&NewStrategy {
                owner_wallet: sandbox.world.signer.pubkey().to_string(),
                token_mint: sandbox.world.token_mint.to_string(),
                fee_source: "CLAIMABLE_POSITIONS".into(),
                threshold_lamports: LAMPORTS_PER_SOL as i64,
                slippage_bps: 50,
                distribution_mode: "TOP_N_HOLDERS".into(),
                top_n: 20,
                min_holding_base_units: "0".into(),
                max_grant_micro_usd: 10_000_000,
                max_key_limit_micro_usd: 100_000_000,
                key_limit_reset: None,
                key_expiry_days: 365,
                reserve_bps: 1_000,
                cron_schedule: "0 */6 * * *".into(),
                status: "active".into(),
            })
            .await
            .unwrap();
        Self {
            sandbox,
            dir,
            daemon,
            strategy_id: strategy.strategy_id,
        }
    }

    fn coordinator(&self) -> ActorRef<CoordinatorMsg> {
        self.daemon
            .handle
            .coordinator
            .get()
            .expect("coordinator running")
    }

    async fn run_to_end(&self, dry_run: Option<bool>) -> Run {
        let started = start_run(
            &self.coordinator(),
            &self.strategy_id,
            TriggeredBy::Manual,
            dry_run,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(started.blocked_code, None);
        self.wait_for_end(&started.run_id).await
    }

    async fn wait_for_end(&self, run_id: &str) -> Run {
        let store = &self.daemon.handle.store;
        eventually(Duration::from_secs(60), || async {
            let run = store.run(run_id).await.unwrap().unwrap();
            run.state.is_terminal().then_some(run)
        })
        .await
    }

    async fn stop(self) {
        self.daemon.shutdown_trigger().trigger();
        self.daemon.wait().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_completes_with_the_fakes_state_equal_to_its_records_and_a_second_tops_up() {
    let pipeline = Pipeline::start(&[]).await;
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
    let vault = KeyVault::from_config(None, &pipeline.dir.path().join("pipeline.db")).unwrap();
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
async fn a_dry_run_changes_nothing_anywhere() {
    let pipeline = Pipeline::start(&[]).await;
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
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kill_switch_and_the_daily_cap_record_failed_runs_with_their_codes() {
    let pipeline = Pipeline::start(&[("MAX_DAILY_RUNS", "1")]).await;
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

    let pipeline = Pipeline::start(&[]).await;
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
