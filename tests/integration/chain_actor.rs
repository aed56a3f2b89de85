//! The ChainActor end to end against the sandbox: claim then swap with amounts equal to the ledger
//! deltas, a dropped send recovered without a second landing, a restart between send and confirm
//! converging to one landing, and the holder snapshot through the actor.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use creditbrain::sandbox::faults::{Fault, FaultMode, FaultRule};
use creditbrain::sandbox::ledger::{LedgerOptions, USDC_MINT_MAINNET, associated_token_address};
use creditbrain::sandbox::world::WorldOptions;
use creditbrain::sandbox::{Sandbox, SandboxOptions};
use creditbrain_actors::chain::actor::{
    self as chain, BAGS_CLAIM_PROGRAMS, ChainActor, ChainArgs, ChainBreakers, ChainMsg,
};
use creditbrain_actors::chain::bags::BagsClient;
use creditbrain_actors::chain::helius::{HeliusClient, HolderFilters};
use creditbrain_actors::chain::protocol::SubmitOptions;
use creditbrain_actors::chain::rpc::SolanaRpc;
use creditbrain_actors::resilience::{
    Breaker, BreakerConfig, Integration, RateLimiter, RetryPolicy, SlidingBudget,
};
use creditbrain_actors::secret::Secret;
use creditbrain_actors::store::Store;
use creditbrain_actors::store::transactions::{TxPhase, TxStatus};
use ractor::{Actor, ActorRef};
use solana_sdk::signature::{Keypair, Signer};

use crate::support::eventually;

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

struct Harness {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    store: Store,
    run_id: String,
}

impl Harness {
    async fn start() -> Self {
        let sandbox = Sandbox::start(SandboxOptions {
            world: WorldOptions {
                holders: 40,
                ..WorldOptions::default()
            },
            // Fast slots and short-lived blockhashes, so expiry is reached in about a second.
            ledger: LedgerOptions {
                slot_duration: Duration::from_millis(20),
                blockhash_validity_blocks: 40,
                finalization_depth: 32,
            },
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chain.db")).await.unwrap();
        let run_id = insert_run(&store, &sandbox).await;
        Self {
            sandbox,
            dir,
            store,
            run_id,
        }
    }

    fn args(&self, store: Store) -> ChainArgs {
        let signer = Keypair::try_from(self.sandbox.world.signer.to_bytes().as_slice()).unwrap();
        let breaker = |integration| {
            Breaker::new(
                integration,
                BreakerConfig {
                    failure_threshold: 3,
                    cooldown: Duration::from_millis(300),
                },
            )
        };
        ChainArgs {
            bags: BagsClient::new(
                format!("{}/api/v1", self.sandbox.bags_url),
                Secret::new(self.sandbox.bags_api_key.clone()),
                Duration::from_secs(10),
                SlidingBudget::new(1_000, Duration::from_secs(3600)),
            ),
            helius: HeliusClient::new(
                Secret::new(format!(
                    "{}/?api-key={}",
                    self.sandbox.helius_url, self.sandbox.helius_api_key
                )),
                Duration::from_secs(10),
                RateLimiter::per_second(50),
            ),
            rpc: SolanaRpc::new(
                &Secret::new(self.sandbox.rpc_url.clone()),
                Duration::from_secs(10),
            ),
            signer: Arc::new(signer),
            store,
            breakers: ChainBreakers {
                bags: breaker(Integration::Bags),
                solana_rpc: breaker(Integration::SolanaRpc),
                helius_das: breaker(Integration::HeliusDas),
            },
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(200),
            },
            usdc_mint: USDC_MINT_MAINNET,
            submit: SubmitOptions {
                poll_interval: Duration::from_millis(20),
                resend_interval: Some(Duration::from_millis(200)),
                max_rebuilds: 3,
                max_rpc_failures: 50,
                skip_preflight: false,
            },
            max_priority_fee_lamports: 10_000_000,
            allowed_programs: BAGS_CLAIM_PROGRAMS.into_iter().collect::<BTreeSet<_>>(),
        }
    }

    async fn spawn(&self, store: Store) -> ActorRef<ChainMsg> {
        let (actor, _) = Actor::spawn(None, ChainActor, self.args(store))
            .await
            .unwrap();
        actor
    }

    fn signer_lamports(&self) -> u64 {
        self.sandbox
            .ledger
            .lamports(&self.sandbox.world.signer.pubkey())
    }

    fn signer_usdc(&self) -> u64 {
        let account =
            associated_token_address(&self.sandbox.world.signer.pubkey(), &USDC_MINT_MAINNET);
        self.sandbox
            .ledger
            .token_account(&account)
            .map_or(0, |account| account.amount)
    }

    /// Distinct transactions the ledger executed (landed), ignoring dropped and rejected ones and
    /// re-sends of a signature that had already landed.
    fn landed_count(&self) -> usize {
        self.sandbox
            .ledger
            .received()
            .iter()
            .filter(|received| received.landed_slot.is_some() && !received.duplicate)
            .count()
    }
}

/// A strategy and a run row, which the transaction records reference.
async fn insert_run(store: &Store, sandbox: &Sandbox) -> String {
    let now = creditbrain_actors::store::now_timestamp();
    let strategy_id = "strategy-chain-test";
    sqlx::query(
        "INSERT INTO strategies (strategy_id, owner_wallet, token_mint, threshold_lamports,
            slippage_bps, distribution_mode, max_grant_micro_usd, max_key_limit_micro_usd,
            key_expiry_days, reserve_bps, cron_schedule, created_at, updated_at)
         VALUES (?, ?, ?, 0, 50, 'TOP_N_HOLDERS', 10000000, 100000000, 365, 1000, '0 */6 * * *', ?, ?)",
    )
    .bind(strategy_id)
    .bind(sandbox.world.signer.pubkey().to_string())
    .bind(sandbox.world.token_mint.to_string())
    .bind(&now)
    .bind(&now)
    .execute(store.pool())
    .await
    .unwrap();
    let run_id = "run-chain-test".to_string();
    sqlx::query(
        "INSERT INTO runs (run_id, strategy_id, state, triggered_by, started_at, updated_at)
         VALUES (?, ?, 'CLAIMING', 'manual', ?, ?)",
    )
    .bind(&run_id)
    .bind(strategy_id)
    .bind(&now)
    .bind(&now)
    .execute(store.pool())
    .await
    .unwrap();
    run_id
}

#[tokio::test(flavor = "multi_thread")]
async fn claim_then_swap_records_exactly_the_ledger_deltas() {
    let harness = Harness::start().await;
    let actor = harness.spawn(harness.store.clone()).await;

    let positions = chain::claimable_positions(&actor, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(positions.len(), 3);
    let (mint, seeded) = harness.sandbox.world.positions[0];

    let before = harness.signer_lamports();
    let claim = chain::claim_position(&actor, &harness.run_id, mint, CALL_TIMEOUT)
        .await
        .unwrap();
    let after = harness.signer_lamports();
    assert_eq!(claim.transactions.len(), 1);
    assert_eq!(
        after as i64 - before as i64,
        claim.claimed_lamports,
        "recorded = ledger delta"
    );
    assert_eq!(
        claim.claimed_lamports,
        seeded as i64 - claim.fees_lamports as i64
    );

    // Asking again for the same run settles from the record: nothing new is sent.
    let landed = harness.landed_count();
    let again = chain::claim_position(&actor, &harness.run_id, mint, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(again.transactions, claim.transactions);
    assert_eq!(harness.landed_count(), landed);

    let (usdc_before, lamports_before) = (harness.signer_usdc(), harness.signer_lamports());
    let swap_in = 2_000_000_000;
    let swap = chain::swap(&actor, &harness.run_id, swap_in, 50, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        harness.signer_usdc() - usdc_before,
        swap.usdc_received,
        "USDC = ledger delta"
    );
    assert_eq!(
        lamports_before - harness.signer_lamports(),
        swap.lamports_spent
    );
    assert!(
        swap.lamports_spent >= swap_in,
        "the swap input plus fees and rent"
    );
    // 2 SOL at 150 USDC/SOL with 0.5 % slippage: at least 298.5 USDC.
    assert!(swap.usdc_received >= 298_500_000, "{}", swap.usdc_received);

    let rows = harness.store.txs_for_run(&harness.run_id).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|row| row.status == TxStatus::Landed && row.result.is_some())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_send_is_recovered_with_exactly_one_landing() {
    let harness = Harness::start().await;
    let actor = harness.spawn(harness.store.clone()).await;
    // The RPC acknowledges the first send and never lands it, and drops the re-sends too.
    harness.sandbox.faults.add_rule(FaultRule {
        fake: "rpc".into(),
        route: Some("sendTransaction".into()),
        latency: None,
        mode: Some(FaultMode::Script {
            steps: vec![Some(Fault::DropTransaction); 4],
        }),
    });
    let (mint, seeded) = harness.sandbox.world.positions[1];
    let before = harness.signer_lamports();
    let claim = chain::claim_position(&actor, &harness.run_id, mint, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        harness.signer_lamports() as i64 - before as i64,
        claim.claimed_lamports
    );
    assert_eq!(
        claim.claimed_lamports,
        seeded as i64 - claim.fees_lamports as i64
    );
    assert_eq!(
        harness.landed_count(),
        1,
        "one claim landed, however many sends were dropped"
    );
    let rows = harness.store.txs_for_run(&harness.run_id).await.unwrap();
    assert!(
        rows.iter()
            .filter(|row| row.status == TxStatus::Landed)
            .count()
            == 1,
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|row| row.status == TxStatus::Expired),
        "the dropped transaction expired and was rebuilt: {rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_between_send_and_confirm_neither_loses_nor_duplicates() {
    let harness = Harness::start().await;
    let actor = harness.spawn(harness.store.clone()).await;
    // Every send is dropped for now: the claim is persisted and sent, but cannot confirm.
    harness.sandbox.faults.add_rule(FaultRule {
        fake: "rpc".into(),
        route: Some("sendTransaction".into()),
        latency: None,
        mode: Some(FaultMode::Always {
            fault: Fault::DropTransaction,
        }),
    });
    let (mint, seeded) = harness.sandbox.world.positions[2];
    let pending = {
        let actor = actor.clone();
        let run_id = harness.run_id.clone();
        tokio::spawn(
            async move { chain::claim_position(&actor, &run_id, mint, CALL_TIMEOUT).await },
        )
    };
    eventually(Duration::from_secs(10), || async {
        let rows = harness.store.txs_for_run(&harness.run_id).await.unwrap();
        rows.iter()
            .any(|row| row.status == TxStatus::Pending)
            .then_some(())
    })
    .await;
    // The process dies: the actor with its in-flight task, and the store handle.
    actor.get_cell().kill();
    assert!(
        pending.await.unwrap().is_err(),
        "the caller learns the actor died"
    );
    harness.store.close().await;
    harness.sandbox.faults.clear(Some("rpc"));

    // The restarted process: a new store on the same file, a new actor, the run resumed.
    let store = Store::open(&harness.dir.path().join("chain.db"))
        .await
        .unwrap();
    let before = harness.signer_lamports();
    let actor = harness.spawn(store.clone()).await;
    // On start, the actor settles what the dead one left pending, before anyone asks.
    eventually(Duration::from_secs(10), || async {
        let rows = store.txs_for_run(&harness.run_id).await.unwrap();
        rows.iter()
            .all(|row| row.status != TxStatus::Pending)
            .then_some(())
    })
    .await;
    let claim = chain::claim_position(&actor, &harness.run_id, mint, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(harness.landed_count(), 1, "exactly one landing");
    assert_eq!(
        harness.signer_lamports() as i64 - before as i64,
        claim.claimed_lamports
    );
    assert_eq!(
        claim.claimed_lamports,
        seeded as i64 - claim.fees_lamports as i64
    );
    let rows = store.txs_for_run(&harness.run_id).await.unwrap();
    assert_eq!(
        rows.iter()
            .filter(|row| row.status == TxStatus::Landed)
            .count(),
        1,
        "{rows:?}"
    );
    assert!(rows.iter().all(|row| row.phase == TxPhase::Claiming));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_holder_snapshot_through_the_actor_applies_every_filter() {
    let harness = Harness::start().await;
    let actor = harness.spawn(harness.store.clone()).await;
    let excluded = harness.sandbox.world.holder_wallets[0];
    let snapshot = chain::holder_snapshot(
        &actor,
        harness.sandbox.world.token_mint,
        HolderFilters {
            excluded_wallets: [excluded].into_iter().collect(),
            min_holding: 0,
        },
        CALL_TIMEOUT,
    )
    .await
    .unwrap();
    let wallets: BTreeSet<_> = snapshot
        .holders
        .iter()
        .map(|holder| holder.wallet)
        .collect();
    let expected: BTreeSet<_> = harness.sandbox.world.holder_wallets[1..]
        .iter()
        .copied()
        .collect();
    assert_eq!(
        wallets, expected,
        "every holder but the excluded one; no PDA, no incinerator"
    );
    assert!(snapshot.excluded.off_curve >= 2);
}
